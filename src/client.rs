//! The browser's side of the chat: reactive state the components render, and (in the browser
//! only) the WebSocket task that keeps it in sync.
//!
//! The task reconnects by itself with exponential backoff and jitter, rejoins with the same
//! name and email, and asks for what it missed (`since` = the last id it has). Messages typed
//! while offline wait in the outbox with a `client_id`; they are (re)sent after every
//! `welcome` until the server echoes that id back, and the server stores a repeated
//! `client_id` only once, so a message is neither lost nor doubled.

use crate::protocol::{Change, ChatMessage, ErrorCode, ServerFrame, User};
use leptos::prelude::*;

/// The connection as the user should understand it.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// Not joined yet.
    Idle,
    Connecting,
    Online,
    /// Lost; trying again in about `retry_in_ms`.
    Reconnecting {
        retry_in_ms: u32,
    },
    /// The browser reports no network; reconnecting as soon as it is back.
    Offline,
    /// Will not reconnect by itself (e.g. the same user joined from another tab).
    Stopped(String),
}

/// One line in the message list.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Message(ChatMessage),
    /// "alice joined", "bob left": shown in the list, never stored.
    Notice {
        key: u64,
        text: String,
    },
}

impl Entry {
    /// A stable key for keyed rendering.
    pub fn key(&self) -> String {
        match self {
            // A deleted message is drawn again, as its tombstone.
            Entry::Message(m) if m.deleted => format!("m{}d", m.id),
            Entry::Message(m) => format!("m{}", m.id),
            Entry::Notice { key, .. } => format!("n{key}"),
        }
    }
}

/// A message the user sent that the server has not echoed back yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub client_id: String,
    pub text: String,
    /// The recipient, for a private message.
    pub to: Option<String>,
    /// Set when the server refused it (the reason, for the user).
    pub failed: Option<String>,
}

/// What the user typed into the join form.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub username: String,
    pub email: String,
}

/// Which join-form field a server-side refusal is about.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Field {
    Email,
    Username,
}

/// All the chat state the components read, in signals. `Copy`, so components just take it.
#[derive(Clone, Copy)]
pub struct Chat {
    pub room: RwSignal<String>,
    pub status: RwSignal<Status>,
    pub me: RwSignal<Option<User>>,
    /// This user's account is an admin (moderation controls are shown).
    pub admin: RwSignal<bool>,
    pub entries: RwSignal<Vec<Entry>>,
    pub outbox: RwSignal<Vec<Pending>>,
    pub online: RwSignal<Vec<User>>,
    /// How many are online (large rooms list only some of them in `online`).
    pub online_count: RwSignal<usize>,
    /// A refusal of the join, shown under the matching form field.
    pub join_error: RwSignal<Option<(Field, String)>>,
    /// A problem that is not about one field or message (shown as a banner).
    pub alert: RwSignal<Option<String>>,
    /// Whether older messages exist above the first one shown.
    pub has_more: RwSignal<bool>,
    pub loading_older: RwSignal<bool>,
    /// What is typed in the message box (the online list can start a `/msg` there).
    pub draft: RwSignal<String>,
    /// Bumped to ask the message box for the keyboard (the online list's envelope button).
    pub focus_composer: RwSignal<u32>,
    /// Who is typing right now (never this user), in the order they started.
    pub typing: RwSignal<Vec<String>>,
    /// Messages that arrived while the tab was hidden (shown in the title).
    pub unread: RwSignal<u32>,
    synced_to: StoredValue<Option<u64>>,
    notices: StoredValue<u64>,
    /// When this page last told the server it is typing (ms since the epoch).
    #[cfg(feature = "hydrate")]
    typing_sent: StoredValue<f64>,
    #[cfg(feature = "hydrate")]
    commands: StoredValue<Option<futures::channel::mpsc::UnboundedSender<socket::Command>>>,
}

