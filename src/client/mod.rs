//! The browser's side of the chat, in three parts:
//!
//! - `state`: the [`Chat`] signals the components render, and the reducer that applies each
//!   server frame to them (plain Rust, tested natively);
//! - `compose`: reading what is typed in the message box (`/msg`, the typing line);
//! - `socket` (browser only): the WebSocket task. It reconnects by itself with exponential
//!   backoff and jitter, rejoins, and asks for what it missed (`since` = the last id it has).
//!   Messages typed while offline wait in the outbox with a `client_id`; they are (re)sent
//!   after every `welcome` until the server echoes that id back, and the server stores a
//!   repeated `client_id` only once, so a message is neither lost nor doubled.
//!
//! The functions below are what components call. They have the same signatures in the server
//! build, where they do nothing (nothing is sent while rendering), so components carry no `cfg`.

mod compose;
#[cfg(feature = "hydrate")]
mod socket;
mod state;
#[cfg(feature = "hydrate")]
mod upload;

pub use compose::{Compose, parse_compose, typing_line};
pub use state::{Attaching, Chat, Entry, Field, Identity, Pending, Status};

use crate::browser::Picked;
use crate::protocol::{Attachment, ClientFrame, Quote};
use leptos::prelude::*;

/// What goes with a message besides its text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extras {
    /// A username: the message is private to the two of you.
    pub to: Option<String>,
    /// The message it answers.
    pub reply: Option<Quote>,
    /// An uploaded file sent with it.
    pub file: Option<Attachment>,
}

/// Sends a message (through the outbox: shown as pending until the server has it).
pub fn send_message(chat: Chat, text: String, extras: Extras) {
    #[cfg(feature = "hydrate")]
    socket::send_message(chat, text, extras);
    #[cfg(not(feature = "hydrate"))]
    let _ = (chat, text, extras);
}

/// Starts uploading `file` for the message box (replacing any file there).
pub fn attach(chat: Chat, file: Picked) {
    #[cfg(feature = "hydrate")]
    upload::attach(chat, file);
    #[cfg(not(feature = "hydrate"))]
    let _ = (chat, file);
}

/// Stops the upload under way, or takes the uploaded file out of the message box.
pub fn cancel_attachment(chat: Chat) {
    #[cfg(feature = "hydrate")]
    upload::cancel(chat);
    #[cfg(not(feature = "hydrate"))]
    chat.attaching.set(None);
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
    send_frame(chat, ClientFrame::Delete { id });
}

/// Whether frames sent now reach the server (edits and searches are not kept for later, like
/// messages in the outbox are).
fn connected(chat: Chat) -> bool {
    chat.status.get_untracked() == Status::Online
}

/// Replaces the text of this user's message `id`; shown when the server's change comes back.
/// False (nothing sent) while not connected.
pub fn edit_message(chat: Chat, id: u64, text: String) -> bool {
    if !connected(chat) {
        return false;
    }
    send_frame(chat, ClientFrame::Edit { id, text });
    true
}

/// Adds this user's `emoji` reaction to message `id`, or (`toggle`) takes it back if they
/// had it and adds it otherwise, as the server finds it.
pub fn react(chat: Chat, id: u64, emoji: String, toggle: bool) {
    let frame = ClientFrame::React {
        id,
        emoji,
        remove: false,
        toggle,
    };
    send_frame(chat, frame);
}

/// Searches this room (or every room); the hits arrive in `chat.search`. False (nothing
/// sent) while not connected.
pub fn search(chat: Chat, query: String, all_rooms: bool) -> bool {
    if !connected(chat) {
        return false;
    }
    chat.searching.set(true);
    send_frame(chat, ClientFrame::Search { query, all_rooms });
    true
}

/// Sends an admin's frame (`kick`, `ban`) or another request on the current connection;
/// dropped when not connected (the person sees nothing happen, and can try again).
pub fn send_frame(chat: Chat, frame: ClientFrame) {
    #[cfg(feature = "hydrate")]
    socket::send_frame(chat, frame);
    #[cfg(not(feature = "hydrate"))]
    let _ = (chat, frame);
}
