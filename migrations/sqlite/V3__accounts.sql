-- Accounts: a name belongs to one account on this server, compared by its key (NFKC, case
-- and look-alike characters folded: protocol::name_key). The first account is the admin.
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    name_key      TEXT    NOT NULL UNIQUE,
    avatar        TEXT    NOT NULL,
    password_hash TEXT,
    admin         INTEGER NOT NULL DEFAULT 0,
    banned        INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL
);
-- Browser sessions, join tokens and API tokens, by the SHA-256 of their secret: the secret
-- itself is only ever known to the client it was given to.
CREATE TABLE sessions (
    token_hash  TEXT    PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE INDEX sessions_by_account ON sessions (account_id);