impl Chat {
    pub fn new(room: String) -> Self {
        Chat {
            room: RwSignal::new(room),
            status: RwSignal::new(Status::Idle),
            me: RwSignal::new(None),
            admin: RwSignal::new(false),
            entries: RwSignal::new(Vec::new()),
            outbox: RwSignal::new(Vec::new()),
            online: RwSignal::new(Vec::new()),
            online_count: RwSignal::new(0),
            join_error: RwSignal::new(None),
            alert: RwSignal::new(None),
            has_more: RwSignal::new(false),
            loading_older: RwSignal::new(false),
            draft: RwSignal::new(String::new()),
            focus_composer: RwSignal::new(0),
            typing: RwSignal::new(Vec::new()),
            unread: RwSignal::new(0),
            synced_to: StoredValue::new(None),
            notices: StoredValue::new(0),
            #[cfg(feature = "hydrate")]
            typing_sent: StoredValue::new(0.0),
            #[cfg(feature = "hydrate")]
            commands: StoredValue::new(None),
        }
    }

    /// Where to resume after a reconnect (`since`): the newest id received over the socket.
    /// Not the newest shown: the server-rendered history is public messages only, so it may
    /// hide this user's older private messages, which the first `welcome` brings.
    pub fn synced_to(&self) -> Option<u64> {
        self.synced_to.get_value()
    }

    fn synced(&self, id: u64) {
        self.synced_to
            .update_value(|s| *s = Some(s.map_or(id, |s| s.max(id))));
    }

    /// The oldest message id shown, for paging back.
    pub fn first_id(&self) -> Option<u64> {
        self.entries.with_untracked(|entries| {
            entries.iter().find_map(|e| match e {
                Entry::Message(m) => Some(m.id),
                Entry::Notice { .. } => None,
            })
        })
    }

    /// Adds messages in id order, skipping any already shown.
    pub fn merge_messages(&self, messages: Vec<ChatMessage>) {
        if messages.is_empty() {
            return;
        }
        self.entries.update(|entries| {
            for m in messages {
                insert_message(entries, m);
            }
        });
    }

    fn set_typing(&self, username: &str, active: bool) {
        let listed = self
            .typing
            .with_untracked(|t| t.iter().any(|u| u == username));
        if active && !listed {
            self.typing.update(|t| t.push(username.to_string()));
        } else if !active && listed {
            self.typing.update(|t| t.retain(|u| u != username));
        }
    }

    fn notice(&self, text: String) {
        let key = self.notices.get_value() + 1;
        self.notices.set_value(key);
        self.entries.update(|e| e.push(Entry::Notice { key, text }));
    }

