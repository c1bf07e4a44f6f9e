//! Accounts and their sessions, in the same database as the messages (SQLite on one node,
//! PostgreSQL in a cluster). The rules (who is admin, when a session counts, what a ban
//! does) are here, once; the two databases only differ in SQL dialect.

use super::postgres::unreachable;
use super::sqlite::with;
use super::{Backend, Storage, StoreError, now_ms};
use crate::protocol::User;
use rusqlite::{OptionalExtension, params};

/// An account: the owner of a name on this server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub name: String,
    /// The Gravatar hash of the email given at sign-up.
    pub avatar: String,
    /// Argon2id (PHC string); `None` until the user sets a password, and then the account
    /// lives only in the sessions it has.
    pub password_hash: Option<String>,
    pub admin: bool,
    pub banned: bool,
}

impl Account {
    /// Who this account's messages belong to in storage: private messages and resends key on
    /// it, never on a name or an email anybody could type.
    pub fn key(&self) -> String {
        format!("account:{}", self.id)
    }

    pub fn user(&self) -> User {
        User {
            username: self.name.clone(),
            avatar: self.avatar.clone(),
        }
    }
}

/// What a secret was given out as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretKind {
    /// A browser's session cookie.
    Browser,
    /// The token a simple client got in `welcome` when its join created the account.
    Join,
    /// An API token made by the account (bots, the load generator).
    Api,
}

impl SecretKind {
    fn parse(kind: &str) -> Option<Self> {
        match kind {
            "browser" => Some(SecretKind::Browser),
            "join" => Some(SecretKind::Join),
            "api" => Some(SecretKind::Api),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SecretKind::Browser => "browser",
            SecretKind::Join => "join",
            SecretKind::Api => "api",
        }
    }
}

const ACCOUNT_COLUMNS: &str = "id, name, avatar, password_hash, admin, banned";

fn sqlite_account(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        name: row.get(1)?,
        avatar: row.get(2)?,
        password_hash: row.get(3)?,
        admin: row.get(4)?,
        banned: row.get(5)?,
    })
}

fn postgres_account(row: &tokio_postgres::Row) -> Account {
    Account {
        id: row.get(0),
        name: row.get(1),
        avatar: row.get(2),
        password_hash: row.get(3),
        admin: row.get(4),
        banned: row.get(5),
    }
}

impl Storage {
    /// Creates the account for `name` unless its key is taken (then `None`). The first
    /// account of a server is its admin.
    pub async fn create_account(
        &self,
        name: &str,
        name_key: &str,
        avatar: &str,
    ) -> Result<Option<Account>, StoreError> {
        let (name, key, avatar, now) = (
            name.to_string(),
            name_key.to_string(),
            avatar.to_string(),
            now_ms(),
        );
        let doing = format!("creating the account {name:?}");
        let sql = format!(
            "INSERT INTO accounts (name, name_key, avatar, admin, created_ms) \
             VALUES ($1, $2, $3, NOT EXISTS (SELECT 1 FROM accounts), $4) \
             ON CONFLICT (name_key) DO NOTHING RETURNING {ACCOUNT_COLUMNS}"
        );
        match &self.log {
            Backend::Sqlite(db) => {
                with(&db.writer, doing, move |conn| {
                    conn.query_row(&sql, params![name, key, avatar, now], sqlite_account)
                        .optional()
                })
                .await
            }
            Backend::Postgres(db) => {
                let client = db.pool.get().await.map_err(unreachable)?;
                let row = client
                    .query_opt(&sql, &[&name, &key, &avatar, &now])
                    .await
                    .map_err(|e| StoreError::query(doing, e))?;
                Ok(row.as_ref().map(postgres_account))
            }
        }
    }

    /// The account that owns the name with this key.
    pub async fn account_named(&self, name_key: &str) -> Result<Option<Account>, StoreError> {
        let key = name_key.to_string();
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name_key = $1");
        let doing = "looking up an account by name";
        match &self.log {
            Backend::Sqlite(db) => {
                with(&db.reader, doing, move |conn| {
                    conn.query_row(&sql, params![key], sqlite_account)
                        .optional()
                })
                .await
            }
            Backend::Postgres(db) => {
                let client = db.pool.get().await.map_err(unreachable)?;
                let row = client
                    .query_opt(&sql, &[&key])
                    .await
                    .map_err(|e| StoreError::query(doing, e))?;
                Ok(row.as_ref().map(postgres_account))
            }
        }
    }

    /// Sets (or replaces) the account's password hash.
    pub async fn set_password_hash(&self, account: i64, hash: &str) -> Result<(), StoreError> {
        let sql = "UPDATE accounts SET password_hash = $1 WHERE id = $2";
        let args = vec![hash.into(), account.into()];
        self.run("setting a password", sql, args).await.map(drop)
    }

    /// Records a new secret (by its hash) for the account, valid until `expires_ms`.
    pub async fn add_secret(
        &self,
        account: i64,
        token_hash: &str,
        kind: SecretKind,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO sessions (token_hash, account_id, kind, created_ms, expires_ms) \
                   VALUES ($1, $2, $3, $4, $5)";
        let args = vec![
            token_hash.into(),
            account.into(),
            kind.as_str().into(),
            now_ms().into(),
            expires_ms.into(),
        ];
        self.run("starting a session", sql, args).await.map(drop)
    }

