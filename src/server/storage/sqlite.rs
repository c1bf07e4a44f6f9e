//! The embedded default: the message log in one SQLite file, nothing to set up.
//!
//! Two connections: the writer's (one transaction per batch, see the seam's writer) and the
//! readers' (WAL lets it read while the writer writes). Both are used on tokio's blocking pool.
//! The database runs in WAL mode with `synchronous = NORMAL`: a committed transaction survives
//! the process being killed (`kill -9`); an operating-system crash or power loss can lose the
//! last moments.

use super::{
    COLUMNS, Draft, Log, Row, StoreError, Stored, change_columns, changes, now_ms, sql_id,
    visible_to,
};
use crate::protocol::ChatMessage;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// The highest id ever given out: AUTOINCREMENT's sequence (it stays when retention deletes
/// the newest messages), or the highest id in the table.
const LAST_ID: &str = "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0), \
                       COALESCE((SELECT MAX(id) FROM messages), 0))";

const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                       PRAGMA busy_timeout = 5000;";
const READER_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;";

pub struct Sqlite {
    pub(super) writer: Arc<Mutex<Connection>>,
    pub(super) reader: Arc<Mutex<Connection>>,
    /// Searches read on a connection of their own, so a slow one never holds up history
    /// pages and joins.
    pub(super) searcher: Arc<Mutex<Connection>>,
}

impl Sqlite {
    /// Opens or creates the file, upgrades its schema, checks it; returns the highest id.
    pub async fn open(path: &Path) -> Result<(Sqlite, u64), StoreError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(|e| StoreError::Open {
                location: "SQLite".into(),
                reason: e.to_string(),
            })?
    }

    fn open_blocking(path: &PathBuf) -> Result<(Sqlite, u64), StoreError> {
        let location = path.display().to_string();
        let open_err = |e: rusqlite::Error| StoreError::Open {
            location: location.clone(),
            reason: e.to_string(),
        };
        let mut writer = Connection::open(path).map_err(open_err)?;
        writer.execute_batch(PRAGMAS).map_err(open_err)?;
        let check: String = writer
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(open_err)?;
        if check != "ok" {
            return Err(StoreError::Open {
                location,
                reason: format!("the file is damaged: {check}"),
            });
        }
        let migrate_err = |reason: String| StoreError::Migrate {
            location: location.clone(),
            reason,
        };
        before_versioned_migrations(&writer).map_err(|e| migrate_err(e.to_string()))?;
        embedded::migrations::runner()
            .run(&mut writer)
            .map_err(|e| migrate_err(e.to_string()))?;
        let last_id: i64 = writer
            .query_row(LAST_ID, [], |r| r.get(0))
            .map_err(open_err)?;
        let reader = Connection::open(path).map_err(open_err)?;
        reader.execute_batch(READER_PRAGMAS).map_err(open_err)?;
        let searcher = Connection::open(path).map_err(open_err)?;
        searcher.execute_batch(READER_PRAGMAS).map_err(open_err)?;
        Ok((
            Sqlite {
                writer: Arc::new(Mutex::new(writer)),
                reader: Arc::new(Mutex::new(reader)),
                searcher: Arc::new(Mutex::new(searcher)),
            },
            last_id as u64,
        ))
    }
}

/// Brings a file written before versioned migrations up to the shape migration 1 describes.
/// Those releases tracked their schema in `PRAGMA user_version`: version 0 lacked the private
/// message columns. (`ALTER TABLE ADD COLUMN` has no `IF NOT EXISTS`, so this cannot be a
/// plain SQL migration.) A new file has no table yet and is left to the migrations.
fn before_versioned_migrations(conn: &Connection) -> rusqlite::Result<()> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('messages')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if columns.is_empty() {
        return Ok(());
    }
    for column in ["to_username", "to_avatar", "recipient_key"] {
        if !columns.iter().any(|c| c == column) {
            conn.execute_batch(&format!("ALTER TABLE messages ADD COLUMN {column} TEXT"))?;
        }
    }
    Ok(())
}

pub(super) fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChatMessage> {
    Ok(Row {
        id: row.get(0)?,
        ts: row.get(1)?,
        username: row.get(2)?,
        avatar: row.get(3)?,
        text: row.get(4)?,
        client_id: row.get(5)?,
        to_username: row.get(6)?,
        to_avatar: row.get(7)?,
        deleted: row.get(8)?,
        change_kind: row.get(9)?,
        target: row.get(10)?,
        edited_ts: row.get(11)?,
        reactions: row.get(12)?,
        reaction: row.get(13)?,
        reply_to: row.get(14)?,
        reply_from: row.get(15)?,
        reply_text: row.get(16)?,
        file: row.get(17)?,
        preview: row.get(18)?,
    }
    .into())
}

/// Runs `f` on `conn` on the blocking pool; `doing` names it in the error.
pub(super) async fn with<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    doing: impl Into<String>,
    f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    let conn = conn.clone();
    let doing = doing.into();
    tokio::task::spawn_blocking(move || {
        let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn).map_err(|e| StoreError::query(doing, e))
    })
    .await
    .map_err(|_| StoreError::Stopped)?
}

impl Log for Sqlite {
    async fn store(&self, batch: Arc<[Draft]>) -> Result<Vec<Stored>, StoreError> {
        let doing = format!("storing a batch of {} messages", batch.len());
        with(&self.writer, doing, move |conn| store(conn, &batch)).await
    }

