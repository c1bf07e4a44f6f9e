//! The storage seam: where every message is kept, with its rules written once.
//!
//! [`Storage`] is the one handle the hub holds. Behind it, a [`Log`] is a database that can
//! store a batch of messages in one transaction and read a room's messages before or after an
//! id: SQLite (`sqlite`, the embedded default: one file, nothing to set up) or PostgreSQL
//! (`postgres`, for people who outgrow one machine). Everything else is here, once, for both:
//!
//! - **Group commit and order:** one writer task takes every message waiting, stores them in
//!   one transaction, and only after the commit hands each new one to `on_commit`, in id order.
//!   So a message is durable before anyone sees it, and everyone sees messages in id order.
//! - **Ids** increase in commit order (SQLite: its one writer; PostgreSQL: a counter row taken
//!   inside the storing transaction, so several nodes writing at once still commit in id order).
//! - **Privacy:** a private message is visible to its sender and its recipient only
//!   ([`visible_to`], the same SQL for both databases).
//! - **Paging** (`page`: the newest before an id, oldest first, and whether older ones exist)
//!   and **resuming** (`after`: exactly what came after an id).
//! - **Resends:** a `client_id` names one message per sender and room; sending it again
//!   returns the stored message instead of a second copy.
//!
//! Schema changes are versioned SQL files in `migrations/sqlite` and `migrations/postgres`,
//! applied at start-up by refinery.

mod accounts;
mod changes;
mod files;
mod moderation;
mod postgres;
mod search;
mod sqlite;
mod statement;

pub use accounts::{Account, SecretKind, TokenInfo};
pub use files::StoredFile;
pub use moderation::{AuditEntry, Entry};

use crate::protocol::{Attachment, Change, ChatMessage, Quote, Reaction, User};
use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Most messages stored in one transaction.
const MAX_BATCH: usize = 512;
/// Messages waiting for the writer; senders wait beyond this (back-pressure).
const QUEUE: usize = 4_096;

/// A message accepted from a client, before it has an id.
pub struct Draft {
    pub room: String,
    pub from: User,
    /// Who sent it, for `client_id` de-duplication and privacy: the same name with the same
    /// email.
    pub sender_key: String,
    pub text: String,
    pub client_id: Option<String>,
    /// A private message's recipient, and their identity key (as `sender_key`).
    pub to: Option<(User, String)>,
    /// A change entry (see [`ChatMessage::change`]): storing it also applies it to its
    /// target in the same transaction (`changes`). A reaction's state is filled in then; in
    /// the draft, its `count` says what is asked: 1 adds this sender's reaction, 0 takes it
    /// back.
    pub change: Option<Change>,
    /// The message this one answers; its quote is taken when storing.
    pub reply_to: Option<u64>,
    /// A file this sender uploaded for this room: storing the message makes it the room's
    /// (see `files`).
    pub file: Option<Attachment>,
}

impl Draft {
    /// A plain public message.
    pub fn message(room: &str, from: User, sender_key: &str, text: impl Into<String>) -> Draft {
        Draft {
            room: room.to_string(),
            from,
            sender_key: sender_key.to_string(),
            text: text.into(),
            client_id: None,
            to: None,
            change: None,
            reply_to: None,
            file: None,
        }
    }

    /// The message as stored, once it has an id and a time and its effects were applied.
    fn stored(&self, id: u64, ts: i64, applied: changes::Applied) -> ChatMessage {
        // An edit of a message deleted meanwhile keeps no text either.
        let text = if applied.void { "" } else { &self.text };
        ChatMessage {
            client_id: self.client_id.clone(),
            to: self.to.as_ref().map(|(user, _)| user.clone()),
            change: applied.change,
            reply: applied.reply,
            file: applied.file,
            ..ChatMessage::new(id, ts, self.from.clone(), text)
        }
    }
}

/// The result of an append.
pub struct Appended {
    pub message: ChatMessage,
    /// The same sender already stored a message with this `client_id` in this room; this is
    /// that message, and it was not broadcast again.
    pub duplicate: bool,
}