    /// Applies one frame from the server. Returns a join refusal, if this frame is one.
    pub fn apply(&self, frame: ServerFrame) -> Option<(Field, String)> {
        match frame {
            ServerFrame::Welcome {
                you,
                online,
                online_count,
                history,
                has_more,
                admin,
                ..
            } => {
                let first_join = self.me.get_untracked().is_none();
                self.me.set(Some(you));
                self.admin.set(admin);
                self.online.set(online);
                self.online_count.set(online_count);
                if let Some(last) = history.last() {
                    self.synced(last.id);
                }
                if first_join || self.first_id().is_none() {
                    self.has_more.set(has_more);
                }
                self.merge_messages(history);
                self.join_error.set(None);
                self.alert.set(None);
                self.status.set(Status::Online);
            }
            ServerFrame::Message(message) => {
                self.synced(message.id);
                self.set_typing(&message.from.username, false);
                let mine = self
                    .me
                    .with_untracked(|me| me.as_ref() == Some(&message.from));
                if let (true, Some(id)) = (mine, message.client_id.as_deref()) {
                    self.outbox.update(|o| o.retain(|p| p.client_id != id));
                }
                self.merge_messages(vec![message]);
            }
            ServerFrame::CatchUp { messages, .. } => {
                if let Some(last) = messages.last() {
                    self.synced(last.id);
                }
                self.merge_messages(messages);
            }
            ServerFrame::History { messages, has_more } => {
                self.has_more.set(has_more);
                self.loading_older.set(false);
                self.merge_messages(messages);
            }
            ServerFrame::Joined { user } => {
                let name = user.username.clone();
                let listed = self
                    .online
                    .with_untracked(|o| o.iter().any(|u| u.username == name));
                if !listed {
                    self.online.update(|o| {
                        o.push(user);
                        o.sort_by_key(|u| u.username.to_lowercase());
                    });
                    self.online_count.update(|n| *n += 1);
                }
                self.notice(format!("{name} joined"));
            }
            ServerFrame::Left { user } => {
                self.online
                    .update(|o| o.retain(|u| u.username != user.username));
                self.online_count.update(|n| *n = n.saturating_sub(1));
                self.set_typing(&user.username, false);
                self.notice(format!("{} left", user.username));
            }
            ServerFrame::Error {
                code,
                message,
                client_id,
            } => {
                let field = match code {
                    ErrorCode::InvalidEmail => Some(Field::Email),
                    ErrorCode::InvalidUsername | ErrorCode::UsernameTaken => Some(Field::Username),
                    _ => None,
                };
                if let (Some(field), None) = (field, self.me.get_untracked()) {
                    return Some((field, message));
                }
                match client_id {
                    Some(id) => self.outbox.update(|o| {
                        if let Some(p) = o.iter_mut().find(|p| p.client_id == id) {
                            p.failed = Some(message);
                        }
                    }),
                    None => {
                        self.loading_older.set(false);
                        self.alert.set(Some(message));
                    }
                }
            }
            ServerFrame::Typing { user, active } => {
                let me = self.me.with_untracked(|me| me.as_ref() == Some(&user));
                if !me {
                    self.set_typing(&user.username, active);
                }
            }
            ServerFrame::Pong => {}
        }
        None
    }
}

/// Sends a message (through the outbox: shown as pending until the server has it).
pub fn send_message(chat: Chat, text: String, to: Option<String>) {
    #[cfg(feature = "hydrate")]
    socket::send_message(chat, text, to);
    #[cfg(not(feature = "hydrate"))]
    let _ = (chat, text, to);
}

/// Starts (once) the task that keeps this page connected as `identity`.
pub fn connect(chat: Chat, identity: Identity) {
    #[cfg(feature = "hydrate")]
    socket::connect(chat, identity);
    #[cfg(not(feature = "hydrate"))]
    let _ = (chat, identity);
}

/// Asks for the page of messages before the oldest one shown.
pub fn load_older(chat: Chat) {
    #[cfg(feature = "hydrate")]
    socket::load_older(chat);
    #[cfg(not(feature = "hydrate"))]
    let _ = chat;
}

/// Sends a refused outbox entry again.
pub fn retry(chat: Chat, client_id: &str) {
    #[cfg(feature = "hydrate")]
    socket::retry(chat, client_id);
    #[cfg(not(feature = "hydrate"))]
    let _ = (chat, client_id);
}

/// Tells the room this user is typing (at most every couple of seconds).
pub fn typing(chat: Chat) {
    #[cfg(feature = "hydrate")]
    socket::typing(chat);
    #[cfg(not(feature = "hydrate"))]
    let _ = chat;
}

/// Asks the server to delete message `id`; the page drops it when the server's change comes
/// back (to everyone at once).
pub fn delete_message(chat: Chat, id: u64) {
    moderate(chat, crate::protocol::ClientFrame::Delete { id });
}

/// Sends an admin's frame (`kick`, `ban`) or a deletion on the current connection.
pub fn moderate(chat: Chat, frame: crate::protocol::ClientFrame) {
    #[cfg(feature = "hydrate")]
    socket::send_frame(chat, frame);
    #[cfg(not(feature = "hydrate"))]
    let _ = (chat, frame);
}

