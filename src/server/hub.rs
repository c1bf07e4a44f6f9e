//! The hub: what a connection talks to. It joins rooms, stores and pages messages, and hides
//! whether this node is alone (the storage seam feeds its [`Rooms`]) or one of a cluster
//! (`cluster` feeds them, and holds presence): the one place the two modes differ.

use super::accounts::Accounts;
use super::cluster::{self, Claim, Cluster, ClusterError, Command, Committed};
use super::config::HubConfig;
use super::mailbox::Mailbox;
use super::metrics::Metrics;
use super::rooms::{ConnId, Joined, LocalRefusal, Rooms};
use super::storage::{self, Appended, AuditEntry, Draft, Entry, Location, Storage, StoreError};
use crate::protocol::{ChatMessage, RoomSummary, User};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How stored messages reach the rooms, and who is online: the one thing that differs between
/// one node and a cluster. (Where messages are stored does not: that is [`Storage`].)
enum Backend {
    /// One node: the storage writer's commit hook feeds the rooms; presence is local.
    Alone,
    /// Several nodes: the cluster's subscription feeds the rooms; presence is in Redis.
    Cluster(Arc<Cluster>),
}

/// Why a join was refused.
pub enum JoinRefused {
    /// The name, or a look-alike, is online; the name in use, when this node knows it.
    NameTaken(Option<String>),
    Unavailable(StoreError),
}

