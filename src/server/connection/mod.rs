//! One WebSocket connection, from upgrade to cleanup.
//!
//! The socket is split. The reader (this task) parses client frames, enforces the limits and
//! talks to the hub. The sending half belongs to the connection's mailbox (`mailbox`): the
//! room's frames go into it, encoded once for everyone (`wire`), and the room's flushers
//! write them as soon as the socket takes them, several to a system call when several are
//! waiting. The writer (a spawned task) puts in this connection's own frames from its bounded
//! queue (`welcome`, errors, pongs, close requests) and pings, and writes whenever the socket
//! was full for the flushers, waiting for it.
//!
//! A client that cannot keep up is cut off with close code 4000: either it let a whole room
//! queue pile up in its mailbox, or a write could not go on within the write timeout.
//! Whichever half ends first ends the other; the leave notice is sent once, afterwards.
//!
//! Here: the reader, the dispatch of each frame and the sending of each command's [`Reply`].
//! Each command is a file of its own (`join`, `post`, `history`, `typing`) that returns what
//! to send rather than sending it; the writer is in `writer`.

mod edit;
mod history;
mod join;
mod moderate;
mod post;
mod react;
mod search;
mod target;
mod typing;
mod writer;

use super::hub::{Hub, JoinRefused};
use super::limits::{ConnectionSlot, TokenBucket};
use super::listener::Progress;
use super::mailbox::Mailbox;
use super::rooms::encode;
use super::storage::{Account, Draft, SecretKind, StoreError};
use super::websocket::{Socket, SocketWriter};
use super::wire;
use crate::protocol::{
    self, ClientFrame, DEFAULT_ROOM, ErrorCode, Invalid, ServerFrame, User, close,
};
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::time::{MissedTickBehavior, timeout};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Time given to a close frame (or to the writer to drain) before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How fast this connection sends, and how many refused frames it has sent in a row.
struct Pace {
    /// Messages.
    bucket: TokenBucket,
    /// Every other request (`join`, `history`, `typing`, `ping`): each costs a read or a
    /// fan-out, so none is free.
    requests: TokenBucket,
    /// Searches, besides: each may read far more than a page of history.
    searches: TokenBucket,
    strikes: u32,
}

/// Searches a connection may make: one every two seconds, five at once.
const SEARCHES_PER_SEC: f64 = 0.5;
const SEARCH_BURST: f64 = 5.0;

/// Who is at the other end, as known at the upgrade.
pub struct Peer {
    /// The client's address (behind a trusted proxy, the one it forwarded).
    pub ip: std::net::IpAddr,
    /// The session cookie or API token the upgrade carried, and its account then.
    pub signed_in: Option<SignedIn>,
    /// Its upgrade negotiated permessage-deflate (`deflate`): large frames go compressed.
    pub deflate: bool,
}

/// A connection's credential: checked again when it joins, since a socket may wait (pinging)
/// long after its upgrade, while its session is ended or its account banned.
pub struct SignedIn {
    pub account: Account,
    pub secret: String,
    pub kinds: &'static [SecretKind],
}

/// Who this connection is, once joined.
struct Session {
    room: String,
    user: User,
    /// The account's storage key: whose messages these are (a repeated `client_id`, private
    /// messages), never a name or an email anybody could type.
    sender_key: String,
    /// While the room is told this user is typing: when that ends unless renewed.
    typing_until: Option<tokio::time::Instant>,
    /// The account is an admin (as of the join).
    admin: bool,
}

impl Session {
    /// Tells the room this user stopped typing, if it was told they were.
    async fn stop_typing(&mut self, hub: &Hub) {
        if self.typing_until.take().is_some() {
            hub.typing(&self.room, &self.user, false).await;
        }
    }
}