/// "alice is typing…", "alice and bob are typing…", "3 people are typing…", or nothing.
pub fn typing_line(names: &[String]) -> Option<String> {
    match names {
        [] => None,
        [one] => Some(format!("{one} is typing…")),
        [a, b] => Some(format!("{a} and {b} are typing…")),
        more => Some(format!("{} people are typing…", more.len())),
    }
}

/// What the message box holds: `/msg <name> <text>` is a private message to `name`.
#[derive(Debug, PartialEq)]
pub enum Compose<'a> {
    Public(&'a str),
    Private {
        to: &'a str,
        text: &'a str,
    },
    /// `/msg` without a name or without a text.
    IncompletePrivate,
}

/// `online` are the names that can follow `/msg`: the longest one that matches wins, so
/// "/msg Ada Lovelace hi" reaches "Ada Lovelace". Otherwise the first word is the name.
pub fn parse_compose<'a>(typed: &'a str, online: &[String]) -> Compose<'a> {
    let Some(rest) = typed.trim_start().strip_prefix("/msg") else {
        return Compose::Public(typed);
    };
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return Compose::Public(typed); // "/message", say
    }
    let rest = rest.trim_start();
    let known = online
        .iter()
        .filter(|name| {
            rest.get(..name.len())
                .is_some_and(|start| start.to_lowercase() == name.to_lowercase())
                && rest[name.len()..].starts_with(char::is_whitespace)
        })
        .max_by_key(|name| name.len())
        .map(|name| rest.split_at(name.len()));
    match known.or_else(|| rest.split_once(char::is_whitespace)) {
        Some((to, text)) if !text.trim().is_empty() => Compose::Private {
            to,
            text: text.trim(),
        },
        _ => Compose::IncompletePrivate,
    }
}

/// Inserts `m` at its place by id (after everything older), unless it is already there.
fn insert_message(entries: &mut Vec<Entry>, m: ChatMessage) {
    // A change entry is applied to its target, never shown. (A target not shown yet comes
    // from the server already changed.)
    if let Some(Change::Deleted { target }) = m.change {
        for e in entries.iter_mut() {
            if let Entry::Message(shown) = e
                && shown.id == target
            {
                shown.deleted = true;
                shown.text.clear();
            }
        }
        return;
    }
    let mut at = entries.len();
    for (i, e) in entries.iter().enumerate().rev() {
        if let Entry::Message(existing) = e {
            if existing.id == m.id {
                return;
            }
            if existing.id < m.id {
                break;
            }
            at = i;
        }
    }
    // Older than everything shown: goes before the first message (and its notices).
    entries.insert(at, Entry::Message(m));
}

#[cfg(feature = "hydrate")]
pub use socket::send_frame;

#[cfg(feature = "hydrate")]
mod socket {
    use super::{Chat, Identity, Pending, Status};
    use crate::protocol::{ClientFrame, ServerFrame, close};
    use futures::channel::mpsc::{UnboundedReceiver, unbounded};
    use futures::{FutureExt, SinkExt, StreamExt, select};
    use gloo_net::websocket::{Message, WebSocketError, futures::WebSocket};
    use gloo_timers::future::TimeoutFuture;
    use leptos::prelude::*;
    use wasm_bindgen::JsCast;

    /// What the page asks of the socket task.
    pub enum Command {
        /// Send whatever is in the outbox that this connection has not sent yet.
        Flush,
        /// Ask for the page before the oldest message shown.
        LoadOlder(u64),
        /// Tell the room this user is typing.
        Typing,
        /// Send this frame once joined (delete, kick, ban).
        Frame(ClientFrame),
        /// The browser says the network went away (`offline` event): the socket may not
        /// notice for a long time, so drop it now and wait for `Online`.
        Offline,
        /// The network is back: reconnect now instead of at the end of the backoff.
        Online,
    }

    const FIRST_RETRY_MS: f64 = 500.0;
    const MAX_RETRY_MS: f64 = 20_000.0;
    /// Heartbeat used until the server says otherwise in `welcome`.
    const DEFAULT_HEARTBEAT_MS: u32 = 20_000;

