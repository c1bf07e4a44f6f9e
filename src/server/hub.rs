//! The hub: rooms, who is in them, and the fan-out of every frame to a room's connections.
//!
//! Each room has a `tokio::sync::broadcast` channel of already-serialised frames. A frame is
//! turned into JSON once and the same reference-counted bytes go to every recipient; the
//! channel's ring buffer is the bounded outbound queue each connection reads from. A reader
//! that falls a whole ring behind gets `Lagged` and is disconnected as a slow consumer (see
//! `connection`), so one stalled client never slows the sender or anyone else.
//!
//! Messages reach rooms only through [`Rooms::deliver_message`], which the store calls after a
//! commit, in id order. A global watermark (the highest id delivered) lets a joining client get
//! its history from the database and everything newer from the channel, with no gap and no
//! duplicate: see [`Rooms::join`]. A clustered node would call `deliver_message` from its
//! Redis subscription instead of the store's commit hook; nothing else here changes.

use super::config::HubConfig;
use super::metrics::Metrics;
use super::store::{Appended, Draft, Finished, Store, StoreError};
use crate::protocol::{ChatMessage, ServerFrame, User};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};
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
    /// The lower-cased names of the sender and the recipient; `None`: everyone in the room.
    pub audience: Option<Arc<(String, String)>>,
}

impl Delivery {
    fn public(frame: Frame) -> Self {
        Delivery {
            frame,
            audience: None,
        }
    }

    /// Whether the user with lower-cased name `key` may see this.
    pub fn is_for(&self, key: &str) -> bool {
        self.audience
            .as_ref()
            .is_none_or(|a| a.0 == key || a.1 == key)
    }
}

