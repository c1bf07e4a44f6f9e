//! The writer: writes the connection's own frames (`welcome`, replies, pongs, its pings),
//! whatever its mailbox passes to it, and the close frame. Room frames are mostly written by
//! the room's flushers (`mailbox`) without waking this task; it writes when the socket filled
//! up under them, and it is the one that waits for a slow client, and cuts off a stalled one
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
}

pub(super) async fn write_loop(
    mailbox: Arc<Mailbox>,
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
    // However this task ends (even aborted), a reader waiting to put in a frame learns it.
    let _gone = Gone(&mailbox);
    loop {
        let step = tokio::select! {
            biased;
            () = &mut stop => Step::Close(close::GOING_AWAY, "server is shutting down"),
            () = mailbox.wake.notified() => Step::Write,
            _ = ping.tick() => {
                mailbox.put_own(Frame::ping());
                Step::Write
            }
        };
        let mut closing = match step {
            Step::Write => None,
            Step::Close(code, reason) => Some((code, reason)),
        };
        let mut finished = false;
        if closing.is_none() {
            closing = match mailbox.trouble() {
                None => None,
                Some(Trouble::Broken) => return, // the peer is gone
                Some(Trouble::Lagged) => Some(slow_consumer(metrics)),
                Some(Trouble::Close(code, reason)) => Some((code, reason)),
                Some(Trouble::Finished) => {
                    finished = true;
                    None
                }
            };
        }
        // Boxed: writing is brief next to waiting, and its state (the write, the stall timer)
        // would otherwise sit in every idle connection's writer.
        if closing.is_none()
            && !Box::pin(write_waiting(&mailbox, metrics, &progress, write_timeout)).await
        {
            return;
        }
        if let Some((code, reason)) = closing {
            // Boxed: it happens once, and its state would otherwise sit in every writer.
            Box::pin(goodbye(&mailbox, code, reason)).await;
            return;
        }
        // The reader is done: end once everything waiting is written. A flusher still at work
        // may yet find the socket full and pass the rest here, so wait for it rather than
        // leave frames behind (it wakes this task when it is done).
        if finished && mailbox.is_drained() {
            return;
        }
    }
}

/// Tells the mailbox when the writer ends.
struct Gone<'a>(&'a Mailbox);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.0.writer_gone();
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
        let n = batch.len();
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
            Ok(Ok(())) => mailbox.wrote(n, metrics),
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

fn slow_consumer(metrics: &crate::server::metrics::Metrics) -> (u16, &'static str) {
    metrics.slow_consumer_drops.fetch_add(1, Relaxed);
    (close::SLOW_CONSUMER, "too slow: fell behind the room")
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[tokio::test]
    async fn a_client_that_stopped_sending_still_gets_every_frame_accepted_for_it() {
        // The reader is done (the client half-closed: it sends nothing more, and reads on)
        // while a flusher is writing a backlog the socket cannot take at once. The writer
        // must not end before the flusher passes it the rest.
        let bench = Bench::new(|_| {}).await;
        let (mailbox, (client, _read, progress)) = connection(&bench.hub).await;
        // Small buffers, whatever the kernel's defaults: the backlog cannot fit in them.
        socket2::SockRef::from(mailbox.socket().get_ref().as_ref())
            .set_send_buffer_size(16 * 1024)
            .unwrap();
        socket2::SockRef::from(&client)
            .set_recv_buffer_size(4096)
            .unwrap();
        let (_stop, stopped) = watch::channel(false);
        let hub = bench.hub.clone();
        let writer = tokio::spawn(write_loop(mailbox.clone(), stopped, hub, progress));
        mailbox.follow();
        let (n, pad) = (500, "x".repeat(1_000));
        for i in 0..n {
            let frame = Frame::text(&format!("{i} {pad}"));
            if mailbox.put(&frame, None, n) {
                crate::server::mailbox::flush_later(vec![mailbox.clone()], &bench.hub.metrics);
            }
        }
        mailbox.finish();
        let mut client = tokio_tungstenite::WebSocketStream::from_raw_socket(
            client,
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        for i in 0..n {
            let next = timeout(Duration::from_secs(5), client.next()).await;
            let Ok(Some(Ok(Message::Text(text)))) = next else {
                panic!("frame {i} never came: {next:?}");
            };
            assert!(text.starts_with(&format!("{i} ")), "frame {i}");
        }
        timeout(Duration::from_secs(5), writer)
            .await
            .expect("the writer ends once everything is written")
            .unwrap();
    }

    #[tokio::test]
    async fn an_idle_writer_holds_little() {
        // Every joined connection has one, waiting: its state is per-connection memory. What
        // it needs only while writing or closing is boxed (1,008 bytes before it was).
        let bench = Bench::new(|_| {}).await;
        let (mailbox, (_client, _read, progress)) = connection(&bench.hub).await;
        let (_stop, stopped) = watch::channel(false);
        let writer = write_loop(mailbox, stopped, bench.hub.clone(), progress);
        assert!(
            size_of_val(&writer) <= 512,
            "{} bytes",
            size_of_val(&writer)
        );
    }
}
