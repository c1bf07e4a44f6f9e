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

use super::{
    COLUMNS, Draft, Log, NCOLUMNS, Row, StoreError, Stored, change_columns, changes, now_ms,
    sql_id, visible_to,
};
use crate::protocol::ChatMessage;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::HashMap;
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
    pub(super) pool: Pool,
}

pub(super) fn unreachable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unreachable {
        service: "PostgreSQL",
        reason: e.to_string(),
    }
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
        doing: String,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let client = self.pool.get().await.map_err(unreachable)?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| StoreError::query(&doing, e))?;
        let rows = client
            .query(&statement, params)
            .await
            .map_err(|e| StoreError::query(&doing, e))?;
        Ok(rows.iter().map(read_row).collect())
    }
}

pub(super) fn read_row(row: &tokio_postgres::Row) -> ChatMessage {
    Row {
        id: row.get(0),
        ts: row.get(1),
        username: row.get(2),
        avatar: row.get(3),
        text: row.get(4),
        client_id: row.get(5),
        to_username: row.get(6),
        to_avatar: row.get(7),
        deleted: row.get(8),
        change_kind: row.get(9),
        target: row.get(10),
        edited_ts: row.get(11),
        reactions: row.get(12),
        reaction: row.get(13),
        reply_to: row.get(14),
        reply_from: row.get(15),
        reply_text: row.get(16),
        file: row.get(17),
        preview: row.get(18),
    }
    .into()
}

impl Log for Postgres {
    async fn forget_before(&self, ts: i64) -> Result<u64, StoreError> {
        let mut client = self.pool.get().await.map_err(unreachable)?;
        let fail = |e| StoreError::query("deleting expired messages", e);
        let tx = client.transaction().await.map_err(fail)?;
        let deleted = tx
            .execute("DELETE FROM messages WHERE ts < $1", &[&ts])
            .await
            .map_err(fail)?;
        if deleted > 0 {
            for sql in changes::AFTER_EXPIRY {
                tx.execute(sql, &[]).await.map_err(fail)?;
            }
        }
        tx.commit().await.map_err(fail)?;
        Ok(deleted)
    }

    async fn last_committed(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(unreachable)?;
        let last: i64 = client
            .query_one("SELECT value FROM counters WHERE name = 'message'", &[])
            .await
            .map_err(|e| StoreError::query("reading the last message id", e))?
            .get(0);
        Ok(last as u64)
    }

    async fn store(&self, batch: Arc<[Draft]>) -> Result<Vec<Stored>, StoreError> {
        let mut client = self.pool.get().await.map_err(unreachable)?;
        let doing = format!("storing a batch of {} messages", batch.len());
        let write = |e: tokio_postgres::Error| StoreError::query(&doing, e);
        // Read committed, whatever the server's default: the counter's lock is what orders
        // writers; a stricter level would fail them with serialization errors instead.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(write)?;
        // The counter first, locked until commit: from here on this transaction is the only
        // writer, so the resend check below cannot miss a copy another node is storing, every
        // smaller id is committed and visible, and ids follow commit order. A few round trips
        // per batch, whatever its size: a busy node stores many messages per commit.
        let mut last: i64 = tx
            .query_one(
                "SELECT value FROM counters WHERE name = 'message' FOR UPDATE",
                &[],
            )
            .await
            .map_err(write)?
            .get(0);
        let first_last = last;
        let resent = stored_resends(&tx, &batch).await.map_err(write)?;
        let mut rooms: Vec<&str> = batch.iter().map(|d| d.room.as_str()).collect();
        rooms.sort_unstable();
        rooms.dedup();
        let mut room_last: HashMap<String, i64> = tx
            .query(
                "SELECT r, (SELECT COALESCE(MAX(id), 0) FROM messages WHERE room = r) \
                 FROM unnest($1::TEXT[]) AS r",
                &[&rooms],
            )
            .await
            .map_err(write)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let mut new = NewRows::default();
        let mut in_batch: HashMap<(&str, &str, &str), ChatMessage> = HashMap::new();
        let mut out = Vec::with_capacity(batch.len());
        for d in batch.iter() {
            let key = d
                .client_id
                .as_deref()
                .map(|c| (d.sender_key.as_str(), d.room.as_str(), c));
            if let Some(first) = key.and_then(|k| resent.get(&k).or_else(|| in_batch.get(&k))) {
                out.push(Stored {
                    message: first.clone(),
                    duplicate: true,
                    prev: first.id.saturating_sub(1),
                });
                continue;
            }
            last += 1;
            let prev = room_last.insert(d.room.clone(), last).unwrap_or(0);
            let ts = now_ms();
            // The change's effects on its target and a reply's quote (see `changes`). They
            // may concern rows of this batch (a reply, then a deletion of what it quotes):
            // the rows before this one are inserted first.
            if d.change.is_some() || d.reply_to.is_some() {
                new.insert(&tx).await.map_err(write)?;
            }
            let applied = changes::postgres::apply(&tx, d, ts).await.map_err(write)?;
            let message = d.stored(last as u64, ts, applied);
            new.push(d, &message);
            if let Some(k) = key {
                in_batch.insert(k, message.clone());
            }
            out.push(Stored {
                message,
                duplicate: false,
                prev: prev as u64,
            });
        }
        new.insert(&tx).await.map_err(write)?;
        if last != first_last {
            tx.execute(
                "UPDATE counters SET value = $1 WHERE name = 'message'",
                &[&last],
            )
            .await
            .map_err(write)?;
        }
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
            "SELECT {COLUMNS} FROM messages WHERE room = $1 AND id < $2 \
             AND change_kind IS NULL AND {} ORDER BY id DESC LIMIT $3",
            visible_to("$4::TEXT")
        );
        let limit = limit as i64;
        let doing = format!("reading a page of {room:?} before {before}");
        self.read(doing, &sql, &[&room, &sql_id(before), &limit, &viewer])
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
        let doing = format!("reading {room:?} after {since}");
        self.read(
            doing,
            &sql,
            &[&room, &sql_id(since), &sql_id(upto), &limit, &viewer],
        )
        .await
    }
}

