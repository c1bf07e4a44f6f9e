-- Pictures and files. The bytes live in the files directory (one node: next to this database;
-- a cluster: a directory every node mounts), named by `id`; this is who may see them.
CREATE TABLE files (
    id            TEXT    PRIMARY KEY,
    owner_key     TEXT    NOT NULL,
    room          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    size          BIGINT  NOT NULL,
    width         BIGINT,
    height        BIGINT,
    ts            BIGINT  NOT NULL,
    -- Sent with a message: from then on the room sees it (a private one: its two people).
    attached      BOOLEAN NOT NULL DEFAULT FALSE,
    recipient_key TEXT
);
-- The file a message carries: its id, and what the message shows of it (JSON, the protocol's
-- `Attachment`).
ALTER TABLE messages ADD COLUMN file_id TEXT, ADD COLUMN file TEXT;
