//! The writer: forwards this connection's own queue and, once joined, its room's broadcasts,
//! writing whatever is ready as one vectored write of frames encoded once for everyone
//! (`wire`); cut off as a slow consumer when the client takes no bytes for the write timeout
//! or falls a whole room queue behind.

use super::*;
use wire::Frame;

/// Most frames written per batch.
const MAX_BATCH: usize = 256;

/// What the writer does next.
enum Step {
    Write(Frame),
    /// Nothing to write (e.g. a subscription was handed over).
    Idle,
    Close(u16, &'static str),
    Stop,
}

pub(super) async fn write_loop(
    mut sink: SocketWriter,
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
        let mut batch: Vec<Frame> = Vec::new();
        let step = tokio::select! {
            biased;
            () = &mut stop => Step::Close(close::GOING_AWAY, "server is shutting down"),
            item = queue.recv() => match item {
                None => Step::Stop,
                Some(item) => apply(item, &mut room),
            },
            delivery = recv_room(&mut room) => match delivery {
                Ok(delivery) => visible(&room, delivery).map_or(Step::Idle, Step::Write),
                Err(async_broadcast::RecvError::Overflowed(_)) => lagged(&mut room, metrics),
                Err(async_broadcast::RecvError::Closed) => Step::Stop,
            },
            _ = ping.tick() => Step::Write(Frame::ping()),
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
                Some(Err(async_broadcast::TryRecvError::Overflowed(_))) => {
                    if let Step::Close(code, reason) = lagged(&mut room, metrics) {
                        closing = Some((code, reason));
                    }
                }
                _ => break,
            }
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            let write = wire::write_all(&mut sink, &mut batch);
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
async fn goodbye(sink: &mut SocketWriter, room: &mut Following, code: u16, reason: &'static str) {
    // Room messages already broadcast were accepted from someone: deliver what is ready
    // before saying goodbye (a lagging reader no longer follows the room: see `lagged`).
    let mut tail = Vec::new();
    while let Some(Ok(delivery)) = room.as_mut().map(|r| r.rx.try_recv()) {
        tail.extend(visible(room, delivery));
    }
    tail.push(Frame::close(code, reason));
    let _ = timeout(CLOSE_TIMEOUT, wire::write_all(sink, &mut tail)).await;
}

/// The room a writer forwards, once joined. Boxed: a pointer in every writer's state.
type Following = Option<Box<Feed>>;

/// The message to write for a delivery, if this connection's user may see it.
fn visible(room: &Following, delivery: Delivery) -> Option<Frame> {
    let me = room.as_ref().map_or("", |r| r.me.as_str());
    delivery.is_for(me).then_some(delivery.frame)
}

fn apply(item: Outbound, room: &mut Following) -> Step {
    match item {
        Outbound::Frame(frame) => Step::Write(frame),
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
fn lagged(room: &mut Following, metrics: &crate::server::metrics::Metrics) -> Step {
    *room = None;
    slow_consumer(metrics)
}

fn slow_consumer(metrics: &crate::server::metrics::Metrics) -> Step {
    metrics.slow_consumer_drops.fetch_add(1, Relaxed);
    Step::Close(close::SLOW_CONSUMER, "too slow: fell behind the room")
}

async fn recv_room(room: &mut Following) -> Result<Delivery, async_broadcast::RecvError> {
    match room {
        Some(r) => r.rx.recv().await,
        None => std::future::pending().await,
    }
}