/// Why storage failed: which operation, on what, and the database's own words, for the log.
/// Clients get `unavailable` for all of them (nothing they sent was stored).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the message database {location}: {reason}")]
    Open { location: String, reason: String },
    #[error("cannot upgrade the message database {location}: {reason}")]
    Migrate { location: String, reason: String },
    /// The database answered `doing` (e.g. "storing a batch of 12 messages") with an error.
    #[error("{doing} failed: {reason}")]
    Query { doing: String, reason: String },
    /// A service this node needs (PostgreSQL, Redis) cannot be reached or did not answer in
    /// time; it is worth retrying.
    #[error("{service} is unreachable: {reason}")]
    Unreachable {
        service: &'static str,
        reason: String,
    },
    /// Ids would be given out again: the database is older than what this node has seen.
    #[error(
        "the database's last message id went back from {seen} to {found}: it was restored \
         or failed over to an older copy; restart every node"
    )]
    WentBack { seen: u64, found: u64 },
    /// A cluster room was opened and closed again by others while joining it.
    #[error("the room {0} kept closing while joining it; try again")]
    RoomClosing(String),
    #[error("{0} already exists; give the backup a new file name")]
    BackupExists(std::path::PathBuf),
    /// The writer (or the cluster node) is shutting down.
    #[error("the message store has stopped")]
    Stopped,
}

impl StoreError {
    pub(crate) fn query(doing: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        StoreError::Query {
            doing: doing.into(),
            reason: reason.to_string(),
        }
    }
}

/// Called by the writer, in id order, for every newly stored message (and again for every
/// resend of one): its room, the message, and the id of the room's message before it (0 for
/// the first). A cluster node that sees a
/// message whose `prev` it has not seen knows there is a gap to fill from the database.
pub type OnCommit = Box<dyn Fn(&str, &ChatMessage, u64) + Send + Sync>;

/// One draft as the database stored it.
pub struct Stored {
    pub message: ChatMessage,
    /// A resend of a message already stored (nothing new was stored for it).
    pub duplicate: bool,
    /// The id of the room's previous message (see [`OnCommit`]). For a duplicate, the id
    /// just below it: "fill in anything you have not seen up to this one".
    pub prev: u64,
}

