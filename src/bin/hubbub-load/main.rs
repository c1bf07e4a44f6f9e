//! `hubbub-load`: a load generator for hubbub (and for the two seed servers it replaced).
//!
//! Opens N WebSocket clients in one room, lets S of them send (at a fixed rate, or closed-loop:
//! each sender sends its next message when its previous one came back), optionally keeps some
//! clients that never read, and reports deliveries per second, delivery latency percentiles,
//! lost messages and, given the server's pid, its RSS per connection and CPU per delivery.
//!
//! ```text
//! hubbub-load --url ws://127.0.0.1:3000/ws --clients 1000 --senders 10 --rate 10 --seconds 20 --pid 1234
//! hubbub-load --url ... --clients 1000 --senders 20 --closed-loop --seconds 20
//! hubbub-load --url ... --clients 10000 --senders 0 --seconds 5 --pid 1234   # idle memory
//! hubbub-load --url ... --clients 1000 --senders 10 --rate 10 --stalled 10
//! hubbub-load --protocol seed001 --url ws://127.0.0.1:18001/ws ...
//! hubbub-load --url ws://127.0.0.1:3001/ws --url ws://127.0.0.1:3002/ws --pid 11 --pid 12 ...   # cluster nodes
//! ```
//!
//! Latency is measured from the sender's clock to the receiver's, both in this process.
//! Everything runs on one machine with the server, so the generator is kept cheap per frame
//! (`client`: a hand-written WebSocket client, no JSON parse of what it receives) and reports
//! its own CPU beside the server's: a run where it needed more is marked SUSPECT.

mod client;

use clap::{Parser, ValueEnum};
use client::{Reader, Received, Writer};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Notify;

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Protocol {
    /// hubbub's protocol: join, then `message` frames.
    Hubbub,
    /// Seed 000 (the tutorial): JSON `{email, username, message}` relayed to everyone.
    Seed000,
    /// Seed 001 (the minimal hub): any text frame relayed to everyone.
    Seed001,
}

#[derive(Parser, Debug)]
#[command(about = "Load generator for hubbub's /ws hub")]
struct Args {
    /// WebSocket URL(s); clients are spread over them round-robin (cluster nodes).
    #[arg(long, required = true)]
    url: Vec<String>,
    #[arg(long, value_enum, default_value = "hubbub")]
    protocol: Protocol,
    /// Clients that connect and read.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// How many of the clients also send.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages per second per sender (fixed load).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Closed loop instead of a fixed rate: each sender waits for its own message to come back.
    #[arg(long)]
    closed_loop: bool,
    /// Extra clients that join but never read a byte.
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// How long to send, after everyone is connected.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Message text length in bytes (padding after the header).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Room to join (hubbub protocol).
    #[arg(long, default_value = "load")]
    room: String,
    /// Spread the clients over this many rooms (`load-0`, `load-1`…, client i in room
    /// i mod rooms): many small rooms, e.g. `--clients 20000 --rooms 10000` for rooms of two.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Offer permessage-deflate (as browsers do), and report the bytes read per delivery.
    #[arg(long)]
    deflate: bool,
    /// Pad messages with words (a fixed pseudo-random sequence) instead of dots, so that
    /// compression sees something like chat text.
    #[arg(long)]
    words: bool,
    /// The server's pid, to report its RSS per connection and CPU per delivery. Repeat it for
    /// several nodes (`--pid 11 --pid 12`): their RSS and CPU are added up.
    #[arg(long)]
    pid: Vec<u32>,
    /// A label for the report line.
    #[arg(long, default_value = "")]
    label: String,
    /// hubbub: a file of `name token` lines. Clients whose name (`lg0`, `lg1`…) has a token
    /// there present it as `Authorization: Bearer` on the upgrade, as a bot does; the others
    /// create their account with their join and the token it gives is added to the file. So
    /// a second run against the same server joins as the same accounts (without the file, it
    /// is refused: the names have accounts).
    #[arg(long)]
    tokens: Option<std::path::PathBuf>,
}

/// Log-scaled latency histogram (about 2% resolution), shared by all receivers.
struct Histogram {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
}

