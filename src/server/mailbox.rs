//! A connection's mailbox: the frames on their way to its socket, and who writes them.
//!
//! A room's fan-out puts a broadcast's frame (encoded once: `wire`) into the mailbox of each
//! recipient, and a flusher, a short task per chunk of mailboxes spawned by the fan-out
//! ([`flush_later`]), writes each one's frames with a single non-blocking vectored write. No
//! task is woken per recipient: a message to a room of 10,000 costs a push per mailbox and a
//! system call per socket, spread over the cores a chunk at a time.
//!
//! When a socket cannot take everything (a client reading slowly), its mailbox passes to the
//! connection's own writer task, which waits for the socket and is the one that gives up on a
//! stalled client (`connection::writer`). Frames that arrive while a write is under way wait
//! here and go out together with the next write, so a busy connection's writes carry many
//! frames each: batching by readiness, with no clock.
//!
//! One party at a time writes a socket ([`Owner`]), so frames go out whole and in the order
//! they were put in. A reader that lets `room-queue` frames pile up is marked lagged, and its
//! writer cuts it off (close code 4000): one stalled client never holds memory for long, nor
//! slows anyone else.

use super::metrics::Metrics;
use super::websocket::SocketWriter;
use super::wire::{self, Frame};
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Identifies one connection, so a stale connection cannot remove its replacement.
pub type ConnId = u64;

/// Mailboxes one flusher task writes: enough that a spawn is small next to the work, few
/// enough that a big room's message is spread over every core.
const FLUSH_CHUNK: usize = 128;

/// Frames a flusher hands to one system call (Linux takes up to 1,024 slices).
const SLICES: usize = 64;

/// Who writes the socket now.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Owner {
    /// Nobody: the next frame put in schedules a flusher.
    Idle,
    /// A flusher, without waiting: it hands over to the writer if the socket fills.
    Flusher,
    /// The connection's writer task, which may wait for the socket.
    Writer,
}

