//! `hubbub-search-bench`: how long search takes in a room with a long history.
//!
//! Stores `--messages` messages (100,000 by default) in one room of a fresh database (a
//! temporary SQLite file, or the PostgreSQL database given with `--database`, which should be
//! empty), through the same storage seam the server uses, then runs each kind of query
//! `--runs` times and prints its latency percentiles and hit counts.
//!
//! ```text
//! cargo run --release --features ssr --bin hubbub-search-bench
//! cargo run --release --features ssr --bin hubbub-search-bench -- --database postgres://…
//! ```

use clap::Parser;
use hubbub::protocol::User;
use hubbub::server::storage::{Draft, Location, Storage};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Search latency in a room with a long history")]
struct Args {
    /// Messages stored in the room before searching.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Times each query runs.
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// A PostgreSQL URL (an empty database); a temporary SQLite file without it.
    #[arg(long)]
    database: Option<String>,
}

/// Words chat messages are made of here: each is in about one message of six. Queries: a rare
/// word (10 messages), a word in every other message, common words, a phrase, a stopword
/// and a word that is nowhere.
const WORDS: &[&str] = &[
    "the",
    "team",
    "shipped",
    "release",
    "after",
    "fixing",
    "login",
    "bug",
    "deploy",
    "failed",
    "on",
    "staging",
    "again",
    "coffee",
    "meeting",
    "moved",
    "to",
    "tomorrow",
    "review",
    "my",
    "pull",
    "request",
    "please",
    "lunch",
    "anyone",
    "build",
    "is",
    "green",
    "red",
    "tests",
    "flaky",
    "database",
    "migration",
    "running",
    "customer",
    "reported",
    "slow",
    "page",
    "we",
    "should",
    "rollback",
    "now",
    "thanks",
    "great",
    "work",
    "everyone",
    "weekend",
    "plans",
    "server",
    "restarted",
    "metrics",
    "look",
    "fine",
    "latency",
    "spiked",
    "at",
    "noon",
];

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = tempfile_dir();
    let location = match &args.database {
        Some(url) => Location::Postgres(url.clone()),
        None => Location::Sqlite(dir.join("search-bench.db")),
    };
    let opened = Storage::open(&location, Box::new(|_, _, _| {}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let storage = opened.storage;
    let user = User {
        username: "bench".into(),
        avatar: "0".repeat(32),
    };
    let started = Instant::now();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        // xorshift: the same history on every run.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut pending = Vec::new();
    for i in 0..args.messages {
        let words = 6 + (next() % 10) as usize;
        let mut text: Vec<&str> = (0..words)
            .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
            .collect();
        // A rare word, in one message of 10,000; a very common one, in every other message.
        if i % 10_000 == 5_000 {
            text.push("kittens");
        }
        if i % 2 == 0 {
            text.push("lgtm");
        }
        let draft = Draft::message("bench", user.clone(), "account:1", text.join(" "));
        let storage = storage.clone();
        pending.push(tokio::spawn(async move { storage.append(draft).await }));
        if pending.len() == 1_024 {
            for p in pending.drain(..) {
                p.await.unwrap().unwrap();
            }
        }
    }
    for p in pending.drain(..) {
        p.await.unwrap().unwrap();
    }
    println!(
        "stored {} messages in {:.1} s ({})",
        args.messages,
        started.elapsed().as_secs_f64(),
        if args.database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "{:<34} {:>6} {:>9} {:>9} {:>9}",
        "query", "hits", "p50 ms", "p99 ms", "max ms"
    );
    for query in [
        "kittens",
        "lgtm",
        "release",
        "deploy failed",
        "the",
        "latency spiked at noon",
        "zebra",
    ] {
        let mut times: Vec<Duration> = Vec::with_capacity(args.runs);
        let mut hits = 0;
        for _ in 0..args.runs {
            let t = Instant::now();
            hits = storage
                .search(
                    Some("bench"),
                    "account:2",
                    query,
                    hubbub::protocol::SEARCH_RESULTS,
                )
                .await
                .unwrap()
                .len();
            times.push(t.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "{:<34} {:>6} {:>9.2} {:>9.2} {:>9.2}",
            format!("{query:?}"),
            hits,
            ms(at(0.50)),
            ms(at(0.99)),
            ms(*times.last().unwrap())
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hubbub-search-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
