-- Message ids: one counter, taken inside each storing transaction. The row lock is held until
-- commit, so ids increase in commit order across every node writing to this database, and a
-- reader that has seen id N has seen every message with a smaller id.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('message', 0);

CREATE TABLE messages (
    id            BIGINT PRIMARY KEY,
    room          TEXT   NOT NULL,
    ts            BIGINT NOT NULL,
    username      TEXT   NOT NULL,
    avatar        TEXT   NOT NULL,
    text          TEXT   NOT NULL,
    sender_key    TEXT   NOT NULL,
    client_id     TEXT,
    to_username   TEXT,
    to_avatar     TEXT,
    recipient_key TEXT
);
CREATE INDEX messages_by_room ON messages (room, id);
CREATE UNIQUE INDEX messages_by_room_client_id
    ON messages (sender_key, room, client_id) WHERE client_id IS NOT NULL;