const GROWTH: f64 = 1.02;

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: (0..1200).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }
    fn record(&self, us: u64) {
        let i = (((us + 1) as f64).ln() / GROWTH.ln()) as usize;
        self.buckets[i.min(self.buckets.len() - 1)].fetch_add(1, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }
    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }
    fn percentile(&self, p: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return f64::NAN;
        }
        let target = (total as f64 * p).ceil() as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= target {
                return GROWTH.powi(i as i32 + 1) - 1.0;
            }
        }
        self.max_us.load(Relaxed) as f64
    }
}

struct Shared {
    args: Args,
    start: Instant,
    latency: Histogram,
    /// Messages received by reading clients (one per recipient).
    delivered: AtomicU64,
    /// Messages sent, all senders together.
    sent: AtomicU64,
    /// Only deliveries of messages sent inside the measured window count for latency.
    measuring: AtomicBool,
    /// Readers whose connection ended early (dropped by the server, or an error).
    disconnected: AtomicU64,
    /// One notifier per sender, poked when its own message comes back (closed loop).
    echoes: Vec<Notify>,
    /// Tokens by client name: from `--tokens`, plus the ones joins gave this run.
    tokens: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// Reads a `--tokens` file (missing: none yet).
fn read_tokens(path: &std::path::Path) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, token)| (name.to_string(), token.trim().to_string()))
        .collect()
}

/// The text a sender puts in a message: who, which, and when (µs since start).
fn payload(shared: &Shared, sender: usize, seq: u64) -> String {
    let us = shared.start.elapsed().as_micros();
    let mut text = format!("lg {sender} {seq} {us} ");
    let header = text.len();
    if shared.args.words {
        const WORDS: [&str; 16] = [
            "the",
            "deploy",
            "is",
            "green",
            "again",
            "after",
            "we",
            "rolled",
            "back",
            "that",
            "migration",
            "so",
            "please",
            "retry",
            "your",
            "branch",
        ];
        let mut state = seq
            .wrapping_mul(6364136223846793005)
            .wrapping_add(sender as u64 | 1);
        while text.len() < shared.args.size {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(WORDS[(state >> 60) as usize]);
            text.push(' ');
        }
        text.truncate(shared.args.size.max(header));
        return text;
    }
    while text.len() < shared.args.size {
        text.push('.');
    }
    text
}

fn frame(shared: &Shared, i: usize, text: String) -> String {
    match shared.args.protocol {
        Protocol::Hubbub => serde_json::json!({"type": "message", "text": text}).to_string(),
        Protocol::Seed000 => serde_json::json!({
            "email": format!("lg{i}@load.test"),
            "username": format!("lg{i}"),
            "message": text,
        })
        .to_string(),
        Protocol::Seed001 => text,
    }
}

