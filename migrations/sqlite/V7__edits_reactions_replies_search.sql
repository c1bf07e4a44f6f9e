-- Edits, reactions and replies. A message keeps its current state in its own row (the text as
-- last edited, when, its reactions summed up, what it answers), so a page of history is read
-- without joins; the change entries (`change_kind` 'edited', 'reacted') carry each change in
-- order for clients that were away.
ALTER TABLE messages ADD COLUMN edited_ts INTEGER;
-- The reactions summed up per emoji (JSON, the protocol's `reactions`); NULL: none.
ALTER TABLE messages ADD COLUMN reactions TEXT;
-- A reaction entry's new state of its emoji (JSON, the protocol's `Reaction`).
ALTER TABLE messages ADD COLUMN reaction TEXT;
-- A reply: the message it answers, and the quote shown with it (wiped with that message).
ALTER TABLE messages ADD COLUMN reply_to INTEGER;
ALTER TABLE messages ADD COLUMN reply_from TEXT;
ALTER TABLE messages ADD COLUMN reply_text TEXT;
CREATE INDEX messages_by_reply ON messages (reply_to) WHERE reply_to IS NOT NULL;
CREATE INDEX messages_by_target ON messages (target) WHERE target IS NOT NULL;

-- Who reacted with what: one row per (message, emoji, account), so a reaction toggles.
CREATE TABLE reactions (
    message_id INTEGER NOT NULL,
    emoji      TEXT    NOT NULL,
    user_key   TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    ts         INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_key)
);

-- Full-text search over messages (not change entries): FTS5 with English stemming (porter),
-- indexing the messages table's own text (external content), kept in step by triggers, so an
-- edit is found by its new words and a deletion by none.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text, content = 'messages', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO messages_fts (rowid, text)
    SELECT id, text FROM messages WHERE change_kind IS NULL;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.change_kind IS NULL BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.change_kind IS NULL BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages
WHEN old.change_kind IS NULL BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;
