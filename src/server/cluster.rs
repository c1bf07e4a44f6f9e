//! Cluster mode: several hubbub nodes behind a load balancer acting as one chat. PostgreSQL
//! keeps every message (the storage seam, shared by all nodes); Redis is the bus between the
//! nodes and holds presence, the way Socket.IO's Redis adapter and Centrifugo's Redis engine
//! work. Used only when a Redis URL is configured; the embedded default never connects.
//!
//! What lives in Redis (all keys under `hubbub:`), none of it durable state:
//! - `room:<room>`: a room's channel: stored messages, join/leave, typing, replacements.
//! - `presence:<room>`: who is online, name key → `{node, conn, user}`; `rooms`: rooms with
//!   people.
//! - `node:<id>`: a node's heartbeat, with a TTL. A node that stops refreshing it (killed,
//!   partitioned) is swept from presence by the others, and its users are shown as left.
//!
//! **Messages.** A node stores a message in PostgreSQL (ids follow commit order across all
//! nodes, see `storage`), then hands it to its own rooms and publishes it on the room's channel
//! with the id of the room's previous message. Each node subscribes to a room's channel while
//! the room has users on the node (one subscription per node and room, never one per client),
//! and feeds what it receives into its local [`Rooms`], which fan out to connections exactly as
//! in single-node mode. Publications from different nodes can arrive out of order, or not at
//! all (a node restarting, Redis going away): a message whose previous id is above the room's
//! watermark here means a gap, filled from PostgreSQL before the message is handed on. So every
//! node hands every room's messages on in id order, with no gap and no duplicate.
//!
//! A room is opened here only once its channel is subscribed: then the node reads the highest
//! committed id, and every message of the room up to it is in the database (joins read it
//! there) while every later one arrives on the channel or is filled in. After the Redis
//! connection is lost and re-established, the node subscribes its open rooms again and fills
//! each one from its watermark. One task owns the subscription and hands on every message (see
//! [`Command`]), so messages reach rooms one at a time, in order. While Redis is unreachable,
//! joins get an `unavailable` error frame, messages are still stored (their publication waits
//! for Redis), connected clients stay connected, and `/healthz` reports `degraded`.

use super::config::HubConfig;
use super::rooms::{ConnId, Delivery, Rooms, encode};
use super::storage::{Storage, StoreError};
use crate::protocol::{ChatMessage, RoomSummary, ServerFrame, User, name_key};
use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const PREFIX: &str = "hubbub:";

/// A presence entry: who holds a name in a room, on which node and connection.
#[derive(Serialize, Deserialize)]
struct Entry {
    node: String,
    conn: String,
    user: User,
}

/// A stored message on a room's channel (tag `m`), with the id of the room's message before it.
#[derive(Serialize, Deserialize)]
struct Published {
    message: ChatMessage,
    prev: u64,
}

/// A message this node stored, from the storage writer (in id order), to be handed to the
/// local rooms and published.
pub struct Committed {
    pub room: String,
    pub message: ChatMessage,
    pub prev: u64,
}

/// What a room channel carries, after its one-letter tag.
#[derive(Serialize, Deserialize)]
struct TypingEvent {
    user: User,
    active: bool,
}

/// The outcome of claiming a name in a room.
pub enum Claim {
    /// The name is this connection's now: it was free, held by a node that died, or held by
    /// the same person (same email) elsewhere, whose connection is told to close. With who is
    /// online in the room, when asked for.
    Held(Option<Online>),
    /// Someone else holds the name.
    Taken,
}

/// Who is online in a room across the cluster.
pub struct Online {
    /// Alphabetical, at most the presence limit.
    pub users: Vec<User>,
    pub count: usize,
}

