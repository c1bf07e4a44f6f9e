//! The chat state the components render, and its reducer: [`Chat::apply`] turns each server
//! frame into changes of these signals. Plain Rust on signals: it runs, and is tested, natively.

use crate::protocol::{
    Attachment, Change, ChatMessage, ErrorCode, Hit, Quote, ServerFrame, User, excerpt,
};
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

/// One line in the message list. Nearly every entry is a message: boxing it to make notices
/// smaller would cost an allocation per message for nothing.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Entry {
    Message(ChatMessage),
    /// "alice joined", "bob left": shown in the list, never stored.
    Notice {
        key: u64,
        text: String,
    },
}

impl Entry {
    /// Which entry this is, whatever changed in it since (unlike [`Entry::key`]).
    pub fn identity(&self) -> String {
        match self {
            Entry::Message(m) => format!("m{}", m.id),
            Entry::Notice { key, .. } => format!("n{key}"),
        }
    }

    /// A key for keyed rendering, which changes whenever the message does: a message that
    /// was deleted, edited or reacted to is drawn again.
    pub fn key(&self) -> String {
        match self {
            Entry::Message(m) if m.deleted => format!("m{}d", m.id),
            Entry::Message(m)
                if m.edited.is_none()
                    && m.reactions.is_empty()
                    && m.reply.is_none()
                    && m.preview.is_none() =>
            {
                format!("m{}", m.id)
            }
            Entry::Message(m) => {
                use std::hash::{Hash, Hasher};
                let mut h = std::hash::DefaultHasher::new();
                (&m.text, m.edited, &m.reactions, &m.reply, &m.preview).hash(&mut h);
                format!("m{}:{:x}", m.id, h.finish())
            }
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
    /// What it answers.
    pub reply: Option<Quote>,
    /// The file sent with it.
    pub file: Option<Attachment>,
    /// Set when the server refused it (the reason, for the user).
    pub failed: Option<String>,
}

/// A file on its way to the message box: uploading, uploaded (sent with the next message),
/// or refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Attaching {
    pub name: String,
    /// How much is uploaded, 0 to 100.
    pub percent: u32,
    pub ready: Option<Attachment>,
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
    /// The message being edited in the message box (its id), if any.
    pub editing: RwSignal<Option<u64>>,
    /// The message the next one answers, if any.
    pub replying: RwSignal<Option<Quote>>,
    /// A message to bring into view (a reply's quote or a search hit was clicked); the list
    /// loads older pages until it has it.
    pub jump_to: RwSignal<Option<u64>>,
    /// The message just brought into view (highlighted for a moment).
    pub flash: RwSignal<Option<u64>>,
    /// The last search's answer: the query and its hits (`None`: no search open).
    pub search: RwSignal<Option<(String, Vec<Hit>)>>,
    /// A search is on its way.
    pub searching: RwSignal<bool>,
    /// The file to send with the next message, if any.
    pub attaching: RwSignal<Option<Attaching>>,
    /// Its upload, while under way (browser objects: this thread only, and never made on the
    /// server, where a page's state is dropped on another thread than the one that made it).
    #[cfg(feature = "hydrate")]
    pub(super) upload: StoredValue<Option<crate::browser::Upload>, LocalStorage>,
    /// Bumped by every new or cancelled upload: a late answer to an older one is ignored.
    #[cfg(feature = "hydrate")]
    pub(super) upload_generation: StoredValue<u64>,
    /// Who is typing right now (never this user), in the order they started.
    pub typing: RwSignal<Vec<String>>,
    /// Messages that arrived while the tab was hidden (shown in the title).
    pub unread: RwSignal<u32>,
    synced_to: StoredValue<Option<u64>>,
    notices: StoredValue<u64>,
    /// When this page last told the server it is typing (ms since the epoch).
    #[cfg(feature = "hydrate")]
    pub(super) typing_sent: StoredValue<f64>,
    #[cfg(feature = "hydrate")]
    pub(super) commands:
        StoredValue<Option<futures::channel::mpsc::UnboundedSender<super::socket::Command>>>,
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
            editing: RwSignal::new(None),
            replying: RwSignal::new(None),
            jump_to: RwSignal::new(None),
            flash: RwSignal::new(None),
            search: RwSignal::new(None),
            searching: RwSignal::new(false),
            attaching: RwSignal::new(None),
            #[cfg(feature = "hydrate")]
            upload: StoredValue::new_local(None),
            #[cfg(feature = "hydrate")]
            upload_generation: StoredValue::new(0),
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

    /// The newest message of this user that can still be edited (for the up arrow).
    pub fn last_own_message(&self) -> Option<ChatMessage> {
        let me = self.me.get_untracked()?;
        self.entries.with_untracked(|entries| {
            entries.iter().rev().find_map(|e| match e {
                Entry::Message(m) if m.from == me && !m.deleted => Some(m.clone()),
                _ => None,
            })
        })
    }

    /// Message `id`, if it is shown.
    pub fn message(&self, id: u64) -> Option<ChatMessage> {
        self.entries.with_untracked(|entries| {
            entries.iter().find_map(|e| match e {
                Entry::Message(m) if m.id == id => Some(m.clone()),
                _ => None,
            })
        })
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

    /// Takes out of the outbox what the server has stored: this user's messages among
    /// `messages`, matched by `client_id` (a failed resend of one included).
    fn settle_outbox(&self, messages: &[ChatMessage]) {
        let Some(me) = self.me.get_untracked() else {
            return;
        };
        let stored: Vec<&str> = messages
            .iter()
            .filter(|m| m.from == me)
            .filter_map(|m| m.client_id.as_deref())
            .collect();
        if stored.is_empty() || self.outbox.with_untracked(|o| o.is_empty()) {
            return;
        }
        self.outbox
            .update(|o| o.retain(|p| !stored.contains(&p.client_id.as_str())));
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
                // Nothing came over a socket before: the welcome's history is the newest page
                // in full, not what was missed since a `since`.
                let fresh = self.synced_to().is_none();
                self.me.set(Some(you));
                // Sent before the connection dropped, stored, but the answer never came: the
                // history has it, so it is not sent again.
                self.settle_outbox(&history);
                self.admin.set(admin);
                self.online.set(online);
                self.online_count.set(online_count);
                if let Some(last) = history.last() {
                    self.synced(last.id);
                }
                if first_join || self.first_id().is_none() {
                    self.has_more.set(has_more);
                }
                if fresh {
                    // The page's own history (public messages, as they were when the server
                    // drew the page) gives way to the welcome's: since then messages may have
                    // been deleted or edited, more than a page may have come, and this user's
                    // private messages were not in it.
                    self.entries.update(|entries| {
                        entries.retain(|e| !matches!(e, Entry::Message(_)));
                        for m in history {
                            insert_message(entries, m);
                        }
                    });
                } else {
                    self.merge_messages(history);
                }
                // Whatever was under way on the connection before is over: a page of older
                // messages or a search it asked for, and who was typing then.
                self.loading_older.set(false);
                self.searching.set(false);
                self.typing.set(Vec::new());
                self.join_error.set(None);
                self.alert.set(None);
                self.status.set(Status::Online);
            }
            ServerFrame::Message(message) => {
                self.synced(message.id);
                self.set_typing(&message.from.username, false);
                self.settle_outbox(std::slice::from_ref(&message));
                self.merge_messages(vec![message]);
            }
            ServerFrame::CatchUp { messages, .. } => {
                if let Some(last) = messages.last() {
                    self.synced(last.id);
                }
                self.settle_outbox(&messages);
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
                        self.searching.set(false);
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
            ServerFrame::SearchResults { query, hits } => {
                self.searching.set(false);
                self.search.set(Some((query, hits)));
            }
        }
        None
    }
}

/// Inserts `m` at its place by id (after everything older), unless it is already there.
pub(super) fn insert_message(entries: &mut Vec<Entry>, m: ChatMessage) {
    // A change entry is applied to its target, never shown. (A target not shown yet comes
    // from the server already changed.)
    if let Some(change) = &m.change {
        apply_change(entries, change, &m);
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

/// Applies a change entry to what is shown: its target, and the quotes of replies to it. Each
/// change sets a state (it does not add to one), so applying it twice changes nothing.
fn apply_change(entries: &mut [Entry], change: &Change, entry: &ChatMessage) {
    let target = change.target();
    // An edit that lost a race with a deletion (or comes again after it) changes nothing.
    let target_deleted = entries
        .iter()
        .any(|e| matches!(e, Entry::Message(m) if m.id == target && m.deleted));
    for e in entries.iter_mut() {
        let Entry::Message(shown) = e else { continue };
        if shown.id == target {
            match change {
                Change::Deleted { .. } => {
                    shown.deleted = true;
                    shown.text.clear();
                    shown.reactions.clear();
                    shown.edited = None;
                    shown.reply = None;
                    shown.file = None;
                    shown.preview = None;
                }
                Change::Previewed { preview, .. } if !shown.deleted => {
                    shown.preview = Some(preview.clone());
                }
                Change::Previewed { .. } => {}
                Change::Edited { .. } if !shown.deleted => {
                    shown.text = entry.text.clone();
                    shown.edited = Some(entry.ts);
                }
                Change::Edited { .. } => {}
                Change::Reacted { reaction, .. } if !shown.deleted => {
                    let at = shown
                        .reactions
                        .iter()
                        .position(|r| r.emoji == reaction.emoji);
                    match (at, reaction.count) {
                        (Some(at), 0) => {
                            shown.reactions.remove(at);
                        }
                        (Some(at), _) => shown.reactions[at] = reaction.clone(),
                        (None, 0) => {}
                        (None, _) => shown.reactions.push(reaction.clone()),
                    }
                }
                Change::Reacted { .. } => {}
            }
        } else if let Some(quote) = &mut shown.reply
            && quote.id == target
        {
            match change {
                Change::Deleted { .. } => quote.text.clear(),
                Change::Edited { .. } if !target_deleted && !entry.text.is_empty() => {
                    quote.text = excerpt(&entry.text)
                }
                Change::Edited { .. } => {}
                Change::Reacted { .. } | Change::Previewed { .. } => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64) -> ChatMessage {
        let from = User {
            username: "a".into(),
            avatar: "x".into(),
        };
        ChatMessage::new(id, 0, from, id.to_string())
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

    #[test]
    fn edits_and_reactions_set_their_target_and_its_quotes_and_can_come_twice() {
        use crate::protocol::{Quote, Reaction};
        let mut answer = msg(2);
        answer.reply = Some(Quote {
            id: 1,
            from: "a".into(),
            text: "1".into(),
        });
        let mut entries = vec![Entry::Message(msg(1)), Entry::Message(answer)];
        let edit = ChatMessage {
            change: Some(Change::Edited { target: 1 }),
            ts: 77,
            ..ChatMessage::new(3, 77, msg(1).from, "one, edited")
        };
        let thumbs = |count, users: &[&str]| ChatMessage {
            change: Some(Change::Reacted {
                target: 1,
                reaction: Reaction {
                    emoji: "👍".into(),
                    count,
                    users: users.iter().map(|u| u.to_string()).collect(),
                },
            }),
            ..msg(4)
        };
        for _ in 0..2 {
            insert_message(&mut entries, edit.clone());
            insert_message(&mut entries, thumbs(2, &["a", "b"]));
        }
        let shown = |entries: &[Entry], i: usize| match &entries[i] {
            Entry::Message(m) => m.clone(),
            _ => panic!(),
        };
        let first = shown(&entries, 0);
        assert_eq!(
            (first.text.as_str(), first.edited),
            ("one, edited", Some(77))
        );
        assert_eq!(first.reactions.len(), 1);
        assert_eq!(first.reactions[0].count, 2);
        assert_eq!(shown(&entries, 1).reply.unwrap().text, "one, edited");
        assert_eq!(entries.len(), 2, "changes are not shown as messages");
        let before = entries[0].key();
        insert_message(&mut entries, thumbs(0, &[]));
        assert!(shown(&entries, 0).reactions.is_empty());
        assert_ne!(entries[0].key(), before, "redrawn when it changes");
        // A deletion clears everything, and its quotes.
        insert_message(
            &mut entries,
            ChatMessage {
                change: Some(Change::Deleted { target: 1 }),
                ..msg(5)
            },
        );
        insert_message(&mut entries, edit.clone());
        let first = shown(&entries, 0);
        assert!(first.deleted && first.text.is_empty() && first.edited.is_none());
        assert_eq!(shown(&entries, 1).reply.unwrap().text, "");
    }

    #[test]
    fn frames_drive_the_state() {
        // Signals live in a reactive owner, as under the page.
        let owner = Owner::new();
        owner.set();
        let chat = Chat::new("general".into());
        let me = msg(1).from;
        chat.apply(ServerFrame::Welcome {
            you: me.clone(),
            room: "general".into(),
            online: vec![me.clone()],
            online_count: 1,
            history: vec![msg(1), msg(2)],
            has_more: true,
            catching_up: false,
            heartbeat_ms: 20_000,
            admin: false,
            token: None,
        });
        assert_eq!(chat.synced_to(), Some(2));
        assert!(chat.has_more.get_untracked());
        assert_eq!(chat.last_own_message().map(|m| m.id), Some(2));
        chat.apply(ServerFrame::SearchResults {
            query: "x".into(),
            hits: vec![],
        });
        assert_eq!(chat.search.get_untracked(), Some(("x".to_string(), vec![])));
    }

    fn welcome(you: User, history: Vec<ChatMessage>) -> ServerFrame {
        ServerFrame::Welcome {
            you: you.clone(),
            room: "general".into(),
            online: vec![you],
            online_count: 1,
            history,
            has_more: false,
            catching_up: false,
            heartbeat_ms: 20_000,
            admin: false,
            token: None,
        }
    }

    #[test]
    fn a_first_welcome_replaces_the_page_history_and_later_ones_add_to_it() {
        let owner = Owner::new();
        owner.set();
        let chat = Chat::new("general".into());
        // The page as the server drew it: since then, 1 was deleted and 2 edited.
        chat.merge_messages(vec![msg(1), msg(2)]);
        chat.loading_older.set(true);
        chat.searching.set(true);
        chat.typing.set(vec!["b".into()]);
        let edited = ChatMessage {
            text: "two, edited".into(),
            edited: Some(5),
            ..msg(2)
        };
        let me = msg(1).from;
        chat.apply(welcome(me.clone(), vec![edited, msg(3)]));
        let shown = |chat: &Chat| -> Vec<(String, String)> {
            chat.entries.with_untracked(|e| {
                e.iter()
                    .filter_map(|e| match e {
                        Entry::Message(m) => Some((e.identity(), m.text.clone())),
                        Entry::Notice { .. } => None,
                    })
                    .collect()
            })
        };
        let expected = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            shown(&chat),
            expected(&[("m2", "two, edited"), ("m3", "3")])
        );
        // What was under way on an earlier connection is over.
        assert!(!chat.loading_older.get_untracked());
        assert!(!chat.searching.get_untracked());
        assert!(chat.typing.get_untracked().is_empty());
        // After a reconnection (with `since`), the welcome brings what was missed: added.
        chat.apply(welcome(me, vec![msg(4)]));
        assert_eq!(
            shown(&chat),
            expected(&[("m2", "two, edited"), ("m3", "3"), ("m4", "4")])
        );
    }

    #[test]
    fn what_the_history_shows_stored_leaves_the_outbox() {
        // Two messages were sent just before the connection dropped; the first was stored
        // (its answer was lost), the second was not. After reconnecting, the welcome's
        // history (or a catch-up page) has the first: only the second is sent again.
        let owner = Owner::new();
        owner.set();
        let chat = Chat::new("general".into());
        let me = msg(1).from;
        let pending = |id: &str| Pending {
            client_id: id.into(),
            text: id.into(),
            to: None,
            reply: None,
            file: None,
            failed: None,
        };
        chat.outbox
            .set(vec![pending("c-1"), pending("c-2"), pending("c-3")]);
        let mine = |id: u64, client_id: &str| ChatMessage {
            client_id: Some(client_id.into()),
            ..msg(id)
        };
        let someone_else = ChatMessage {
            from: User {
                username: "b".into(),
                avatar: "y".into(),
            },
            ..mine(2, "c-2") // another sender's client_id names another message
        };
        chat.apply(ServerFrame::Welcome {
            you: me.clone(),
            room: "general".into(),
            online: vec![me],
            online_count: 1,
            history: vec![mine(1, "c-1"), someone_else],
            has_more: false,
            catching_up: true,
            heartbeat_ms: 20_000,
            admin: false,
            token: None,
        });
        let left = |chat: &Chat| -> Vec<String> {
            chat.outbox
                .get_untracked()
                .into_iter()
                .map(|p| p.client_id)
                .collect()
        };
        assert_eq!(left(&chat), ["c-2", "c-3"]);
        chat.apply(ServerFrame::CatchUp {
            messages: vec![mine(3, "c-3")],
            more: false,
        });
        assert_eq!(left(&chat), ["c-2"]);
    }
}