struct State {
    /// Frames to write, in order; the first may be partly written already (`sent` bytes).
    queue: VecDeque<Frame>,
    sent: usize,
    /// Room frames that arrived before the connection follows its room (its `welcome` and
    /// catch-up are still on their way): they join `queue` when it does.
    held: VecDeque<Frame>,
    following: bool,
    owner: Owner,
    /// Fell `room-queue` frames behind: no more frames; the writer cuts the connection off.
    lagged: bool,
    /// The socket failed (the peer is gone): nothing more is written.
    broken: bool,
    /// Saying goodbye: the close frame is queued, and nothing more goes in after it.
    closing: bool,
    /// A close asked for: by the reader (a protocol error, the client's own close) or the
    /// rooms (replaced, banned, signed out everywhere). The first one asked is sent.
    close: Option<(u16, &'static str)>,
    /// The reader is done: the writer writes what is waiting and ends.
    finished: bool,
    /// The writer has ended: nothing more will be written.
    writer_gone: bool,
}

impl State {
    /// Drops the waiting frames but one already partly on the wire, which must be finished
    /// before anything else (a close frame) can follow it.
    fn keep_only_partial(&mut self) {
        let keep = usize::from(self.sent > 0);
        self.queue.truncate(keep);
    }
}

/// What the writer must do about the connection, besides writing.
pub enum Trouble {
    /// Fell a whole room queue behind.
    Lagged,
    /// The socket failed.
    Broken,
    /// Asked to close with this code and reason.
    Close(u16, &'static str),
    /// The reader is done (see [`Mailbox::finish`]).
    Finished,
}

pub struct Mailbox {
    id: ConnId,
    socket: SocketWriter,
    /// The client negotiated permessage-deflate: large frames go compressed.
    deflate: bool,
    /// Frames waiting beyond which the connection's own frames wait to be put in
    /// (`direct-queue`): a client asking for history and not reading it is held back.
    own_limit: usize,
    state: Mutex<State>,
    /// Wakes the connection's writer: its own frames or the mailbox passed to it, or there is
    /// [`Trouble`].
    pub wake: Notify,
    /// Frames left the queue (written, or taken to be written), or the writer ended: wakes a
    /// reader waiting to put in one of its own frames ([`Mailbox::send_own`]).
    written: Notify,
    /// Someone waits on `written` (set under the state lock): writes notify only then.
    waiting: AtomicBool,
}

impl Mailbox {
    pub fn new(id: ConnId, socket: SocketWriter, own_limit: usize, deflate: bool) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            id,
            socket,
            deflate,
            own_limit: own_limit.max(1),
            written: Notify::new(),
            waiting: AtomicBool::new(false),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                sent: 0,
                held: VecDeque::new(),
                following: false,
                owner: Owner::Idle,
                lagged: false,
                broken: false,
                closing: false,
                close: None,
                finished: false,
                writer_gone: false,
            }),
            wake: Notify::new(),
        })
    }

    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Whether the client negotiated permessage-deflate.
    pub fn deflates(&self) -> bool {
        self.deflate
    }

    pub fn socket(&self) -> &SocketWriter {
        &self.socket
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a room frame in (`deflated`, its compressed copy, if this connection takes it),
    /// unless `limit` frames are waiting already (then the connection is lagged). True when
    /// nobody is writing the socket: the caller has it flushed ([`flush_later`]).
    pub fn put(&self, frame: &Frame, deflated: Option<&Frame>, limit: usize) -> bool {
        let frame = match deflated {
            Some(deflated) if self.deflate => deflated,
            _ => frame,
        };
        let mut s = self.lock();
        if s.lagged || s.broken || s.closing {
            return false;
        }
        if s.queue.len() + s.held.len() >= limit {
            s.lagged = true;
            s.held.clear();
            s.keep_only_partial();
            drop(s);
            self.wake.notify_one();
            return false;
        }
        if !s.following {
            s.held.push_back(frame.clone());
            return false;
        }
        s.queue.push_back(frame.clone());
        if s.owner == Owner::Idle {
            s.owner = Owner::Flusher;
            return true;
        }
        false
    }

    /// Writer side: puts one of its own frames in (a ping), to write next; nothing once the
    /// goodbye is queued (the close frame is the last one a connection sends).
    pub fn put_own(&self, frame: Frame) {
        let mut s = self.lock();
        if !s.closing {
            s.queue.push_back(frame);
        }
    }

    /// Reader side: puts one of the connection's own frames in (its `welcome`, a reply), once
    /// fewer than `direct-queue` frames are waiting, and has the writer write it (or the
    /// flusher at work take it along). False if the connection's writer has ended or is
    /// saying goodbye: the reader then stops.
    pub async fn send_own(&self, frame: Frame) -> bool {
        let frame = match self.deflate.then(|| frame.deflated()).flatten() {
            Some(deflated) => deflated,
            None => frame,
        };
        let mut frame = Some(frame);
        self.when(|s| {
            if s.queue.len() >= self.own_limit {
                return false;
            }
            s.queue.extend(frame.take());
            true
        })
        .await
    }

    /// Reader side: like [`Mailbox::send_own`], but dropped rather than waited for when
    /// `direct-queue` frames are waiting (a pong: a client that does not read needs none).
    pub fn try_send_own(&self, frame: Frame) {
        let mut s = self.lock();
        if s.queue.len() < self.own_limit && !(s.writer_gone || s.broken || s.closing) {
            s.queue.push_back(frame);
            drop(s);
            self.wake.notify_one();
        }
    }

    /// Reader side: waits until the writer has taken everything put in so far (it is written,
    /// or in the write under way), so that a long catch-up goes one page at a time. False if
    /// the writer has ended.
    pub async fn drained(&self) -> bool {
        self.when(|s| s.queue.is_empty()).await
    }

    /// Waits until `ready` (called under the lock) says so, and wakes the writer. False if the
    /// writer ended first, or is saying goodbye: nothing may follow a close frame (RFC 6455,
    /// 5.5.1), and a client would fail the connection and miss the close code.
    async fn when(&self, mut ready: impl FnMut(&mut State) -> bool) -> bool {
        loop {
            // Interested before looking: a write finishing meanwhile is not missed.
            let written = self.written.notified();
            let mut written = std::pin::pin!(written);
            written.as_mut().enable();
            {
                let mut s = self.lock();
                if s.writer_gone || s.broken || s.closing {
                    return false;
                }
                if ready(&mut s) {
                    drop(s);
                    self.wake.notify_one();
                    return true;
                }
                // Under the lock: frames taken after this look see it, and tell.
                self.waiting.store(true, Relaxed);
            }
            written.await;
        }
    }

    /// Reader side: the connection follows its room from now on; the room frames held
    /// meanwhile come next.
    pub fn follow(&self) {
        let mut s = self.lock();
        s.following = true;
        let held = std::mem::take(&mut s.held);
        s.queue.extend(held);
        drop(s);
        self.wake.notify_one();
    }

    /// Reader side: the connection left its room without following it (its join failed after
    /// the room took it in): frames held for it are dropped, and a later join starts afresh.
    pub fn unfollow(&self) {
        let mut s = self.lock();
        s.following = false;
        s.held.clear();
    }

    /// Reader side: the reader is done; the writer writes what is waiting, then ends.
    pub fn finish(&self) {
        self.lock().finished = true;
        self.wake.notify_one();
    }

    /// Writer side: the writer has ended (whatever the reason).
    pub fn writer_gone(&self) {
        self.lock().writer_gone = true;
        self.written.notify_waiters();
    }

    /// After a write that finished `frames` frames: counts it, and tells a reader waiting
    /// for room.
    pub fn wrote(&self, frames: usize, metrics: &Metrics) {
        if frames > 0 {
            metrics.frames_out.fetch_add(frames as u64, Relaxed);
            metrics.socket_writes.fetch_add(1, Relaxed);
        }
        if self.waiting.swap(false, Relaxed) {
            self.written.notify_waiters();
        }
    }

    /// Asks the writer to close the connection with `code`.
    pub fn request_close(&self, code: u16, reason: &'static str) {
        self.lock().close.get_or_insert((code, reason));
        self.wake.notify_one();
    }

    /// What the writer must act on, if anything.
    pub fn trouble(&self) -> Option<Trouble> {
        let s = self.lock();
        if s.broken {
            Some(Trouble::Broken)
        } else if s.lagged {
            Some(Trouble::Lagged)
        } else if let Some((code, reason)) = s.close {
            Some(Trouble::Close(code, reason))
        } else {
            s.finished.then_some(Trouble::Finished)
        }
    }

    /// Writer side: takes the frames it should write now (up to `max`) and the bytes of the
    /// first already written, unless a flusher is at work (it writes them) or there are none.
    pub fn take(&self, batch: &mut Vec<Frame>, max: usize) -> Option<usize> {
        let mut s = self.lock();
        if s.owner == Owner::Flusher || s.broken {
            return None;
        }
        if s.queue.is_empty() {
            s.owner = Owner::Idle;
            return None;
        }
        s.owner = Owner::Writer;
        let n = s.queue.len().min(max);
        batch.extend(s.queue.drain(..n));
        Some(std::mem::take(&mut s.sent))
    }

    /// Writer side, saying goodbye: no more room frames (a lagged reader keeps only a frame
    /// already partly written), and `close` goes last.
    pub fn put_goodbye(&self, close: Frame) {
        let mut s = self.lock();
        s.closing = true;
        if s.lagged {
            s.keep_only_partial();
        }
        // Room frames already accepted from someone are delivered before the goodbye; those
        // held for a connection that never followed its room are not.
        s.held.clear();
        s.queue.push_back(close);
    }

    /// Whether everything put in is written (and no flusher is at work).
    pub fn is_drained(&self) -> bool {
        let s = self.lock();
        s.broken || (s.queue.is_empty() && s.owner != Owner::Flusher)
    }

    /// Flusher side: writes what is queued, without waiting. Called only after [`put`] said
    /// so, which made this flusher the owner.
    ///
    /// [`put`]: Mailbox::put
    fn flush(&self, batch: &mut Vec<Frame>, metrics: &Metrics) {
        loop {
            let mut s = self.lock();
            if s.broken || s.queue.is_empty() {
                s.owner = Owner::Idle;
                // A writer waiting to end (closing, or the reader done) waits for this.
                let tell = s.closing || s.close.is_some() || s.finished;
                drop(s);
                if tell {
                    self.wake.notify_one();
                }
                return;
            }
            let sent = s.sent;
            let n = s.queue.len().min(SLICES);
            batch.extend(s.queue.drain(..n));
            drop(s);
            let result = wire::write_now(&self.socket, batch, sent);
            let (done, partial) = match result {
                Ok(written) => wire::advance(batch, sent, written),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => (0, sent),
                Err(_) => {
                    let mut s = self.lock();
                    s.broken = true;
                    s.queue.clear();
                    s.owner = Owner::Idle;
                    drop(s);
                    batch.clear();
                    self.wake.notify_one();
                    return;
                }
            };
            self.wrote(done, metrics);
            if done == batch.len() {
                batch.clear();
                continue;
            }
            // The socket is full: what is left goes back in front, and to the writer.
            let mut s = self.lock();
            for frame in batch.drain(done..).rev() {
                s.queue.push_front(frame);
            }
            batch.clear();
            s.sent = partial;
            s.owner = Owner::Writer;
            drop(s);
            self.wake.notify_one();
            return;
        }
    }
}