/// Starts the connection's writer and returns the reader, which runs the connection to its
/// end. `slot` holds its place in the connection limits until then.
///
/// Not an `async fn`: the set-up happens here, so the socket and the writer's arguments are
/// not kept in the returned future's state for the connection's whole life.
pub fn serve(
    stream: Socket,
    sink: SocketWriter,
    progress: Progress,
    hub: Arc<Hub>,
    slot: ConnectionSlot,
    shutdown: watch::Receiver<bool>,
    peer: Peer,
) -> impl Future<Output = ()> + Send + 'static {
    hub.metrics.connections_open.fetch_add(1, Relaxed);
    hub.metrics.connections_total.fetch_add(1, Relaxed);
    let mailbox = Mailbox::new(
        hub.next_conn_id(),
        sink,
        hub.config.direct_queue,
        peer.deflate,
    );
    let writer = tokio::spawn(writer::write_loop(
        mailbox.clone(),
        shutdown,
        hub.clone(),
        progress,
    ));
    run(stream, writer, hub, mailbox, slot, peer)
}

async fn run(
    mut stream: Socket,
    mut writer: tokio::task::JoinHandle<()>,
    hub: Arc<Hub>,
    mailbox: Arc<Mailbox>,
    slot: ConnectionSlot,
    peer: Peer,
) {
    let mut session = None;
    let reader_ended = {
        // A bug that panics while handling one client's frame must not leave that client in
        // its room for good (and its socket open): the panic is caught here, and the
        // connection is cleaned up like any other.
        let reader = read_loop(&mut stream, &hub, (&mailbox, &peer), &mut session);
        let reader = std::panic::AssertUnwindSafe(reader).catch_unwind();
        // Pinned in place: a future moved into `select!` can take its room twice.
        let mut reader = std::pin::pin!(reader);
        tokio::select! {
            _ = &mut writer => false,
            read = &mut reader => {
                if read.is_err() {
                    tracing::error!("a connection's reader panicked; the connection is closed");
                    mailbox.request_close(close::INTERNAL_ERROR, "server error");
                }
                true
            }
        }
    };
    // Leaving first also drops the room's handle on our queue, so the writer sees it close.
    if let Some(mut s) = session {
        s.stop_typing(&hub).await;
        hub.leave(&s.room, &s.user, mailbox.id()).await;
    }
    if reader_ended {
        Box::pin(close_handshake(stream, &mailbox, writer)).await;
    } else {
        // The writer ended first: it sent a close frame (kicked, banned, shut down, too
        // slow), or the peer is gone. Still read until the client's answer, for the reason
        // below.
        Box::pin(await_close(stream)).await;
    }
    hub.metrics.connections_open.fetch_sub(1, Relaxed);
    drop(slot);
}

/// After the reader ended: lets the writer send what is queued (an error, a close frame),
/// then waits briefly for the client's close reply.
async fn close_handshake(
    stream: Socket,
    mailbox: &Mailbox,
    mut writer: tokio::task::JoinHandle<()>,
) {
    mailbox.finish();
    if timeout(CLOSE_TIMEOUT, &mut writer).await.is_err() {
        writer.abort();
    }
    await_close(stream).await;
}

/// Discards what the client still sends until its close (for [`CLOSE_TIMEOUT`] at most):
/// dropping the socket with unread data would make the kernel answer with a reset, and the
/// client could lose our close frame and its reason.
async fn await_close(mut stream: Socket) {
    let _ = timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Close(_) = message {
                break;
            }
        }
    })
    .await;
}

/// What the reader decided about one frame.
enum Next {
    Continue,
    Stop,
}