/// The hub as connections see it: rooms plus storage, limits and metrics. Every operation
/// that differs between one node and a cluster goes through here.
pub struct Hub {
    pub rooms: Arc<Rooms>,
    /// Every message, in SQLite or PostgreSQL, the same way in both modes.
    storage: Storage,
    backend: Backend,
    pub config: Arc<HubConfig>,
    pub metrics: Arc<Metrics>,
    /// Who may use which name, in the same storage as the messages.
    pub accounts: Accounts,
    /// Uploaded files: the directory and the limits.
    pub files: super::files::Files,
    /// Link previews: the fetcher and its cache.
    pub previews: super::previews::Previews,
    next_conn: AtomicU64,
    /// Cluster mode: one join or leave at a time per user and room on this node, so two tabs
    /// joining at once claim presence once, and a tab joining while the last one leaves does
    /// not end up in the room without a claim.
    presence_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Hub {
    /// Opens the history (SQLite, or Redis when `redis-url` is set) and wires it to the
    /// rooms. `Finished` tells when the store has written everything, once the last handle to
    /// the hub is gone.
    pub async fn open(config: Arc<HubConfig>, metrics: Arc<Metrics>) -> Result<Hub, HubError> {
        let location = Location::parse(&config.database);
        if let Some(url) = &config.redis_url {
            // Every node must read and write the same history: a file of its own would not do.
            if !matches!(location, Location::Postgres(_)) {
                return Err(HubError::Cluster(ClusterError::Start(
                    "cluster mode keeps its history in PostgreSQL: set `database` (or \
                     --database, HUBBUB_DATABASE) to a postgres:// URL shared by every node"
                        .into(),
                )));
            }
            let (commands, orders) = cluster::commands();
            let committed = commands.clone();
            let opened = Storage::open(
                &location,
                Box::new(move |room, message, prev| {
                    let _ = committed.send(Command::Committed(Box::new(Committed {
                        room: room.to_string(),
                        message: message.clone(),
                        prev,
                    })));
                }),
            )
            .await?;
            let rooms = Arc::new(Rooms::new(&config, opened.last_id, metrics.clone()));
            storage::expire_every_hour(opened.storage.clone(), config.retention_days);
            super::accounts::sweep_every_hour(opened.storage.clone());
            let cluster = Cluster::start(
                url,
                config.clone(),
                rooms.clone(),
                opened.storage.clone(),
                (commands, orders),
            )
            .await?;
            let hub = Hub {
                rooms,
                accounts: Accounts::new(opened.storage.clone(), config.signups_per_ip_per_hour),
                files: files(&config)?,
                previews: super::previews::Previews::new(&config),
                storage: opened.storage,
                backend: Backend::Cluster(cluster),
                config,
                metrics,
                next_conn: AtomicU64::new(1),
                presence_locks: Default::default(),
            };
            return Ok(hub);
        }
        // The store is created before the rooms it feeds, so the commit hook reaches them
        // through a slot filled right after.
        let slot: Arc<std::sync::OnceLock<Arc<Rooms>>> = Arc::default();
        let hook = slot.clone();
        let opened = Storage::open(
            &location,
            Box::new(move |room, message, _prev| {
                if let Some(rooms) = hook.get() {
                    rooms.deliver_message(room, message);
                }
            }),
        )
        .await?;
        storage::expire_every_hour(opened.storage.clone(), config.retention_days);
        super::accounts::sweep_every_hour(opened.storage.clone());
        let rooms = Arc::new(Rooms::new(&config, opened.last_id, metrics.clone()));
        let _ = slot.set(rooms.clone());
        let hub = Hub {
            rooms,
            accounts: Accounts::new(opened.storage.clone(), config.signups_per_ip_per_hour),
            files: files(&config)?,
            previews: super::previews::Previews::new(&config),
            storage: opened.storage,
            backend: Backend::Alone,
            config,
            metrics,
            next_conn: AtomicU64::new(1),
            presence_locks: Default::default(),
        };
        Ok(hub)
    }

    /// Waits until every message accepted so far is stored and handed on (see
    /// [`Storage::flush`] and [`Cluster::flush`]).
    pub async fn flush(&self) {
        self.storage.flush().await;
        if let Backend::Cluster(cluster) = &self.backend {
            cluster.flush().await;
        }
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// False while a cluster node cannot reach Redis (it keeps its clients meanwhile).
    pub fn is_healthy(&self) -> bool {
        match &self.backend {
            Backend::Alone => true,
            Backend::Cluster(cluster) => cluster.is_healthy(),
        }
    }

    /// Stores a message; it reaches the rooms once stored (the storage writer's commit hook,
    /// through the cluster in cluster mode). A cluster node cut off from Redis refuses: the
    /// message would be stored but reach nobody on the other nodes while its sender saw it as
    /// sent; refused, it stays in the sender's outbox and is resent. (One stored in the moment
    /// before the node notices is published late, by the publisher's retries: never lost.)
    pub async fn post(&self, draft: Draft) -> Result<Appended, StoreError> {
        if !self.is_healthy() {
            return Err(StoreError::Unreachable {
                service: "Redis",
                reason: "the node is reconnecting; messages are refused meanwhile".into(),
            });
        }
        let appended = self.storage.append(draft).await?;
        if !appended.duplicate {
            self.metrics.messages_stored.fetch_add(1, Ordering::Relaxed);
        }
        Ok(appended)
    }

    /// Up to `limit` messages of `room` visible to `viewer` before `before` (or the newest),
    /// up to `upto`, oldest first, and whether older ones exist.
    pub async fn page(
        &self,
        room: &str,
        viewer: Option<&str>,
        before: Option<u64>,
        upto: u64,
        limit: usize,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        self.storage.page(room, viewer, before, upto, limit).await
    }

    /// Adds `user` to `room` (cluster-wide in cluster mode) and subscribes the connection.
    pub async fn join(
        &self,
        room: &str,
        user: &User,
        mailbox: Arc<Mailbox>,
    ) -> Result<Joined, JoinRefused> {
        let conn = mailbox.id();
        let Backend::Cluster(cluster) = &self.backend else {
            // Rooms open themselves in single-node mode: the only refusal is a taken name.
            return self
                .rooms
                .join(room, user, mailbox)
                .map_err(|refused| match refused {
                    LocalRefusal::NameTaken(holder) => JoinRefused::NameTaken(Some(holder)),
                    LocalRefusal::NotOpen => JoinRefused::NameTaken(None),
                });
        };
        // The room's channel first: from then on this node gets all of the room's messages.
        cluster.open(room).await.map_err(JoinRefused::Unavailable)?;
        let lock = self.presence_lock(room, user);
        let _one_at_a_time = lock.lock().await;
        // The claim also says who is online anywhere in the cluster (this node only knows its
        // own users): one round trip. Another tab of a user already here claims again under
        // the same id as the first (nothing changes in Redis), so it does not replace it.
        let claim = self.rooms.claim_of(room, user).unwrap_or(conn);
        let online = match cluster.claim(room, user, claim, true).await {
            Ok(Claim::Held(online)) => online,
            refused => {
                cluster.close_if_empty(room);
                return Err(match refused {
                    Err(e) => JoinRefused::Unavailable(e),
                    Ok(_) => JoinRefused::NameTaken(None),
                });
            }
        };
        // The room may close again before this join lands in it (its last user left just
        // then): open it again. Twice in a row would take a very unlucky timing.
        let mut refusal = None;
        for _ in 0..3 {
            match self.rooms.join(room, user, mailbox.clone()) {
                Ok(mut joined) => {
                    if let Some(online) = online {
                        joined.online = online.users;
                        joined.online_count = online.count;
                    }
                    return Ok(joined);
                }
                Err(LocalRefusal::NameTaken(holder)) => {
                    refusal = Some(JoinRefused::NameTaken(Some(holder)));
                    break;
                }
                Err(LocalRefusal::NotOpen) => {
                    if let Err(e) = cluster.open(room).await {
                        refusal = Some(JoinRefused::Unavailable(e));
                        break;
                    }
                }
            }
        }
        if claim == conn {
            cluster.release(room, user, conn).await;
        }
        cluster.close_if_empty(room);
        Err(refusal
            .unwrap_or_else(|| JoinRefused::Unavailable(StoreError::RoomClosing(room.to_string()))))
    }

    /// Removes the connection's user from the room, and from the cluster's presence.
    pub async fn leave(&self, room: &str, user: &User, conn: ConnId) {
        let Backend::Cluster(cluster) = &self.backend else {
            self.rooms.leave(room, user, conn);
            return;
        };
        let lock = self.presence_lock(room, user);
        let _one_at_a_time = lock.lock().await;
        // Released only when the user's last connection here has gone.
        if let Some(claim) = self.rooms.leave(room, user, conn) {
            cluster.release(room, user, claim).await;
            cluster.close_if_empty(room);
        }
    }

    /// The lock serialising `user`'s joins and leaves of `room` on this node.
    fn presence_lock(&self, room: &str, user: &User) -> Arc<tokio::sync::Mutex<()>> {
        let key = format!("{room}\n{}", crate::protocol::name_key(&user.username));
        let mut locks = self
            .presence_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Only locks someone holds or waits for are kept: one per join or leave under way.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(key).or_default().clone()
    }

    /// Ends the open connections of the account named `name` on this node (it signed out of
    /// every browser). Other nodes' connections end at their next join, which needs a session.
    pub fn close_account(&self, name: &str, code: u16) {
        self.rooms
            .close_user(name, code, super::cluster::close_reason(code));
        if let Backend::Cluster(cluster) = &self.backend {
            cluster.close_account(name, code, None);
        }
    }

    /// Closes the connections of the user named `name` to `room`, on every node (an admin
    /// removed them).
    pub fn close_in_room(&self, room: &str, name: &str, code: u16) {
        self.rooms
            .close_user_in(room, name, code, super::cluster::close_reason(code));
        if let Backend::Cluster(cluster) = &self.backend {
            cluster.close_account(name, code, Some(room));
        }
    }

    /// The message `sender_key` already stored in `room` under `client_id`, if any.
    pub async fn resent(
        &self,
        room: &str,
        sender_key: &str,
        client_id: &str,
    ) -> Result<Option<ChatMessage>, StoreError> {
        self.storage.resent(room, sender_key, client_id).await
    }

    /// Removes the uploads older than `age` that were never sent with a message (their
    /// records and their bytes); returns how many.
    pub async fn forget_unsent_files(&self, age: std::time::Duration) -> Result<usize, StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let before = now.saturating_sub(age).as_millis();
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        let ids = self.storage.forget_unsent_files(before).await?;
        for id in &ids {
            self.files.remove(id).await;
        }
        Ok(ids.len())
    }

    /// Message `id` of `room`, with its owners' keys.
    pub async fn entry(&self, room: &str, id: u64) -> Result<Option<Entry>, StoreError> {
        self.storage.entry(room, id).await
    }

    /// Records a file just uploaded (see [`super::files`]).
    pub async fn add_file(
        &self,
        file: &crate::protocol::Attachment,
        owner_key: &str,
        room: &str,
    ) -> Result<(), StoreError> {
        self.storage.add_file(file, owner_key, room).await
    }

    /// Makes file `id` seen as a sent one (by `recipient` too, if private).
    pub async fn attach_file(&self, id: &str, recipient: Option<&str>) -> Result<(), StoreError> {
        self.storage.attach_file(id, recipient).await
    }

    /// The uploaded file `id`, with who may see it.
    pub async fn file(&self, id: &str) -> Result<Option<storage::StoredFile>, StoreError> {
        self.storage.file(id).await
    }

    /// Searches `room` as `viewer` may see it (see [`Storage::search`]).
    pub async fn search(
        &self,
        room: Option<&str>,
        viewer: &str,
        query: &str,
    ) -> Result<Vec<crate::protocol::Hit>, StoreError> {
        let limit = crate::protocol::SEARCH_RESULTS;
        self.storage.search(room, viewer, query, limit).await
    }

    /// Records an admin's action in the audit log. A failure is logged, not fatal: the action
    /// itself was done.
    pub async fn record(&self, actor: &str, action: &str, subject: &str) {
        tracing::info!("admin: {actor} {action} {subject}");
        if let Err(e) = self.storage.record(actor, action, subject).await {
            tracing::error!("audit log: {e}");
        }
    }

    /// The newest admin actions, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        self.storage.audit_log(limit).await
    }