/// Finds the payload text ("lg sender seq µs ....") in a received frame without parsing it:
/// a full JSON parse of every frame made the generator, on the same cores, slower than the
/// servers it measured (and its backlog then showed as the servers' latency). The payload is
/// plain ASCII, so it appears in the JSON as it was sent; only what follows it is ignored.
fn received_text(protocol: Protocol, frame: &[u8]) -> Option<&[u8]> {
    let find = |needle: &[u8]| frame.windows(needle.len()).position(|w| w == needle);
    let at = match protocol {
        Protocol::Seed001 => return frame.starts_with(b"lg ").then_some(frame),
        // hubbub's message frames begin with their tag; other frames (welcome, joined) are
        // skipped, even when they quote a payload.
        Protocol::Hubbub if !frame.starts_with(br#"{"type":"message""#) => return None,
        Protocol::Hubbub => find(br#""text":"lg "#)? + br#""text":""#.len(),
        Protocol::Seed000 => find(br#""message":"lg "#)? + br#""message":""#.len(),
    };
    Some(&frame[at..])
}

/// The decimal number at the start of `bytes`, and what follows its end (a space).
fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let end = bytes.iter().position(|b| !b.is_ascii_digit())?;
    let mut n = 0u64;
    for b in &bytes[..end] {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (end > 0).then(|| (n, bytes.get(end + 1..).unwrap_or_default()))
}

/// Connects client `i`; a stalled one gets a tiny receive buffer, so that not reading
/// backs up into the server quickly instead of into megabytes of kernel buffers.
async fn connect(shared: &Shared, i: usize, stalled: bool) -> Result<(Reader, Writer), String> {
    let urls = &shared.args.url;
    let url = &urls[i % urls.len()];
    let fail = |e: &dyn std::fmt::Display| format!("client {i}: connect {url}: {e}");
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| fail(&"bad URL"))?;
    let addr = tokio::net::lookup_host(authority)
        .await
        .map_err(|e| fail(&e))?
        .next()
        .ok_or_else(|| fail(&"no address"))?;
    let stream = if stalled {
        // On loopback the MSS is ~64 KiB and the kernel sizes the server's send buffer for it
        // (megabytes): a client that never reads would take minutes to push back. Advertising
        // an Ethernet MSS and a small window makes it push back as it would over a network.
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .map_err(|e| fail(&e))?;
        socket.set_tcp_mss(1460).map_err(|e| fail(&e))?;
        socket.set_recv_buffer_size(4096).map_err(|e| fail(&e))?;
        socket.connect(&addr.into()).map_err(|e| fail(&e))?;
        socket.set_nonblocking(true).map_err(|e| fail(&e))?;
        TcpStream::from_std(socket.into()).map_err(|e| fail(&e))?
    } else {
        TcpStream::connect(addr).await.map_err(|e| fail(&e))?
    };
    let name = format!("lg{i}");
    let known = shared
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name)
        .cloned();
    let mut headers = Vec::new();
    if let (Some(token), Protocol::Hubbub) = (&known, shared.args.protocol) {
        headers.push(format!("Authorization: Bearer {token}"));
    }
    if shared.args.deflate {
        headers.push("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits".into());
    }
    let (mut reader, writer) = client::handshake(stream, url, &headers)
        .await
        .map_err(|e| fail(&e))?;
    if shared.args.protocol == Protocol::Hubbub {
        let room = match shared.args.rooms {
            0 | 1 => shared.args.room.clone(),
            n => format!("{}-{}", shared.args.room, i % n),
        };
        let join = serde_json::json!({
            "type": "join", "username": name,
            "email": format!("lg{i}@load.test"), "room": room,
        });
        client::send_text(&writer, &join.to_string())
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let text = match reader.next().await {
                Ok(Some(Received::Text(t))) => String::from_utf8_lossy(t).into_owned(),
                other => {
                    let why = match other {
                        Err(e) => e.to_string(),
                        _ => "closed".into(),
                    };
                    return Err(format!("client {i}: no welcome: {why}"));
                }
            };
            if text.contains("\"welcome\"") {
                // A new account's token, for the next run.
                let welcome: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(token) = welcome["token"].as_str() {
                    let mut tokens = shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
                    tokens.insert(name.clone(), token.to_string());
                }
                break;
            }
            if text.contains("\"error\"") {
                return Err(format!("client {i}: join refused: {text}"));
            }
        }
    }
    Ok((reader, writer))
}

/// Reads until the end, recording every load message's latency. Client `me` is also sender
/// `me` when `me < senders`: its own echo releases its next message in closed-loop mode.
async fn read_loop(shared: Arc<Shared>, me: usize, mut reader: Reader) {
    while let Ok(Some(Received::Text(frame))) = reader.next().await {
        let Some(text) = received_text(shared.args.protocol, frame) else {
            continue;
        };
        // "lg sender seq µs ...."
        let Some((sender, rest)) = text.strip_prefix(b"lg ").and_then(number) else {
            continue;
        };
        let sent_us = number(rest)
            .and_then(|(_seq, rest)| number(rest))
            .map_or(0, |(us, _)| us);
        let now_us = shared.start.elapsed().as_micros() as u64;
        if shared.measuring.load(Relaxed) {
            shared.delivered.fetch_add(1, Relaxed);
            shared.latency.record(now_us.saturating_sub(sent_us));
        }
        if sender == me as u64
            && let Some(n) = shared.echoes.get(me)
        {
            n.notify_one();
        }
    }
    shared.disconnected.fetch_add(1, Relaxed);
}

