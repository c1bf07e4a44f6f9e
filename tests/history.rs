//! No message lost: stored history, resume with `since`, `client_id` de-duplication, paging,
//! restarts (including `kill -9` of the real binary) and start-up failures.

mod common;

use common::*;
use hubbub::protocol::{ChatMessage, ServerFrame};
use serde_json::json;

fn history_of(welcome: ServerFrame) -> (Vec<ChatMessage>, bool) {
    match welcome {
        ServerFrame::Welcome {
            history, has_more, ..
        } => (history, has_more),
        other => panic!("expected welcome, got {other:?}"),
    }
}

fn texts(messages: &[ChatMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.text.as_str()).collect()
}

#[tokio::test]
async fn joining_delivers_the_recent_history() {
    let server = TestServer::with(|c| c.history_limit = 5).await;
    let mut alice = server.joined("alice").await;
    for i in 0..8 {
        alice.say(&format!("m{i}")).await;
        alice.recv_message().await;
    }
    let mut bob = server.client().await;
    let (history, has_more) = history_of(bob.join("bob").await);
    assert_eq!(texts(&history), ["m3", "m4", "m5", "m6", "m7"]);
    assert!(has_more);
}

#[tokio::test]
async fn scrolling_up_pages_through_older_messages() {
    let server = TestServer::with(|c| c.history_limit = 3).await;
    let mut alice = server.joined("alice").await;
    for i in 0..7 {
        alice.say(&format!("m{i}")).await;
        alice.recv_message().await;
    }
    let mut bob = server.client().await;
    let (history, _) = history_of(bob.join("bob").await);
    assert_eq!(texts(&history), ["m4", "m5", "m6"]);
    let mut before = history[0].id;
    let mut pages = Vec::new();
    loop {
        bob.send_json(json!({"type": "history", "before": before}))
            .await;
        let ServerFrame::History { messages, has_more } = bob.recv().await else {
            panic!("expected history")
        };
        before = messages[0].id;
        pages.push(texts(&messages).join(","));
        if !has_more {
            break;
        }
    }
    assert_eq!(pages, ["m1,m2,m3", "m0"]);
}

#[tokio::test]
async fn since_returns_exactly_the_missed_messages() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    alice.say("seen 1").await;
    alice.say("seen 2").await;
    bob.recv_message().await;
    let last_seen = bob.recv_message().await.id;
    alice.recv_message().await;
    alice.recv_message().await;
    drop(bob);
    for i in 0..3 {
        alice.say(&format!("missed {i}")).await;
    }
    for _ in 0..3 {
        alice.recv_message().await;
    }
    let mut back = server.client().await;
    let (history, has_more) = history_of(
        back.join_as("bob", "bob@example.com", Some(last_seen))
            .await,
    );
    assert_eq!(texts(&history), ["missed 0", "missed 1", "missed 2"]);
    assert!(has_more, "older messages exist before the resumed ones");
    // Live again: new messages arrive normally, once.
    alice.say("live").await;
    assert_eq!(back.recv_message().await.text, "live");
    // A client that is up to date gets nothing.
    let latest = history.last().unwrap().id + 1; // "live"
    let mut fresh = server.client().await;
    let (history, _) = history_of(fresh.join_as("carol", "c@example.com", Some(latest)).await);
    assert!(history.is_empty(), "{history:?}");
}