async fn read_loop(
    stream: &mut Socket,
    hub: &Arc<Hub>,
    (mailbox, peer): (&Arc<Mailbox>, &Peer),
    session: &mut Option<Session>,
) {
    let out: &Mailbox = mailbox;
    let config = &hub.config;
    let idle = Duration::from_millis(config.idle_timeout_ms);
    let mut pace = Pace {
        bucket: TokenBucket::new(config.rate_per_sec, config.rate_burst),
        requests: TokenBucket::new(config.requests_per_sec, config.request_burst),
        searches: TokenBucket::new(SEARCHES_PER_SEC, SEARCH_BURST),
        strikes: 0,
    };
    loop {
        let typing_ends = session.as_ref().and_then(|s| s.typing_until);
        let next = tokio::select! {
            next = timeout(idle, stream.next()) => next,
            () = sleep_until(typing_ends) => {
                if let Some(s) = session.as_mut() {
                    s.stop_typing(hub).await;
                }
                continue;
            }
        };
        let message = match next {
            Err(_) => {
                out.request_close(close::IDLE_TIMEOUT, "no heartbeat received");
                return;
            }
            Ok(None) => return,
            // Tungstenite's own (larger) cap: the frame could not even be read.
            Ok(Some(Err(e))) => {
                if is_too_big(e) {
                    too_big(out);
                }
                return;
            }
            Ok(Some(Ok(message))) => message,
        };
        hub.metrics.frames_in.fetch_add(1, Relaxed);
        let parsed = match message {
            Message::Text(text) if text.len() > config.max_frame_bytes => {
                too_big(out);
                return;
            }
            Message::Binary(data) if data.len() > config.max_frame_bytes => {
                too_big(out);
                return;
            }
            Message::Text(text) => serde_json::from_str::<ClientFrame>(&text)
                .map_err(|e| format!("not a valid frame: {e}")),
            Message::Binary(_) => {
                Err("binary frames are not supported: send JSON text frames".to_string())
            }
            // The client closes: our reply echoes its code (RFC 6455 §5.5.1), through the
            // writer, which owns the sending side.
            Message::Close(frame) => {
                let code = frame.map_or(1000, |f| u16::from(f.code));
                let code = if CloseCode::from(code).is_allowed() {
                    code
                } else {
                    1000
                };
                out.request_close(code, "");
                return;
            }
            Message::Ping(payload) => {
                // Answered through the writer; if its mailbox is full, the client is not
                // reading and a pong would not help.
                out.try_send_own(wire::Frame::pong(&payload));
                continue;
            }
            // Pongs only prove liveness. Raw frames are never produced when reading.
            Message::Pong(_) | Message::Frame(_) => continue,
        };
        let frame = match parsed {
            Ok(frame) => frame,
            Err(message) => {
                // A strike, and a request from the budget like any other frame: a stream of
                // unreadable frames between good ones cannot go on for free.
                let bad = if pace.requests.try_take(Instant::now()) {
                    Invalid {
                        code: ErrorCode::BadFrame,
                        message,
                    }
                } else {
                    hub.metrics.rate_limited_frames.fetch_add(1, Relaxed);
                    Invalid {
                        code: ErrorCode::RateLimited,
                        message: "you are sending requests too fast".into(),
                    }
                };
                if let Next::Stop = Box::pin(strike(out, hub, &mut pace.strikes, bad, None)).await {
                    return;
                }
                continue;
            }
        };
        // Boxed: handling a frame is brief next to waiting for one, and its state (store
        // calls, queue sends) would otherwise sit in every idle connection's reader.
        let next = Box::pin(handle(frame, hub, (mailbox, peer), session, &mut pace)).await;
        if let Next::Stop = next {
            return;
        }
    }
}

/// What a command answers. Commands never touch the socket or the queue: they return this,
/// and [`answer`] sends it and counts strikes, so each command is tested with a hub and no
/// socket (see the tests beside each one). Short-lived, one at a time: not worth boxing the
/// frame to make the other variants smaller.
#[allow(clippy::large_enum_variant)]
pub(super) enum Reply {
    /// Nothing for this connection alone (a broadcast reaches it like everyone in the room).
    Done,
    /// A frame for this connection only.
    Frame(ServerFrame),
    /// Refused: an error frame (with the message's `client_id`, if any) and a strike.
    Refused(Invalid, Option<String>),
    /// Storage failed: `unavailable`. Not a strike: it is not the client's doing.
    Unavailable(StoreError, Option<String>),
}

