//! What moderation needs from storage: one message with its owners' keys (who may delete
//! it), bans and admins, and the audit log of what admins did.

use super::postgres::unreachable;
use super::sqlite::with;
use super::{Backend, COLUMNS, NCOLUMNS, Storage, StoreError, now_ms, sql_id};
use crate::protocol::ChatMessage;
use rusqlite::{OptionalExtension, params};

/// A stored message with the keys of its sender and (private) recipient.
pub struct Entry {
    pub message: ChatMessage,
    pub sender_key: String,
    pub recipient_key: Option<String>,
}

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub ts: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
}

impl Storage {
    /// Message `id` of `room`, if it is there.
    pub async fn entry(&self, room: &str, id: u64) -> Result<Option<Entry>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS}, sender_key, recipient_key FROM messages WHERE id = $1 AND room = $2"
        );
        let (id, room) = (sql_id(id), room.to_string());
        let doing = format!("reading message {id}");
        match &self.log {
            Backend::Sqlite(db) => {
                with(&db.reader, doing, move |conn| {
                    conn.query_row(&sql, params![id, room], |row| {
                        Ok(Entry {
                            message: super::sqlite::read_row(row)?,
                            sender_key: row.get(NCOLUMNS)?,
                            recipient_key: row.get(NCOLUMNS + 1)?,
                        })
                    })
                    .optional()
                })
                .await
            }
            Backend::Postgres(db) => {
                let client = db.pool.get().await.map_err(unreachable)?;
                let row = client
                    .query_opt(&sql, &[&id, &room])
                    .await
                    .map_err(|e| StoreError::query(doing, e))?;
                Ok(row.map(|row| Entry {
                    message: super::postgres::read_row(&row),
                    sender_key: row.get(NCOLUMNS),
                    recipient_key: row.get(NCOLUMNS + 1),
                }))
            }
        }
    }

    /// Bans (or lifts the ban on) an account; a ban also ends all its sessions and tokens.
    pub async fn set_banned(&self, account: i64, banned: bool) -> Result<(), StoreError> {
        let doing = "banning an account";
        match &self.log {
            Backend::Sqlite(db) => {
                with(&db.writer, doing, move |conn| {
                    let tx = conn.transaction()?;
                    tx.execute(
                        "UPDATE accounts SET banned = ?1 WHERE id = ?2",
                        params![banned, account],
                    )?;
                    if banned {
                        tx.execute(
                            "DELETE FROM sessions WHERE account_id = ?1",
                            params![account],
                        )?;
                    }
                    tx.commit()
                })
                .await
            }
            Backend::Postgres(db) => {
                let mut client = db.pool.get().await.map_err(unreachable)?;
                let fail = |e| StoreError::query(doing, e);
                let tx = client.transaction().await.map_err(fail)?;
                tx.execute(
                    "UPDATE accounts SET banned = $1 WHERE id = $2",
                    &[&banned, &account],
                )
                .await
                .map_err(fail)?;
                if banned {
                    tx.execute("DELETE FROM sessions WHERE account_id = $1", &[&account])
                        .await
                        .map_err(fail)?;
                }
                tx.commit().await.map_err(fail)
            }
        }
    }

    /// Makes an account an admin.
    pub async fn promote(&self, account: i64) -> Result<(), StoreError> {
        let sql = "UPDATE accounts SET admin = $1 WHERE id = $2";
        let args = vec![true.into(), account.into()];
        self.run("promoting an account", sql, args).await.map(drop)
    }

    /// Records what an admin did.
    pub async fn record(&self, actor: &str, action: &str, subject: &str) -> Result<(), StoreError> {
        let sql = "INSERT INTO audit (ts, actor, action, subject) VALUES ($1, $2, $3, $4)";
        let args = vec![now_ms().into(), actor.into(), action.into(), subject.into()];
        self.run("recording an admin action", sql, args)
            .await
            .map(drop)
    }

    /// The newest `limit` admin actions, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = "SELECT ts, actor, action, subject FROM audit ORDER BY id DESC LIMIT $1";
        let doing = "reading the audit log";
        match &self.log {
            Backend::Sqlite(db) => {
                with(&db.reader, doing, move |conn| {
                    conn.prepare(sql)?
                        .query_map(params![limit], |r| {
                            Ok(AuditEntry {
                                ts: r.get(0)?,
                                actor: r.get(1)?,
                                action: r.get(2)?,
                                subject: r.get(3)?,
                            })
                        })?
                        .collect()
                })
                .await
            }
            Backend::Postgres(db) => {
                let client = db.pool.get().await.map_err(unreachable)?;
                let rows = client
                    .query(sql, &[&limit])
                    .await
                    .map_err(|e| StoreError::query(doing, e))?;
                Ok(rows
                    .iter()
                    .map(|r| AuditEntry {
                        ts: r.get(0),
                        actor: r.get(1),
                        action: r.get(2),
                        subject: r.get(3),
                    })
                    .collect())
            }
        }
    }
}