#[tokio::test]
async fn edits_reactions_and_deletions_reach_a_resuming_client_in_order() {
    use hubbub::protocol::Change;
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    alice.say("one").await;
    alice.say("two").await;
    let one = bob.recv_message().await.id;
    let two = bob.recv_message().await.id;
    alice.recv_message().await;
    alice.recv_message().await;
    drop(bob);

    // While bob is away: an edit, a reaction and a deletion, each a change entry.
    alice
        .send_json(serde_json::json!({"type":"edit","id":one,"text":"one, fixed ✓"}))
        .await;
    alice
        .send_json(serde_json::json!({"type":"react","id":one,"emoji":":+1:"}))
        .await;
    alice
        .send_json(serde_json::json!({"type":"delete","id":two}))
        .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(alice.recv_message().await.id);
    }

    let mut back = server.client().await;
    let (history, _) = history_of(back.join_as("bob", "bob@example.com", Some(two)).await);
    assert_eq!(
        history.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids,
        "the three changes, in the order they were made"
    );
    assert_eq!(history[0].change, Some(Change::Edited { target: one }));
    assert_eq!(history[0].text, "one, fixed ✓");
    let Some(Change::Reacted { target, reaction }) = &history[1].change else {
        panic!("not a reaction: {:?}", history[1]);
    };
    assert_eq!(
        (*target, reaction.emoji.as_str(), reaction.count),
        (one, "👍", 1)
    );
    assert_eq!(reaction.users, ["alice"]);
    assert_eq!(history[2].change, Some(Change::Deleted { target: two }));
}

#[tokio::test]
async fn a_repeated_client_id_is_stored_and_broadcast_once() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    let send = json!({"type": "message", "text": "only once", "client_id": "abc-1"});
    alice.send_json(send.clone()).await;
    let first = alice.recv_message().await;
    assert_eq!(
        first.client_id.as_deref(),
        Some("abc-1"),
        "echoed to the sender"
    );
    // The retry after a reconnect: same user, same client_id, new connection.
    drop(alice);
    let mut alice = server.client().await;
    alice.join("alice").await;
    alice.send_json(send).await;
    let again = alice.recv_message().await;
    assert_eq!(again, first, "the sender learns it was already delivered");
    // Everyone else saw it once.
    assert_eq!(bob.recv_message().await, first);
    bob.assert_alive().await;
    assert_eq!(
        bob.raw.iter().filter(|f| f.contains("only once")).count(),
        1
    );
    // Another user may use the same client_id for their own message.
    bob.send_json(json!({"type": "message", "text": "bob's", "client_id": "abc-1"}))
        .await;
    assert_eq!(bob.recv_message().await.text, "bob's");
}

#[tokio::test]
async fn history_survives_a_graceful_restart() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    alice.say("before restart").await;
    let before = alice.recv_message().await;
    let dir = server.shutdown().await;
    let hub = test_config(dir.path());
    let server = TestServer::start_in(dir, hub).await;
    let mut bob = server.client().await;
    let (history, _) = history_of(bob.join("bob").await);
    assert_eq!(history, vec![before.clone()]);
    bob.say("after restart").await;
    assert!(
        bob.recv_message().await.id > before.id,
        "ids keep increasing"
    );
}

#[tokio::test]
async fn acknowledged_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dir.path().join("chat.db"));
    let server = Process::start(&config, None).await;
    let mut alice = Client::connect(&server.url()).await;
    alice.join("alice").await;
    let mut acknowledged = Vec::new();
    for i in 0..50 {
        alice.say(&format!("m{i}")).await;
    }
    // The echo of a message is its acknowledgement: it is stored before it is broadcast.
    for _ in 0..50 {
        acknowledged.push(alice.recv_message().await);
    }
    let addr = server.addr;
    server.kill9().await;
    let server = Process::start(&config, Some(addr)).await;
    let mut bob = Client::connect(&server.url()).await;
    let (history, _) = history_of(bob.join_as("bob", "b@example.com", Some(0)).await);
    assert_eq!(history, acknowledged);
}

#[tokio::test]
async fn the_server_page_contains_the_recent_history_escaped() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    alice.say("server rendered :wave:").await;
    alice.say("<script>alert(1)</script>").await;
    alice.recv_message().await;
    alice.recv_message().await;
    let (status, page) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("server rendered 👋"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>alert(1)"));
    // Another room's page does not show it.
    let (status, page) = server.get("/r/elsewhere").await;
    assert_eq!(status, 200);
    assert!(!page.contains("server rendered"));
}

