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
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WireFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Most frames written per flush.
const MAX_BATCH: usize = 256;
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
    let writer = tokio::spawn(write_loop(sink, out_rx, shutdown, hub.clone(), progress));
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
            let asked = Asked {
                username: &username,
                email: &email,
                room,
                since,
            };
            join(out, hub, conn, session, &mut pace.strikes, asked).await
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
                post(out, hub, s, pace, text, client_id, to).await
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

/// What a `join` frame asked for.
struct Asked<'a> {
    username: &'a str,
    email: &'a str,
    room: Option<String>,
    since: Option<u64>,
}

/// Joins the room, sends `welcome` (and `catch_up` frames after a long absence), then has the
/// writer follow the room. A refused join counts as a strike: each one costs the server (in
/// cluster mode, Redis round trips), so guessing names cannot go on for free.
async fn join(
    out: &mpsc::Sender<Outbound>,
    hub: &Arc<Hub>,
    conn: u64,
    session: &mut Option<Session>,
    strikes: &mut u32,
    asked: Asked<'_>,
) -> Next {
    if session.is_some() {
        let again = Invalid {
            code: ErrorCode::AlreadyJoined,
            message: "this connection already joined".into(),
        };
        return strike(out, hub, strikes, again, None).await;
    }
    let checked = protocol::validate_username(asked.username).and_then(|name| {
        let email = protocol::validate_email(asked.email)?;
        let room = protocol::validate_room(asked.room.as_deref().unwrap_or(DEFAULT_ROOM))?;
        Ok((name, email, room))
    });
    let (username, email, room) = match checked {
        Ok(ok) => ok,
        Err(invalid) => return strike(out, hub, strikes, invalid, None).await,
    };
    // Only the hash leaves this function: other users never see the address.
    let user = User {
        avatar: format!("{:x}", md5::compute(email.as_bytes())),
        username,
    };
    let joined = match hub.join(&room, &user, conn, out.clone()).await {
        Ok(joined) => joined,
        Err(JoinRefused::NameTaken(holder)) => {
            let message = match holder {
                Some(holder) if holder.to_lowercase() != user.username.to_lowercase() => format!(
                    "“{}” looks too much like “{holder}”, who is in this room; pick another name",
                    user.username
                ),
                Some(holder) => format!("“{holder}” is already in this room; pick another name"),
                None => format!(
                    "“{}” is already in this room; pick another name",
                    user.username
                ),
            };
            let taken = Invalid {
                code: ErrorCode::UsernameTaken,
                message,
            };
            return strike(out, hub, strikes, taken, None).await;
        }
        Err(JoinRefused::Unavailable(e)) => return unavailable(out, e, None).await,
    };
    *strikes = 0;
    let sender_key = identity_key(&user);
    *session = Some(Session {
        room: room.clone(),
        user: user.clone(),
        sender_key: sender_key.clone(),
        typing_until: None,
    });
    let history = match hub
        .welcome_history(&room, &sender_key, asked.since, joined.watermark)
        .await
    {
        Ok(found) => found,
        Err(e) => return unavailable(out, e, None).await,
    };
    let mut last = history.messages.last().map(|m| m.id);
    let mut catching_up = history.more_after;
    let welcome = ServerFrame::Welcome {
        you: user,
        room: room.clone(),
        online: joined.online,
        online_count: joined.online_count,
        history: history.messages,
        has_more: history.has_more,
        catching_up,
        heartbeat_ms: hub.config.ping_interval_ms,
    };
    if let Next::Stop = send(out, &welcome).await {
        return Next::Stop;
    }
    // The rest of a long absence, before the writer follows the room: everything after
    // `since` reaches the client, in order, with no gap before the live messages. One page
    // at a time: the next is read only once the writer has taken the previous one, so a
    // client that reads slowly never makes the server hold the whole history for it.
    while catching_up {
        let (reached, taken) = oneshot::channel();
        if let Next::Stop = forward(out, Outbound::Reached(reached)).await {
            return Next::Stop;
        }
        if taken.await.is_err() {
            return Next::Stop;
        }
        let since = last.unwrap_or(0);
        let (messages, more) = match hub
            .resume_page(&room, &sender_key, since, joined.watermark)
            .await
        {
            Ok(found) => found,
            Err(e) => return unavailable(out, e, None).await,
        };
        last = messages.last().map(|m| m.id).or(last);
        catching_up = more && !messages.is_empty();
        let frame = ServerFrame::CatchUp {
            messages,
            more: catching_up,
        };
        if let Next::Stop = send(out, &frame).await {
            return Next::Stop;
        }
    }
    forward(out, Outbound::Subscribe(Box::new(joined.feed))).await
}