async fn send_loop(shared: Arc<Shared>, sender: usize, client: usize, tx: Writer, until: Instant) {
    let mut seq = 0u64;
    let mut ticker =
        tokio::time::interval(Duration::from_secs_f64(1.0 / shared.args.rate.max(0.001)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Spread fixed-rate senders over the first interval instead of sending in lockstep.
    if !shared.args.closed_loop {
        let offset = ticker
            .period()
            .mul_f64(sender as f64 / shared.args.senders.max(1) as f64);
        tokio::time::sleep(offset).await;
    }
    while Instant::now() < until {
        if shared.args.closed_loop {
            // Wait for the previous message to come back (or give up after a second).
            if seq > 0 {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), shared.echoes[sender].notified())
                        .await;
            }
        } else {
            ticker.tick().await;
        }
        let text = payload(&shared, sender, seq);
        if client::send_text(&tx, &frame(&shared, client, text))
            .await
            .is_err()
        {
            return;
        }
        shared.sent.fetch_add(1, Relaxed);
        seq += 1;
    }
    // Keep the connection open so the last messages come back.
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

/// `hubbub_slow_consumer_drops_total` from the server's `/metrics`.
async fn slow_consumer_drops(addr: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("hubbub_slow_consumer_drops_total "))
        .and_then(|v| v.trim().parse().ok())
}

/// (RSS in KiB, CPU ticks) of all the server processes together.
fn servers_stats(pids: &[u32]) -> Option<(u64, u64)> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold((0, 0), |(rss, ticks), &pid| {
        let (r, t) = proc_stats(pid)?;
        Some((rss + r, ticks + t))
    })
}