/// What the subscription task is asked to do. It alone changes the node's subscriptions, in
/// the order asked, and it is also the one handling published messages: so a room is opened
/// before any of its messages published after the counter was read is handled.
pub enum Command {
    /// Subscribe to the room's channel, if not yet, and open the room (see module doc).
    Open(String, oneshot::Sender<Result<(), StoreError>>),
    /// A message this node stored: hand it to the room here, then publish it. Sent by the
    /// storage writer's commit hook, in id order. Boxed: the queue's slots are as large as
    /// its largest command.
    Committed(Box<Committed>),
    /// Answer once every message before this is handed on and published (shutdown).
    Flush(oneshot::Sender<()>),
    /// The room's last local user may have left: if so, close it and unsubscribe.
    Close(String),
}

/// What the publishing task is given, in order.
enum Publication {
    /// A payload for a channel.
    Message(String, String),
    /// Answer once everything before it is published.
    Flushed(oneshot::Sender<()>),
}

/// The channel the subscription task takes its [`Command`]s from. Made before the node starts,
/// so the storage writer's commit hook can send into it.
pub fn commands() -> (
    mpsc::UnboundedSender<Command>,
    mpsc::UnboundedReceiver<Command>,
) {
    mpsc::unbounded_channel()
}

/// How long a join waits for its room to be opened on this node.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a subscription change may take before Redis counts as unreachable.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

fn channel(room: &str) -> String {
    format!("{PREFIX}room:{room}")
}

/// The channel every node listens on for account events: an account's connections are to be
/// closed everywhere (signed out of every browser, banned, password changed).
fn accounts_channel() -> String {
    format!("{PREFIX}accounts")
}

/// An account whose connections every node closes (in one room only, when `room` is set).
#[derive(Serialize, Deserialize)]
struct CloseAccount {
    name: String,
    code: u16,
    #[serde(default)]
    room: Option<String>,
}

/// A node's handle on the cluster.
pub struct Cluster {
    node: String,
    redis: ConnectionManager,
    /// The messages, shared by every node.
    storage: Storage,
    rooms: Arc<Rooms>,
    config: Arc<HubConfig>,
    /// To the subscription task.
    commands: mpsc::UnboundedSender<Command>,
    /// To the publishing task: stored messages, in id order, for the other nodes.
    publish: mpsc::UnboundedSender<Publication>,
    /// Subscribed and caught up (the subscription task's view).
    subscribed: AtomicBool,
    /// The last heartbeat was written (the command connection's view).
    reachable: AtomicBool,
    /// Leaves that could not be written to Redis, retried when it is back.
    pending_leaves: Mutex<Vec<(String, User, ConnId)>>,
    scripts: Scripts,
}

struct Scripts {
    claim: redis::Script,
    release: redis::Script,
    sweep: redis::Script,
    typing: redis::Script,
    dead: redis::Script,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot use Redis at {url}: {source}")]
    Connect {
        url: String,
        source: redis::RedisError,
    },
    #[error("cannot start the cluster node: {0}")]
    Start(String),
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unreachable {
        service: "Redis",
        reason: e.to_string(),
    }
}

