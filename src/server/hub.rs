//! The hub: rooms, who is in them, and the fan-out of every frame to a room's connections.
//!
//! Each room has a `tokio::sync::broadcast` channel of already-serialised frames. A frame is
//! turned into JSON once and the same reference-counted bytes go to every recipient; the
//! channel's ring buffer is the bounded outbound queue each connection reads from. A reader
//! that falls a whole ring behind gets `Lagged` and is disconnected as a slow consumer (see
//! `connection`), so one stalled client never slows the sender or anyone else.
//!
//! Messages reach rooms only through [`Rooms::deliver_message`], which the store calls after a
//! commit, in id order. Each room's watermark (the highest id it has been handed, or known to
//! be in the log for it) lets a joining client get its history from the database and
//! everything newer from the channel, with no gap and no duplicate: see [`Rooms::join`]. In
//! cluster mode the node's Redis subscriptions call `deliver_message` instead of the store's
//! commit hook, and a room is only followed while it is open here (see `cluster`); [`Hub`] is
//! where the two modes differ.

use super::cluster::{Claim, Cluster, ClusterError, Committed};
use super::config::HubConfig;
use super::metrics::Metrics;
use super::storage::{Appended, Draft, Finished, Location, Storage, StoreError};
use crate::protocol::{ChatMessage, RoomSummary, ServerFrame, User, name_key};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A serialised frame, shared by all its recipients.
pub type Frame = Utf8Bytes;

/// What travels on a room's channel: a frame, and who may see it. Private messages share the
/// room's channel, so they keep their place in the room's id order (resuming with `since`
/// relies on that); each connection's writer skips the ones not addressed to its user, so
/// nobody else ever receives them, not even their existence.
#[derive(Clone)]
pub struct Delivery {
    pub frame: Frame,
    pub audience: Audience,
}

/// Who in the room a delivery is for, by name key ([`name_key`]: case, compatibility forms
/// and look-alike characters folded).
#[derive(Clone)]
pub enum Audience {
    Everyone,
    /// A private message: its sender and its recipient.
    Pair(Arc<(String, String)>),
    /// Everyone but this user (a join notice, which the joiner does not need).
    AllBut(Arc<str>),
}

impl Delivery {
    fn public(frame: Frame) -> Self {
        Delivery {
            frame,
            audience: Audience::Everyone,
        }
    }

    /// For everyone in the room except the user whose name key is `except`.
    pub fn all_but(frame: Frame, except: Option<String>) -> Self {
        Delivery {
            frame,
            audience: except.map_or(Audience::Everyone, |e| Audience::AllBut(e.into())),
        }
    }

    /// Whether the user whose name key is `key` may see this.
    pub fn is_for(&self, key: &str) -> bool {
        match &self.audience {
            Audience::Everyone => true,
            Audience::Pair(pair) => pair.0 == key || pair.1 == key,
            Audience::AllBut(name) => &**name != key,
        }
    }
}

/// What a connection's writer task is asked to do, in order.
pub enum Outbound {
    /// Send this frame.
    Frame(Frame),
    /// Start forwarding a room's broadcasts (sent right after `welcome`). Boxed: it is sent
    /// once per connection, and every slot of every connection's queue is as large as the
    /// largest variant.
    Subscribe(Box<Feed>),
    /// Send a close frame and stop.
    Close(u16, &'static str),
    /// Say when the writer has reached this point of the queue (everything before it is
    /// written or in the batch being written): lets a long catch-up go one page at a time.
    Reached(tokio::sync::oneshot::Sender<()>),
}

/// Serialises a frame once, for any number of recipients.
pub fn encode(frame: &ServerFrame) -> Frame {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no floats.
    Utf8Bytes::from(serde_json::to_string(frame).unwrap_or_default())
}

/// Identifies one connection, so a stale connection cannot remove its replacement.
pub type ConnId = u64;

struct Member {
    user: User,
    conn: ConnId,
    outbound: mpsc::Sender<Outbound>,
}

/// A connection's view of its room: the broadcasts, and the room's call to write now.
pub struct Feed {
    pub rx: broadcast::Receiver<Delivery>,
    /// This connection's user's name key: private messages to others are skipped.
    pub me: String,
    /// Notified when some connection of the room has half the room queue waiting. A writer
    /// holding frames back to batch them (`socket-writes-per-sec`) stops waiting then, so
    /// batching never makes a reader that keeps up fall a whole queue behind.
    pub hurry: Arc<Notify>,
}

struct Room {
    tx: broadcast::Sender<Delivery>,
    hurry: Arc<Notify>,
    /// Every message of this room with an id up to this one was handed to `tx` or, for ids
    /// from before the room was opened here, is in the log. Later ones are yet to come.
    watermark: u64,
    /// Keyed by [`name_key`]: two names that look alike cannot be in a room together.
    members: HashMap<String, Member>,
}

/// Whether `pending` frames waiting for a reader are enough to hurry the room's writers: half
/// the room queue, well before the reader would lag.
pub fn crowded(pending: usize, room_queue: usize) -> bool {
    pending * 2 >= room_queue
}

impl Room {
    fn new(room_queue: usize, watermark: u64) -> Room {
        Room {
            tx: broadcast::channel(room_queue).0,
            hurry: Arc::default(),
            watermark,
            members: HashMap::new(),
        }
    }

