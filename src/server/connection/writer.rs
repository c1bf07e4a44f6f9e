//! The writer: the connection's own queue (`welcome`, replies, pongs, close requests), its
//! pings, and whatever its mailbox passes to it. Room frames are mostly written by the
//! room's flushers (`mailbox`) without waking this task; it writes when the socket filled up
//! under them, and it is the one that waits for a slow client, and cuts off a stalled one
//! (no bytes taken for the write timeout, or a whole room queue behind).

use super::*;
use crate::server::mailbox::{Mailbox, Trouble};
use wire::Frame;

/// Most frames written per batch.
const MAX_BATCH: usize = 256;

/// What the writer does next.
enum Step {
    /// Write what is waiting.
    Write,
    Close(u16, &'static str),
    Stop,
}

pub(super) async fn write_loop(
    mailbox: Arc<Mailbox>,
    mut queue: mpsc::Receiver<Outbound>,
    mut shutdown: watch::Receiver<bool>,
    hub: Arc<Hub>,
    progress: Progress,
) {
    let metrics = &hub.metrics;
    let config = &hub.config;
    let write_timeout = Duration::from_millis(config.write_timeout_ms);
    // Created once and kept: a fresh `wait_for` per loop would register with (and leave) the
    // shutdown signal's waiter list, shared by every connection, for every wake-up.
    let mut stop = std::pin::pin!(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    let mut ping = tokio::time::interval(Duration::from_millis(config.ping_interval_ms));
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.reset(); // the first tick one interval from now, not immediately
    loop {
        let step = tokio::select! {
            biased;
            () = &mut stop => Step::Close(close::GOING_AWAY, "server is shutting down"),
            item = queue.recv() => match item {
                None => Step::Stop,
                Some(item) => apply(item, &mailbox),
            },
            () = mailbox.wake.notified() => Step::Write,
            _ = ping.tick() => {
                mailbox.put_own(Frame::ping());
                Step::Write
            }
        };
        let mut closing = match step {
            Step::Write => None,
            Step::Close(code, reason) => Some((code, reason)),
            Step::Stop => return,
        };
        // Everything else already in the queue goes into the same write.
        while closing.is_none()
            && let Ok(item) = queue.try_recv()
        {
            match apply(item, &mailbox) {
                Step::Write => {}
                Step::Close(code, reason) => closing = Some((code, reason)),
                Step::Stop => break,
            }
        }
        if closing.is_none() {
            closing = match mailbox.trouble() {
                None => None,
                Some(Trouble::Broken) => return, // the peer is gone
                Some(Trouble::Lagged) => Some(slow_consumer(metrics)),
                Some(Trouble::Close(code, reason)) => Some((code, reason)),
            };
        }
        if closing.is_none() && !write_waiting(&mailbox, metrics, &progress, write_timeout).await {
            return;
        }
        if let Some((code, reason)) = closing {
            // Boxed: it happens once, and its state would otherwise sit in every writer.
            Box::pin(goodbye(&mailbox, code, reason)).await;
            return;
        }
    }
}

/// Writes whatever the mailbox gives this writer, until it gives nothing (empty, or a flusher
/// is at work). False when the connection is over: the peer is gone, or it took no bytes for
/// `write_timeout` (a slow consumer).
async fn write_waiting(
    mailbox: &Mailbox,
    metrics: &crate::server::metrics::Metrics,
    progress: &Progress,
    write_timeout: Duration,
) -> bool {
    let mut batch = Vec::new();
    while let Some(sent) = mailbox.take(&mut batch, MAX_BATCH) {
        let n = batch.len() as u64;
        let write = wire::write_all(mailbox.socket(), &mut batch, sent);
        let mut write = std::pin::pin!(write);
        // Almost every write completes at once (the socket has room): only a write that has
        // to wait arms the timer, which keeps a timer-wheel insert and removal off the path
        // of every frame. A write that waits is given up on only when the client has taken
        // no bytes at all for `write-timeout-ms`: a slow link still reading a large welcome
        // is not a stalled reader.
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
            }
            Ok(Err(_)) => return false,
            Err(()) => {
                // The client is not reading: its socket buffer is full. A close frame could
                // not get through either; just drop the connection.
                slow_consumer(metrics);
                return false;
            }
        }
    }
    true
}

/// Writes what is waiting (room frames already accepted from someone included, unless the
/// reader lagged), then a close frame, within [`CLOSE_TIMEOUT`].
async fn goodbye(mailbox: &Mailbox, code: u16, reason: &'static str) {
    mailbox.put_goodbye(Frame::close(code, reason));
    let _ = timeout(CLOSE_TIMEOUT, async {
        let mut batch = Vec::new();
        loop {
            // Interested before looking: a flusher finishing meanwhile is not missed.
            let finished = mailbox.wake.notified();
            if let Some(sent) = mailbox.take(&mut batch, MAX_BATCH) {
                if wire::write_all(mailbox.socket(), &mut batch, sent)
                    .await
                    .is_err()
                {
                    return;
                }
            } else if mailbox.is_drained() {
                return;
            } else {
                finished.await; // a flusher is at work: it tells when it is done
            }
        }
    })
    .await;
}

fn apply(item: Outbound, mailbox: &Mailbox) -> Step {
    match item {
        Outbound::Frame(frame) => {
            mailbox.put_own(frame);
            Step::Write
        }
        Outbound::Follow => {
            mailbox.follow();
            Step::Write
        }
        Outbound::Close(code, reason) => Step::Close(code, reason),
        Outbound::Reached(tell) => {
            // Everything before it is in the mailbox, on its way out: this writer writes it
            // before it waits for anything else, and a client that does not read is cut off.
            let _ = tell.send(());
            Step::Write
        }
    }
}

fn slow_consumer(metrics: &crate::server::metrics::Metrics) -> (u16, &'static str) {
    metrics.slow_consumer_drops.fetch_add(1, Relaxed);
    (close::SLOW_CONSUMER, "too slow: fell behind the room")
}