/// Acts on one well-formed client frame.
async fn handle(
    frame: ClientFrame,
    hub: &Arc<Hub>,
    (mailbox, peer): (&Arc<Mailbox>, &Peer),
    session: &mut Option<Session>,
    pace: &mut Pace,
) -> Next {
    let out: &Mailbox = mailbox;
    let is_message = matches!(frame, ClientFrame::Message { .. });
    if !is_message && !pace.requests.try_take(Instant::now()) {
        hub.metrics.rate_limited_frames.fetch_add(1, Relaxed);
        let slow_down = Invalid {
            code: ErrorCode::RateLimited,
            message: "you are sending requests too fast; this one was not answered".into(),
        };
        return strike(out, hub, &mut pace.strikes, slow_down, None).await;
    }
    // Pings and typing notices say nothing about whether the client behaves: only a join, a
    // message or a history request that was accepted clears its strikes.
    let clears_strikes = !matches!(frame, ClientFrame::Ping | ClientFrame::Typing);
    let reply = match frame {
        ClientFrame::Join {
            username,
            email,
            room,
            since,
            token,
            invite,
        } => {
            let asked = join::Asked {
                username,
                email,
                room,
                since,
                token,
                invite,
            };
            match join::join(hub, (mailbox, peer), session, asked).await {
                Ok(welcomed) => {
                    pace.strikes = 0;
                    return join::follow(out, hub, welcomed).await;
                }
                Err(reply) => reply,
            }
        }
        ClientFrame::Ping => Reply::Frame(ServerFrame::Pong),
        // Every other frame needs the connection to have joined.
        frame => match session {
            None => {
                let client_id = match frame {
                    ClientFrame::Message { client_id, .. } => client_id,
                    _ => None,
                };
                Reply::Refused(not_joined(), client_id)
            }
            Some(s) => joined(frame, hub, s, pace).await,
        },
    };
    answer(out, hub, pace, reply, clears_strikes).await
}

/// Acts on a frame of a joined connection (`join` and `ping` are handled before).
async fn joined(frame: ClientFrame, hub: &Arc<Hub>, s: &mut Session, pace: &mut Pace) -> Reply {
    match frame {
        ClientFrame::Message {
            text,
            client_id,
            to,
            reply_to,
            file,
        } => {
            // Only a public message ends "is typing" for everyone: ending it on a private
            // one would tell the whole room that something private was just sent.
            if to.is_none() {
                s.stop_typing(hub).await;
            }
            let asked = post::Asked {
                text,
                client_id,
                to,
                reply_to,
                file,
            };
            post::post(hub, s, &mut pace.bucket, asked).await
        }
        ClientFrame::Edit { id, text } => edit::edit(hub, s, &mut pace.bucket, id, text).await,
        ClientFrame::React {
            id,
            emoji,
            remove,
            toggle,
        } => {
            let asked = react::Asked {
                id,
                emoji,
                remove,
                toggle,
            };
            react::react(hub, s, &mut pace.bucket, asked).await
        }
        ClientFrame::Search { query, all_rooms } => {
            if !pace.searches.try_take(Instant::now()) {
                return post::too_fast();
            }
            search::search(hub, s, &query, all_rooms).await
        }
        ClientFrame::History { before } => history::history(hub, s, before).await,
        ClientFrame::Typing => typing::typing(hub, s).await,
        ClientFrame::Delete { id } => moderate::delete(hub, s, id).await,
        ClientFrame::Kick { username } => moderate::kick(hub, s, &username).await,
        ClientFrame::Ban { username, lift } => moderate::ban(hub, s, &username, lift).await,
        ClientFrame::Join { .. } | ClientFrame::Ping => Reply::Done,
    }
}