    /// Starts (once) the task that keeps this page connected as `identity`.
    pub fn connect(chat: Chat, identity: Identity) {
        if chat.commands.with_value(Option::is_some) {
            return;
        }
        let (tx, rx) = unbounded();
        for (event, online) in [("offline", false), ("online", true)] {
            let tx = tx.clone();
            let listener = wasm_bindgen::closure::Closure::<dyn Fn()>::new(move || {
                let _ = tx.unbounded_send(if online {
                    Command::Online
                } else {
                    Command::Offline
                });
            });
            let _ =
                window().add_event_listener_with_callback(event, listener.as_ref().unchecked_ref());
            // The page lives as long as the chat does: keep the listener for good.
            listener.forget();
        }
        // Back on the tab: everything is read.
        let seen = wasm_bindgen::closure::Closure::<dyn Fn()>::new(move || {
            if !document().hidden() {
                chat.unread.set(0);
            }
        });
        let _ = document()
            .add_event_listener_with_callback("visibilitychange", seen.as_ref().unchecked_ref());
        seen.forget();
        chat.commands.set_value(Some(tx));
        chat.status.set(Status::Connecting);
        leptos::task::spawn_local(run(chat, identity, rx));
    }

    /// Puts a message in the outbox (shown as pending) and asks the task to send it.
    /// `to`: a username, for a private message.
    pub fn send_message(chat: Chat, text: String, to: Option<String>) {
        let client_id = new_client_id();
        chat.outbox.update(|o| {
            o.push(Pending {
                client_id,
                text,
                to,
                failed: None,
            })
        });
        command(chat, Command::Flush);
    }

    /// A new message while the tab is hidden: count it in the title, and raise a desktop
    /// notification if it is for this user (a mention or a private message) and the user
    /// allowed notifications.
    fn attention(chat: Chat, message: &crate::protocol::ChatMessage) {
        let me = chat.me.get_untracked();
        let mine = me.as_ref() == Some(&message.from);
        let shown = chat.entries.with_untracked(|e| {
            e.iter()
                .any(|x| matches!(x, super::Entry::Message(m) if m.id == message.id))
        });
        if mine || shown || !document().hidden() {
            return;
        }
        chat.unread.update(|n| *n += 1);
        let Some(me) = me else { return };
        let private = message.to.as_ref() == Some(&me);
        if !(private || crate::text::mentions(&message.text, &me.username)) {
            return;
        }
        if web_sys::Notification::permission() == web_sys::NotificationPermission::Granted {
            let title = if private {
                format!("{} (private)", message.from.username)
            } else {
                format!("{} mentioned you", message.from.username)
            };
            let options = web_sys::NotificationOptions::new();
            options.set_body(&crate::emoji::replace_shortcodes(&message.text));
            let _ = web_sys::Notification::new_with_options(&title, &options);
        }
    }

    /// Called on every keystroke; tells the server at most every two seconds (it ends the
    /// "typing" state itself a few seconds after the last one). Never while writing a private
    /// message (`/msg …`): the room would learn that something private is being written.
    pub fn typing(chat: Chat) {
        const EVERY_MS: f64 = 2_000.0;
        if chat
            .draft
            .with_untracked(|d| d.trim_start().starts_with("/msg"))
        {
            return;
        }
        let now = js_sys::Date::now();
        if now - chat.typing_sent.get_value() >= EVERY_MS {
            chat.typing_sent.set_value(now);
            command(chat, Command::Typing);
        }
    }

    /// Sends a frame (a deletion, an admin's action) on the current connection; dropped
    /// when not connected (the person sees nothing happen, and can try again).
    pub fn send_frame(chat: Chat, frame: ClientFrame) {
        command(chat, Command::Frame(frame));
    }

    pub fn load_older(chat: Chat) {
        if let Some(first) = chat.first_id() {
            chat.loading_older.set(true);
            command(chat, Command::LoadOlder(first));
        }
    }