/// (RSS in KiB, CPU ticks) of a process, from /proc.
fn proc_stats(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

/// Clock ticks per second for /proc CPU times (USER_HZ): 100 on Linux.
const TICKS_PER_SEC: f64 = 100.0;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.senders > args.clients {
        eprintln!("--senders cannot exceed --clients");
        std::process::exit(2);
    }
    let senders = args.senders;
    let args_tokens = args.tokens.as_deref().map(read_tokens).unwrap_or_default();
    let shared = Arc::new(Shared {
        echoes: (0..senders).map(|_| Notify::new()).collect(),
        args,
        start: Instant::now(),
        latency: Histogram::new(),
        delivered: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        disconnected: AtomicU64::new(0),
        tokens: std::sync::Mutex::new(args_tokens),
    });
    let args = &shared.args;
    let pids = &args.pid;
    let before = servers_stats(pids);

    // Connect one at a time: seed 000 crashes when clients connect concurrently.
    let connect_started = Instant::now();
    let mut sinks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let (rx, tx) = match connect(&shared, i, false).await {
            Ok(ws) => ws,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };
        tokio::spawn(read_loop(shared.clone(), i, rx));
        sinks.push(tx);
    }
    let mut stalled = Vec::with_capacity(args.stalled);
    for i in 0..args.stalled {
        match connect(&shared, args.clients + i, true).await {
            Ok(ws) => stalled.push(ws), // never polled again
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    if let Some(path) = &args.tokens {
        let tokens = shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines: Vec<String> = tokens.iter().map(|(n, t)| format!("{n} {t}")).collect();
        lines.sort();
        if let Err(e) = std::fs::write(path, lines.join("\n") + "\n") {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
    // Let the server settle (join notices, allocations) before measuring memory and CPU.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected = servers_stats(pids);
    let own_connected = proc_stats(std::process::id());

    shared.measuring.store(true, Relaxed);
    let wire_start = client::WIRE_BYTES.load(Relaxed);
    let window_start = Instant::now();
    let until = window_start + Duration::from_secs_f64(args.seconds);
    for (sender, tx) in sinks.drain(..senders).enumerate() {
        tokio::spawn(send_loop(shared.clone(), sender, sender, tx, until));
    }
    // hubbub counts the slow consumers it drops: note when all stalled clients are gone.
    let stalled_gone = Arc::new(AtomicU64::new(0));
    if args.stalled > 0 && args.protocol == Protocol::Hubbub {
        let metrics_addr = args.url[0]
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_string();
        let (gone, want) = (stalled_gone.clone(), args.stalled as f64);
        tokio::spawn(async move {
            loop {
                if slow_consumer_drops(&metrics_addr)
                    .await
                    .is_some_and(|n| n >= want)
                {
                    gone.store(window_start.elapsed().as_millis() as u64 + 1, Relaxed);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    tokio::time::sleep_until(until.into()).await;
    let sent_in_window = shared.sent.load(Relaxed);
    let cpu_end = servers_stats(pids);
    let own_end = proc_stats(std::process::id());
    // Give the last messages time to arrive, then count what is missing.
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    let readers = args.clients as u64;
    loop {
        let expected =
            shared.sent.load(Relaxed) * (readers - shared.disconnected.load(Relaxed).min(readers));
        if shared.delivered.load(Relaxed) >= expected || Instant::now() > drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let window = args.seconds;
    let wire = client::WIRE_BYTES.load(Relaxed) - wire_start;
    let delivered = shared.delivered.load(Relaxed);
    let sent = shared.sent.load(Relaxed);
    let dropped_readers = shared.disconnected.load(Relaxed);
    let expected = sent * readers;
    let lost = expected.saturating_sub(delivered);
    let h = &shared.latency;
    let ms = |us: f64| us / 1000.0;
    let label = if args.label.is_empty() {
        format!("{:?}", args.protocol).to_lowercase()
    } else {
        args.label.clone()
    };
    println!(
        "{label}: clients={} senders={} stalled={} mode={} seconds={window}",
        args.clients,
        senders,
        args.stalled,
        if args.closed_loop {
            "closed-loop".to_string()
        } else {
            format!("{}/s/sender", args.rate)
        },
    );
    println!(
        "  connect: {:.1}s for {} clients",
        connect_secs,
        args.clients + args.stalled
    );
    println!(
        "  sent={sent} (in window {sent_in_window}) delivered={delivered} lost={lost} readers_disconnected={dropped_readers}"
    );
    println!(
        "  deliveries/s={:.0} wire_bytes_per_delivery={:.0}{}",
        delivered as f64 / window,
        wire as f64 / delivered.max(1) as f64,
        if args.deflate {
            " (permessage-deflate offered)"
        } else {
            ""
        }
    );
    println!(
        "  latency_ms p50={:.2} p99={:.2} p999={:.2} max={:.2}",
        ms(h.percentile(0.50)),
        ms(h.percentile(0.99)),
        ms(h.percentile(0.999)),
        ms(h.max_us.load(Relaxed) as f64)
    );
    if let (Some((rss0, _)), Some((rss1, cpu1)), Some((_, cpu2))) = (before, connected, cpu_end) {
        let conns = (args.clients + args.stalled).max(1) as f64;
        let cpu_secs = (cpu2.saturating_sub(cpu1)) as f64 / TICKS_PER_SEC;
        println!(
            "  server: rss_before={rss0}KiB rss_connected={rss1}KiB rss_per_conn={:.2}KiB cpu_s={cpu_secs:.2} deliveries_per_cpu_s={:.0} cpu_us_per_delivery={:.2}",
            (rss1 as f64 - rss0 as f64) / conns,
            if cpu_secs > 0.0 {
                delivered as f64 / cpu_secs
            } else {
                f64::NAN
            },
            if delivered > 0 {
                cpu_secs * 1e6 / delivered as f64
            } else {
                f64::NAN
            },
        );
        // The generator shares the cores: if it needed more CPU than the server, frames may
        // have waited for it rather than for the server, and the latencies say so little.
        if let (Some((_, own1)), Some((_, own2))) = (own_connected, own_end) {
            let own_secs = (own2.saturating_sub(own1)) as f64 / TICKS_PER_SEC;
            let verdict = if own_secs > cpu_secs {
                " SUSPECT: the generator used more CPU than the server"
            } else {
                ""
            };
            println!("  generator: cpu_s={own_secs:.2}{verdict}");
        }
    }
    if args.stalled > 0 {
        // A stalled client the server dropped has its buffered frames, then an end; one it
        // still holds is simply silent.
        let mut ended = 0;
        for (reader, _writer) in &mut stalled {
            let finished = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(Some(Received::Text(_))) = reader.next().await {}
            })
            .await;
            ended += finished.is_ok() as usize;
        }
        let when = match stalled_gone.load(Relaxed) {
            0 => "n/a".to_string(),
            ms => format!("{:.2}s", (ms - 1) as f64 / 1000.0),
        };
        println!(
            "  stalled: dropped_by_server={ended}/{} all_dropped_after={when}",
            args.stalled
        );
    }
    std::process::exit(0);
}