/// Sends a command's reply.
async fn answer(
    out: &Mailbox,
    hub: &Hub,
    pace: &mut Pace,
    reply: Reply,
    clears_strikes: bool,
) -> Next {
    match reply {
        Reply::Done | Reply::Frame(_) if clears_strikes => pace.strikes = 0,
        _ => {}
    }
    match reply {
        Reply::Done => Next::Continue,
        Reply::Frame(frame) => send(out, &frame).await,
        Reply::Refused(invalid, client_id) => {
            strike(out, hub, &mut pace.strikes, invalid, client_id).await
        }
        Reply::Unavailable(error, client_id) => unavailable(out, error, client_id).await,
    }
}

fn not_joined() -> Invalid {
    Invalid {
        code: ErrorCode::NotJoined,
        message: "join a room first".into(),
    }
}

/// Answers a bad or refused frame and counts it; too many in a row close the connection.
async fn strike(
    out: &Mailbox,
    hub: &Hub,
    strikes: &mut u32,
    invalid: Invalid,
    client_id: Option<String>,
) -> Next {
    let code = invalid.code;
    if code == ErrorCode::BadFrame {
        hub.metrics.bad_frames.fetch_add(1, Relaxed);
    }
    *strikes += 1;
    if *strikes > hub.config.max_strikes {
        let (close_code, reason) = if code == ErrorCode::RateLimited {
            (
                close::RATE_LIMITED,
                "kept sending faster than the rate limit",
            )
        } else {
            (close::PROTOCOL_ABUSE, "too many invalid or refused frames")
        };
        out.request_close(close_code, reason);
        return Next::Stop;
    }
    send_error(out, code, &invalid.message, client_id).await
}

async fn unavailable(out: &Mailbox, error: StoreError, client_id: Option<String>) -> Next {
    tracing::error!("{error}");
    let message = "the server could not store or read messages right now; nothing was sent";
    send_error(out, ErrorCode::Unavailable, message, client_id).await
}

async fn send_error(
    out: &Mailbox,
    code: ErrorCode,
    message: &str,
    client_id: Option<String>,
) -> Next {
    let frame = ServerFrame::Error {
        code,
        message: message.to_string(),
        client_id,
    };
    send(out, &frame).await
}

async fn send(out: &Mailbox, frame: &ServerFrame) -> Next {
    match out.send_own(encode(frame)).await {
        true => Next::Continue,
        false => Next::Stop, // the writer has ended
    }
}

/// Resolves at `deadline`, or never without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Closes with 1009: the frame is over `max-frame-bytes`.
fn too_big(out: &Mailbox) {
    out.request_close(close::TOO_BIG, "frame exceeds the size limit");
}

/// Whether a read error is tungstenite refusing an oversized frame or message.
fn is_too_big(error: WsError) -> bool {
    matches!(error, WsError::Capacity(_))
}

/// A hub of its own for testing commands without a socket: real storage (a SQLite file in a
/// temporary directory), real rooms, a real socket.
#[cfg(test)]
mod testing {
    use super::*;
    use crate::protocol::ChatMessage;
    use crate::server::config::HubConfig;
    use crate::server::metrics::Metrics;

    pub(super) struct Bench {
        pub(super) hub: Arc<Hub>,
        _dir: tempfile::TempDir,
    }

    /// A joined connection, read from the client's end of a real socket.
    pub(super) struct Follower {
        client: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        /// The server's side: its reading half and shutdown signal, kept open.
        _server: (
            crate::server::listener::Tracked<tokio::net::tcp::OwnedReadHalf>,
            watch::Sender<bool>,
        ),
    }

