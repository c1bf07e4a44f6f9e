//! Rooms: who is in them, and the fan-out of every frame to a room's connections.
//!
//! A frame is turned into JSON once and the same reference-counted bytes go into the mailbox
//! of every recipient (`mailbox`), which writes them to its socket as soon as it takes them.
//! A mailbox holds at most `room-queue` frames for a client that does not read; beyond that
//! the client is disconnected as a slow consumer, so one stalled client never slows the
//! sender or anyone else. A room costs its map of members and nothing more: no queue of its
//! own, so a quiet room of two costs a few hundred bytes.
//!
//! Messages reach rooms only through [`Rooms::deliver_message`], called in id order: by the
//! storage writer's commit hook on one node, by the cluster's subscription task in cluster
//! mode. Each room's watermark (the highest id it has been handed, or known to be in the
//! database for it) lets a joining client get its history from the database and everything
//! newer through its mailbox, with no gap and no duplicate: see [`Rooms::join`]. In cluster mode
//! a room is only followed while it is open here (see `cluster`).
//!
//! This module knows nothing of storage, Redis or the hub: both the hub and the cluster use it.

use super::config::HubConfig;
use super::mailbox::{Mailbox, flush_later};
use super::metrics::Metrics;
use crate::protocol::{ChatMessage, ServerFrame, User, name_key};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use super::mailbox::ConnId;
/// A frame as it goes on the wire, encoded once and shared by all its recipients.
pub type Frame = super::wire::Frame;

/// What a room sends: a frame, and who may see it. Private messages go through the room like
/// the rest, so they keep their place in the room's id order (resuming with `since` relies on
/// that); only their sender's and recipient's mailboxes get them, so nobody else ever receives
/// them, not even their existence.
#[derive(Clone)]
pub struct Delivery {
    pub frame: Frame,
    /// The same, compressed once for the connections that negotiated permessage-deflate
    /// (large frames only, and only while such a connection is here: [`Rooms::compressed`]).
    pub deflated: Option<Frame>,
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
    pub fn new(frame: Frame, audience: Audience) -> Self {
        Delivery {
            frame,
            deflated: None,
            audience,
        }
    }

    /// A join, leave or typing notice: never compressed, being always under
    /// [`crate::server::deflate::MIN_BYTES`] (a name of at most 32 characters and a hash).
    fn public(frame: Frame) -> Self {
        Delivery::new(frame, Audience::Everyone)
    }