/// Has each of `mailboxes` (which [`Mailbox::put`] made theirs to flush) written, a chunk per
/// task so that a big room's message is spread over the cores.
pub fn flush_later(mailboxes: Vec<Arc<Mailbox>>, metrics: &Arc<Metrics>) {
    if mailboxes.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // Outside a runtime (a unit test): at once.
        return flush_each(&mailboxes, metrics);
    };
    let mut rest = mailboxes.into_iter();
    loop {
        let chunk: Vec<_> = rest.by_ref().take(FLUSH_CHUNK).collect();
        if chunk.is_empty() {
            return;
        }
        let metrics = metrics.clone();
        runtime.spawn(async move { flush_each(&chunk, &metrics) });
    }
}

fn flush_each(mailboxes: &[Arc<Mailbox>], metrics: &Metrics) {
    let mut batch = Vec::new();
    for mailbox in mailboxes {
        mailbox.flush(&mut batch, metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::listener::Tracked;
    use futures::StreamExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// A mailbox on the server's end of a real loopback connection, and the client's end. The
    /// buffers are set small on both sides, so a client that does not read fills them soon
    /// whatever the kernel's defaults.
    async fn connected() -> (Arc<Mailbox>, WebSocketStream<TcpStream>, impl Sized) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let (client, accepted) = tokio::join!(
            socket.connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        let server = accepted.unwrap().0;
        socket2::SockRef::from(&server)
            .set_send_buffer_size(16 * 1024)
            .unwrap();
        let (read, write) = Tracked::new(server).into_split();
        let client = WebSocketStream::from_raw_socket(client.unwrap(), Role::Client, None).await;
        (Mailbox::new(1, write, 64, false), client, read)
    }

    async fn texts(client: &mut WebSocketStream<TcpStream>, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            match client.next().await {
                Some(Ok(Message::Text(t))) => got.push(t.to_string()),
                other => panic!("after {} frames: {other:?}", got.len()),
            }
        }
        got
    }

    /// What a connection's writer does: writes whatever the mailbox passes to it.
    fn writer(mailbox: Arc<Mailbox>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut batch = Vec::new();
            loop {
                while let Some(sent) = mailbox.take(&mut batch, 256) {
                    wire::write_all(mailbox.socket(), &mut batch, sent)
                        .await
                        .unwrap();
                }
                mailbox.wake.notified().await;
            }
        })
    }

    fn put(mailbox: &Arc<Mailbox>, text: &str, limit: usize) {
        if mailbox.put(&Frame::text(text), None, limit) {
            flush_later(vec![mailbox.clone()], &Arc::default());
        }
    }

    #[tokio::test]
    async fn room_frames_wait_for_the_welcome_and_then_come_in_order() {
        let (mailbox, mut client, _keep) = connected().await;
        let writer = writer(mailbox.clone());
        put(&mailbox, "room 1", 100); // before the connection follows: held
        mailbox.put_own(Frame::text("welcome"));
        mailbox.wake.notify_one();
        assert_eq!(texts(&mut client, 1).await, ["welcome"]);
        mailbox.follow();
        mailbox.wake.notify_one();
        put(&mailbox, "room 2", 100); // written by a flusher, or the writer if it is at work
        put(&mailbox, "room 3", 100);
        assert_eq!(texts(&mut client, 3).await, ["room 1", "room 2", "room 3"]);
        writer.abort();
    }

    #[tokio::test]
    async fn a_full_socket_passes_to_the_writer_and_nothing_is_lost_or_reordered() {
        let (mailbox, mut client, _keep) = connected().await;
        let writer = writer(mailbox.clone());
        mailbox.follow();
        // Far more than the buffers hold, while the client reads nothing: the flushers find
        // the socket full and hand over to the writer, which waits for it.
        let n = 3_000;
        let pad = "x".repeat(1_000);
        for i in 0..n {
            put(&mailbox, &format!("{i} {pad}"), n);
            if i % 100 == 0 {
                tokio::task::yield_now().await; // let the flushers at it
            }
        }
        let got = texts(&mut client, n).await;
        for (i, text) in got.iter().enumerate() {
            assert!(
                text.starts_with(&format!("{i} ")),
                "frame {i}: {}",
                &text[..10]
            );
        }
        assert!(mailbox.trouble().is_none());
        writer.abort();
    }

    #[tokio::test]
    async fn nothing_goes_after_the_close_frame() {
        // A kick while the reader is still answering: the writer queued its goodbye, then
        // the reader tries to send a reply and a pong. Neither may follow the close frame (a
        // client would fail the connection and never see why it was closed).
        let (mailbox, mut client, _keep) = connected().await;
        mailbox.follow();
        mailbox.put_goodbye(Frame::close(4006, "removed"));
        assert!(!mailbox.send_own(Frame::text("late reply")).await);
        mailbox.try_send_own(Frame::text("late pong"));
        mailbox.put_own(Frame::ping());
        assert!(!mailbox.put(&Frame::text("room"), None, 64));
        let writer = writer(mailbox.clone());
        mailbox.wake.notify_one();
        match client.next().await {
            Some(Ok(Message::Close(Some(close)))) => assert_eq!(u16::from(close.code), 4006),
            other => panic!("{other:?}"),
        }
        // Nothing after it: the stream ends, or waits (the server has not dropped the socket).
        let after = tokio::time::timeout(std::time::Duration::from_millis(300), client.next());
        match after.await {
            Err(_) | Ok(None) => {}
            Ok(Some(other)) => panic!("after the close frame: {other:?}"),
        }
        writer.abort();
    }

    #[tokio::test]
    async fn frames_held_for_a_join_that_failed_are_not_delivered_after_the_next_one() {
        let (mailbox, mut client, _keep) = connected().await;
        let writer = writer(mailbox.clone());
        put(&mailbox, "from the room the failed join was in", 100); // held: not following
        mailbox.unfollow(); // the join failed and the room let go of the connection
        mailbox.put_own(Frame::text("welcome"));
        mailbox.follow(); // the next join
        put(&mailbox, "from the new room", 100);
        mailbox.wake.notify_one();
        assert_eq!(
            texts(&mut client, 2).await,
            ["welcome", "from the new room"]
        );
        writer.abort();
    }

    #[tokio::test]
    async fn a_reader_that_lets_a_room_queue_pile_up_is_cut_off() {
        let (mailbox, _client, _keep) = connected().await;
        mailbox.follow();
        let pad = "x".repeat(1_000);
        // Nobody reads, and no writer waits for the socket: frames pile up once it is full.
        for i in 0..100_000 {
            put(&mailbox, &format!("{i} {pad}"), 64);
            tokio::task::yield_now().await; // let the flusher at it
            if mailbox.trouble().is_some() {
                break;
            }
        }
        assert!(matches!(mailbox.trouble(), Some(Trouble::Lagged)));
        // Nothing more is taken in.
        assert!(!mailbox.put(&Frame::text("late"), None, 64));
    }
}