    impl Bench {
        pub(super) async fn new(adjust: impl FnOnce(&mut HubConfig)) -> Bench {
            let dir = tempfile::tempdir().unwrap();
            let mut config = HubConfig {
                database: dir.path().join("chat.db"),
                signups_per_ip_per_hour: 1_000,
                ..HubConfig::default()
            };
            adjust(&mut config);
            let hub = Hub::open(Arc::new(config), Arc::new(Metrics::default()))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            Bench {
                hub: Arc::new(hub),
                _dir: dir,
            }
        }

        pub(super) fn bucket(&self) -> TokenBucket {
            TokenBucket::new(1_000.0, 1_000.0)
        }

        /// Joins the default room as `name` (email `name@example.com`) and follows it.
        pub(super) async fn joined(&self, name: &str) -> (Session, Follower) {
            let (mailbox, (client, read, progress)) = connection(&self.hub).await;
            let (stop, stopped) = watch::channel(false);
            let hub = self.hub.clone();
            tokio::spawn(writer::write_loop(mailbox.clone(), stopped, hub, progress));
            let mut session = None;
            let asked = join::Asked {
                username: name.into(),
                email: format!("{name}@example.com"),
                room: None,
                since: None,
                token: None,
                invite: None,
            };
            let peer = anonymous();
            let joined = join::join(&self.hub, (&mailbox, &peer), &mut session, asked);
            let Ok(welcomed) = joined.await else {
                panic!("{name} could not join");
            };
            assert!(matches!(
                join::follow(&mailbox, &self.hub, welcomed).await,
                Next::Continue
            ));
            let client = tokio_tungstenite::WebSocketStream::from_raw_socket(
                client,
                tokio_tungstenite::tungstenite::protocol::Role::Client,
                None,
            )
            .await;
            let follower = Follower {
                client,
                _server: (read, stop),
            };
            (session.unwrap(), follower)
        }

        /// Posts `text` (to `to`, privately) and expects it stored.
        pub(super) async fn say(&self, session: &Session, text: &str, to: Option<&str>) {
            let asked = post::Asked {
                text: text.into(),
                client_id: None,
                to: to.map(str::to_string),
                reply_to: None,
                file: None,
            };
            let reply = post::post(&self.hub, session, &mut self.bucket(), asked).await;
            assert!(matches!(reply, Reply::Done), "{text:?} was not stored");
        }
    }

    /// A mailbox on the server's end of a real loopback connection; the client's end, and the
    /// server's reading half and progress record.
    pub(super) async fn connection(
        hub: &Hub,
    ) -> (
        Arc<Mailbox>,
        (
            tokio::net::TcpStream,
            crate::server::listener::Tracked<tokio::net::tcp::OwnedReadHalf>,
            Progress,
        ),
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let server = crate::server::listener::Tracked::new(accepted.unwrap().0);
        let progress = server.progress();
        let (read, write) = server.into_split();
        let mailbox = Mailbox::new(hub.next_conn_id(), write, hub.config.direct_queue, false);
        (mailbox, (client.unwrap(), read, progress))
    }

    /// A connection that is not signed in, from this machine.
    pub(super) fn anonymous() -> Peer {
        Peer {
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            signed_in: None,
            deflate: false,
        }
    }

    /// The next message the room delivers to this follower (its writer's view: private
    /// messages for others and join notices skipped).
    pub(super) async fn delivered(follower: &mut Follower) -> ChatMessage {
        let next = tokio::time::timeout(Duration::from_secs(5), next_message(follower));
        next.await.expect("no message was delivered")
    }

    /// Whether nothing more is delivered within a moment.
    pub(super) async fn nothing_more(follower: &mut Follower) -> bool {
        let next = tokio::time::timeout(Duration::from_millis(300), next_message(follower));
        next.await.is_err()
    }

    async fn next_message(follower: &mut Follower) -> ChatMessage {
        loop {
            let Some(Ok(Message::Text(text))) = follower.client.next().await else {
                panic!("the connection ended");
            };
            if let Ok(ServerFrame::Message(message)) = serde_json::from_str(&text) {
                return message;
            }
        }
    }
}