    fn command(chat: Chat, command: Command) {
        chat.commands.with_value(|tx| {
            if let Some(tx) = tx {
                let _ = tx.unbounded_send(command);
            }
        });
    }

    fn new_client_id() -> String {
        let rand = (js_sys::Math::random() * 1e12) as u64;
        format!("{:x}-{:x}", js_sys::Date::now() as u64, rand)
    }

    fn ws_url() -> String {
        let location = window().location();
        let scheme = if location.protocol().as_deref() == Ok("https:") {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}/ws", location.host().unwrap_or_default())
    }

    /// How one connection ended.
    enum Ended {
        /// Lost; try again. `welcomed`: it had joined, so the backoff starts over.
        Lost { welcomed: bool },
        /// Do not reconnect.
        Stop(String),
        /// The server refused the join; the form shows why.
        Refused,
    }

    async fn run(chat: Chat, identity: Identity, mut commands: UnboundedReceiver<Command>) {
        let mut attempt: i32 = 0;
        loop {
            if !window().navigator().on_line() {
                chat.status.set(Status::Offline);
                wait_for_online(&mut commands).await;
                chat.status.set(Status::Connecting);
            }
            let ended = match WebSocket::open(&ws_url()) {
                Ok(ws) => session(chat, ws, &identity, &mut commands).await,
                Err(_) => Ended::Lost { welcomed: false },
            };
            match ended {
                Ended::Lost { welcomed } => {
                    attempt = if welcomed { 1 } else { attempt + 1 };
                }
                Ended::Stop(reason) => {
                    chat.status.set(Status::Stopped(reason));
                    break;
                }
                Ended::Refused => {
                    chat.status.set(Status::Idle);
                    break;
                }
            }
            // Exponential backoff with "equal jitter": half fixed, half random, so a server
            // restart does not bring every client back in the same instant.
            let ceiling = (FIRST_RETRY_MS * 2f64.powi(attempt - 1)).min(MAX_RETRY_MS);
            let delay = ceiling / 2.0 + js_sys::Math::random() * ceiling / 2.0;
            chat.status.set(Status::Reconnecting {
                retry_in_ms: delay as u32,
            });
            let mut sleep = TimeoutFuture::new(delay as u32).fuse();
            loop {
                select! {
                    () = sleep => break,
                    command = commands.next() => match command {
                        Some(Command::Online) => break,
                        None => return,
                        Some(_) => {}
                    },
                }
            }
            chat.status.set(Status::Connecting);
        }
        chat.commands.set_value(None);
    }

    async fn wait_for_online(commands: &mut UnboundedReceiver<Command>) {
        while let Some(command) = commands.next().await {
            if let Command::Online = command {
                return;
            }
        }
    }