async fn post(
    out: &mpsc::Sender<Outbound>,
    hub: &Arc<Hub>,
    session: &Session,
    pace: &mut Pace,
    text: String,
    client_id: Option<String>,
    to: Option<String>,
) -> Next {
    let received = Instant::now();
    let checked = protocol::validate_text(&text).and_then(|()| {
        let chars = text.chars().count();
        if chars > hub.config.max_message_chars {
            return Err(Invalid {
                code: ErrorCode::MessageTooLong,
                message: format!(
                    "Messages are at most {} characters (this one has {chars}).",
                    hub.config.max_message_chars
                ),
            });
        }
        client_id
            .as_deref()
            .map_or(Ok(()), protocol::validate_client_id)
    });
    if let Err(invalid) = checked {
        return strike(out, hub, &mut pace.strikes, invalid, client_id).await;
    }
    if !pace.bucket.try_take(received) {
        hub.metrics.rate_limited_frames.fetch_add(1, Relaxed);
        let slow_down = Invalid {
            code: ErrorCode::RateLimited,
            message: "you are sending too fast; this message was not sent".into(),
        };
        return strike(out, hub, &mut pace.strikes, slow_down, client_id).await;
    }
    pace.strikes = 0;
    // A private message goes to someone online in this room, other than the sender.
    let to = match to {
        None => None,
        Some(name) => match hub.member(&session.room, name.trim()).await {
            Some(user) if user != session.user => {
                let key = identity_key(&user);
                Some((user, key))
            }
            _ => {
                let message = format!(
                    "“{}” is not online in this room; nothing was sent",
                    name.trim()
                );
                let absent = Invalid {
                    code: ErrorCode::RecipientNotOnline,
                    message,
                };
                return strike(out, hub, &mut pace.strikes, absent, client_id).await;
            }
        },
    };
    let draft = Draft {
        room: session.room.clone(),
        from: session.user.clone(),
        sender_key: session.sender_key.clone(),
        text,
        client_id: client_id.clone(),
        to,
    };
    match hub.post(draft).await {
        // A repeat of a message already stored: it was broadcast the first time; tell only
        // the sender, so its outbox can mark it delivered.
        Ok(appended) if appended.duplicate => {
            send(out, &ServerFrame::Message(appended.message)).await
        }
        Ok(_) => {
            hub.metrics.observe_broadcast(received.elapsed());
            Next::Continue
        }
        Err(e) => unavailable(out, e, client_id).await,
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

/// What the writer does next.
enum Step {
    Write(Message),
    /// Nothing to write (e.g. a subscription was handed over).
    Idle,
    Close(u16, &'static str),
    Stop,
}

async fn write_loop(
    mut sink: SplitSink<Socket, Message>,
    mut queue: mpsc::Receiver<Outbound>,
    mut shutdown: watch::Receiver<bool>,
    hub: Arc<Hub>,
    progress: Progress,
) {
    let metrics = &hub.metrics;
    let config = &hub.config;
    let write_timeout = Duration::from_millis(config.write_timeout_ms);
    let mut writes = (config.socket_writes_per_sec > 0.0)
        .then(|| TokenBucket::new(config.socket_writes_per_sec, config.socket_write_burst));
    let mut room: Following = None;
    // Created once and kept: a fresh `wait_for` per loop would register with (and leave) the
    // shutdown signal's waiter list, shared by every connection, for every frame sent.
    let mut stop = std::pin::pin!(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    let mut ping = tokio::time::interval(Duration::from_millis(config.ping_interval_ms));
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.reset(); // the first tick one interval from now, not immediately
    loop {
        // A fresh batch each time: idle connections should not hold a big empty buffer.
        let mut batch: Vec<Message> = Vec::new();
        let step = tokio::select! {
            biased;
            () = &mut stop => Step::Close(close::GOING_AWAY, "server is shutting down"),
            item = queue.recv() => match item {
                None => Step::Stop,
                Some(item) => apply(item, &mut room),
            },
            delivery = recv_room(&mut room) => match delivery {
                Ok(delivery) => visible(&room, delivery).map_or(Step::Idle, Step::Write),
                Err(broadcast::error::RecvError::Lagged(_)) => lagged(&mut room, metrics),
                Err(broadcast::error::RecvError::Closed) => Step::Stop,
            },
            _ = ping.tick() => Step::Write(Message::Ping(Default::default())),
        };
        let mut closing = match step {
            Step::Write(message) => {
                batch.push(message);
                None
            }
            Step::Idle => None,
            Step::Close(code, reason) => Some((code, reason)),
            Step::Stop => return,
        };
        // Over the write rate (a very busy room): wait for the next write's turn.
        if let Some(bucket) = &writes
            && closing.is_none()
            && !batch.is_empty()
        {
            let wait = bucket.wait(Instant::now());
            if !wait.is_zero() {
                // Boxed: only busy connections get here, and its state would otherwise sit in
                // every writer.
                Box::pin(pause(&room, wait, config.room_queue.max(1))).await;
            }
        }
        // Take everything else that is ready, without waiting, up to one batch.
        while closing.is_none() && batch.len() < MAX_BATCH {
            if let Ok(item) = queue.try_recv() {
                match apply(item, &mut room) {
                    Step::Write(message) => batch.push(message),
                    Step::Idle => {}
                    Step::Close(code, reason) => closing = Some((code, reason)),
                    Step::Stop => break,
                }
                continue;
            }
            match room.as_mut().map(|r| r.rx.try_recv()) {
                Some(Ok(delivery)) => batch.extend(visible(&room, delivery)),
                Some(Err(broadcast::error::TryRecvError::Lagged(_))) => {
                    if let Step::Close(code, reason) = lagged(&mut room, metrics) {
                        closing = Some((code, reason));
                    }
                }
                _ => break,
            }
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            let write = write_batch(&mut sink, &mut batch);
            let mut write = std::pin::pin!(write);
            // Almost every write completes at once (the socket has room): only a write that
            // has to wait arms the timer, which keeps a timer-wheel insert and removal off
            // the path of every delivery. A write that waits is given up on only when the
            // client has taken no bytes at all for `write-timeout-ms`: a slow link still
            // reading a large welcome is not a stalled reader.
            let written = match futures::poll!(write.as_mut()) {
                std::task::Poll::Ready(result) => Ok(result),
                std::task::Poll::Pending => {
                    let started = Instant::now();
                    let quiet = |p: &Progress| p.write_idle().min(started.elapsed());
                    tokio::select! {
                        result = write => Ok(result),
                        () = progress.stalled(quiet, write_timeout) => Err(()),
                    }
                }
            };
            match written {
                Ok(Ok(())) => {
                    metrics.frames_out.fetch_add(n, Relaxed);
                    metrics.socket_writes.fetch_add(1, Relaxed);
                    if let Some(bucket) = &mut writes {
                        bucket.try_take(Instant::now());
                    }
                }
                Ok(Err(_)) => return, // the peer is gone
                Err(_) => {
                    // The client is not reading: its socket buffer is full. A close frame
                    // could not get through either; just drop the connection.
                    slow_consumer(metrics);
                    return;
                }
            }
        }
        if let Some((code, reason)) = closing {
            // Boxed: it happens once, and its state would otherwise sit in every writer.
            Box::pin(goodbye(&mut sink, &mut room, code, reason)).await;
            return;
        }
    }
}

/// Waits `wait` before the next write, so it carries everything that arrives meanwhile. The
/// writer is not listening to the room while it waits, so broadcasts do not wake it; the room
/// hurries it when some reader has half the room queue waiting (see `Feed::hurry`).
async fn pause(room: &Following, wait: Duration, room_queue: usize) {
    let Some(room) = room else {
        return tokio::time::sleep(wait).await;
    };
    // Created before the check: a hurry sent from here on is not missed.
    let hurry = room.hurry.notified();
    if crowded(room.rx.len(), room_queue) {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = hurry => {}
    }
}

/// Delivers what is ready from the room, then sends a close frame.
async fn goodbye(
    sink: &mut SplitSink<Socket, Message>,
    room: &mut Following,
    code: u16,
    reason: &'static str,
) {
    // Room messages already broadcast were accepted from someone: deliver what is ready
    // before saying goodbye (a lagging reader no longer follows the room: see `lagged`).
    let mut tail = Vec::new();
    while let Some(Ok(delivery)) = room.as_mut().map(|r| r.rx.try_recv()) {
        tail.extend(visible(room, delivery));
    }
    let _ = timeout(CLOSE_TIMEOUT, write_batch(sink, &mut tail)).await;
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.into(),
    };
    let _ = timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}

/// Writes `batch` (emptying it) and flushes once. A text frame above [`FRAGMENT_BYTES`] goes
/// out as fragments, each flushed, so tungstenite's write buffer (which keeps its largest
/// size for the life of the connection) stays small on idle connections.
async fn write_batch(
    sink: &mut SplitSink<Socket, Message>,
    batch: &mut Vec<Message>,
) -> Result<(), WsError> {
    for message in batch.drain(..) {
        match message {
            Message::Text(text) if text.len() > FRAGMENT_BYTES => {
                sink.flush().await?;
                for fragment in fragments(text.as_str(), FRAGMENT_BYTES) {
                    sink.feed(Message::Frame(fragment)).await?;
                    sink.flush().await?;
                }
            }
            message => sink.feed(message).await?,
        }
    }
    sink.flush().await
}

/// Splits a text message into data frames of at most `max` bytes each, cut at character
/// boundaries: a text opening frame, continuations, the last one final.
fn fragments(text: &str, max: usize) -> Vec<WireFrame> {
    let mut frames = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = max.min(rest.len());
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (chunk, tail) = rest.split_at(end);
        let opcode = if frames.is_empty() {
            Data::Text
        } else {
            Data::Continue
        };
        let payload = chunk.as_bytes().to_vec();
        frames.push(WireFrame::message(
            payload,
            OpCode::Data(opcode),
            tail.is_empty(),
        ));
        rest = tail;
    }
    frames
}

/// The room a writer forwards, once joined. Boxed: a pointer in every writer's state.
type Following = Option<Box<Feed>>;

/// The message to write for a delivery, if this connection's user may see it.
fn visible(room: &Following, delivery: Delivery) -> Option<Message> {
    let me = room.as_ref().map_or("", |r| r.me.as_str());
    delivery.is_for(me).then(|| Message::Text(delivery.frame))
}

fn apply(item: Outbound, room: &mut Following) -> Step {
    match item {
        Outbound::Frame(frame) => Step::Write(Message::Text(frame)),
        Outbound::Subscribe(feed) => {
            *room = Some(feed);
            Step::Idle
        }
        Outbound::Close(code, reason) => Step::Close(code, reason),
        Outbound::Reached(tell) => {
            let _ = tell.send(());
            Step::Idle
        }
    }
}

/// The reader fell a whole room queue behind. It stops following the room before it is told
/// goodbye: after `Lagged` the channel skips to the oldest frame it still holds, so delivering
/// what is "ready" would send messages after a gap, and a client resuming from the last id it
/// saw (`since`) would never get the ones in the gap.
fn lagged(room: &mut Following, metrics: &super::metrics::Metrics) -> Step {
    *room = None;
    slow_consumer(metrics)
}

fn slow_consumer(metrics: &super::metrics::Metrics) -> Step {
    metrics.slow_consumer_drops.fetch_add(1, Relaxed);
    Step::Close(close::SLOW_CONSUMER, "too slow: fell behind the room")
}

async fn recv_room(room: &mut Following) -> Result<Delivery, broadcast::error::RecvError> {
    match room {
        Some(r) => r.rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::fragments;

    #[test]
    fn fragments_cut_at_character_boundaries_and_rejoin() {
        // 3-byte characters: a 1024-byte cut would fall inside one.
        let text = "€".repeat(1000);
        let frames = fragments(&text, 1024);
        assert_eq!(frames.len(), 3);
        let mut joined = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            assert!(frame.payload().len() <= 1024);
            assert_eq!(frame.header().is_final, i == frames.len() - 1);
            joined.extend_from_slice(frame.payload());
        }
        assert_eq!(String::from_utf8(joined).unwrap(), text);
        assert_eq!(fragments("short", 1024).len(), 1);
    }
}