async fn start_failure(db: &std::path::Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), db);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubbub"))
        .env("HUBBUB_CONFIG", &config)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "started with a bad database");
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[tokio::test]
async fn a_corrupt_database_fails_at_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("corrupt.db");
    std::fs::write(&db, vec![0x5a; 64 * 1024]).unwrap();
    let stderr = start_failure(&db).await;
    assert!(
        stderr.contains("cannot open the message database"),
        "{stderr}"
    );
    assert!(stderr.contains("corrupt.db"), "{stderr}");
}

#[tokio::test]
async fn an_unwritable_database_path_fails_at_start_up_with_a_clear_message() {
    let stderr = start_failure(std::path::Path::new("/proc/hubbub/nope.db")).await;
    assert!(
        stderr.contains("cannot open the message database"),
        "{stderr}"
    );
    assert!(stderr.contains("/proc/hubbub/nope.db"), "{stderr}");
}

/// Joins `room` as `name` on a new connection; returns the client and its welcome.
async fn join_room(
    server: &TestServer,
    name: &str,
    room: &str,
    since: Option<u64>,
) -> (Client, ServerFrame) {
    let mut c = server.client().await;
    let email = format!("{name}@example.com");
    let welcome = c.join_room_as(name, &email, Some(room), since).await;
    (c, welcome)
}

#[tokio::test]
async fn a_resume_longer_than_the_resume_limit_catches_up_without_a_gap() {
    let server = TestServer::with(|c| c.resume_limit = 5).await;
    let mut alice = server.joined("alice").await;
    alice.say("seen").await;
    let last_seen = alice.recv_message().await.id;
    for i in 0..13 {
        alice.say(&format!("missed {i}")).await;
        alice.recv_message().await;
    }
    let mut back = server.client().await;
    let welcome = back
        .join_as("bob", "bob@example.com", Some(last_seen))
        .await;
    let ServerFrame::Welcome {
        history,
        catching_up,
        ..
    } = welcome
    else {
        unreachable!()
    };
    assert!(catching_up, "the welcome says more follows");
    let mut got: Vec<String> = history.iter().map(|m| m.text.clone()).collect();
    assert_eq!(got.len(), 5);
    // The rest arrives in catch_up frames, in order, before anything live.
    let mut frames = 0;
    loop {
        match back.recv().await {
            ServerFrame::CatchUp { messages, more } => {
                frames += 1;
                assert!(messages.len() <= 5);
                got.extend(messages.into_iter().map(|m| m.text));
                if !more {
                    break;
                }
            }
            other => panic!("expected catch_up, got {other:?}"),
        }
    }
    assert_eq!(frames, 2);
    let expected: Vec<String> = (0..13).map(|i| format!("missed {i}")).collect();
    assert_eq!(got, expected);
    alice.say("live").await;
    assert_eq!(back.recv_message().await.text, "live");
    // Exactly at the limit: everything in the welcome, nothing more to catch up.
    let mut exact = server.client().await;
    let (_, ids) = {
        let w = exact
            .join_as("carol", "carol@example.com", Some(last_seen + 9))
            .await;
        let ServerFrame::Welcome {
            history,
            catching_up,
            ..
        } = w
        else {
            unreachable!()
        };
        assert!(!catching_up);
        (catching_up, history.len())
    };
    assert_eq!(ids, 5);
    exact.assert_alive().await;
}

#[tokio::test]
async fn a_client_id_is_scoped_to_its_room() {
    let server = TestServer::start().await;
    let (mut in_a, _) = join_room(&server, "alice", "room-a", None).await;
    let send = json!({"type": "message", "text": "hello a", "client_id": "same-id"});
    in_a.send_json(send).await;
    let first = in_a.recv_message().await;
    let (mut in_b, _) = join_room(&server, "alice", "room-b", None).await;
    in_b.send_json(json!({"type": "message", "text": "hello b", "client_id": "same-id"}))
        .await;
    let second = in_b.recv_message().await;
    assert_eq!(
        second.text, "hello b",
        "room b got its own message, not room a's"
    );
    assert_ne!(second.id, first.id);
    // Each room's history holds its own message.
    let (_, welcome) = join_room(&server, "bob", "room-b", None).await;
    let (history, _) = history_of(welcome);
    assert_eq!(texts(&history), ["hello b"]);
    let (_, welcome) = join_room(&server, "bob", "room-a", None).await;
    let (history, _) = history_of(welcome);
    assert_eq!(texts(&history), ["hello a"]);
    // And a resend in room b is still recognised as a resend.
    in_b.send_json(json!({"type": "message", "text": "hello b", "client_id": "same-id"}))
        .await;
    assert_eq!(in_b.recv_message().await, second);
}

