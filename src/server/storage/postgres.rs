//! The message log in PostgreSQL, for deployments that outgrow one machine's file.
//!
//! A pool of connections (deadpool): the writer takes one per batch, reads take one each.
//! While the database is unreachable (a restart, a network cut) every call fails quickly with
//! [`StoreError::Unreachable`], which clients see as `unavailable` (nothing acknowledged, so
//! nothing lost: the browser keeps the message in its outbox); the pool reconnects by itself.
//!
//! Ids come from the `counters` row, locked first thing in the storing transaction and held
//! until commit: one writer at a time across every node, so ids follow commit order, and a
//! resend's check sees every copy already stored. Transactions that stall are ended by the
//! server after seconds (`idle_in_transaction_session_timeout`), so a stuck node cannot hold
//! the others up for long.

use super::{COLUMNS, Draft, Log, Row, StoreError, Stored, now_ms, sql_id, visible_to};
use crate::protocol::ChatMessage;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// The advisory lock taken while migrating ("hubbub" in ASCII).
const MIGRATION_LOCK: i64 = 0x6875_6262_7562;

/// Connections kept open: one for the writer, the rest for reads (history pages, resumes).
const POOL_SIZE: usize = 8;
/// How long a call waits for a connection (or to make one) before failing as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Postgres {
    pool: Pool,
}

fn unreachable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unreachable(e.to_string())
}

impl Postgres {
    /// Connects, applies the migrations, and returns the highest id given out so far.
    pub async fn open(url: &str) -> Result<(Postgres, u64), StoreError> {
        // The URL may hold a password: it is never repeated in errors.
        let location = "the PostgreSQL database".to_string();
        let open_err = |reason: String| StoreError::Open {
            location: location.clone(),
            reason,
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| open_err(e.to_string()))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        // A node that stalls in the middle of storing (paused, cut off) must not hold the
        // counter's lock, and so every node's writes, for long: the server ends such a
        // transaction, and waits for a lock give up, after a few seconds.
        config.options(
            "-c lock_timeout=5000 -c idle_in_transaction_session_timeout=10000 \
             -c statement_timeout=10000",
        );
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| open_err(e.to_string()))?;
        let mut client = pool.get().await.map_err(|e| open_err(e.to_string()))?;
        // Nodes starting together would migrate together (and collide creating the same
        // tables): one at a time, under a lock held by this session until it says so.
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let migrated = embedded::migrations::runner()
            .run_async(&mut **client)
            .await
            .map_err(|e| StoreError::Migrate {
                location: location.clone(),
                reason: e.to_string(),
            });
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        migrated?;
        unlocked.map_err(|e| open_err(e.to_string()))?;
        let last: i64 = client
            .query_one("SELECT value FROM counters WHERE name = 'message'", &[])
            .await
            .map_err(|e| open_err(e.to_string()))?
            .get(0);
        drop(client);
        Ok((Postgres { pool }, last as u64))
    }

    async fn read(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let client = self.pool.get().await.map_err(unreachable)?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| StoreError::Read(e.to_string()))?;
        let rows = client
            .query(&statement, params)
            .await
            .map_err(|e| StoreError::Read(e.to_string()))?;
        Ok(rows.iter().map(read_row).collect())
    }
}

fn read_row(row: &tokio_postgres::Row) -> ChatMessage {
    Row {
        id: row.get(0),
        ts: row.get(1),
        username: row.get(2),
        avatar: row.get(3),
        text: row.get(4),
        client_id: row.get(5),
        to_username: row.get(6),
        to_avatar: row.get(7),
    }
    .into()
}