impl Storage {
    /// Whether sign-ups need an invitation.
    pub async fn signups_locked(&self) -> Result<bool, StoreError> {
        let sql = "SELECT value FROM settings WHERE name = 'signups_locked'";
        let doing = "reading whether sign-ups are locked";
        let value: Option<String> = match &self.log {
            Backend::Sqlite(db) => {
                with(&db.reader, doing, move |conn| {
                    conn.query_row(sql, [], |r| r.get(0)).optional()
                })
                .await?
            }
            Backend::Postgres(db) => {
                let client = db.pool.get().await.map_err(unreachable)?;
                let row = client
                    .query_opt(sql, &[])
                    .await
                    .map_err(|e| StoreError::query(doing, e))?;
                row.map(|r| r.get(0))
            }
        };
        Ok(value.as_deref() == Some("true"))
    }

    pub async fn set_signups_locked(&self, locked: bool) -> Result<(), StoreError> {
        let sql = "INSERT INTO settings (name, value) VALUES ('signups_locked', $1) \
                   ON CONFLICT (name) DO UPDATE SET value = excluded.value";
        self.run(
            "locking or unlocking sign-ups",
            sql,
            vec![locked.to_string().into()],
        )
        .await
        .map(drop)
    }

    /// Records an invitation (by its code's hash), valid until `expires_ms`.
    pub async fn add_invite(
        &self,
        code_hash: &str,
        created_by: &str,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO invites (code_hash, created_by, created_ms, expires_ms) \
                   VALUES ($1, $2, $3, $4)";
        let args = vec![
            code_hash.into(),
            created_by.into(),
            now_ms().into(),
            expires_ms.into(),
        ];
        self.run("creating an invitation", sql, args)
            .await
            .map(drop)
    }

    /// Whether an unused, unexpired invitation has this hash.
    pub async fn invite_valid(&self, code_hash: &str) -> Result<bool, StoreError> {
        let sql = "SELECT 1 FROM invites WHERE code_hash = $1 AND used_by IS NULL \
                   AND expires_ms > $2";
        let (hash, now) = (code_hash.to_string(), now_ms());
        let doing = "checking an invitation";
        match &self.log {
            Backend::Sqlite(db) => {
                with(&db.reader, doing, move |conn| {
                    conn.query_row(sql, params![hash, now], |_| Ok(()))
                        .optional()
                        .map(|found| found.is_some())
                })
                .await
            }
            Backend::Postgres(db) => {
                let client = db.pool.get().await.map_err(unreachable)?;
                let row = client
                    .query_opt(sql, &[&hash, &now])
                    .await
                    .map_err(|e| StoreError::query(doing, e))?;
                Ok(row.is_some())
            }
        }
    }

    /// Makes a used invitation usable again (the sign-up it was used for failed).
    pub async fn release_invite(&self, code_hash: &str) -> Result<(), StoreError> {
        let sql = "UPDATE invites SET used_by = NULL WHERE code_hash = $1";
        self.run("releasing an invitation", sql, vec![code_hash.into()])
            .await
            .map(drop)
    }

    /// Uses up an invitation for `name`; false if it was used (or expired) meanwhile.
    pub async fn use_invite(&self, code_hash: &str, name: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE invites SET used_by = $1 WHERE code_hash = $2 AND used_by IS NULL \
                   AND expires_ms > $3";
        let args = vec![name.into(), code_hash.into(), now_ms().into()];
        Ok(self.run("using an invitation", sql, args).await? == 1)
    }
}
