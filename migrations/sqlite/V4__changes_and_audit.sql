-- Changes to messages (deletions now; edits and reactions can follow) are entries of their
-- own in the log, with ids in the room's order, so `since` delivers them in order: `change_kind`
-- says what an entry does, `target` to which message. A deleted message keeps its id and
-- place, with `deleted` set and its text gone.
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN change_kind TEXT;
ALTER TABLE messages ADD COLUMN target INTEGER;
-- What admins did, for admins to read: who, what, to what, when.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    subject TEXT    NOT NULL
);