    /// Tells the room that `user` started or stopped typing.
    pub async fn typing(&self, room: &str, user: &User, active: bool) {
        match &self.backend {
            Backend::Alone => self.rooms.typing(room, user, active),
            Backend::Cluster(cluster) => cluster.typing(room, user, active).await,
        }
    }

    /// Who is online in `room` under this name (case-insensitive), for private messages.
    pub async fn member(&self, room: &str, name: &str) -> Option<User> {
        match &self.backend {
            Backend::Alone => self.rooms.member(room, name),
            Backend::Cluster(cluster) => cluster.member(room, name).await,
        }
    }

    /// The rooms with people in them, busiest first.
    pub async fn summaries(&self) -> Result<Vec<RoomSummary>, StoreError> {
        match &self.backend {
            Backend::Alone => Ok(self.rooms.summaries()),
            Backend::Cluster(cluster) => cluster.summaries().await,
        }
    }

    /// The history for `welcome`: the first `resume_limit` messages after `since`, or the
    /// last `history_limit` messages; never past the join's watermark. `viewer` is the joining
    /// user's key: their private messages are included.
    pub async fn welcome_history(
        &self,
        room: &str,
        viewer: &str,
        since: Option<u64>,
        watermark: u64,
    ) -> Result<WelcomeHistory, StoreError> {
        match since {
            Some(since) => {
                let (messages, more_after) =
                    self.resume_page(room, viewer, since, watermark).await?;
                // Older history exists if anything precedes what we send.
                let first = messages.first().map_or(since.saturating_add(1), |m| m.id);
                let (older, _) = self
                    .page(room, Some(viewer), Some(first), watermark, 1)
                    .await?;
                Ok(WelcomeHistory {
                    messages,
                    has_more: !older.is_empty(),
                    more_after,
                })
            }
            None => {
                let limit = self.config.history_limit;
                let (messages, has_more) = self
                    .page(room, Some(viewer), None, watermark, limit)
                    .await?;
                Ok(WelcomeHistory {
                    messages,
                    has_more,
                    more_after: false,
                })
            }
        }
    }

