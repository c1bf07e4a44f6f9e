-- A link preview (JSON, the protocol's `Preview`): on a message, its card; on a 'previewed'
-- change entry, the card it brought.
ALTER TABLE messages ADD COLUMN preview TEXT;
