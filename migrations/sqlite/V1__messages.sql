-- The message log as releases before versioned migrations left it (PRAGMA user_version 1).
-- Databases from those releases already have it: every statement is a no-op for them
-- (src/server/storage/sqlite.rs brings still older files up to this shape first).
CREATE TABLE IF NOT EXISTS messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    room          TEXT    NOT NULL,
    ts            INTEGER NOT NULL,
    username      TEXT    NOT NULL,
    avatar        TEXT    NOT NULL,
    text          TEXT    NOT NULL,
    sender_key    TEXT    NOT NULL,
    client_id     TEXT,
    to_username   TEXT,
    to_avatar     TEXT,
    recipient_key TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id);