#[tokio::test]
async fn a_database_written_by_the_previous_release_opens_and_keeps_its_history() {
    // The schema and data as the previous release (schema version 1) wrote them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE messages (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, room TEXT NOT NULL, ts INTEGER NOT NULL,
                 username TEXT NOT NULL, avatar TEXT NOT NULL, text TEXT NOT NULL,
                 sender_key TEXT NOT NULL, client_id TEXT,
                 to_username TEXT, to_avatar TEXT, recipient_key TEXT);
             CREATE INDEX messages_by_room ON messages (room, id);
             CREATE UNIQUE INDEX messages_by_client_id
                 ON messages (sender_key, client_id) WHERE client_id IS NOT NULL;
             PRAGMA user_version = 1;",
        )
        .unwrap();
        let avatar = format!("{:x}", md5::compute("alice@example.com"));
        let key = format!("alice\n{avatar}");
        for i in 0..30 {
            db.execute(
                "INSERT INTO messages (room, ts, username, avatar, text, sender_key, client_id) \
                 VALUES ('room-a', ?1, 'alice', ?2, ?3, ?4, ?5)",
                rusqlite::params![
                    1_700_000_000_000i64 + i,
                    avatar,
                    format!("old ✓ {i}"),
                    key,
                    format!("c{i}")
                ],
            )
            .unwrap();
        }
        let bob_avatar = format!("{:x}", md5::compute("bob@example.com"));
        db.execute(
            "INSERT INTO messages (room, ts, username, avatar, text, sender_key, to_username, \
             to_avatar, recipient_key) VALUES ('room-a', 1700000000100, 'alice', ?1, \
             'legacy secret', ?2, 'bob', ?3, ?4)",
            rusqlite::params![avatar, key, bob_avatar, format!("bob\n{bob_avatar}")],
        )
        .unwrap();
    }
    let hub = hubbub::server::config::HubConfig {
        database: path,
        ..test_config(dir.path())
    };
    let server = TestServer::start_in(dir, hub).await;
    let (mut bob, welcome) = join_room(&server, "bob", "room-a", None).await;
    let (history, has_more) = history_of(welcome);
    assert_eq!(
        history.len(),
        30.min(hubbub::server::config::HubConfig::default().history_limit)
    );
    // The upgrade indexed the old messages for search.
    bob.send_json(json!({"type": "search", "query": "OLD"}))
        .await;
    let hubbub::protocol::ServerFrame::SearchResults { hits, .. } = bob.recv().await else {
        panic!("no search results")
    };
    assert_eq!(hits.len(), 30);
    assert_eq!(hits[0].message.text, "old ✓ 29", "newest first");
    assert_eq!(history.last().unwrap().text, "old ✓ 29");
    assert!(!has_more || history.len() < 30);
    assert!(
        !history.iter().any(|m| m.text.contains("secret")),
        "{history:?}"
    );
    // Old messages were keyed on a name and an email, which prove nothing: the account that
    // now owns "alice" is a new sender. Its client ids start afresh (a resend pending across
    // the upgrade is stored once more, never matched to a message by someone else's key),
    // and the old private message is shown to nobody, not even a "bob" with bob's email.
    let (mut alice, _) = join_room(&server, "alice", "room-a", None).await;
    alice
        .send_json(json!({"type": "message", "text": "again", "client_id": "c29"}))
        .await;
    let again = alice.recv_message().await;
    assert_eq!((again.text.as_str(), again.id), ("again", 32));
    let (_, welcome) = join_room(&server, "carol", "room-a", Some(0)).await;
    let (history, _) = history_of(welcome);
    assert_eq!(history.len(), 31, "30 old public messages and the new one");
}