    /// Broadcasts to the room's connections and returns how many there are.
    fn send(&self, delivery: Delivery, room_queue: usize) -> usize {
        let recipients = self.tx.send(delivery).unwrap_or(0);
        // `len` counts what the slowest receiver has not taken yet.
        if recipients > 0 && crowded(self.tx.len(), room_queue) {
            self.hurry.notify_waiters();
        }
        recipients
    }
}

/// Why [`Rooms::join`] refused.
#[derive(Debug)]
pub enum LocalRefusal {
    /// The name, or one that looks like it, is online in the room, used by someone else
    /// (the name they use).
    NameTaken(String),
    /// Cluster mode: the room is not open on this node (see [`Rooms::open`]).
    NotOpen,
}

/// A successful join: everything the connection needs to send `welcome` and follow the room.
pub struct Joined {
    pub feed: Feed,
    /// Every message of the room with an id up to this one was delivered before `feed`
    /// subscribed, or is in the log: the welcome's history goes up to here.
    pub watermark: u64,
    /// Alphabetical, at most the presence limit.
    pub online: Vec<User>,
    pub online_count: usize,
}

/// The rooms of this node.
pub struct Rooms {
    /// A std `Mutex`: held only for map updates and non-blocking channel sends, never across
    /// an `.await`. Rooms are independent, but one lock keeps presence and delivery simple;
    /// the critical sections are a few hundred nanoseconds.
    rooms: Mutex<HashMap<String, Room>>,
    /// The highest id handed to any room: where a room opened in single-node mode starts, and
    /// how a cluster node notices Redis losing its data (its counter going back).
    watermark: AtomicU64,
    room_queue: usize,
    presence_limit: usize,
    /// In cluster mode, join, leave and typing notices come from Redis (every node's users
    /// must see them), so local changes do not announce themselves; and a room exists here
    /// only between [`Rooms::open`] and [`Rooms::close_if_empty`], while it is subscribed.
    clustered: bool,
    metrics: Arc<Metrics>,
}

impl Rooms {
    pub fn new(config: &HubConfig, watermark: u64, metrics: Arc<Metrics>) -> Self {
        Rooms {
            rooms: Mutex::new(HashMap::new()),
            watermark: AtomicU64::new(watermark),
            room_queue: config.room_queue.max(1),
            presence_limit: config.presence_limit,
            clustered: config.redis_url.is_some(),
            metrics,
        }
    }