    /// Up to `resume_limit` messages after `since`, up to `watermark`, and whether more
    /// follow them (then the connection sends those in `catch_up` frames before any live
    /// message, so a long absence never leaves a gap).
    pub async fn resume_page(
        &self,
        room: &str,
        viewer: &str,
        since: u64,
        watermark: u64,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let limit = self.config.resume_limit;
        let mut messages = self
            .storage
            .after(room, Some(viewer), since, watermark, limit + 1)
            .await?;
        let more = messages.len() > limit;
        messages.truncate(limit);
        Ok((messages, more))
    }
}

/// What `welcome` carries of a room's history.
pub struct WelcomeHistory {
    pub messages: Vec<ChatMessage>,
    /// Older messages exist before the first one.
    pub has_more: bool,
    /// A resume was cut at `resume_limit`: newer messages up to the join follow.
    pub more_after: bool,
}

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot use the files directory {0}: {1}")]
    Files(String, std::io::Error),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// The files directory the settings name (made if missing).
fn files(config: &HubConfig) -> Result<super::files::Files, HubError> {
    super::files::Files::open(config).map_err(|e| {
        let dir = config
            .files_dir
            .as_ref()
            .map_or("beside the database".to_string(), |d| {
                d.display().to_string()
            });
        HubError::Files(dir, e)
    })
}