impl Log for Postgres {
    async fn forget_before(&self, ts: i64) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(unreachable)?;
        client
            .execute("DELETE FROM messages WHERE ts < $1", &[&ts])
            .await
            .map_err(|e| StoreError::Write(e.to_string()))
    }

    async fn last_committed(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(unreachable)?;
        let last: i64 = client
            .query_one("SELECT value FROM counters WHERE name = 'message'", &[])
            .await
            .map_err(|e| StoreError::Read(e.to_string()))?
            .get(0);
        Ok(last as u64)
    }

    async fn store(&self, batch: Arc<[Draft]>) -> Result<Vec<Stored>, StoreError> {
        let mut client = self.pool.get().await.map_err(unreachable)?;
        let write = |e: tokio_postgres::Error| StoreError::Write(e.to_string());
        // Read committed, whatever the server's default: the counter's lock is what orders
        // writers; a stricter level would fail them with serialization errors instead.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(write)?;
        // The counter first, locked until commit: from here on this transaction is the only
        // writer, so a resend's check below cannot miss a copy another node is storing, every
        // smaller id is committed and visible, and ids follow commit order.
        let mut last: i64 = tx
            .query_one(
                "SELECT value FROM counters WHERE name = 'message' FOR UPDATE",
                &[],
            )
            .await
            .map_err(write)?
            .get(0);
        let find = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages \
                 WHERE sender_key = $1 AND room = $2 AND client_id = $3"
            ))
            .await
            .map_err(write)?;
        let last_in_room = tx
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM messages WHERE room = $1")
            .await
            .map_err(write)?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO messages (id, room, ts, username, avatar, text, sender_key, \
                 client_id, to_username, to_avatar, recipient_key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .await
            .map_err(write)?;
        let mut out = Vec::with_capacity(batch.len());
        for d in batch.iter() {
            if let Some(client_id) = &d.client_id
                && let Some(existing) = tx
                    .query_opt(&find, &[&d.sender_key, &d.room, client_id])
                    .await
                    .map_err(write)?
            {
                let message = read_row(&existing);
                let prev = message.id.saturating_sub(1);
                out.push(Stored {
                    message,
                    duplicate: true,
                    prev,
                });
                continue;
            }
            let prev: i64 = tx
                .query_one(&last_in_room, &[&d.room])
                .await
                .map_err(write)?
                .get(0);
            last += 1;
            let id = last;
            let ts = now_ms();
            let to_name = d.to.as_ref().map(|(u, _)| u.username.as_str());
            let to_avatar = d.to.as_ref().map(|(u, _)| u.avatar.as_str());
            let to_key = d.to.as_ref().map(|(_, key)| key.as_str());
            tx.execute(
                &insert,
                &[
                    &id,
                    &d.room,
                    &ts,
                    &d.from.username,
                    &d.from.avatar,
                    &d.text,
                    &d.sender_key,
                    &d.client_id,
                    &to_name,
                    &to_avatar,
                    &to_key,
                ],
            )
            .await
            .map_err(write)?;
            out.push(Stored {
                message: d.stored(id as u64, ts),
                duplicate: false,
                prev: prev as u64,
            });
        }
        tx.execute(
            "UPDATE counters SET value = $1 WHERE name = 'message'",
            &[&last],
        )
        .await
        .map_err(write)?;
        tx.commit().await.map_err(write)?;
        Ok(out)
    }

    async fn before(
        &self,
        room: &str,
        viewer: Option<&str>,
        before: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE room = $1 AND id < $2 AND {} \
             ORDER BY id DESC LIMIT $3",
            visible_to("$4::TEXT")
        );
        let limit = limit as i64;
        self.read(&sql, &[&room, &sql_id(before), &limit, &viewer])
            .await
    }

    async fn after(
        &self,
        room: &str,
        viewer: Option<&str>,
        since: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE room = $1 AND id > $2 AND id <= $3 AND {} \
             ORDER BY id ASC LIMIT $4",
            visible_to("$5::TEXT")
        );
        let limit = limit as i64;
        self.read(
            &sql,
            &[&room, &sql_id(since), &sql_id(upto), &limit, &viewer],
        )
        .await
    }
}