#[tokio::test]
async fn a_backup_taken_under_load_holds_every_message_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let config = write_config(dir.path(), &db);
    let server = Process::start(&config, None).await;
    let mut writer = Client::connect(&server.url()).await;
    writer.join("writer").await;
    // Keep writing while the backup is taken.
    let (acked_tx, acked_rx) = tokio::sync::watch::channel(0u64);
    let load = tokio::spawn(async move {
        for i in 0..400 {
            writer.say(&format!("m{i}")).await;
            let id = writer.recv_message().await.id;
            let _ = acked_tx.send(id);
        }
    });
    while *acked_rx.borrow() < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let acknowledged = *acked_rx.borrow();
    let backup = dir.path().join("backup.db");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubbub"))
        .env("HUBBUB_CONFIG", &config)
        .arg("backup")
        .arg(&backup)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    load.await.unwrap();
    server.kill9().await;
    // Restoring is starting on the copy: it opens, and holds every message acknowledged
    // before the backup started, with no gap.
    let restored = write_config(dir.path(), &backup);
    let server = Process::start(&restored, None).await;
    let mut reader = Client::connect(&server.url()).await;
    let ServerFrame::Welcome { history, .. } =
        reader.join_as("reader", "r@example.com", Some(0)).await
    else {
        unreachable!()
    };
    let ids: Vec<u64> = history.iter().map(|m| m.id).collect();
    assert!(
        ids.len() as u64 >= acknowledged,
        "{} of {acknowledged}",
        ids.len()
    );
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    // A second backup to the same file is refused rather than overwriting it.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_hubbub"))
        .env("HUBBUB_CONFIG", &restored)
        .arg("backup")
        .arg(&backup)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    server.kill9().await;
}

/// The ids a joining client gets, in order: its welcome's history, its catch-up pages, then
/// live messages, until it has `n`.
async fn ids_after_join(client: &mut Client, welcome: ServerFrame, n: usize) -> Vec<u64> {
    let ServerFrame::Welcome { history, .. } = welcome else {
        panic!("not welcomed: {welcome:?}");
    };
    let mut ids: Vec<u64> = history.iter().map(|m| m.id).collect();
    while ids.len() < n {
        match client.recv().await {
            ServerFrame::CatchUp { messages, .. } => ids.extend(messages.iter().map(|m| m.id)),
            ServerFrame::Message(m) => ids.push(m.id),
            _ => {} // joins, leaves, typing
        }
    }
    ids
}

#[tokio::test]
async fn resuming_while_others_post_gets_every_message_once_in_order() {
    // Two people post without a pause while others come back with `since` after missing
    // more than `resume-limit` messages: each one's welcome, catch-up pages and live
    // messages must be exactly what someone there all along received after its `since`.
    let server = TestServer::with(|c| c.resume_limit = 4).await;
    let mut watcher = server.joined("watcher").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut talkers = Vec::new();
    for name in ["ana", "bo"] {
        let mut talker = server.joined(name).await;
        let stop = stop.clone();
        talkers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                talker.say(&format!("{name} {n} ✨ <b>x</b>")).await;
                talker.recv_message().await;
                n += 1;
            }
        }));
    }
    let mut seen: Vec<u64> = Vec::new();
    for round in 0..8 {
        // Somewhere the watcher has passed: the newcomer missed at least 10 messages.
        while seen.len() < 12 * (round + 1) {
            seen.push(watcher.recv_message().await.id);
        }
        let since = seen[seen.len() - 11];
        let mut back = server.client().await;
        let name = format!("back{round}");
        let welcome = back
            .join_as(&name, &format!("{name}@example.com"), Some(since))
            .await;
        let got = ids_after_join(&mut back, welcome, 30).await;
        let from = seen.iter().position(|&id| id == since).unwrap() + 1;
        while seen.len() < from + got.len() {
            seen.push(watcher.recv_message().await.id);
        }
        assert_eq!(
            got,
            seen[from..from + got.len()],
            "round {round}: after {since}, not what the watcher got"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for talker in talkers {
        talker.await.unwrap();
    }
}
