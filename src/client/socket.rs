//! The WebSocket task (browser only): one connection at a time, reconnecting with backoff,
//! resuming from the last id received, and (re)sending the outbox after every `welcome`.

use super::{Chat, Entry, Identity, Pending, Status};
use crate::protocol::{ClientFrame, ErrorCode, ServerFrame, close};
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
/// A connection that stayed joined this long was healthy: the next loss starts the backoff
/// over. One that ends sooner (a server that closes right after the join, again and again)
/// lets it grow.
const HEALTHY_MS: f64 = 30_000.0;
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
        let _ = window().add_event_listener_with_callback(event, listener.as_ref().unchecked_ref());
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
pub fn send_message(chat: Chat, text: String, extras: super::Extras) {
    let client_id = new_client_id();
    let super::Extras { to, reply, file } = extras;
    // After the connection stopped for good (removed, banned, signed out, replaced), nothing
    // will send it: it is shown as not sent, with why, rather than "sending" for ever.
    let failed = match chat.status.get_untracked() {
        Status::Stopped(reason) => Some(reason),
        _ => None,
    };
    chat.outbox.update(|o| {
        o.push(Pending {
            client_id,
            text,
            to,
            reply,
            file,
            failed,
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
            .any(|x| matches!(x, Entry::Message(m) if m.id == message.id))
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
    if crate::browser::has_notifications()
        && web_sys::Notification::permission() == web_sys::NotificationPermission::Granted
    {
        let title = if private {
            format!("{} (private)", message.from.username)
        } else {
            format!("{} mentioned you", message.from.username)
        };
        let options = web_sys::NotificationOptions::new();
        options.set_body(&crate::markdown::plain(&message.text));
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
        let started = js_sys::Date::now();
        let ended = match WebSocket::open(&ws_url()) {
            Ok(ws) => session(chat, ws, &identity, &mut commands).await,
            Err(_) => Ended::Lost { welcomed: false },
        };
        match ended {
            Ended::Lost { welcomed } => {
                let healthy = welcomed && js_sys::Date::now() - started >= HEALTHY_MS;
                attempt = if healthy { 1 } else { attempt + 1 };
            }
            Ended::Stop(reason) => {
                // What was waiting to be sent will not be: say so, on each.
                chat.outbox.update(|o| {
                    for p in o.iter_mut().filter(|p| p.failed.is_none()) {
                        p.failed = Some(reason.clone());
                    }
                });
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
                    // An error before the welcome answers the join: it was not taken.
                    let join_error = match &frame {
                        ServerFrame::Error { code, client_id: None, .. } if !welcomed => {
                            Some(matches!(code, ErrorCode::Unavailable | ErrorCode::RateLimited))
                        }
                        _ => None,
                    };
                    if let Some(refusal) = chat.apply(frame) {
                        chat.join_error.set(Some(refusal));
                        chat.me.set(None);
                        return Ended::Refused;
                    }
                    match join_error {
                        // The server could not take it now: again, after the backoff.
                        Some(true) => return Ended::Lost { welcomed: false },
                        // Refused for good (the name is taken now, the session ended): back
                        // to the join form, with the reason in the alert.
                        Some(false) => {
                            chat.me.set(None);
                            return Ended::Refused;
                        }
                        None => {}
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
            reply_to: p.reply.map(|q| q.id),
            file: p.file.map(|f| f.id),
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