/// What a connection's writer task is asked to do, in order.
pub enum Outbound {
    /// Send this frame.
    Frame(Frame),
    /// Start forwarding a room's broadcasts (sent right after `welcome`) to the user with this
    /// lower-cased name.
    Subscribe(broadcast::Receiver<Delivery>, String),
    /// Send a close frame and stop.
    Close(u16, &'static str),
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

struct Room {
    tx: broadcast::Sender<Delivery>,
    /// Keyed by the lower-cased username: names are unique case-insensitively.
    members: HashMap<String, Member>,
}

/// The name is already online in the room, used by someone else.
#[derive(Debug)]
pub struct NameTaken;

/// A successful join: everything the connection needs to send `welcome` and follow the room.
pub struct Joined {
    pub rx: broadcast::Receiver<Delivery>,
    /// Every message with an id up to this one was delivered before `rx` subscribed.
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
    watermark: AtomicU64,
    room_queue: usize,
    presence_limit: usize,
    metrics: Arc<Metrics>,
}

impl Rooms {
    pub fn new(config: &HubConfig, watermark: u64, metrics: Arc<Metrics>) -> Self {
        Rooms {
            rooms: Mutex::new(HashMap::new()),
            watermark: AtomicU64::new(watermark),
            room_queue: config.room_queue.max(1),
            presence_limit: config.presence_limit,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a stored message to the room's local connections and advances the watermark.
    pub fn deliver_message(&self, room: &str, message: &ChatMessage) {
        let audience = message.to.as_ref().map(|to| {
            Arc::new((
                message.from.username.to_lowercase(),
                to.username.to_lowercase(),
            ))
        });
        let delivery = Delivery {
            frame: encode(&ServerFrame::Message(message.clone())),
            audience,
        };
        let rooms = self.lock();
        if let Some(r) = rooms.get(room) {
            let recipients = r.tx.send(delivery).unwrap_or(0);
            self.metrics
                .deliveries
                .fetch_add(recipients as u64, Ordering::Relaxed);
        }
        self.watermark.store(message.id, Ordering::SeqCst);
    }

    /// Adds `user` to `room`. A name already online is refused, unless it is the same person
    /// (same email, hence the same avatar hash) coming back on a new connection: then the new
    /// connection takes over and the old one is closed, without leave/join notices.
    pub fn join(
        &self,
        room: &str,
        user: &User,
        conn: ConnId,
        outbound: mpsc::Sender<Outbound>,
    ) -> Result<Joined, NameTaken> {
        let key = user.username.to_lowercase();
        // Serialised before taking the lock every room and delivery shares.
        let joined = encode(&ServerFrame::Joined { user: user.clone() });
        let mut rooms = self.lock();
        let r = rooms.entry(room.to_string()).or_insert_with(|| Room {
            tx: broadcast::channel(self.room_queue).0,
            members: HashMap::new(),
        });
        match r.members.get(&key) {
            Some(old) if old.user.avatar == user.avatar => {
                let _ = old.outbound.try_send(Outbound::Close(
                    crate::protocol::close::REPLACED,
                    "you joined again from another connection",
                ));
            }
            Some(_) => return Err(NameTaken),
            None if r.members.len() < self.presence_limit => {
                let _ = r.tx.send(Delivery::public(joined));
            }
            None => {}
        }
        r.members.insert(
            key,
            Member {
                user: user.clone(),
                conn,
                outbound,
            },
        );
        // Keys are the lower-cased names: sorting them sorts case-insensitively.
        let mut members: Vec<(&String, &Member)> = r.members.iter().collect();
        members.sort_unstable_by_key(|(key, _)| *key);
        let online = members
            .into_iter()
            .take(self.presence_limit)
            .map(|(_, m)| m.user.clone())
            .collect();
        Ok(Joined {
            rx: r.tx.subscribe(),
            watermark: self.watermark.load(Ordering::SeqCst),
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
            let _ = r.tx.send(Delivery::public(frame));
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
        r.members
            .get(&username.to_lowercase())
            .map(|m| m.user.clone())
    }

    /// Removes the connection's user from the room, if that connection still holds the name,
    /// and tells the others. An empty room is forgotten.
    pub fn leave(&self, room: &str, user: &User, conn: ConnId) {
        let key = user.username.to_lowercase();
        let left = encode(&ServerFrame::Left { user: user.clone() });
        let mut rooms = self.lock();
        let Some(r) = rooms.get_mut(room) else { return };
        if r.members.get(&key).is_some_and(|m| m.conn == conn) {
            if r.members.len() <= self.presence_limit {
                let _ = r.tx.send(Delivery::public(left));
            }
            r.members.remove(&key);
        }
        if r.members.is_empty() {
            rooms.remove(room);
        }
    }
}

/// The hub as connections see it: rooms plus storage, limits and metrics.
pub struct Hub {
    pub rooms: Arc<Rooms>,
    pub store: Store,
    pub config: Arc<HubConfig>,
    pub metrics: Arc<Metrics>,
    next_conn: AtomicU64,
}

impl Hub {
    /// Opens the history database and wires its commits to the rooms. `Finished` tells when
    /// the store has written everything, once the last handle to the hub is gone.
    pub fn open(
        config: Arc<HubConfig>,
        metrics: Arc<Metrics>,
    ) -> Result<(Hub, Finished), StoreError> {
        // The store is created before the rooms it feeds, so the commit hook reaches them
        // through a slot filled right after.
        let slot: Arc<std::sync::OnceLock<Arc<Rooms>>> = Arc::default();
        let hook = slot.clone();
        let opened = Store::open(
            &config.database,
            Box::new(move |room, message| {
                if let Some(rooms) = hook.get() {
                    rooms.deliver_message(room, message);
                }
            }),
        )?;
        let rooms = Arc::new(Rooms::new(&config, opened.last_id, metrics.clone()));
        let _ = slot.set(rooms.clone());
        let hub = Hub {
            rooms,
            store: opened.store,
            config,
            metrics,
            next_conn: AtomicU64::new(1),
        };
        Ok((hub, opened.finished))
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Stores a message; the store's commit hook broadcasts it.
    pub async fn post(&self, draft: Draft) -> Result<Appended, StoreError> {
        let appended = self.store.append(draft).await?;
        if !appended.duplicate {
            self.metrics.messages_stored.fetch_add(1, Ordering::Relaxed);
        }
        Ok(appended)
    }

    /// The history for `welcome`: everything after `since` (capped by `resume_limit`), or the
    /// last `history_limit` messages; never past the join's watermark.
    /// `viewer` is the joining user's key: their private messages are included.
    pub async fn welcome_history(
        &self,
        room: &str,
        viewer: &str,
        since: Option<u64>,
        watermark: u64,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let store = &self.store;
        match since {
            Some(since) => {
                let limit = self.config.resume_limit;
                let messages = store
                    .after(room, Some(viewer), since, watermark, limit)
                    .await?;
                // Older history exists if anything precedes what we send.
                let first = messages.first().map_or(since.saturating_add(1), |m| m.id);
                let (older, _) = store
                    .page(room, Some(viewer), Some(first), watermark, 1)
                    .await?;
                Ok((messages, !older.is_empty()))
            }
            None => {
                let limit = self.config.history_limit;
                store.page(room, Some(viewer), None, watermark, limit).await
            }
        }
    }
}
