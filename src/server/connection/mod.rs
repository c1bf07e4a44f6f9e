//! One WebSocket connection, from upgrade to cleanup.
//!
//! The socket is split. The reader (this task) parses client frames, enforces the limits and
//! talks to the hub. The writer (a spawned task) owns the sending half and forwards two
//! sources: this connection's own bounded queue (`welcome`, errors, pongs, close requests)
//! and, after joining, the room's broadcast channel. It writes whatever is ready as one batch
//! (feed, feed, ..., one flush), so a busy room costs one syscall per batch, not per message.
//! In a very busy room the writer also paces itself (`socket-writes-per-sec`, 50 by default):
//! past that rate it waits for its next turn, so each write carries more frames. A write costs
//! the server far more than the frames in it, and 20 ms of batching is invisible in a chat.
//!
//! A client that cannot keep up is cut off with close code 4000: either it fell a whole room
//! queue behind (`Lagged`), or a batch could not be written within the write timeout.
//! Whichever half ends first ends the other; the leave notice is sent once, afterwards.
//!
//! Here: the reader and the dispatch of each frame. The commands with rules of their own are
//! in files of their own (`join`, `post`); the writer is in `writer`.

mod join;
mod post;
mod writer;

use super::hub::{Hub, JoinRefused};
use super::limits::{ConnectionSlot, TokenBucket};
use super::listener::Progress;
use super::rooms::{Delivery, Feed, Outbound, crowded, encode};
use super::storage::Draft;
use super::websocket::{FRAGMENT_BYTES, Socket};
use crate::protocol::{
    self, ClientFrame, DEFAULT_ROOM, ErrorCode, Invalid, ServerFrame, User, close,
};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{MissedTickBehavior, timeout};
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
    strikes: u32,
}

/// Who this connection is, once joined.
struct Session {
    room: String,
    user: User,
    /// Name and avatar: what makes a repeated `client_id` "the same user".
    sender_key: String,
    /// While the room is told this user is typing: when that ends unless renewed.
    typing_until: Option<tokio::time::Instant>,
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
    socket: Socket,
    progress: Progress,
    hub: Arc<Hub>,
    slot: ConnectionSlot,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    hub.metrics.connections_open.fetch_add(1, Relaxed);
    hub.metrics.connections_total.fetch_add(1, Relaxed);
    let conn = hub.next_conn_id();
    let (sink, stream) = socket.split();
    let (out, out_rx) = mpsc::channel(hub.config.direct_queue.max(4));
    let writer = tokio::spawn(writer::write_loop(
        sink,
        out_rx,
        shutdown,
        hub.clone(),
        progress,
    ));
    run(stream, out, writer, hub, conn, slot)
}

async fn run(
    mut stream: SplitStream<Socket>,
    out: mpsc::Sender<Outbound>,
    mut writer: tokio::task::JoinHandle<()>,
    hub: Arc<Hub>,
    conn: u64,
    slot: ConnectionSlot,
) {
    let mut session = None;
    let reader_ended = {
        // Pinned in place: a future moved into `select!` can take its room twice.
        let mut reader = std::pin::pin!(read_loop(&mut stream, &out, &hub, conn, &mut session));
        tokio::select! {
            _ = &mut writer => false,
            () = &mut reader => true,
        }
    };
    // Leaving first also drops the room's handle on our queue, so the writer sees it close.
    if let Some(mut s) = session {
        s.stop_typing(&hub).await;
        hub.leave(&s.room, &s.user, conn).await;
    }
    if reader_ended {
        Box::pin(close_handshake(stream, out, writer)).await;
    }
    hub.metrics.connections_open.fetch_sub(1, Relaxed);
    drop(slot);
}

/// After the reader ended: lets the writer send what is queued (an error, a close frame),
/// then waits briefly for the client's close reply.
async fn close_handshake(
    mut stream: SplitStream<Socket>,
    out: mpsc::Sender<Outbound>,
    mut writer: tokio::task::JoinHandle<()>,
) {
    drop(out);
    if timeout(CLOSE_TIMEOUT, &mut writer).await.is_err() {
        writer.abort();
    }
    // Discard what the client still sends until its close: dropping the socket with unread
    // data would make the kernel answer with a reset, and the client could lose our close
    // frame and its reason.
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
    stream: &mut SplitStream<Socket>,
    out: &mpsc::Sender<Outbound>,
    hub: &Arc<Hub>,
    conn: u64,
    session: &mut Option<Session>,
) {
    let config = &hub.config;
    let idle = Duration::from_millis(config.idle_timeout_ms);
    let mut pace = Pace {
        bucket: TokenBucket::new(config.rate_per_sec, config.rate_burst),
        requests: TokenBucket::new(config.requests_per_sec, config.request_burst),
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
                let _ = out
                    .send(Outbound::Close(
                        close::IDLE_TIMEOUT,
                        "no heartbeat received",
                    ))
                    .await;
                return;
            }
            Ok(None) => return,
            // Tungstenite's own (larger) cap: the frame could not even be read.
            Ok(Some(Err(e))) => {
                if is_too_big(e) {
                    too_big(out).await;
                }
                return;
            }
            Ok(Some(Ok(message))) => message,
        };
        hub.metrics.frames_in.fetch_add(1, Relaxed);
        let parsed = match message {
            Message::Text(text) if text.len() > config.max_frame_bytes => {
                too_big(out).await;
                return;
            }
            Message::Binary(data) if data.len() > config.max_frame_bytes => {
                too_big(out).await;
                return;
            }
            Message::Text(text) => serde_json::from_str::<ClientFrame>(&text)
                .map_err(|e| format!("not a valid frame: {e}")),
            Message::Binary(_) => {
                Err("binary frames are not supported: send JSON text frames".to_string())
            }
            Message::Close(_) => return,
            // Pings are answered by the WebSocket layer; pongs only prove liveness.
            // Raw frames are never produced when reading.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
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
        let next = Box::pin(handle(frame, out, hub, conn, session, &mut pace)).await;
        if let Next::Stop = next {
            return;
        }
    }
}

