//! Message history in an embedded SQLite file.
//!
//! Writes go through one dedicated thread that owns the write connection. It takes every append
//! waiting in its queue, stores them in one transaction (group commit: one WAL commit for many
//! messages under load), and only after the commit hands each new message to `on_commit`,
//! which broadcasts it. So a message is durable before anyone sees it, and because one thread
//! publishes in commit order, every client sees messages in `id` order.
//!
//! The database runs in WAL mode with `synchronous = NORMAL`: a committed transaction survives
//! the process being killed (`kill -9`); an operating-system crash or power loss can lose the
//! last moments. Reads use a second connection (WAL lets it read while the writer writes) on
//! tokio's blocking pool.

use crate::protocol::{ChatMessage, User};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Most appends stored in one transaction.
const MAX_BATCH: usize = 512;
/// Appends waiting for the writer thread; senders wait beyond this (back-pressure).
const QUEUE: usize = 4_096;

/// A message accepted from a client, before it has an id.
pub struct Draft {
    pub room: String,
    pub from: User,
    /// Who sent it, for `client_id` de-duplication: the same name with the same email.
    pub sender_key: String,
    pub text: String,
    pub client_id: Option<String>,
    /// A private message's recipient, and their identity key (as `sender_key`).
    pub to: Option<(User, String)>,
}

/// The result of an append.
pub struct Appended {
    pub message: ChatMessage,
    /// The same sender already stored a message with this `client_id`; this is that message,
    /// and it was not broadcast again.
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the message database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("message database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("storing the message failed: {0}")]
    Write(String),
    #[error("the message store has stopped")]
    Stopped,
}

/// Called on the writer thread, in id order, for every newly stored message.
pub type OnCommit = Box<dyn Fn(&str, &ChatMessage) + Send>;

struct Job {
    draft: Draft,
    reply: oneshot::Sender<Result<Appended, String>>,
}

/// What [`Store::open`] gives back.
pub struct Opened {
    pub store: Store,
    /// The highest message id already stored.
    pub last_id: u64,
    pub finished: Finished,
}

/// Signals that the writer thread has stored everything queued and stopped. It stops when the
/// last [`Store`] handle is dropped; waiting for it is how shutdown makes sure no accepted
/// message is cut off half-written by the process exiting.
pub struct Finished(std::sync::mpsc::Receiver<()>);

impl Finished {
    /// For a hub with nothing to write locally (cluster mode: Redis holds the history).
    pub fn already() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = tx.send(());
        Finished(rx)
    }

    /// Waits (blocking) up to `timeout`; false if the writer is still busy.
    pub fn wait(self, timeout: std::time::Duration) -> bool {
        !matches!(
            self.0.recv_timeout(timeout),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        )
    }
}

/// Handle to the history database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    reader: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (or creates) the database at `path` and starts the writer thread. Fails here,
    /// at start-up, when the file is corrupt or the path cannot be written.
    pub fn open(path: &Path, on_commit: OnCommit) -> Result<Opened, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let writer = Connection::open(path).map_err(open_err)?;
        writer
            .execute_batch(SCHEMA)
            .and_then(|()| migrate(&writer))
            .and_then(|()| writer.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0)))
            .and_then(|check| {
                if check == "ok" {
                    Ok(())
                } else {
                    Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                        Some(check),
                    ))
                }
            })
            .map_err(open_err)?;
        let last_id: u64 = writer
            .query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| {
                r.get(0)
            })
            .map_err(open_err)?;
        let reader = Connection::open(path).map_err(open_err)?;
        reader.execute_batch(READER_PRAGMAS).map_err(open_err)?;

        let (jobs, rx) = mpsc::channel(QUEUE);
        let (finished_tx, finished) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("hubbub-store".into())
            .spawn(move || {
                write_loop(writer, rx, on_commit);
                let _ = finished_tx.send(());
            })
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        Ok(Opened {
            store: Store {
                jobs,
                reader: Arc::new(Mutex::new(reader)),
            },
            last_id,
            finished: Finished(finished),
        })
    }

    /// Stores a message and, once committed, broadcasts it through `on_commit`.
    pub async fn append(&self, draft: Draft) -> Result<Appended, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { draft, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        match answer.await {
            Ok(Ok(appended)) => Ok(appended),
            Ok(Err(message)) => Err(StoreError::Write(message)),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// Up to `limit` messages of `room` with `id < before` (or the newest, without `before`)
    /// and `id <= upto`, oldest first, and whether older ones exist.
    pub async fn page(
        &self,
        room: &str,
        viewer: Option<&str>,
        before: Option<u64>,
        upto: u64,
        limit: usize,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let room = room.to_string();
        let viewer = viewer.map(str::to_string);
        // SQLite integers are i64: clamp, or u64::MAX would become -1 and match nothing.
        let before = before
            .unwrap_or(u64::MAX)
            .min(upto.saturating_add(1))
            .min(i64::MAX as u64);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, ts, username, avatar, text, client_id, to_username, to_avatar \
                 FROM messages WHERE room = ?1 AND id < ?2 AND (recipient_key IS NULL \
                 OR recipient_key = ?4 OR sender_key = ?4) ORDER BY id DESC LIMIT ?3",
            )?;
            let mut rows: Vec<ChatMessage> = stmt
                .query_map(
                    params![room, before as i64, limit as i64 + 1, viewer],
                    row_to_message,
                )?
                .collect::<Result<_, _>>()?;
            let has_more = rows.len() > limit;
            rows.truncate(limit);
            rows.reverse();
            Ok((rows, has_more))
        })
        .await
    }

    /// Messages of `room` with `since < id <= upto`, oldest first, at most `limit`.
    pub async fn after(
        &self,
        room: &str,
        viewer: Option<&str>,
        since: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let room = room.to_string();
        let viewer = viewer.map(str::to_string);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, ts, username, avatar, text, client_id, to_username, to_avatar \
                 FROM messages WHERE room = ?1 AND id > ?2 AND id <= ?3 AND (recipient_key \
                 IS NULL OR recipient_key = ?5 OR sender_key = ?5) ORDER BY id ASC LIMIT ?4",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        room,
                        since.min(i64::MAX as u64) as i64,
                        upto.min(i64::MAX as u64) as i64,
                        limit as i64,
                        viewer
                    ],
                    row_to_message,
                )?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn).map_err(StoreError::from)
        })
        .await
        .map_err(|_| StoreError::Stopped)?
    }
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA busy_timeout = 5000;
CREATE TABLE IF NOT EXISTS messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room       TEXT    NOT NULL,
    ts         INTEGER NOT NULL,
    username   TEXT    NOT NULL,
    avatar     TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    sender_key TEXT    NOT NULL,
    client_id  TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id);
