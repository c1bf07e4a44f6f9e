//! Counters for `/metrics`, in the Prometheus text format.
//!
//! Plain atomics rather than a metrics crate: the set is small and fixed, updates sit on the
//! hot path (one relaxed add each), and the exposition format is a few lines of text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the broadcast latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Default)]
pub struct Metrics {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    /// Flushed batches: `frames_out / socket_writes` is the average batch size.
    pub socket_writes: AtomicU64,
    /// Messages accepted and stored.
    pub messages_stored: AtomicU64,
    /// Message frames handed to local room subscribers (one per recipient).
    pub deliveries: AtomicU64,
    pub slow_consumer_drops: AtomicU64,
    pub rate_limited_frames: AtomicU64,
    /// Link previews made, and links not fetched (a private address, a failure, no page).
    pub link_previews: AtomicU64,
    pub link_previews_refused: AtomicU64,
    pub bad_frames: AtomicU64,
    pub rejected_upgrades_origin: AtomicU64,
    pub rejected_upgrades_capacity: AtomicU64,
    pub rejected_upgrades_per_ip: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Records the time from a message frame arriving to its broadcast being queued for
    /// every recipient (validation, storage and fan-out).
    pub fn observe_broadcast(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            if secs <= bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_micros
            .fetch_add(took.as_micros() as u64, Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP hubbub_{name} {help}\n# TYPE hubbub_{name} {kind}"
            );
            let _ = writeln!(out, "hubbub_{name} {value}");
        };
        counter(
            "connections",
            "gauge",
            "Open WebSocket connections.",
            self.connections_open.load(Relaxed),
        );
        counter(
            "connections_total",
            "counter",
            "WebSocket connections accepted.",
            self.connections_total.load(Relaxed),
        );
        counter(
            "frames_in_total",
            "counter",
            "Frames received from clients.",
            self.frames_in.load(Relaxed),
        );
        counter(
            "frames_out_total",
            "counter",
            "Frames written to clients.",
            self.frames_out.load(Relaxed),
        );
        counter(
            "socket_writes_total",
            "counter",
            "Batches of frames written to clients, one flush each.",
            self.socket_writes.load(Relaxed),
        );
        counter(
            "messages_stored_total",
            "counter",
            "Chat messages accepted and stored.",
            self.messages_stored.load(Relaxed),
        );
        counter(
            "deliveries_total",
            "counter",
            "Chat messages queued to local recipients.",
            self.deliveries.load(Relaxed),
        );
        counter(
            "slow_consumer_drops_total",
            "counter",
            "Connections closed because they could not keep up.",
            self.slow_consumer_drops.load(Relaxed),
        );
        counter(
            "rate_limited_frames_total",
            "counter",
            "Message frames refused by the rate limit.",
            self.rate_limited_frames.load(Relaxed),
        );
        counter(
            "link_previews_total",
            "counter",
            "Link previews fetched and sent.",
            self.link_previews.load(Relaxed),
        );
        counter(
            "link_previews_refused_total",
            "counter",
            "Links not previewed: a private address, an error, or no page to show.",
            self.link_previews_refused.load(Relaxed),
        );
        counter(
            "bad_frames_total",
            "counter",
            "Frames that were not valid protocol frames.",
            self.bad_frames.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP hubbub_rejected_upgrades_total WebSocket upgrades refused, by reason."
        );
        let _ = writeln!(out, "# TYPE hubbub_rejected_upgrades_total counter");
        for (reason, v) in [
            ("origin", &self.rejected_upgrades_origin),
            ("capacity", &self.rejected_upgrades_capacity),
            ("per_ip", &self.rejected_upgrades_per_ip),
        ] {
            let _ = writeln!(
                out,
                "hubbub_rejected_upgrades_total{{reason=\"{reason}\"}} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hubbub_broadcast_latency_seconds From message frame received to broadcast queued."
        );
        let _ = writeln!(out, "# TYPE hubbub_broadcast_latency_seconds histogram");
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(
                out,
                "hubbub_broadcast_latency_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "hubbub_broadcast_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "hubbub_broadcast_latency_seconds_sum {sum}");
        let _ = writeln!(out, "hubbub_broadcast_latency_seconds_count {count}");
        out
    }
}