    async fn forget_before(&self, ts: i64) -> Result<u64, StoreError> {
        // AUTOINCREMENT: deleted ids are never given out again.
        let delete = move |conn: &mut Connection| {
            let tx = conn.transaction()?;
            let deleted = tx.execute("DELETE FROM messages WHERE ts < ?1", params![ts])?;
            if deleted > 0 {
                for sql in changes::AFTER_EXPIRY {
                    tx.execute(sql, [])?;
                }
            }
            tx.commit()?;
            Ok(deleted)
        };
        Ok(with(&self.writer, "deleting expired messages", delete).await? as u64)
    }

    async fn last_committed(&self) -> Result<u64, StoreError> {
        let read = |conn: &mut Connection| conn.query_row(LAST_ID, [], |r| r.get::<_, i64>(0));
        Ok(with(&self.reader, "reading the last message id", read).await? as u64)
    }

    async fn before(
        &self,
        room: &str,
        viewer: Option<&str>,
        before: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let room_name = room.to_string();
        let (room, viewer) = (room.to_string(), viewer.map(str::to_string));
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND id < ?2 \
             AND change_kind IS NULL AND {} ORDER BY id DESC LIMIT ?3",
            visible_to("?4")
        );
        let read = move |conn: &mut Connection| {
            conn.prepare_cached(&sql)?
                .query_map(
                    params![room, sql_id(before), limit as i64, viewer],
                    read_row,
                )?
                .collect()
        };
        let doing = format!("reading a page of {room_name:?} before {before}");
        with(&self.reader, doing, read).await
    }

    async fn after(
        &self,
        room: &str,
        viewer: Option<&str>,
        since: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let room_name = room.to_string();
        let (room, viewer) = (room.to_string(), viewer.map(str::to_string));
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND id > ?2 AND id <= ?3 AND {} \
             ORDER BY id ASC LIMIT ?4",
            visible_to("?5")
        );
        let read = move |conn: &mut Connection| {
            conn.prepare_cached(&sql)?
                .query_map(
                    params![room, sql_id(since), sql_id(upto), limit as i64, viewer],
                    read_row,
                )?
                .collect()
        };
        let doing = format!("reading {room_name:?} after {since}");
        with(&self.reader, doing, read).await
    }
}

/// One transaction for the batch; SQLite's single writer makes ids follow commit order.
fn store(conn: &mut Connection, batch: &[Draft]) -> rusqlite::Result<Vec<Stored>> {
    // Immediate: the write lock is taken at the start, waiting (busy_timeout) for another
    // writer on the same file (a second server during a restart). A deferred transaction that
    // reads first would fail at its first write instead ("database is locked"), with no wait.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(batch.len());
    {
        let mut find = tx.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE sender_key = ?1 AND room = ?2 AND client_id = ?3"
        ))?;
        let mut last_in_room =
            tx.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM messages WHERE room = ?1")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO messages (room, ts, username, avatar, text, sender_key, client_id, \
             to_username, to_avatar, recipient_key, change_kind, target, reaction, reply_to, \
             reply_from, reply_text, file_id, file, preview) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
             ?17, ?18, ?19)",
        )?;
        for d in batch {
            if let Some(client_id) = &d.client_id
                && let Some(existing) = find
                    .query_row(params![d.sender_key, d.room, client_id], read_row)
                    .optional()?
            {
                let prev = existing.id.saturating_sub(1);
                out.push(Stored {
                    message: existing,
                    duplicate: true,
                    prev,
                });
                continue;
            }
            let prev: i64 = last_in_room.query_row(params![d.room], |r| r.get(0))?;
            let ts = now_ms();
            // The change's effects on its target (a deletion's wipe, an edit, a reaction's
            // toggle) and a reply's quote, in this same transaction.
            let applied = changes::sqlite::apply(&tx, d, ts)?;
            let change = change_columns(&applied.change);
            let text = if applied.void { "" } else { d.text.as_str() };
            let reply = applied.reply.as_ref();
            insert.execute(params![
                d.room,
                ts,
                d.from.username,
                d.from.avatar,
                text,
                d.sender_key,
                d.client_id,
                d.to.as_ref().map(|(u, _)| &u.username),
                d.to.as_ref().map(|(u, _)| &u.avatar),
                d.to.as_ref().map(|(_, key)| key),
                change.kind,
                change.target,
                change.reaction,
                reply.map(|q| q.id as i64),
                reply.map(|q| &q.from),
                reply.map(|q| &q.text),
                applied.file.as_ref().map(|f| &f.id),
                applied
                    .file
                    .as_ref()
                    .map(|f| serde_json::to_string(f).unwrap_or_default()),
                change.preview,
            ])?;
            out.push(Stored {
                message: d.stored(tx.last_insert_rowid() as u64, ts, applied),
                duplicate: false,
                prev: prev as u64,
            });
        }
    }
    tx.commit()?;
    Ok(out)
}

/// A consistent copy of the database at `from`, written to `to` while a server may be writing
/// to it: `VACUUM INTO` reads one snapshot (WAL readers never block the writer, nor it them),
/// so the copy holds exactly the messages committed before it started.
pub fn backup(from: &Path, to: &Path) -> Result<(), StoreError> {
    let fail = |e: rusqlite::Error| StoreError::query(format!("backing up {}", from.display()), e);
    if to.exists() {
        return Err(StoreError::BackupExists(to.to_owned()));
    }
    let conn = Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(fail)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")
        .map_err(fail)?;
    conn.execute("VACUUM INTO ?1", params![to.to_string_lossy()])
        .map_err(fail)?;
    Ok(())
}