    /// The account a secret belongs to, if the secret is known, unexpired, and its account is
    /// not banned.
    pub async fn account_for_secret(
        &self,
        token_hash: &str,
    ) -> Result<Option<(Account, SecretKind)>, StoreError> {
        let hash = token_hash.to_string();
        let now = now_ms();
        let sql = "SELECT a.id, a.name, a.avatar, a.password_hash, a.admin, a.banned, s.kind \
                   FROM sessions s JOIN accounts a ON a.id = s.account_id \
                   WHERE s.token_hash = $1 AND s.expires_ms > $2";
        let doing = "checking a session";
        let found = match &self.log {
            Backend::Sqlite(db) => {
                with(&db.reader, doing, move |conn| {
                    conn.query_row(sql, params![hash, now], |row| {
                        Ok((sqlite_account(row)?, row.get::<_, String>(6)?))
                    })
                    .optional()
                })
                .await?
            }
            Backend::Postgres(db) => {
                let client = db.pool.get().await.map_err(unreachable)?;
                let row = client
                    .query_opt(sql, &[&hash, &now])
                    .await
                    .map_err(|e| StoreError::query(doing, e))?;
                row.as_ref()
                    .map(|row| (postgres_account(row), row.get::<_, String>(6)))
            }
        };
        Ok(found
            .filter(|(account, _)| !account.banned)
            .and_then(|(account, kind)| Some((account, SecretKind::parse(&kind)?))))
    }

    /// Deletes the sessions and tokens that have expired; returns how many.
    pub async fn forget_expired_secrets(&self) -> Result<u64, StoreError> {
        let sql = "DELETE FROM sessions WHERE expires_ms <= $1";
        self.run("deleting expired sessions", sql, vec![now_ms().into()])
            .await
    }

    /// Ends one session (signing out).
    pub async fn end_secret(&self, token_hash: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM sessions WHERE token_hash = $1";
        self.run("ending a session", sql, vec![token_hash.into()])
            .await
            .map(drop)
    }

    /// Ends every browser session and join token of the account but `keep` (signing out
    /// everywhere, a password change). API tokens are revoked one by one, not by this.
    pub async fn end_sessions(&self, account: i64, keep: Option<&str>) -> Result<(), StoreError> {
        let sql = "DELETE FROM sessions WHERE account_id = $1 AND kind <> 'api' \
                   AND token_hash <> $2";
        let args = vec![account.into(), keep.unwrap_or("").into()];
        self.run("ending sessions", sql, args).await.map(drop)
    }
}

/// An API token as its owner sees it in the list: never the secret.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenInfo {
    /// The SHA-256 of the secret: names the token for revoking, opens nothing.
    pub id: String,
    pub label: String,
    pub created_ms: i64,
}

impl Storage {
    /// Records a new API token (by its secret's hash) for the account.
    pub async fn add_api_token(
        &self,
        account: i64,
        token_hash: &str,
        label: &str,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO sessions (token_hash, account_id, kind, created_ms, expires_ms, label) \
                   VALUES ($1, $2, 'api', $3, $4, $5)";
        let args = vec![
            token_hash.into(),
            account.into(),
            now_ms().into(),
            expires_ms.into(),
            label.into(),
        ];
        self.run("creating an API token", sql, args).await.map(drop)
    }

    /// The account's API tokens, newest first.
    pub async fn api_tokens(&self, account: i64) -> Result<Vec<TokenInfo>, StoreError> {
        let sql = "SELECT token_hash, COALESCE(label, ''), created_ms FROM sessions \
                   WHERE account_id = $1 AND kind = 'api' ORDER BY created_ms DESC";
        let doing = "listing API tokens";
        match &self.log {
            Backend::Sqlite(db) => {
                with(&db.reader, doing, move |conn| {
                    conn.prepare(sql)?
                        .query_map(params![account], |r| {
                            Ok(TokenInfo {
                                id: r.get(0)?,
                                label: r.get(1)?,
                                created_ms: r.get(2)?,
                            })
                        })?
                        .collect()
                })
                .await
            }
            Backend::Postgres(db) => {
                let client = db.pool.get().await.map_err(unreachable)?;
                let rows = client
                    .query(sql, &[&account])
                    .await
                    .map_err(|e| StoreError::query(doing, e))?;
                Ok(rows
                    .iter()
                    .map(|r| TokenInfo {
                        id: r.get(0),
                        label: r.get(1),
                        created_ms: r.get(2),
                    })
                    .collect())
            }
        }
    }

    /// Revokes one of the account's API tokens; false if it has no such token.
    pub async fn revoke_api_token(&self, account: i64, id: &str) -> Result<bool, StoreError> {
        let sql = "DELETE FROM sessions WHERE account_id = $1 AND kind = 'api' AND token_hash = $2";
        let args = vec![account.into(), id.into()];
        Ok(self.run("revoking an API token", sql, args).await? == 1)
    }
}