/// Acts on one well-formed client frame.
async fn handle(
    frame: ClientFrame,
    out: &mpsc::Sender<Outbound>,
    hub: &Arc<Hub>,
    conn: u64,
    session: &mut Option<Session>,
    pace: &mut Pace,
) -> Next {
    let config = &hub.config;
    let is_message = matches!(frame, ClientFrame::Message { .. });
    if !is_message && !pace.requests.try_take(Instant::now()) {
        hub.metrics.rate_limited_frames.fetch_add(1, Relaxed);
        let slow_down = Invalid {
            code: ErrorCode::RateLimited,
            message: "you are sending requests too fast; this one was not answered".into(),
        };
        return strike(out, hub, &mut pace.strikes, slow_down, None).await;
    }
    match frame {
        ClientFrame::Join {
            username,
            email,
            room,
            since,
        } => {
            let asked = join::Asked {
                username: &username,
                email: &email,
                room,
                since,
            };
            join::join(out, hub, conn, session, &mut pace.strikes, asked).await
        }
        ClientFrame::Message {
            text,
            client_id,
            to,
        } => match session {
            None => strike(out, hub, &mut pace.strikes, not_joined(), client_id).await,
            Some(s) => {
                // Only a public message ends "is typing" for everyone: ending it on a private
                // one would tell the whole room that something private was just sent.
                if to.is_none() {
                    s.stop_typing(hub).await;
                }
                post::post(out, hub, s, pace, text, client_id, to).await
            }
        },
        ClientFrame::History { before } => match session {
            None => strike(out, hub, &mut pace.strikes, not_joined(), None).await,
            Some(s) => match hub
                .page(
                    &s.room,
                    Some(&s.sender_key),
                    Some(before),
                    u64::MAX,
                    config.history_limit,
                )
                .await
            {
                Ok((messages, has_more)) => {
                    pace.strikes = 0;
                    send(out, &ServerFrame::History { messages, has_more }).await
                }
                Err(e) => unavailable(out, e, None).await,
            },
        },
        ClientFrame::Ping => send(out, &ServerFrame::Pong).await,
        ClientFrame::Typing => match session {
            None => strike(out, hub, &mut pace.strikes, not_joined(), None).await,
            Some(s) => {
                // Announced once; repeats only push the end back (a natural throttle).
                if s.typing_until.is_none() {
                    hub.typing(&s.room, &s.user, true).await;
                }
                let timeout = Duration::from_millis(config.typing_timeout_ms);
                s.typing_until = Some(tokio::time::Instant::now() + timeout);
                Next::Continue
            }
        },
    }
}
/// Who a user is for storage: the name (any case) with the email's hash. It is what makes a
/// repeated `client_id` "the same sender" and whom a private message belongs to.
fn identity_key(user: &User) -> String {
    format!("{}\n{}", user.username.to_lowercase(), user.avatar)
}

fn not_joined() -> Invalid {
    Invalid {
        code: ErrorCode::NotJoined,
        message: "join a room first".into(),
    }
}

/// Answers a bad or refused frame and counts it; too many in a row close the connection.
async fn strike(
    out: &mpsc::Sender<Outbound>,
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
        let _ = out.send(Outbound::Close(close_code, reason)).await;
        return Next::Stop;
    }
    send_error(out, code, &invalid.message, client_id).await
}

async fn unavailable(
    out: &mpsc::Sender<Outbound>,
    error: super::storage::StoreError,
    client_id: Option<String>,
) -> Next {
    tracing::error!("{error}");
    let message = "the server could not store or read messages right now; nothing was sent";
    send_error(out, ErrorCode::Unavailable, message, client_id).await
}

async fn send_error(
    out: &mpsc::Sender<Outbound>,
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

async fn send(out: &mpsc::Sender<Outbound>, frame: &ServerFrame) -> Next {
    forward(out, Outbound::Frame(encode(frame))).await
}

async fn forward(out: &mpsc::Sender<Outbound>, item: Outbound) -> Next {
    match out.send(item).await {
        Ok(()) => Next::Continue,
        Err(_) => Next::Stop, // the writer has ended
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
async fn too_big(out: &mpsc::Sender<Outbound>) {
    let _ = out
        .send(Outbound::Close(
            close::TOO_BIG,
            "frame exceeds the size limit",
        ))
        .await;
}

/// Whether a read error is tungstenite refusing an oversized frame or message.
fn is_too_big(error: WsError) -> bool {
    matches!(error, WsError::Capacity(_))
}