/// The messages of a batch that are resends of ones already stored, by (sender, room,
/// `client_id`): one query for the whole batch.
async fn stored_resends<'a>(
    tx: &tokio_postgres::Transaction<'_>,
    batch: &'a [Draft],
) -> Result<HashMap<(&'a str, &'a str, &'a str), ChatMessage>, tokio_postgres::Error> {
    let keyed: Vec<&Draft> = batch.iter().filter(|d| d.client_id.is_some()).collect();
    let mut found = HashMap::new();
    if keyed.is_empty() {
        return Ok(found);
    }
    let senders: Vec<&str> = keyed.iter().map(|d| d.sender_key.as_str()).collect();
    let ids: Vec<&str> = keyed
        .iter()
        .filter_map(|d| d.client_id.as_deref())
        .collect();
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS}, sender_key, room FROM messages \
                 WHERE sender_key = ANY($1) AND client_id = ANY($2)"
            ),
            &[&senders, &ids],
        )
        .await?;
    for row in &rows {
        let (sender, room): (&str, &str) = (row.get(NCOLUMNS), row.get(NCOLUMNS + 1));
        let message = read_row(row);
        // Only the exact (sender, room, client_id) triples of this batch.
        if let Some(d) = keyed
            .iter()
            .find(|d| d.sender_key == sender && d.room == room && d.client_id == message.client_id)
        {
            let key = (
                d.sender_key.as_str(),
                d.room.as_str(),
                d.client_id.as_deref().unwrap_or_default(),
            );
            found.insert(key, message);
        }
    }
    Ok(found)
}

/// The columns of a batch's new messages, for one `INSERT ... SELECT FROM unnest(...)`.
#[derive(Default)]
struct NewRows<'a> {
    ids: Vec<i64>,
    rooms: Vec<&'a str>,
    ts: Vec<i64>,
    usernames: Vec<&'a str>,
    avatars: Vec<&'a str>,
    texts: Vec<String>,
    sender_keys: Vec<&'a str>,
    client_ids: Vec<Option<&'a str>>,
    to_usernames: Vec<Option<&'a str>>,
    to_avatars: Vec<Option<&'a str>>,
    recipient_keys: Vec<Option<&'a str>>,
    change_kinds: Vec<Option<&'static str>>,
    targets: Vec<Option<i64>>,
    reactions: Vec<Option<String>>,
    reply_tos: Vec<Option<i64>>,
    reply_froms: Vec<Option<String>>,
    reply_texts: Vec<Option<String>>,
    file_ids: Vec<Option<String>>,
    files: Vec<Option<String>>,
    previews: Vec<Option<String>>,
}

impl<'a> NewRows<'a> {
    /// Inserts the rows gathered so far with one `INSERT ... SELECT FROM unnest(...)`, and
    /// starts gathering afresh.
    async fn insert(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(self);
        tx.execute(
            "INSERT INTO messages (id, room, ts, username, avatar, text, sender_key, \
             client_id, to_username, to_avatar, recipient_key, change_kind, target, \
             reaction, reply_to, reply_from, reply_text, file_id, file, preview) \
             SELECT * FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], \
             $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], \
             $11::TEXT[], $12::TEXT[], $13::BIGINT[], $14::TEXT[], $15::BIGINT[], \
             $16::TEXT[], $17::TEXT[], $18::TEXT[], $19::TEXT[], $20::TEXT[])",
            &[
                &rows.ids,
                &rows.rooms,
                &rows.ts,
                &rows.usernames,
                &rows.avatars,
                &rows.texts,
                &rows.sender_keys,
                &rows.client_ids,
                &rows.to_usernames,
                &rows.to_avatars,
                &rows.recipient_keys,
                &rows.change_kinds,
                &rows.targets,
                &rows.reactions,
                &rows.reply_tos,
                &rows.reply_froms,
                &rows.reply_texts,
                &rows.file_ids,
                &rows.files,
                &rows.previews,
            ],
        )
        .await?;
        Ok(())
    }

    fn push(&mut self, d: &'a Draft, stored: &ChatMessage) {
        self.ids.push(stored.id as i64);
        self.rooms.push(&d.room);
        self.ts.push(stored.ts);
        self.usernames.push(&d.from.username);
        self.avatars.push(&d.from.avatar);
        self.texts.push(stored.text.clone());
        self.sender_keys.push(&d.sender_key);
        self.client_ids.push(d.client_id.as_deref());
        self.to_usernames
            .push(d.to.as_ref().map(|(u, _)| u.username.as_str()));
        self.to_avatars
            .push(d.to.as_ref().map(|(u, _)| u.avatar.as_str()));
        self.recipient_keys
            .push(d.to.as_ref().map(|(_, key)| key.as_str()));
        let change = change_columns(&stored.change);
        self.change_kinds.push(change.kind);
        self.targets.push(change.target);
        self.reactions.push(change.reaction);
        self.previews.push(change.preview);
        let reply = stored.reply.as_ref();
        self.reply_tos.push(reply.map(|q| q.id as i64));
        self.reply_froms.push(reply.map(|q| q.from.clone()));
        self.reply_texts.push(reply.map(|q| q.text.clone()));
        let file = stored.file.as_ref();
        self.file_ids.push(file.map(|f| f.id.clone()));
        self.files
            .push(file.map(|f| serde_json::to_string(f).unwrap_or_default()));
    }
}