/// What a database behind the seam does; the rules above are built on these.
trait Log: Send + Sync + 'static {
    /// Stores `batch` in one transaction, in order; one [`Stored`] per draft.
    fn store(
        &self,
        batch: Arc<[Draft]>,
    ) -> impl Future<Output = Result<Vec<Stored>, StoreError>> + Send;

    /// The highest id of a committed message: every message with a smaller id is committed
    /// too (ids follow commit order).
    fn last_committed(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Deletes the messages stored before `ts` (Unix ms); returns how many.
    fn forget_before(&self, ts: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Up to `limit` messages of `room` visible to `viewer` with `id < before`, newest first.
    fn before(
        &self,
        room: &str,
        viewer: Option<&str>,
        before: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ChatMessage>, StoreError>> + Send;

    /// Up to `limit` messages of `room` visible to `viewer` with `since < id <= upto`, oldest
    /// first.
    fn after(
        &self,
        room: &str,
        viewer: Option<&str>,
        since: u64,
        upto: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ChatMessage>, StoreError>> + Send;
}

/// The columns every read selects, in the order [`Row`] reads them.
const COLUMNS: &str = "id, ts, username, avatar, text, client_id, to_username, to_avatar, \
                       deleted, change_kind, target, edited_ts, reactions, reaction, reply_to, \
                       reply_from, reply_text, file, preview";
/// How many [`COLUMNS`] there are: a query selecting more reads them from this index on.
const NCOLUMNS: usize = 19;

/// A change as stored: its kind, its target, and (a reaction) the emoji's new state or (a
/// preview) the card, as JSON.
struct ChangeColumns {
    kind: Option<&'static str>,
    target: Option<i64>,
    reaction: Option<String>,
    preview: Option<String>,
}

fn change_columns(change: &Option<Change>) -> ChangeColumns {
    let json = |value: &dyn erased::Json| Some(value.json());
    let (kind, reaction, preview) = match change {
        None => (None, None, None),
        Some(Change::Deleted { .. }) => (Some("deleted"), None, None),
        Some(Change::Edited { .. }) => (Some("edited"), None, None),
        Some(Change::Reacted { reaction, .. }) => (Some("reacted"), json(reaction), None),
        Some(Change::Previewed { preview, .. }) => (Some("previewed"), None, json(preview)),
    };
    ChangeColumns {
        kind,
        target: change.as_ref().map(|c| sql_id(c.target())),
        reaction,
        preview,
    }
}

/// The privacy rule, for both databases: public messages, and private ones the viewer sent or
/// received. `param` is the placeholder holding the viewer's key (NULL: nobody, so public
/// messages only; [`EVERYONE`]: the fan-out's own reads, see [`Storage::everything_after`]).
fn visible_to(param: &str) -> String {
    format!(
        "(recipient_key IS NULL OR recipient_key = {param} OR sender_key = {param} \
         OR {param} = '{EVERYONE}')"
    )
}

/// The viewer key that sees every message. Not a user's key: those are `account:` and a
/// number (or, in rows from before accounts, a name, a newline and an avatar hash).
const EVERYONE: &str = "*fan-out*";

/// One row of [`COLUMNS`], as both drivers hand it over.
struct Row {
    id: i64,
    ts: i64,
    username: String,
    avatar: String,
    text: String,
    client_id: Option<String>,
    to_username: Option<String>,
    to_avatar: Option<String>,
    deleted: bool,
    change_kind: Option<String>,
    target: Option<i64>,
    edited_ts: Option<i64>,
    reactions: Option<String>,
    reaction: Option<String>,
    reply_to: Option<i64>,
    reply_from: Option<String>,
    reply_text: Option<String>,
    file: Option<String>,
    preview: Option<String>,
}

/// JSON for the change columns, whatever the detail's type.
mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

impl From<Row> for ChatMessage {
    fn from(r: Row) -> Self {
        ChatMessage {
            id: r.id as u64,
            ts: r.ts,
            from: User {
                username: r.username,
                avatar: r.avatar,
            },
            text: r.text,
            client_id: r.client_id,
            to: match (r.to_username, r.to_avatar) {
                (Some(username), Some(avatar)) => Some(User { username, avatar }),
                _ => None,
            },
            deleted: r.deleted,
            change: match (r.change_kind.as_deref(), r.target, r.reaction) {
                (Some("deleted"), Some(target), _) => Some(Change::Deleted {
                    target: target as u64,
                }),
                (Some("edited"), Some(target), _) => Some(Change::Edited {
                    target: target as u64,
                }),
                (Some("reacted"), Some(target), Some(json)) => {
                    serde_json::from_str::<Reaction>(&json)
                        .ok()
                        .map(|reaction| Change::Reacted {
                            target: target as u64,
                            reaction,
                        })
                }
                (Some("previewed"), Some(target), _) => r
                    .preview
                    .as_deref()
                    .and_then(|json| serde_json::from_str(json).ok())
                    .map(|preview| Change::Previewed {
                        target: target as u64,
                        preview,
                    }),
                _ => None,
            },
            // A message's own card (a change entry's card is its change).
            preview: match (r.deleted, r.change_kind.is_none(), &r.preview) {
                (false, true, Some(json)) => serde_json::from_str(json).ok(),
                _ => None,
            },
            edited: r.edited_ts,
            // A deleted message keeps nothing of what it had (a reaction racing its deletion
            // may have summed up after it).
            reactions: match (r.deleted, r.reactions) {
                (false, Some(json)) => serde_json::from_str(&json).unwrap_or_default(),
                _ => Vec::new(),
            },
            file: match (r.deleted, r.file) {
                (false, Some(json)) => serde_json::from_str(&json).ok(),
                _ => None,
            },
            reply: match (r.reply_to, r.reply_from) {
                (Some(id), Some(from)) => Some(Quote {
                    id: id as u64,
                    from,
                    text: r.reply_text.unwrap_or_default(),
                }),
                _ => None,
            },
        }
    }
}

/// Ids as both databases store them (signed 64-bit): a bound above that is "no bound".
fn sql_id(id: u64) -> i64 {
    id.min(i64::MAX as u64) as i64
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where the messages live, from the `database` setting: a `postgres://` (or
/// `postgresql://`) URL, or the path of a SQLite file.
pub enum Location {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Location {
    pub fn parse(setting: &std::path::Path) -> Location {
        match setting.to_str() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Location::Postgres(url.to_string())
            }
            _ => Location::Sqlite(setting.to_owned()),
        }
    }
}

enum Job {
    Store {
        // Boxed: the queue's slots are as large as its largest job.
        draft: Box<Draft>,
        reply: oneshot::Sender<Result<Appended, StoreError>>,
    },
    /// Answered once everything queued before it is stored (and handed to `on_commit`).
    Flush(oneshot::Sender<()>),
}

/// The database behind a [`Storage`].
#[derive(Clone)]
enum Backend {
    Sqlite(Arc<sqlite::Sqlite>),
    Postgres(Arc<postgres::Postgres>),
}

/// Handle to the message log; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    jobs: mpsc::Sender<Job>,
    log: Backend,
}

/// What [`Storage::open`] gives back.
pub struct Opened {
    pub storage: Storage,
    /// The highest message id already stored.
    pub last_id: u64,
}

impl Storage {
    /// Opens (or creates) the database, brings its schema up to date, and starts the writer.
    /// Fails here, at start-up, when the database is unreachable, corrupt or cannot be
    /// upgraded.
    pub async fn open(location: &Location, on_commit: OnCommit) -> Result<Opened, StoreError> {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let (log, last_id) = match location {
            Location::Sqlite(path) => {
                let (log, last_id) = sqlite::Sqlite::open(path).await?;
                let log = Arc::new(log);
                tokio::spawn(write_loop(log.clone(), rx, on_commit));
                (Backend::Sqlite(log), last_id)
            }
            Location::Postgres(url) => {
                let (log, last_id) = postgres::Postgres::open(url).await?;
                let log = Arc::new(log);
                tokio::spawn(write_loop(log.clone(), rx, on_commit));
                (Backend::Postgres(log), last_id)
            }
        };
        Ok(Opened {
            storage: Storage { jobs, log },
            last_id,
        })
    }

    /// Waits until every message handed to [`Storage::append`] before this call is stored
    /// and handed to `on_commit`. Shutdown calls it once the connections are closed, so no
    /// accepted message is cut off half-way by the process exiting.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.jobs.send(Job::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    /// Stores a message and, once committed, hands it to `on_commit`.
    pub async fn append(&self, draft: Draft) -> Result<Appended, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Store {
                draft: Box::new(draft),
                reply,
            })
            .await
            .map_err(|_| StoreError::Stopped)?;
        match answer.await {
            Ok(Ok(appended)) => Ok(appended),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// The message `sender_key` already stored in `room` under `client_id`, if any: a resend
    /// is answered with it even when the resend itself would now be refused (its file is
    /// attached already, its recipient left, the sender is over the rate).
    pub async fn resent(
        &self,
        room: &str,
        sender_key: &str,
        client_id: &str,
    ) -> Result<Option<ChatMessage>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE sender_key = $1 AND room = $2 AND client_id = $3"
        );
        let (sender_key, room, client_id) = (
            sender_key.to_string(),
            room.to_string(),
            client_id.to_string(),
        );
        let doing = "looking for a resent message";
        use rusqlite::OptionalExtension;
        match &self.log {
            Backend::Sqlite(db) => {
                sqlite::with(&db.reader, doing, move |conn| {
                    conn.query_row(
                        &sql,
                        rusqlite::params![sender_key, room, client_id],
                        sqlite::read_row,
                    )
                    .optional()
                })
                .await
            }
            Backend::Postgres(db) => {
                let client = db.pool.get().await.map_err(postgres::unreachable)?;
                let row = client
                    .query_opt(&sql, &[&sender_key, &room, &client_id])
                    .await
                    .map_err(|e| StoreError::query(doing, e))?;
                Ok(row.map(|row| postgres::read_row(&row)))
            }
        }
    }

    /// Up to `limit` messages of `room` visible to `viewer` with `id < before` (or the newest,
    /// without `before`) and `id <= upto`, oldest first, and whether older ones exist.
    pub async fn page(
        &self,
        room: &str,
        viewer: Option<&str>,
        before: Option<u64>,
        upto: u64,
        limit: usize,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let before = before.unwrap_or(u64::MAX).min(upto.saturating_add(1));
        let mut rows = match &self.log {
            Backend::Sqlite(log) => log.before(room, viewer, before, limit + 1).await?,
            Backend::Postgres(log) => log.before(room, viewer, before, limit + 1).await?,
        };
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        rows.reverse();
        Ok((rows, has_more))
    }

    /// Deletes every message stored more than `days` days ago (the `retention-days` setting):
    /// their text is gone from the database, not just hidden. Ids are never reused.
    pub async fn forget_older_than(&self, days: u64) -> Result<u64, StoreError> {
        let cutoff = now_ms().saturating_sub((days as i64).saturating_mul(86_400_000));
        self.forget_before(cutoff).await
    }

    /// Deletes the messages stored before `ts` (Unix ms); returns how many.
    pub async fn forget_before(&self, ts: i64) -> Result<u64, StoreError> {
        match &self.log {
            Backend::Sqlite(log) => log.forget_before(ts).await,
            Backend::Postgres(log) => log.forget_before(ts).await,
        }
    }

    /// The highest id of a committed message (see [`Log::last_committed`]).
    pub async fn last_committed(&self) -> Result<u64, StoreError> {
        match &self.log {
            Backend::Sqlite(log) => log.last_committed().await,
            Backend::Postgres(log) => log.last_committed().await,
        }
    }

    /// Up to `limit` messages of `room`, private ones included, with `since < id <= upto`,
    /// oldest first: for handing messages a node missed to its rooms, whose connections each
    /// skip the private messages that are not theirs. Never for a client directly.
    pub async fn everything_after(
        &self,
        room: &str,
        since: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        const ALL: Option<&str> = Some(EVERYONE);
        self.after(room, ALL, since, upto, limit).await
    }

    /// Messages of `room` visible to `viewer` with `since < id <= upto`, oldest first, at
    /// most `limit`.
    pub async fn after(
        &self,
        room: &str,
        viewer: Option<&str>,
        since: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        match &self.log {
            Backend::Sqlite(log) => log.after(room, viewer, since, upto, limit).await,
            Backend::Postgres(log) => log.after(room, viewer, since, upto, limit).await,
        }
    }
}

/// Deletes messages older than `days` days every hour, for as long as the server runs (the
/// `retention-days` setting; 0 keeps everything and starts nothing). In a cluster every node
/// does it; deleting what is already gone is harmless.
pub fn expire_every_hour(storage: Storage, days: u64) {
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3_600));
        loop {
            tick.tick().await;
            match storage.forget_older_than(days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("retention: deleted {n} messages older than {days} days"),
                Err(e) => tracing::warn!("retention: {e}"),
            }
        }
    });
}