-- Private messages (schema version 1): the recipient, and who they are (as sender_key).
-- Added with ALTER TABLE in `migrate` for databases created before. So is the client_id
-- index (version 2), which `migrate` creates.
";

/// Brings an older database up to the current schema (tracked in `PRAGMA user_version`).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('messages')")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for column in ["to_username", "to_avatar", "recipient_key"] {
            if !columns.iter().any(|c| c == column) {
                conn.execute_batch(&format!("ALTER TABLE messages ADD COLUMN {column} TEXT"))?;
            }
        }
        conn.execute_batch("PRAGMA user_version = 1")?;
    }
    if version < 2 {
        // A `client_id` identifies a message within one sender's conversation in one room:
        // the same id sent in another room is another message (it used to return the first
        // room's message and store nothing).
        conn.execute_batch(
            "BEGIN;
             DROP INDEX IF EXISTS messages_by_client_id;
             CREATE UNIQUE INDEX IF NOT EXISTS messages_by_room_client_id
                 ON messages (sender_key, room, client_id) WHERE client_id IS NOT NULL;
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
    }
    Ok(())
}

const READER_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;";

fn row_to_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChatMessage> {
    Ok(ChatMessage {
        id: row.get::<_, i64>(0)? as u64,
        ts: row.get(1)?,
        from: User {
            username: row.get(2)?,
            avatar: row.get(3)?,
        },
        text: row.get(4)?,
        client_id: row.get(5)?,
        to: match (row.get::<_, Option<String>>(6)?, row.get(7)?) {
            (Some(username), Some(avatar)) => Some(User { username, avatar }),
            _ => None,
        },
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn write_loop(mut conn: Connection, mut rx: mpsc::Receiver<Job>, on_commit: OnCommit) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match write_batch(&mut conn, &batch) {
            Ok(stored) => {
                for (job, (message, duplicate)) in batch.drain(..).zip(stored) {
                    if !duplicate {
                        on_commit(&job.draft.room, &message);
                    }
                    let _ = job.reply.send(Ok(Appended { message, duplicate }));
                }
            }
            Err(e) => {
                tracing::error!("storing {} message(s) failed: {e}", batch.len());
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &[Job]) -> rusqlite::Result<Vec<(ChatMessage, bool)>> {
    let tx = conn.transaction()?;
    let mut out = Vec::with_capacity(batch.len());
    {
        let mut find = tx.prepare_cached(
            "SELECT id, ts, username, avatar, text, client_id, to_username, to_avatar \
             FROM messages WHERE sender_key = ?1 AND room = ?2 AND client_id = ?3",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO messages (room, ts, username, avatar, text, sender_key, client_id, \
             to_username, to_avatar, recipient_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for Job { draft: d, .. } in batch {
            if let Some(client_id) = &d.client_id
                && let Some(existing) = find
                    .query_row(params![d.sender_key, d.room, client_id], row_to_message)
                    .optional()?
            {
                out.push((existing, true));
                continue;
            }
            let ts = now_ms();
            insert.execute(params![
                d.room,
                ts,
                d.from.username,
                d.from.avatar,
                d.text,
                d.sender_key,
                d.client_id,
                d.to.as_ref().map(|(u, _)| &u.username),
                d.to.as_ref().map(|(u, _)| &u.avatar),
                d.to.as_ref().map(|(_, key)| key),
            ])?;
            out.push((
                ChatMessage {
                    id: tx.last_insert_rowid() as u64,
                    ts,
                    from: d.from.clone(),
                    text: d.text.clone(),
                    client_id: d.client_id.clone(),
                    to: d.to.as_ref().map(|(u, _)| u.clone()),
                },
                false,
            ));
        }
    }
    tx.commit()?;
    Ok(out)
}
