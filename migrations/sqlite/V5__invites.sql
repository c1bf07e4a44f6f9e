-- Server-wide switches an admin flips at run time (every node reads them here).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Invitations for a server whose sign-ups are locked: by the SHA-256 of the link's code,
-- single use, with an expiry.
CREATE TABLE invites (
    code_hash  TEXT PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_by    TEXT
);