    async fn session(
        chat: Chat,
        ws: WebSocket,
        identity: &Identity,
        commands: &mut UnboundedReceiver<Command>,
    ) -> Ended {
        let (mut tx, rx) = ws.split();
        let mut rx = rx.fuse();
        let join = ClientFrame::Join {
            username: identity.username.clone(),
            email: identity.email.clone(),
            room: Some(chat.room.get_untracked()),
            since: chat.synced_to(),
            // The browser's account is its HttpOnly session cookie, sent with the upgrade
            // (signing up, with any invitation, happened over HTTP first).
            token: None,
            invite: None,
        };
        if send(&mut tx, &join).await.is_err() {
            return Ended::Lost { welcomed: false };
        }
        let mut welcomed = false;
        // client_ids sent on this connection; everything else in the outbox is (re)sent.
        let mut sent: Vec<String> = Vec::new();
        let mut heartbeat_ms = DEFAULT_HEARTBEAT_MS;
        let mut last_heard = js_sys::Date::now();
        loop {
            let mut tick = TimeoutFuture::new(heartbeat_ms / 2).fuse();
            select! {
                frame = rx.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = js_sys::Date::now();
                        let Ok(frame) = serde_json::from_str::<ServerFrame>(&text) else {
                            continue;
                        };
                        // A change (a deletion) is nothing new to read.
                        if let ServerFrame::Message(message) = &frame
                            && message.change.is_none()
                        {
                            attention(chat, message);
                        }
                        if let ServerFrame::Welcome { heartbeat_ms: hb, .. } = &frame {
                            heartbeat_ms = (*hb as u32).clamp(1_000, 60_000);
                            welcomed = true;
                            sent.clear();
                        }
                        if let Some(refusal) = chat.apply(frame) {
                            chat.join_error.set(Some(refusal));
                            chat.me.set(None);
                            return Ended::Refused;
                        }
                        if welcomed && flush(chat, &mut tx, &mut sent).await.is_err() {
                            return Ended::Lost { welcomed };
                        }
                    }
                    Some(Ok(Message::Bytes(_))) => {}
                    Some(Err(WebSocketError::ConnectionClose(event))) => {
                        if event.code == close::REPLACED {
                            return Ended::Stop(
                                "You joined this room again through another server of this site."
                                    .into(),
                            );
                        }
                        if event.code == close::SIGNED_OUT {
                            return Ended::Stop(
                                "You signed out of every browser. Reload to sign in again."
                                    .into(),
                            );
                        }
                        if event.code == close::REMOVED {
                            return Ended::Stop(
                                "An admin removed you from this room. Reload to join again."
                                    .into(),
                            );
                        }
                        if event.code == close::BANNED {
                            return Ended::Stop("An admin banned this account.".into());
                        }
                        return Ended::Lost { welcomed };
                    }
                    Some(Err(_)) | None => return Ended::Lost { welcomed },
                },
                command = commands.next() => match command {
                    Some(Command::Flush) if welcomed => {
                        if flush(chat, &mut tx, &mut sent).await.is_err() {
                            return Ended::Lost { welcomed };
                        }
                    }
                    Some(Command::Typing) if welcomed => {
                        if send(&mut tx, &ClientFrame::Typing).await.is_err() {
                            return Ended::Lost { welcomed };
                        }
                    }
                    Some(Command::Frame(frame)) if welcomed => {
                        if send(&mut tx, &frame).await.is_err() {
                            return Ended::Lost { welcomed };
                        }
                    }
                    Some(Command::LoadOlder(before)) if welcomed => {
                        if send(&mut tx, &ClientFrame::History { before }).await.is_err() {
                            return Ended::Lost { welcomed };
                        }
                    }
                    Some(Command::Offline) => return Ended::Lost { welcomed },
                    Some(_) => {}
                    None => return Ended::Stop("closed".into()),
                },
                () = tick => {
                    // Nothing heard for two and a half heartbeats: the server or the network
                    // is gone even if the socket has not noticed. Start over.
                    if js_sys::Date::now() - last_heard > f64::from(heartbeat_ms) * 2.5 {
                        return Ended::Lost { welcomed };
                    }
                    if send(&mut tx, &ClientFrame::Ping).await.is_err() {
                        return Ended::Lost { welcomed };
                    }
                }
            }
        }
    }

    /// Sends the outbox entries not yet sent on this connection (failed ones wait for a retry).
    async fn flush(
        chat: Chat,
        tx: &mut futures::stream::SplitSink<WebSocket, Message>,
        sent: &mut Vec<String>,
    ) -> Result<(), WebSocketError> {
        let due: Vec<Pending> = chat.outbox.with_untracked(|o| {
            o.iter()
                .filter(|p| p.failed.is_none() && !sent.contains(&p.client_id))
                .cloned()
                .collect()
        });
        for p in due {
            let frame = ClientFrame::Message {
                text: p.text,
                client_id: Some(p.client_id.clone()),
                to: p.to,
            };
            send(tx, &frame).await?;
            sent.push(p.client_id);
        }
        Ok(())
    }

    async fn send(
        tx: &mut futures::stream::SplitSink<WebSocket, Message>,
        frame: &ClientFrame,
    ) -> Result<(), WebSocketError> {
        let text = serde_json::to_string(frame).unwrap_or_default();
        tx.send(Message::Text(text)).await
    }

    /// Retries a refused outbox entry.
    pub fn retry(chat: Chat, client_id: &str) {
        chat.outbox.update(|o| {
            if let Some(p) = o.iter_mut().find(|p| p.client_id == client_id) {
                p.failed = None;
            }
        });
        command(chat, Command::Flush);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64) -> ChatMessage {
        ChatMessage {
            id,
            ts: 0,
            from: User {
                username: "a".into(),
                avatar: "x".into(),
            },
            text: id.to_string(),
            client_id: None,
            to: None,
            deleted: false,
            change: None,
        }
    }

    #[test]
    fn a_deletion_turns_its_target_into_a_tombstone_and_is_not_shown() {
        let mut entries = vec![Entry::Message(msg(1)), Entry::Message(msg(2))];
        let deletion = ChatMessage {
            change: Some(Change::Deleted { target: 1 }),
            ..msg(3)
        };
        insert_message(&mut entries, deletion);
        assert_eq!(ids(&entries), ["m1d", "m2"]);
        let Entry::Message(first) = &entries[0] else {
            panic!()
        };
        assert!(first.deleted && first.text.is_empty());
        // A deletion of something not shown (older than the page) changes nothing.
        let elsewhere = ChatMessage {
            change: Some(Change::Deleted { target: 99 }),
            ..msg(4)
        };
        insert_message(&mut entries, elsewhere);
        assert_eq!(ids(&entries), ["m1d", "m2"]);
    }

    fn ids(entries: &[Entry]) -> Vec<String> {
        entries.iter().map(Entry::key).collect()
    }

    #[test]
    fn typing_lines() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(typing_line(&[]), None);
        assert_eq!(typing_line(&names(&["al"])).unwrap(), "al is typing…");
        assert_eq!(
            typing_line(&names(&["al", "bo"])).unwrap(),
            "al and bo are typing…"
        );
        assert_eq!(
            typing_line(&names(&["a", "b", "c"])).unwrap(),
            "3 people are typing…"
        );
    }

    #[test]
    fn msg_commands() {
        let online = ["bob".to_string(), "Ada".into(), "Ada Lovelace".into()];
        let parse = |t| parse_compose(t, &online);
        let private = |to, text| Compose::Private { to, text };
        assert_eq!(parse("hello"), Compose::Public("hello"));
        assert_eq!(parse("/message"), Compose::Public("/message"));
        assert_eq!(parse("/msg bob  hi there "), private("bob", "hi there"));
        // The longest online name wins, in any case.
        assert_eq!(parse("/msg ada lovelace hi"), private("ada lovelace", "hi"));
        assert_eq!(parse("/msg Ada hi"), private("Ada", "hi"));
        assert_eq!(parse("/msg stranger hi"), private("stranger", "hi"));
        assert_eq!(parse("/msg bob"), Compose::IncompletePrivate);
        assert_eq!(parse("/msg Ada Lovelace "), Compose::IncompletePrivate);
        assert_eq!(parse("/msg"), Compose::IncompletePrivate);
    }

    #[test]
    fn messages_land_in_id_order_once() {
        let mut e = vec![];
        for id in [2, 5, 3, 5, 1, 9, 2] {
            insert_message(&mut e, msg(id));
        }
        assert_eq!(ids(&e), ["m1", "m2", "m3", "m5", "m9"]);
        e.push(Entry::Notice {
            key: 1,
            text: "x".into(),
        });
        insert_message(&mut e, msg(10));
        insert_message(&mut e, msg(7));
        assert_eq!(ids(&e), ["m1", "m2", "m3", "m5", "m7", "m9", "n1", "m10"]);
    }
}