/// Writes a consistent copy of the SQLite database at `from` to `to`, while a server may be
/// using it (see `sqlite::backup`).
pub fn backup_sqlite(from: &std::path::Path, to: &std::path::Path) -> Result<(), StoreError> {
    sqlite::backup(from, to)
}

/// The writer: group commit, then `on_commit` in id order (see the module doc).
async fn write_loop<L: Log>(log: Arc<L>, mut rx: mpsc::Receiver<Job>, on_commit: OnCommit) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let mut drafts = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut flushes = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Store { draft, reply } => {
                    drafts.push(*draft);
                    replies.push(reply);
                }
                Job::Flush(done) => flushes.push(done),
            }
        }
        let drafts: Arc<[Draft]> = drafts.into();
        if !drafts.is_empty() {
            store_batch(&*log, drafts, replies, &on_commit).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn store_batch<L: Log>(
    log: &L,
    drafts: Arc<[Draft]>,
    replies: Vec<oneshot::Sender<Result<Appended, StoreError>>>,
    on_commit: &OnCommit,
) {
    match log.store(drafts.clone()).await {
        Ok(stored) => {
            for ((draft, reply), stored) in drafts.iter().zip(replies).zip(stored) {
                let Stored {
                    message,
                    duplicate,
                    prev,
                } = stored;
                // A resend is handed on again too: its first commit may not have been (the
                // commit's answer was lost, or the node stopped before handing it on). Rooms
                // that have it skip it by its id.
                on_commit(&draft.room, &message, prev);
                let _ = reply.send(Ok(Appended { message, duplicate }));
            }
        }
        Err(e) => {
            tracing::error!("{e}");
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
