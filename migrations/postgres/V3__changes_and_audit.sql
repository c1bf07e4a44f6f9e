-- Changes to messages (deletions now; edits and reactions can follow) are entries of their
-- own in the log, with ids in the room's order, so `since` delivers them in order: `change_kind`
-- says what an entry does, `target` to which message. A deleted message keeps its id and
-- place, with `deleted` set and its text gone.
ALTER TABLE messages ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE messages ADD COLUMN change_kind TEXT;
ALTER TABLE messages ADD COLUMN target BIGINT;
-- What admins did, for admins to read: who, what, to what, when.
CREATE TABLE audit (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts      BIGINT NOT NULL,
    actor   TEXT   NOT NULL,
    action  TEXT   NOT NULL,
    subject TEXT   NOT NULL
);
