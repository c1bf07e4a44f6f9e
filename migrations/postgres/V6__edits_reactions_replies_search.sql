-- Edits, reactions and replies. A message keeps its current state in its own row (the text as
-- last edited, when, its reactions summed up, what it answers), so a page of history is read
-- without joins; the change entries (`change_kind` 'edited', 'reacted') carry each change in
-- order for clients that were away.
ALTER TABLE messages
    ADD COLUMN edited_ts BIGINT,
    -- The reactions summed up per emoji (JSON, the protocol's `reactions`); NULL: none.
    ADD COLUMN reactions TEXT,
    -- A reaction entry's new state of its emoji (JSON, the protocol's `Reaction`).
    ADD COLUMN reaction TEXT,
    -- A reply: the message it answers, and the quote shown with it (wiped with that message).
    ADD COLUMN reply_to BIGINT,
    ADD COLUMN reply_from TEXT,
    ADD COLUMN reply_text TEXT;
CREATE INDEX messages_by_reply ON messages (reply_to) WHERE reply_to IS NOT NULL;
CREATE INDEX messages_by_target ON messages (target) WHERE target IS NOT NULL;

-- Who reacted with what: one row per (message, emoji, account), so a reaction toggles.
CREATE TABLE reactions (
    message_id BIGINT NOT NULL,
    emoji      TEXT   NOT NULL,
    user_key   TEXT   NOT NULL,
    username   TEXT   NOT NULL,
    ts         BIGINT NOT NULL,
    -- Orders reactions made in the same millisecond (SQLite uses its rowid).
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (message_id, emoji, user_key)
);

-- Full-text search over messages (not change entries), English stemming; the expression is
-- the one the search query uses, so the index serves it. Without GIN's pending list
-- (`fastupdate`): a search then never scans a backlog of recent messages one by one (half a
-- second after 100,000 were stored at once), for a little more work per stored message.
CREATE INDEX messages_search ON messages
    USING GIN (to_tsvector('english', text)) WITH (fastupdate = off) WHERE change_kind IS NULL;