    /// For everyone in the room except the user whose name key is `except`.
    pub fn all_but(frame: Frame, except: Option<String>) -> Self {
        let audience = except.map_or(Audience::Everyone, |e| Audience::AllBut(e.into()));
        Delivery::new(frame, audience)
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

/// Serialises a frame once, for any number of recipients.
pub fn encode(frame: &ServerFrame) -> Frame {
    Frame::json(frame)
}

/// Someone in a room: one account, on one or more connections (tabs, devices) of this node.
struct Member {
    user: User,
    /// The first connection's id: a cluster holds this member's presence under it.
    claim: ConnId,
    conns: Vec<Arc<Mailbox>>,
}

impl Member {
    fn close_all(&self, code: u16, reason: &'static str) {
        for mailbox in &self.conns {
            mailbox.request_close(code, reason);
        }
    }
}

struct Room {
    /// Every message of this room with an id up to this one was sent to its members or, for
    /// ids from before the room was opened here, is in the log. Later ones are yet to come.
    watermark: u64,
    /// Keyed by [`name_key`]: two names that look alike cannot be in a room together.
    members: HashMap<String, Member>,
}

impl Room {
    fn new(watermark: u64) -> Room {
        Room {
            watermark,
            members: HashMap::new(),
        }
    }

    /// Puts `delivery` in the mailbox of each connection it is for, has them written, and
    /// returns how many there were.
    fn send(&self, delivery: Delivery, room_queue: usize, metrics: &Arc<Metrics>) -> usize {
        let mut recipients = 0;
        let mut to_flush = Vec::new();
        for (key, member) in &self.members {
            if !delivery.is_for(key) {
                continue;
            }
            for mailbox in &member.conns {
                recipients += 1;
                if mailbox.put(&delivery.frame, delivery.deflated.as_ref(), room_queue) {
                    to_flush.push(mailbox.clone());
                }
            }
        }
        flush_later(to_flush, metrics);
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
    /// Every message of the room with an id up to this one was sent before the connection's
    /// mailbox joined, or is in the log: the welcome's history goes up to here. Later ones
    /// are held in the mailbox until it follows the room.
    pub watermark: u64,
    /// Alphabetical, at most the presence limit.
    pub online: Vec<User>,
    pub online_count: usize,
}

/// The rooms of this node.
pub struct Rooms {
    /// A std `Mutex`: held only for map updates and putting frames in mailboxes, never across
    /// an `.await`. Rooms are independent, but one lock keeps presence and delivery simple;
    /// the critical sections are short: a frame into a room of 10,000 is 10,000 pushes
    /// (about a millisecond), and the writing happens after, outside it.
    rooms: Mutex<HashMap<String, Room>>,
    /// The highest id handed to any room: where a room opened in single-node mode starts, and
    /// how a cluster node notices Redis losing its data (its counter going back).
    watermark: AtomicU64,
    room_queue: usize,
    presence_limit: usize,
    /// Connections here that negotiated permessage-deflate: while there are none, nothing is
    /// compressed.
    deflating: std::sync::atomic::AtomicUsize,
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
            deflating: Default::default(),
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
            .or_insert_with(|| Room::new(watermark));
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

    /// Every user on this node, with their room and the connection id their cluster claim
    /// is held under.
    pub fn local_members(&self) -> Vec<(String, User, ConnId)> {
        let rooms = self.lock();
        rooms
            .iter()
            .flat_map(|(name, r)| {
                r.members
                    .values()
                    .map(move |m| (name.clone(), m.user.clone(), m.claim))
            })
            .collect()
    }

    /// The connection id `user`'s presence in `room` is held under, if they are here.
    pub fn claim_of(&self, room: &str, user: &User) -> Option<ConnId> {
        let rooms = self.lock();
        let member = rooms.get(room)?.members.get(&name_key(&user.username))?;
        (member.user == *user).then_some(member.claim)
    }

    /// Sends a notice that arrived from the cluster to this node's users in `room`. Typing
    /// notices are skipped in rooms above the presence limit, as in single-node mode.
    pub fn deliver_event(&self, room: &str, delivery: Delivery) {
        let delivery = self.compressed(delivery);
        let mut rooms = self.lock();
        if let Some(r) = rooms.get_mut(room)
            && r.members.len() <= self.presence_limit
        {
            let recipients = r.send(delivery, self.room_queue, &self.metrics);
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
            && m.claim == conn
        {
            m.close_all(
                crate::protocol::close::REPLACED,
                "you joined again from another server of this site",
            );
        }
    }

    /// `delivery` with its compressed copy, if a connection here may take it. Called before
    /// the lock is taken: compressing a large frame takes tens of microseconds.
    fn compressed(&self, mut delivery: Delivery) -> Delivery {
        if self.deflating.load(Ordering::Relaxed) > 0 {
            delivery.deflated = delivery.frame.deflated();
        }
        delivery
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
        let delivery = Delivery::new(encode(&ServerFrame::Message(message.clone())), audience);
        let delivery = self.compressed(delivery);
        let mut rooms = self.lock();
        if let Some(r) = rooms.get_mut(room)
            && message.id > r.watermark
        {
            r.watermark = message.id;
            let recipients = r.send(delivery, self.room_queue, &self.metrics);
            self.metrics
                .deliveries
                .fetch_add(recipients as u64, Ordering::Relaxed);
        }
        self.watermark.fetch_max(message.id, Ordering::SeqCst);
    }

    /// Adds `user`'s connection to `room`. The same account on another connection (a second
    /// tab, a phone, a reconnect that beat the old connection's timeout) is added beside the
    /// others: one person in the online list, no join notice. Another user with a name that
    /// looks the same (same [`name_key`]) is refused (accounts make that rare: names belong to
    /// accounts server-wide).
    pub fn join(
        &self,
        room: &str,
        user: &User,
        mailbox: Arc<Mailbox>,
    ) -> Result<Joined, LocalRefusal> {
        let key = name_key(&user.username);
        let conn = mailbox.id();
        let deflates = mailbox.deflates();
        // Serialised before taking the lock every room and delivery shares.
        let joined = encode(&ServerFrame::Joined { user: user.clone() });
        let mut rooms = self.lock();
        if self.clustered && !rooms.contains_key(room) {
            return Err(LocalRefusal::NotOpen);
        }
        let r = rooms
            .entry(room.to_string())
            .or_insert_with(|| Room::new(self.watermark()));
        match r.members.get_mut(&key) {
            Some(same) if same.user == *user => same.conns.push(mailbox),
            Some(other) => return Err(LocalRefusal::NameTaken(other.user.username.clone())),
            None => {
                if !self.clustered && r.members.len() < self.presence_limit {
                    r.send(Delivery::public(joined), self.room_queue, &self.metrics);
                }
                let member = Member {
                    user: user.clone(),
                    claim: conn,
                    conns: vec![mailbox],
                };
                r.members.insert(key.clone(), member);
            }
        }
        if deflates {
            self.deflating.fetch_add(1, Ordering::Relaxed);
        }
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
        let mut rooms = self.lock();
        if let Some(r) = rooms.get_mut(room)
            && r.members.len() <= self.presence_limit
        {
            r.send(Delivery::public(frame), self.room_queue, &self.metrics);
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

    /// Closes every connection of this node whose user has the name `username` (its account
    /// signed out everywhere), with `code`.
    pub fn close_user(&self, username: &str, code: u16, reason: &'static str) {
        let key = name_key(username);
        let rooms = self.lock();
        for room in rooms.values() {
            if let Some(member) = room.members.get(&key) {
                member.close_all(code, reason);
            }
        }
    }

    /// Closes the connection in `room` of the user named `username`, with `code`.
    pub fn close_user_in(&self, room: &str, username: &str, code: u16, reason: &'static str) {
        let rooms = self.lock();
        if let Some(member) = rooms
            .get(room)
            .and_then(|r| r.members.get(&name_key(username)))
        {
            member.close_all(code, reason);
        }
    }

    /// Removes the connection from the room. When it was its user's last one here, the user
    /// has left: the others are told, and the connection id the user's cluster claim was held
    /// under is returned (to release it). An empty room is forgotten (in cluster mode, by
    /// [`Rooms::close_if_empty`], which also unsubscribes it).
    pub fn leave(&self, room: &str, user: &User, conn: ConnId) -> Option<ConnId> {
        let key = name_key(&user.username);
        let left = encode(&ServerFrame::Left { user: user.clone() });
        let mut rooms = self.lock();
        let r = rooms.get_mut(room)?;
        let member = r.members.get_mut(&key).filter(|m| m.user == *user)?;
        member.conns.retain(|m| {
            let leaving = m.id() == conn;
            if leaving && m.deflates() {
                self.deflating.fetch_sub(1, Ordering::Relaxed);
            }
            !leaving
        });
        let mut gone = None;
        if member.conns.is_empty() {
            gone = Some(member.claim);
            if !self.clustered && r.members.len() <= self.presence_limit {
                r.send(Delivery::public(left), self.room_queue, &self.metrics);
            }
            r.members.remove(&key);
        }
        if r.members.is_empty() && !self.clustered {
            rooms.remove(room);
        }
        gone
    }
}
