-- A client_id identifies a message within one sender's conversation in one room: the same id
-- sent in another room is another message.
DROP INDEX IF EXISTS messages_by_client_id;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_room_client_id
    ON messages (sender_key, room, client_id) WHERE client_id IS NOT NULL;