impl Cluster {
    /// Connects (failing start-up if Redis cannot be reached) and starts the node's
    /// subscription and heartbeat tasks.
    /// `storage` is the shared database; `commands` (from [`commands`]) also brings the
    /// messages this node stores (its storage writer's commit hook sends them, in id order).
    pub async fn start(
        url: &str,
        config: Arc<HubConfig>,
        rooms: Arc<Rooms>,
        storage: Storage,
        (commands, orders): (
            mpsc::UnboundedSender<Command>,
            mpsc::UnboundedReceiver<Command>,
        ),
    ) -> Result<Arc<Cluster>, ClusterError> {
        let failed = |source| ClusterError::Connect {
            url: url.to_string(),
            source,
        };
        let client = redis::Client::open(url).map_err(failed)?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(5));
        let mut redis = client
            .get_connection_manager_with_config(manager_config)
            .await
            .map_err(failed)?;
        let _: () = redis::cmd("PING")
            .query_async(&mut redis)
            .await
            .map_err(failed)?;
        let node = format!(
            "{}-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            rand_u32()
        );
        let (publish, publications) = mpsc::unbounded_channel();
        let cluster = Arc::new(Cluster {
            node,
            redis,
            storage,
            rooms,
            config,
            commands,
            publish,
            subscribed: AtomicBool::new(false),
            reachable: AtomicBool::new(false),
            pending_leaves: Mutex::default(),
            scripts: Scripts {
                claim: redis::Script::new(CLAIM),
                release: redis::Script::new(RELEASE),
                sweep: redis::Script::new(SWEEP),
                typing: redis::Script::new(TYPING),
                dead: redis::Script::new(DEAD),
            },
        });
        let beat = cluster.heartbeat().await;
        cluster.reachable.store(beat, Ordering::Relaxed);
        // Connected and caught up before the node takes its first client.
        let pubsub = cluster.subscribe(&client).await.map_err(failed)?;
        cluster
            .catch_up()
            .await
            .map_err(|e| ClusterError::Start(e.to_string()))?;
        cluster.subscribed.store(true, Ordering::Relaxed);
        tokio::spawn(cluster.clone().publisher(publications));
        tokio::spawn(cluster.clone().follow(client, pubsub, orders));
        tokio::spawn(cluster.clone().keep_alive());
        tracing::info!("cluster mode: node {} on {url}", cluster.node);
        Ok(cluster)
    }

    pub fn is_healthy(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed) && self.reachable.load(Ordering::Relaxed)
    }

    /// A presence script (claim, release, sweep) with its keys: the room's presence hash,
    /// the set of rooms, and the room's channel.
    fn presence_script<'a>(
        &self,
        script: &'a redis::Script,
        room: &str,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(format!("{PREFIX}presence:{room}"))
            .key(format!("{PREFIX}rooms"))
            .key(channel(room));
        invocation
    }

    fn conn(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Hands a stored message to the room here, in order: if the room has not seen the
    /// message before it (`prev`), the missing ones are read from the database first. Below
    /// the watermark it was already handed on (or is in the database for joins to read).
    async fn arrive(&self, room: &str, message: &ChatMessage, prev: u64) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(watermark) = self.rooms.watermark_of(room) else {
                return; // not open here
            };
            if message.id <= watermark {
                return;
            }
            if prev <= watermark {
                self.rooms.deliver_message(room, message);
                return;
            }
            match self.fill(room, watermark, message.id - 1).await {
                Ok(_) => {
                    self.rooms.deliver_message(room, message);
                    return;
                }
                Err(e) => {
                    // Handing it on now would leave a gap for good: wait for the database.
                    tracing::warn!("cluster: cannot fill a gap in {room} yet: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Hands `room` the messages with `since < id <= upto` from the database, a page at a
    /// time (after a long partition there can be many); returns how many. A failure part-way
    /// leaves the room's watermark at the last one handed on, so a retry goes on from there.
    async fn fill(&self, room: &str, since: u64, upto: u64) -> Result<usize, StoreError> {
        const PAGE: usize = 1_000;
        let (mut from, mut handed) = (since, 0);
        loop {
            let page = self
                .storage
                .everything_after(room, from, upto, PAGE)
                .await?;
            for m in &page {
                self.rooms.deliver_message(room, m);
            }
            handed += page.len();
            match page.last() {
                Some(last) if page.len() == PAGE => from = last.id,
                _ => return Ok(handed),
            }
        }
    }

    /// Publishes this node's stored messages, in order, retrying while Redis is away: every
    /// message stored here reaches the other nodes, late rather than never.
    async fn publisher(self: Arc<Self>, mut publications: mpsc::UnboundedReceiver<Publication>) {
        while let Some(publication) = publications.recv().await {
            let (channel, payload) = match publication {
                Publication::Message(channel, payload) => (channel, payload),
                Publication::Flushed(done) => {
                    let _ = done.send(());
                    continue;
                }
            };
            let mut backoff = Duration::from_millis(100);
            loop {
                let sent: Result<i64, _> = self.conn().publish(&channel, &payload).await;
                match sent {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!("cluster: publication waits for Redis: {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }

    /// Takes `user`'s name in `room` for this node's connection `conn`, cluster-wide. With
    /// `list`, the same round trip brings back who is online.
    pub async fn claim(
        &self,
        room: &str,
        user: &User,
        conn: ConnId,
        list: bool,
    ) -> Result<Claim, StoreError> {
        let entry = Entry {
            node: self.node.clone(),
            conn: conn.to_string(),
            user: user.clone(),
        };
        let joined = format!("j{}", json(user));
        let reply: Vec<String> = self
            .presence_script(&self.scripts.claim, room)
            .arg(name_key(&user.username))
            .arg(json(&entry))
            // The same person is the same avatar *and* the same spelling: a look-alike
            // spelling with the same email is refused, not a silent takeover.
            .arg(format!("{}\n{}", user.avatar, user.username))
            .arg(format!("{PREFIX}node:"))
            .arg(room)
            .arg(self.config.presence_limit)
            .arg(joined)
            .arg(if list { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(match reply.split_first() {
            Some((outcome, entries)) if outcome != "taken" => {
                Claim::Held(list.then(|| self.online(entries)))
            }
            _ => Claim::Taken,
        })
    }

    /// Gives the name back, if this connection still holds it, and tells the cluster.
    pub async fn release(&self, room: &str, user: &User, conn: ConnId) {
        if let Err(e) = self.try_release(room, user, conn).await {
            tracing::warn!("cluster: leave of {} not recorded yet: {e}", user.username);
            let mut pending = self
                .pending_leaves
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            pending.push((room.to_string(), user.clone(), conn));
        }
    }

    async fn try_release(
        &self,
        room: &str,
        user: &User,
        conn: ConnId,
    ) -> Result<(), redis::RedisError> {
        let _: i64 = self
            .presence_script(&self.scripts.release, room)
            .arg(name_key(&user.username))
            .arg(&self.node)
            .arg(conn.to_string())
            .arg(room)
            .arg(self.config.presence_limit)
            .arg(format!("l{}", json(user)))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Tells the room's nodes that `user` started or stopped typing (not stored).
    pub async fn typing(&self, room: &str, user: &User, active: bool) {
        let event = TypingEvent {
            user: user.clone(),
            active,
        };
        // Only in rooms within the presence limit, counted across the cluster (a node only
        // knows its own share of the room).
        let published: Result<i64, _> = self
            .presence_script(&self.scripts.typing, room)
            .arg(self.config.presence_limit)
            .arg(format!("t{}", json(&event)))
            .invoke_async(&mut self.conn())
            .await;
        if let Err(e) = published {
            tracing::debug!("cluster: typing not sent: {e}");
        }
    }

    /// The users in a room's presence entries, alphabetically (at most the presence limit),
    /// and how many there are.
    fn online(&self, entries: &[String]) -> Online {
        let mut users: Vec<User> = entries
            .iter()
            .filter_map(|e| serde_json::from_str::<Entry>(e).ok())
            .map(|e| e.user)
            .collect();
        let count = users.len();
        users.sort_by_key(|u| u.username.to_lowercase());
        users.truncate(self.config.presence_limit);
        Online { users, count }
    }

    /// Who holds `name` in `room`, on any node.
    pub async fn member(&self, room: &str, name: &str) -> Option<User> {
        let entry: Option<String> = self
            .conn()
            .hget(format!("{PREFIX}presence:{room}"), name_key(name))
            .await
            .ok()?;
        serde_json::from_str::<Entry>(&entry?).ok().map(|e| e.user)
    }

    /// Rooms with people in them anywhere in the cluster, busiest first.
    pub async fn summaries(&self) -> Result<Vec<RoomSummary>, StoreError> {
        let mut conn = self.conn();
        let names: Vec<String> = conn
            .smembers(format!("{PREFIX}rooms"))
            .await
            .map_err(unavailable)?;
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.hlen(format!("{PREFIX}presence:{name}"));
        }
        let counts: Vec<usize> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut list: Vec<RoomSummary> = names
            .into_iter()
            .zip(counts)
            .filter(|(_, online)| *online > 0)
            .map(|(name, online)| RoomSummary { name, online })
            .collect();
        list.sort_by(|a, b| b.online.cmp(&a.online).then_with(|| a.name.cmp(&b.name)));
        Ok(list)
    }

    /// The subscription task, for the node's whole life: (re)connect, catch up, then handle
    /// published messages and [`Command`]s, one at a time. `first` is the connection made
    /// (and caught up) at start.
    async fn follow(
        self: Arc<Self>,
        client: redis::Client,
        first: redis::aio::PubSub,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let mut backoff = Duration::from_millis(200);
        let mut first = Some(first);
        loop {
            let subscribed = match first.take() {
                Some(pubsub) => Ok(pubsub),
                None => self.subscribe(&client).await,
            };
            match subscribed {
                Ok(pubsub) => {
                    let (mut sink, mut stream) = pubsub.split();
                    backoff = Duration::from_millis(200);
                    // Names first: a user whose name someone else took meanwhile is closed
                    // before any missed message (a private one for the new holder) arrives.
                    self.resync().await;
                    match self.catch_up().await {
                        Ok(()) => {
                            self.subscribed.store(true, Ordering::Relaxed);
                            loop {
                                tokio::select! {
                                    message = stream.next() => match message {
                                        Some(message) => self.on_publish(&message).await,
                                        None => break,
                                    },
                                    Some(command) = commands.recv() => {
                                        self.obey(command, Some(&mut sink)).await;
                                    }
                                }
                            }
                            tracing::warn!("cluster: lost the Redis subscription; reconnecting");
                        }
                        Err(e) => tracing::warn!("cluster: catching up failed: {e}"),
                    }
                }
                Err(e) => tracing::warn!("cluster: cannot subscribe to Redis: {e}"),
            }
            self.subscribed.store(false, Ordering::Relaxed);
            let jitter = Duration::from_millis(u64::from(rand_u32() % 100));
            let pause = tokio::time::sleep(backoff + jitter);
            tokio::pin!(pause);
            // Rooms can still close meanwhile; opening one waits for Redis.
            loop {
                tokio::select! {
                    () = &mut pause => break,
                    Some(command) = commands.recv() => self.obey(command, None).await,
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// A new subscription connection, subscribed to the channel of every room open here.
    async fn subscribe(&self, client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
        let timed_out = || redis::RedisError::from((redis::ErrorKind::Io, "Redis timed out"));
        let mut pubsub = tokio::time::timeout(SUBSCRIBE_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| timed_out())??;
        let mut channels: Vec<String> = self
            .rooms
            .open_rooms()
            .iter()
            .map(|(room, _)| channel(room))
            .collect();
        channels.push(accounts_channel());
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, pubsub.subscribe(channels))
            .await
            .map_err(|_| timed_out())??;
        Ok(pubsub)
    }

    /// Carries out a [`Command`]; `sink` is `None` while Redis is unreachable.
    async fn obey(&self, command: Command, sink: Option<&mut redis::aio::PubSubSink>) {
        match command {
            Command::Open(room, reply) => {
                let opened = match sink {
                    Some(sink) => self.open_subscribed(sink, &room).await,
                    None => Err(StoreError::Unreachable {
                        service: "Redis",
                        reason: "the node is reconnecting".into(),
                    }),
                };
                let _ = reply.send(opened);
            }
            Command::Committed(c) => {
                let c = *c;
                self.arrive(&c.room, &c.message, c.prev).await;
                let published = Published {
                    message: c.message,
                    prev: c.prev,
                };
                let _ = self.publish.send(Publication::Message(
                    channel(&c.room),
                    format!("m{}", json(&published)),
                ));
            }
            Command::Flush(done) => {
                let _ = self.publish.send(Publication::Flushed(done));
            }
            Command::Close(room) => {
                if self.rooms.close_if_empty(&room)
                    && let Some(sink) = sink
                {
                    // Failing leaves a channel nobody here reads; the next connection drops it.
                    let _ =
                        tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.unsubscribe(channel(&room)))
                            .await;
                }
            }
        }
    }

    /// Subscribes to the room's channel, then opens the room at the highest committed id: every
    /// message up to it is in the database, every later one will arrive on the channel (or be
    /// filled in from the database).
    async fn open_subscribed(
        &self,
        sink: &mut redis::aio::PubSubSink,
        room: &str,
    ) -> Result<(), StoreError> {
        if self.rooms.is_open(room) {
            return Ok(());
        }
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.subscribe(channel(room)))
            .await
            .map_err(|_| StoreError::Unreachable {
                service: "Redis",
                reason: "it did not answer in time".into(),
            })?
            .map_err(unavailable)?;
        let committed = self.storage.last_committed().await?;
        self.rooms.open(room, committed);
        Ok(())
    }

    /// Waits until every message this node stored before the call (the caller has flushed the
    /// storage first) is handed to its rooms and published (shutdown: nothing accepted is left
    /// unannounced). While Redis is away the publications wait for it, and so does this: the
    /// caller bounds it.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }

    /// Makes sure `room` is open on this node (subscribed, with its watermark), so a user can
    /// join it here.
    pub async fn open(&self, room: &str) -> Result<(), StoreError> {
        if self.rooms.is_open(room) {
            return Ok(());
        }
        let (reply, opened) = oneshot::channel();
        let stopped = || StoreError::Stopped;
        self.commands
            .send(Command::Open(room.to_string(), reply))
            .map_err(|_| stopped())?;
        // The subscription task may be waiting for the database (filling a gap): a join
        // waits a little, then is told to try again rather than hang.
        match tokio::time::timeout(OPEN_TIMEOUT, opened).await {
            Ok(answer) => answer.map_err(|_| stopped())?,
            Err(_) => Err(StoreError::Unreachable {
                service: "PostgreSQL",
                reason: format!("opening {room:?} (filling its history) took too long"),
            }),
        }
    }

    /// Has every node close the connections of the account named `name` with `code`
    /// (published after what this node published before, retried while Redis is away).
    pub fn close_account(&self, name: &str, code: u16, room: Option<&str>) {
        let payload = serde_json::to_string(&CloseAccount {
            name: name.to_string(),
            code,
            room: room.map(str::to_string),
        })
        .unwrap_or_default();
        let _ = self
            .publish
            .send(Publication::Message(accounts_channel(), payload));
    }

    /// Closes `room` on this node, and unsubscribes it, if nobody is left in it here.
    pub fn close_if_empty(&self, room: &str) {
        let _ = self.commands.send(Command::Close(room.to_string()));
    }

    /// Hands local rooms what was stored while this node was not subscribed, up to the
    /// highest committed id; publications up to it are ignored afterwards.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let committed = self.storage.last_committed().await?;
        let watermark = self.rooms.watermark();
        if committed < watermark {
            // Ids would be given out again (a database restored from an older backup, or a
            // failover to a replica that had not caught up): clients would take new messages
            // for ones they have. Refuse, and say why.
            return Err(StoreError::WentBack {
                seen: watermark,
                found: committed,
            });
        }
        let mut missed = 0;
        for (room, since) in self.rooms.open_rooms() {
            missed += self.fill(&room, since, committed).await?;
        }
        if missed > 0 {
            tracing::info!("cluster: caught up {missed} messages");
        }
        self.rooms.advance_watermark(committed);
        Ok(())
    }

    /// After reconnecting: refreshes the heartbeat, writes leaves that failed, and claims
    /// again the names of local users (another node may have swept them meanwhile).
    async fn resync(&self) {
        self.heartbeat().await;
        let pending = std::mem::take(
            &mut *self
                .pending_leaves
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for (room, user, conn) in pending {
            self.release(&room, &user, conn).await;
        }
        for (room, user, conn) in self.rooms.local_members() {
            if let Ok(Claim::Taken) = self.claim(&room, &user, conn, false).await {
                tracing::warn!(
                    "cluster: {} lost their name in {room} while Redis was away",
                    user.username
                );
                // Someone else holds it now: this connection must not go on receiving what
                // is addressed to that name.
                self.rooms.close_replaced(&room, &user, conn);
            }
        }
    }

    async fn on_publish(&self, message: &redis::Msg) {
        let channel = message.get_channel_name();
        if channel == accounts_channel() {
            if let Ok(closing) = serde_json::from_slice::<CloseAccount>(message.get_payload_bytes())
            {
                let reason = close_reason(closing.code);
                match &closing.room {
                    Some(room) => {
                        self.rooms
                            .close_user_in(room, &closing.name, closing.code, reason)
                    }
                    None => self.rooms.close_user(&closing.name, closing.code, reason),
                }
            }
            return;
        }
        let Some(room) = channel
            .strip_prefix(PREFIX)
            .and_then(|c| c.strip_prefix("room:"))
        else {
            return;
        };
        let payload = message.get_payload_bytes();
        let Some((&tag, body)) = payload.split_first() else {
            return;
        };
        match tag {
            b'm' => {
                let Ok(published) = serde_json::from_slice::<Published>(body) else {
                    return;
                };
                self.arrive(room, &published.message, published.prev).await;
            }
            b'j' | b'l' => {
                let Ok(user) = serde_json::from_slice::<User>(body) else {
                    return;
                };
                let name = name_key(&user.username);
                let frame = if tag == b'j' {
                    ServerFrame::Joined { user }
                } else {
                    ServerFrame::Left { user }
                };
                // The joiner has its welcome; it is not told about itself.
                let except = (tag == b'j').then_some(name);
                self.rooms
                    .deliver_event(room, Delivery::all_but(encode(&frame), except));
            }
            b't' => {
                let Ok(event) = serde_json::from_slice::<TypingEvent>(body) else {
                    return;
                };
                let name = name_key(&event.user.username);
                let frame = ServerFrame::Typing {
                    user: event.user,
                    active: event.active,
                };
                self.rooms
                    .deliver_event(room, Delivery::all_but(encode(&frame), Some(name)));
            }
            b'r' => {
                let Ok(old) = serde_json::from_slice::<Entry>(body) else {
                    return;
                };
                if old.node == self.node
                    && let Ok(conn) = old.conn.parse()
                {
                    self.rooms.close_replaced(room, &old.user, conn);
                }
            }
            _ => {}
        }
    }

    async fn heartbeat(&self) -> bool {
        let ttl = self.config.node_ttl_ms.max(300);
        // The key expires if the node stops; the set is how the others know to look.
        let set: Result<(), _> = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(format!("{PREFIX}node:{}", self.node))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .ignore()
            .sadd(format!("{PREFIX}nodes"), &self.node)
            .ignore()
            .query_async(&mut self.conn())
            .await;
        set.is_ok()
    }

    /// The nodes registered in the cluster whose heartbeat has expired.
    async fn dead_nodes(&self) -> Result<Vec<String>, redis::RedisError> {
        self.scripts
            .dead
            .key(format!("{PREFIX}nodes"))
            .arg(format!("{PREFIX}node:"))
            .invoke_async(&mut self.conn())
            .await
    }

    /// Refreshes this node's heartbeat and, when a node's heartbeat has expired, sweeps it out
    /// of every room's presence (its users are announced as left). Rooms are only swept when
    /// some node died, not on every heartbeat: a sweep reads each room's whole presence.
    async fn keep_alive(self: Arc<Self>) {
        let every = Duration::from_millis((self.config.node_ttl_ms / 3).max(100));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Recovers by itself: a blip on the command connection does not leave the node
            // reported degraded until the subscription happens to reconnect.
            let beat = self.heartbeat().await;
            self.reachable.store(beat, Ordering::Relaxed);
            if !beat {
                continue;
            }
            let dead = match self.dead_nodes().await {
                Ok(dead) if !dead.is_empty() => dead,
                _ => continue,
            };
            let rooms: Vec<String> = match self.conn().smembers(format!("{PREFIX}rooms")).await {
                Ok(rooms) => rooms,
                Err(_) => continue,
            };
            let mut complete = true;
            for room in rooms {
                let swept: Result<i64, _> = self
                    .presence_script(&self.scripts.sweep, &room)
                    .arg(format!("{PREFIX}node:"))
                    .arg(&room)
                    .arg(self.config.presence_limit)
                    .invoke_async(&mut self.conn())
                    .await;
                match swept {
                    Ok(n) if n > 0 => {
                        tracing::info!("cluster: {n} users of stopped nodes left {room}")
                    }
                    Ok(_) => {}
                    Err(_) => complete = false,
                }
            }
            // Forgotten once swept everywhere (a retry comes next beat otherwise). A node that
            // was only slow, not dead, registers itself again with its next heartbeat.
            if complete {
                let _: Result<i64, _> = self.conn().srem(format!("{PREFIX}nodes"), dead).await;
            }
        }
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A little randomness (node ids, jitter) without another dependency: every `RandomState`
/// is seeded afresh.
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u32
}

/// KEYS: presence hash, rooms set, room channel. ARGV: name key, entry JSON, avatar, node key
/// prefix, room, presence limit, joined event, "1" to list who is online. Returns
/// {"new" or "replaced", entries...} or {"taken"}.
const CLAIM: &str = r#"
local function held(outcome)
  if ARGV[8] ~= '1' then return {outcome} end
  local entries = redis.call('HVALS', KEYS[1])
  table.insert(entries, 1, outcome)
  return entries
end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current == ARGV[2] then return held('new') end
if current then
  local c = cjson.decode(current)
  local alive = redis.call('EXISTS', ARGV[4] .. c.node) == 1
  if alive and (c.user.avatar .. '\n' .. c.user.username) ~= ARGV[3] then return {'taken'} end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  if alive then redis.call('PUBLISH', KEYS[3], 'r' .. current) end
  return held('replaced')
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[5])
if redis.call('HLEN', KEYS[1]) <= tonumber(ARGV[6]) then
  redis.call('PUBLISH', KEYS[3], ARGV[7])
end
return held('new')
"#;

/// KEYS: presence hash, rooms set, room channel. ARGV: name key, node, conn, room, presence
/// limit, left event. Removes the entry only if this connection still holds it.
const RELEASE: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local c = cjson.decode(current)
if c.node ~= ARGV[2] or c.conn ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local n = redis.call('HLEN', KEYS[1])
if n == 0 then redis.call('SREM', KEYS[2], ARGV[4]) end
if n < tonumber(ARGV[5]) then redis.call('PUBLISH', KEYS[3], ARGV[6]) end
return 1
"#;

/// KEYS: nodes set. ARGV: node key prefix. Returns the registered nodes whose heartbeat key
/// has expired.
const DEAD: &str = r#"
local dead = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. node) == 0 then table.insert(dead, node) end
end
return dead
"#;

/// KEYS: presence hash, rooms set, room channel. ARGV: presence limit, typing event. Publishes
/// the event if the room, across the cluster, is within the presence limit.
const TYPING: &str = r#"
if redis.call('HLEN', KEYS[1]) <= tonumber(ARGV[1]) then
  return redis.call('PUBLISH', KEYS[3], ARGV[2])
end
return 0
"#;

/// KEYS: presence hash, rooms set, room channel. ARGV: node key prefix, room, presence limit.
/// Removes entries of nodes whose heartbeat expired and announces them as left.
const SWEEP: &str = r#"
local all = redis.call('HGETALL', KEYS[1])
local gone = 0
for i = 1, #all, 2 do
  local c = cjson.decode(all[i + 1])
  if redis.call('EXISTS', ARGV[1] .. c.node) == 0 then
    redis.call('HDEL', KEYS[1], all[i])
    gone = gone + 1
    if redis.call('HLEN', KEYS[1]) < tonumber(ARGV[3]) then
      redis.call('PUBLISH', KEYS[3], 'l' .. cjson.encode(c.user))
    end
  end
end
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
return gone
"#;

/// Why an account's connections were closed, by close code.
pub fn close_reason(code: u16) -> &'static str {
    match code {
        crate::protocol::close::BANNED => "this account was banned",
        crate::protocol::close::REMOVED => "an admin removed you from this room",
        crate::protocol::close::SESSIONS_ENDED => {
            "this account's sessions changed; sign in again if asked"
        }
        _ => "this account signed out of every browser",
    }
}