    /// The highest message id handed to any local room.
    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::SeqCst)
    }

    /// Raises every open room's watermark to `id` without a delivery (cluster catch-up:
    /// everything up to `id` is in the shared log, so a join reads it from there).
    pub fn advance_watermark(&self, id: u64) {
        let mut rooms = self.lock(); // ordered with joins, like deliveries
        for r in rooms.values_mut() {
            r.watermark = r.watermark.max(id);
        }
        self.watermark.fetch_max(id, Ordering::SeqCst);
    }

    /// The rooms open on this node, with their watermarks.
    pub fn open_rooms(&self) -> Vec<(String, u64)> {
        self.lock()
            .iter()
            .map(|(name, r)| (name.clone(), r.watermark))
            .collect()
    }

    /// The watermark of `room`, if it is open on this node.
    pub fn watermark_of(&self, room: &str) -> Option<u64> {
        self.lock().get(room).map(|r| r.watermark)
    }

    /// Whether `room` is open on this node.
    pub fn is_open(&self, room: &str) -> bool {
        self.lock().contains_key(room)
    }

    /// Cluster mode: opens `room` here once its channel is subscribed. Every message of the
    /// room up to `watermark` is in the shared log; every later one will be delivered.
    pub fn open(&self, room: &str, watermark: u64) {
        let mut rooms = self.lock();
        let r = rooms
            .entry(room.to_string())
            .or_insert_with(|| Room::new(self.room_queue, watermark));
        r.watermark = r.watermark.max(watermark);
        self.watermark.fetch_max(watermark, Ordering::SeqCst);
    }

    /// Cluster mode: forgets `room` if nobody is in it, and says whether it did (then its
    /// channel can be unsubscribed).
    pub fn close_if_empty(&self, room: &str) -> bool {
        let mut rooms = self.lock();
        if rooms.get(room).is_some_and(|r| r.members.is_empty()) {
            rooms.remove(room);
            return true;
        }
        false
    }

    /// Every user on this node, with their room and connection.
    pub fn local_members(&self) -> Vec<(String, User, ConnId)> {
        let rooms = self.lock();
        rooms
            .iter()
            .flat_map(|(name, r)| {
                r.members
                    .values()
                    .map(move |m| (name.clone(), m.user.clone(), m.conn))
            })
            .collect()
    }

    /// Sends a notice that arrived from the cluster to this node's users in `room`. Typing
    /// notices are skipped in rooms above the presence limit, as in single-node mode.
    pub fn deliver_event(&self, room: &str, delivery: Delivery) {
        let rooms = self.lock();
        if let Some(r) = rooms.get(room)
            && r.members.len() <= self.presence_limit
        {
            let recipients = r.send(delivery, self.room_queue);
            self.metrics
                .deliveries
                .fetch_add(recipients as u64, Ordering::Relaxed);
        }
    }

    /// Closes the connection `conn` of `user` here: the same person joined on another node.
    pub fn close_replaced(&self, room: &str, user: &User, conn: ConnId) {
        let rooms = self.lock();
        if let Some(m) = rooms
            .get(room)
            .and_then(|r| r.members.get(&name_key(&user.username)))
            && m.conn == conn
        {
            let _ = m.outbound.try_send(Outbound::Close(
                crate::protocol::close::REPLACED,
                "you joined again from another connection",
            ));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a stored message to the room's local connections and advances the watermark.
    /// A message at or below the room's watermark was already delivered, or is in the log
    /// for joins to read, and is skipped (a cluster node may see it twice around a catch-up).
    pub fn deliver_message(&self, room: &str, message: &ChatMessage) {
        let audience = message.to.as_ref().map_or(Audience::Everyone, |to| {
            Audience::Pair(Arc::new((
                name_key(&message.from.username),
                name_key(&to.username),
            )))
        });
        let delivery = Delivery {
            frame: encode(&ServerFrame::Message(message.clone())),
            audience,
        };
        let mut rooms = self.lock();
        if let Some(r) = rooms.get_mut(room)
            && message.id > r.watermark
        {
            r.watermark = message.id;
            let recipients = r.send(delivery, self.room_queue);
            self.metrics
                .deliveries
                .fetch_add(recipients as u64, Ordering::Relaxed);
        }
        self.watermark.fetch_max(message.id, Ordering::SeqCst);
    }

    /// Adds `user` to `room`. A name already online (or one that looks like it: same
    /// [`name_key`]) is refused, unless it is the same person with the same spelling
    /// (same email, hence the same avatar hash) coming back on a new connection: then the new
    /// connection takes over and the old one is closed, without leave/join notices.
    pub fn join(
        &self,
        room: &str,
        user: &User,
        conn: ConnId,
        outbound: mpsc::Sender<Outbound>,
    ) -> Result<Joined, LocalRefusal> {
        let key = name_key(&user.username);
        // Serialised before taking the lock every room and delivery shares.
        let joined = encode(&ServerFrame::Joined { user: user.clone() });
        let mut rooms = self.lock();
        if self.clustered && !rooms.contains_key(room) {
            return Err(LocalRefusal::NotOpen);
        }
        let r = rooms
            .entry(room.to_string())
            .or_insert_with(|| Room::new(self.room_queue, self.watermark()));
        match r.members.get(&key) {
            // Only the very same name: a look-alike spelling with the same email would
            // replace the holder without anyone being told the name changed.
            Some(old) if old.user == *user => {
                let _ = old.outbound.try_send(Outbound::Close(
                    crate::protocol::close::REPLACED,
                    "you joined again from another connection",
                ));
            }
            Some(other) => return Err(LocalRefusal::NameTaken(other.user.username.clone())),
            None if !self.clustered && r.members.len() < self.presence_limit => {
                r.send(Delivery::public(joined), self.room_queue);
            }
            None => {}
        }
        r.members.insert(
            key.clone(),
            Member {
                user: user.clone(),
                conn,
                outbound,
            },
        );
        // Sorted case-insensitively, as people read a list of names.
        let mut members: Vec<(String, &Member)> = r
            .members
            .values()
            .map(|m| (m.user.username.to_lowercase(), m))
            .collect();
        members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let online = members
            .into_iter()
            .take(self.presence_limit)
            .map(|(_, m)| m.user.clone())
            .collect();
        Ok(Joined {
            feed: Feed {
                rx: r.tx.subscribe(),
                me: key,
                hurry: r.hurry.clone(),
            },
            watermark: r.watermark,
            online,
            online_count: r.members.len(),
        })
    }

    /// Tells the room that `user` started or stopped typing. Not stored; rooms above the
    /// presence limit skip it, like join notices.
    pub fn typing(&self, room: &str, user: &User, active: bool) {
        let frame = encode(&ServerFrame::Typing {
            user: user.clone(),
            active,
        });
        let rooms = self.lock();
        if let Some(r) = rooms.get(room)
            && r.members.len() <= self.presence_limit
        {
            r.send(Delivery::public(frame), self.room_queue);
        }
    }

    /// The rooms with people in them, busiest first, and how many are in each.
    pub fn summaries(&self) -> Vec<crate::protocol::RoomSummary> {
        let rooms = self.lock();
        let mut list: Vec<_> = rooms
            .iter()
            .filter(|(_, r)| !r.members.is_empty())
            .map(|(name, r)| crate::protocol::RoomSummary {
                name: name.clone(),
                online: r.members.len(),
            })
            .collect();
        list.sort_by(|a, b| b.online.cmp(&a.online).then_with(|| a.name.cmp(&b.name)));
        list
    }

    /// Who is online in `room` under this name (case-insensitive), for private messages.
    pub fn member(&self, room: &str, username: &str) -> Option<User> {
        let rooms = self.lock();
        let r = rooms.get(room)?;
        r.members.get(&name_key(username)).map(|m| m.user.clone())
    }

    /// Removes the connection's user from the room, if that connection still holds the name,
    /// and tells the others. An empty room is forgotten (in cluster mode, by
    /// [`Rooms::close_if_empty`], which also unsubscribes it).
    pub fn leave(&self, room: &str, user: &User, conn: ConnId) {
        let key = name_key(&user.username);
        let left = encode(&ServerFrame::Left { user: user.clone() });
        let mut rooms = self.lock();
        let Some(r) = rooms.get_mut(room) else { return };
        if r.members.get(&key).is_some_and(|m| m.conn == conn) {
            if !self.clustered && r.members.len() <= self.presence_limit {
                r.send(Delivery::public(left), self.room_queue);
            }
            r.members.remove(&key);
        }
        if r.members.is_empty() && !self.clustered {
            rooms.remove(room);
        }
    }
}

/// Where messages are stored and how they reach the other nodes' rooms.
enum Backend {
    /// One node: the storage seam (SQLite or PostgreSQL); its commit hook feeds the rooms.
    Embedded(Storage),
    /// Several nodes: Redis; each node's subscription feeds its rooms.
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
    backend: Backend,
    pub config: Arc<HubConfig>,
    pub metrics: Arc<Metrics>,
    next_conn: AtomicU64,
}

impl Hub {
    /// Opens the history (SQLite, or Redis when `redis-url` is set) and wires it to the
    /// rooms. `Finished` tells when the store has written everything, once the last handle to
    /// the hub is gone.
    pub async fn open(
        config: Arc<HubConfig>,
        metrics: Arc<Metrics>,
    ) -> Result<(Hub, Finished), HubError> {
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
            let (committed, commits) = mpsc::unbounded_channel();
            let opened = Storage::open(
                &location,
                Box::new(move |room, message, prev| {
                    let _ = committed.send(Committed {
                        room: room.to_string(),
                        message: message.clone(),
                        prev,
                    });
                }),
            )
            .await?;
            let rooms = Arc::new(Rooms::new(&config, opened.last_id, metrics.clone()));
            let cluster =
                Cluster::start(url, config.clone(), rooms.clone(), opened.storage, commits).await?;
            let hub = Hub {
                rooms,
                backend: Backend::Cluster(cluster),
                config,
                metrics,
                next_conn: AtomicU64::new(1),
            };
            return Ok((hub, opened.finished));
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
        let rooms = Arc::new(Rooms::new(&config, opened.last_id, metrics.clone()));
        let _ = slot.set(rooms.clone());
        let hub = Hub {
            rooms,
            backend: Backend::Embedded(opened.storage),
            config,
            metrics,
            next_conn: AtomicU64::new(1),
        };
        Ok((hub, opened.finished))
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// False while a cluster node cannot reach Redis (it keeps its clients meanwhile).
    pub fn is_healthy(&self) -> bool {
        match &self.backend {
            Backend::Embedded(_) => true,
            Backend::Cluster(cluster) => cluster.is_healthy(),
        }
    }

    /// Stores a message; it reaches the rooms once stored (the store's commit hook, or the
    /// cluster subscription).
    pub async fn post(&self, draft: Draft) -> Result<Appended, StoreError> {
        let appended = match &self.backend {
            Backend::Embedded(storage) => storage.append(draft).await?,
            Backend::Cluster(cluster) => cluster.post(draft).await?,
        };
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
        match &self.backend {
            Backend::Embedded(storage) => storage.page(room, viewer, before, upto, limit).await,
            Backend::Cluster(cluster) => cluster.page(room, viewer, before, upto, limit).await,
        }
    }

    async fn after(
        &self,
        room: &str,
        viewer: Option<&str>,
        since: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        match &self.backend {
            Backend::Embedded(storage) => storage.after(room, viewer, since, upto, limit).await,
            Backend::Cluster(cluster) => cluster.after(room, viewer, since, upto, limit).await,
        }
    }

    /// Adds `user` to `room` (cluster-wide in cluster mode) and subscribes the connection.
    pub async fn join(
        &self,
        room: &str,
        user: &User,
        conn: ConnId,
        outbound: mpsc::Sender<Outbound>,
    ) -> Result<Joined, JoinRefused> {
        let Backend::Cluster(cluster) = &self.backend else {
            // Rooms open themselves in single-node mode: the only refusal is a taken name.
            return self
                .rooms
                .join(room, user, conn, outbound)
                .map_err(|refused| match refused {
                    LocalRefusal::NameTaken(holder) => JoinRefused::NameTaken(Some(holder)),
                    LocalRefusal::NotOpen => JoinRefused::NameTaken(None),
                });
        };
        // The room's channel first: from then on this node gets all of the room's messages.
        cluster.open(room).await.map_err(JoinRefused::Unavailable)?;
        // The claim also says who is online anywhere in the cluster (this node only knows its
        // own users): one round trip.
        let online = match cluster.claim(room, user, conn, true).await {
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
            match self.rooms.join(room, user, conn, outbound.clone()) {
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
        cluster.release(room, user, conn).await;
        cluster.close_if_empty(room);
        Err(refusal.unwrap_or_else(|| {
            JoinRefused::Unavailable(StoreError::Write("the room kept closing; try again".into()))
        }))
    }

    /// Removes the connection's user from the room, and from the cluster's presence.
    pub async fn leave(&self, room: &str, user: &User, conn: ConnId) {
        self.rooms.leave(room, user, conn);
        if let Backend::Cluster(cluster) = &self.backend {
            cluster.release(room, user, conn).await;
            cluster.close_if_empty(room);
        }
    }

    /// Tells the room that `user` started or stopped typing.
    pub async fn typing(&self, room: &str, user: &User, active: bool) {
        match &self.backend {
            Backend::Embedded(_) => self.rooms.typing(room, user, active),
            Backend::Cluster(cluster) => cluster.typing(room, user, active).await,
        }
    }

    /// Who is online in `room` under this name (case-insensitive), for private messages.
    pub async fn member(&self, room: &str, name: &str) -> Option<User> {
        match &self.backend {
            Backend::Embedded(_) => self.rooms.member(room, name),
            Backend::Cluster(cluster) => cluster.member(room, name).await,
        }
    }

    /// The rooms with people in them, busiest first.
    pub async fn summaries(&self) -> Result<Vec<RoomSummary>, StoreError> {
        match &self.backend {
            Backend::Embedded(_) => Ok(self.rooms.summaries()),
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
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}
