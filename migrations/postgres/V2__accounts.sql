-- Accounts: a name belongs to one account on this server, compared by its key (NFKC, case
-- and look-alike characters folded: protocol::name_key). The first account is the admin.
CREATE TABLE accounts (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT    NOT NULL,
    name_key      TEXT    NOT NULL UNIQUE,
    avatar        TEXT    NOT NULL,
    password_hash TEXT,
    admin         BOOLEAN NOT NULL DEFAULT FALSE,
    banned        BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms    BIGINT  NOT NULL
);
-- Browser sessions, join tokens and API tokens, by the SHA-256 of their secret: the secret
-- itself is only ever known to the client it was given to.
CREATE TABLE sessions (
    token_hash  TEXT    PRIMARY KEY,
    account_id  BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL,
    expires_ms  BIGINT  NOT NULL
);
CREATE INDEX sessions_by_account ON sessions (account_id);
