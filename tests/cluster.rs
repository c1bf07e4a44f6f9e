//! Cluster mode: several nodes sharing a real PostgreSQL and a real `redis-server` (both started
//! here on free loopback ports; scripts/install.sh installs them) behave as one chat.

mod common;

use common::*;
use hubbub::protocol::{ServerFrame, User};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the nodes of one test share: a real redis-server with append-only persistence in a
/// temporary directory, and a PostgreSQL database on a throw-away server.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    pg: Postgres,
    /// The nodes' `database` setting.
    database: String,
}

impl Redis {
    async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres::start();
        let database = pg.database();
        let mut redis = Redis {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            pg,
            database,
        };
        redis.launch().await;
        redis
    }

    async fn launch(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run scripts/install.sh");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An in-process node of the cluster on `redis`.
async fn node(redis: &Redis) -> TestServer {
    let url = redis.url();
    let database = redis.database.clone();
    TestServer::with(move |hub| {
        hub.redis_url = Some(url);
        hub.database = database.into();
        hub.node_ttl_ms = 1_500;
    })
    .await
}

fn names(users: &[User]) -> Vec<&str> {
    users.iter().map(|u| u.username.as_str()).collect()
}

#[tokio::test]
async fn a_message_sent_on_any_node_reaches_every_node_in_one_order_with_the_same_ids() {
    let redis = Redis::start().await;
    let nodes = [node(&redis).await, node(&redis).await, node(&redis).await];
    let mut clients = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        clients.push(n.joined(&format!("user{i}")).await);
    }
    // Every node sends, interleaved.
    for round in 0..5 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.say(&format!("r{round} from {i}")).await;
        }
    }
    let mut seen = Vec::new();
    for c in clients.iter_mut() {
        let mut got = Vec::new();
        for _ in 0..15 {
            got.push(c.recv_message().await);
        }
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    assert!(seen[0].windows(2).all(|w| w[0].id < w[1].id));
    let texts: std::collections::HashSet<_> = seen[0].iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts.len(), 15);
}

/// How many subscribers each room channel has in Redis, and how many pattern subscriptions.
fn subscriptions(redis: &Redis, rooms: &[&str]) -> (Vec<i64>, i64) {
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let channels: Vec<String> = rooms.iter().map(|r| format!("hubbub:room:{r}")).collect();
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channels)
        .query(&mut conn)
        .unwrap();
    let patterns: i64 = redis::cmd("PUBSUB").arg("NUMPAT").query(&mut conn).unwrap();
    (counts.into_iter().map(|(_, n)| n).collect(), patterns)
}

/// Joins `room` as `name` on a new connection to `server`; with the welcome's history texts.
async fn joined_in(server: &TestServer, room: &str, name: &str) -> (Client, Vec<String>) {
    let mut client = server.client().await;
    client
        .send(&hubbub::protocol::ClientFrame::Join {
            username: name.into(),
            email: format!("{name}@example.com"),
            room: Some(room.into()),
            since: None,
            token: client.token_for(name),
            invite: None,
        })
        .await;
    let ServerFrame::Welcome { history, .. } = client.recv().await else {
        panic!("expected a welcome");
    };
    (client, history.into_iter().map(|m| m.text).collect())
}

#[tokio::test]
async fn each_node_subscribes_once_to_each_room_it_has_people_in_and_no_other() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    assert_eq!(
        subscriptions(&redis, &["kitchen", "general"]),
        (vec![0, 0], 0)
    );

    // Two people in the kitchen on node a: one subscription (per node, not per client).
    let (alice, _) = joined_in(&a, "kitchen", "alice").await;
    let (carol, _) = joined_in(&a, "kitchen", "carol").await;
    let mut bob = b.joined("bob").await;
    assert_eq!(
        subscriptions(&redis, &["kitchen", "general"]),
        (vec![1, 1], 0)
    );
    // Node b, with nobody in the kitchen, hears nothing of it; node a nothing of #general.
    let (mut dave, _) = joined_in(&b, "kitchen", "dave").await;
    assert_eq!(
        subscriptions(&redis, &["kitchen", "general"]),
        (vec![2, 1], 0)
    );
    dave.say("only the kitchen").await;
    assert_eq!(dave.recv_message().await.text, "only the kitchen");

    // The last one out of a room on a node ends that node's subscription.
    drop((alice, carol));
    let mut left = (vec![], 0);
    for _ in 0..100 {
        left = subscriptions(&redis, &["kitchen", "general"]);
        if left.0[0] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, (vec![1, 1], 0));
    // Back in: subscribed again, and nothing said meanwhile is missing.
    dave.say("while node a was away").await;
    assert_eq!(dave.recv_message().await.text, "while node a was away");
    let (mut erin, history) = joined_in(&a, "kitchen", "erin").await;
    assert_eq!(history, ["only the kitchen", "while node a was away"]);
    dave.say("after erin came").await;
    assert_eq!(erin.recv_message().await.text, "after erin came");
    bob.assert_alive().await;
}

#[tokio::test]
async fn joining_a_busy_room_on_a_node_that_just_opened_it_misses_nothing() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut talker = a.joined("talker").await;
    talker.say("first").await;
    talker.recv_message().await;
    // The talker posts without a pause (each one back before the next) while people
    // keep joining and leaving on node b, each the room's only user there: every join
    // opens the room on b afresh (subscribe, then read the counter) in the middle of it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let talking = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                talker.say(&format!("line {n}")).await;
                talker.recv_message().await;
                n += 1;
            }
            n
        }
    });
    for round in 0..15 {
        let mut joiner = b.client().await;
        let ServerFrame::Welcome { history, .. } = joiner.join(&format!("joiner{round}")).await
        else {
            unreachable!()
        };
        let last = history.last().expect("some history").id;
        // One room, one id sequence: the first live message follows the history exactly.
        for expected in last + 1..=last + 5 {
            let live = joiner.recv_message().await;
            assert_eq!(
                live.id, expected,
                "round {round}: gap or duplicate after {last}"
            );
        }
        drop(joiner);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let said = talking.await.unwrap();
    assert!(said > 75, "the talker kept talking: {said}");
}

#[tokio::test]
async fn presence_names_and_private_messages_span_the_cluster() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut alice = a.joined("alice").await;
    let mut bob = b.client().await;
    let ServerFrame::Welcome {
        online,
        online_count,
        ..
    } = bob.join("bob").await
    else {
        unreachable!()
    };
    assert_eq!(names(&online), ["alice", "bob"]);
    assert_eq!(online_count, 2);
    let ServerFrame::Joined { user } = alice.recv().await else {
        panic!("alice was not told bob joined");
    };
    assert_eq!(user.username, "bob");

    // The name is taken on the other node too (by someone with another email).
    let mut impostor = b.client().await;
    impostor
        .send_json(json!({"type":"join","username":"Alice","email":"other@example.com"}))
        .await;
    assert_eq!(impostor.recv_error().await, "username_taken");

    // A private message crosses nodes, to its recipient only.
    let mut carol = a.joined("carol").await;
    bob.recv().await; // carol joined
    alice.recv().await; // carol joined
    bob.send_json(json!({"type":"message","text":"psst","to":"alice"}))
        .await;
    let m = alice.recv_message().await;
    assert_eq!((m.text.as_str(), m.from.username.as_str()), ("psst", "bob"));
    bob.say("public").await;
    assert_eq!(carol.recv_message().await.text, "public");
    assert_eq!(alice.recv_message().await.text, "public");

    drop(bob);
    let ServerFrame::Left { user } = alice.recv().await else {
        panic!("alice was not told bob left");
    };
    assert_eq!(user.username, "bob");
}

#[tokio::test]
async fn typing_stops_when_the_room_outgrows_the_presence_limit_across_nodes() {
    let redis = Redis::start().await;
    let small_rooms = |redis: &Redis| {
        let url = redis.url();
        let database = redis.database.clone();
        TestServer::with(move |hub| {
            hub.redis_url = Some(url);
            hub.database = database.into();
            hub.presence_limit = 2;
            hub.typing_timeout_ms = 60_000;
        })
    };
    let (a, b) = (small_rooms(&redis).await, small_rooms(&redis).await);
    let mut alice = a.joined("alice").await;
    let mut bob = b.joined("bob").await;
    // Two people: within the limit, typing crosses nodes.
    alice.send_json(json!({"type": "typing"})).await;
    let typing = bob.recv_json().await;
    assert_eq!(
        (typing["type"].as_str(), typing["user"]["username"].as_str()),
        (Some("typing"), Some("alice"))
    );
    // A third, on alice's node: the room is over the limit, though each node holds at most two.
    let mut carol = a.joined("carol").await;
    carol.send_json(json!({"type": "typing"})).await;
    carol.say("after").await;
    assert_eq!(bob.recv_message().await.text, "after");
}

#[tokio::test]
async fn a_client_resumes_on_another_node_with_since_and_misses_nothing() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut alice = a.joined("alice").await;
    let mut bob = b.joined("bob").await;
    alice.recv().await; // bob joined
    bob.say("one").await;
    let last_seen = alice.recv_message().await.id;
    bob.recv_message().await; // its own "one"
    drop(alice);
    for text in ["two", "three"] {
        bob.say(text).await;
        bob.recv_message().await;
    }
    // Back, through the load balancer, on the other node.
    let mut again = b.client().await;
    let ServerFrame::Welcome { history, .. } = again
        .join_as("alice", "alice@example.com", Some(last_seen))
        .await
    else {
        unreachable!()
    };
    let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["two", "three"]);
    bob.say("four").await;
    assert_eq!(again.recv_message().await.text, "four");
}

/// Writes a settings file for a child node on `redis`.
fn node_config(dir: &Path, redis: &Redis) -> PathBuf {
    let path = write_config(dir, Path::new(&redis.database));
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "redis-url = {:?}\nnode-ttl-ms = 1500\n",
        redis.url()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_killed_node_leaves_presence_by_itself_and_the_others_carry_on() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let doomed = Process::start(&node_config(dir.path(), &redis), None).await;
    let survivor = node(&redis).await;
    let mut carol = Client::connect(&doomed.url()).await;
    carol.join("carol").await;
    let mut alice = survivor.joined("alice").await;
    let mut bob = survivor.joined("bob").await;
    alice.recv().await; // bob joined

    doomed.kill9().await;
    let started = std::time::Instant::now();
    let ServerFrame::Left { user } = alice.recv().await else {
        panic!("expected carol to be shown as left");
    };
    assert_eq!(user.username, "carol");
    assert!(started.elapsed() < Duration::from_secs(10));
    bob.say("still here").await;
    assert_eq!(alice.recv_message().await.text, "still here");
    // The name is free again.
    let mut carol = survivor.client().await;
    carol.join_as("carol", "new@example.com", None).await;
}

async fn health(addr: SocketAddr) -> (u16, String) {
    http_get(addr, "/healthz", &[]).await
}

#[tokio::test]
async fn redis_going_away_degrades_and_refuses_clearly_then_recovers_without_losing_anything() {
    let mut redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut alice = a.joined("alice").await;
    let mut bob = b.joined("bob").await;
    alice.recv().await; // bob joined
    alice.say("before").await;
    let before = bob.recv_message().await;
    alice.recv_message().await;
    assert_eq!(health(a.addr).await.0, 200);

    redis.stop();
    let mut degraded = false;
    for _ in 0..50 {
        let (status, body) = health(a.addr).await;
        if status == 503 && body.contains("degraded") {
            degraded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(degraded, "/healthz did not report the outage");
    // Sending now is refused with an error that names the message; nobody is disconnected.
    alice
        .send_json(json!({"type":"message","text":"during","client_id":"c-during"}))
        .await;
    let error = alice.recv_json().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "unavailable");
    assert_eq!(error["client_id"], "c-during");
    alice.assert_alive().await;
    bob.assert_alive().await;

    redis.launch().await;
    let mut healthy = false;
    for _ in 0..100 {
        if health(a.addr).await.0 == 200 && health(b.addr).await.0 == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "the nodes did not recover");
    // The outbox resends; the message goes through now, with an id after the old ones.
    alice
        .send_json(json!({"type":"message","text":"during","client_id":"c-during"}))
        .await;
    let after = bob.recv_message().await;
    assert_eq!(after.text, "during");
    assert!(after.id > before.id);
    assert_eq!(alice.recv_message().await.id, after.id);
    // And the history survived the restart.
    let mut carol = b.client().await;
    let ServerFrame::Welcome { history, .. } = carol.join("carol").await else {
        unreachable!()
    };
    let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["before", "during"]);
}

/// nginx running `deploy/nginx.conf`, with its listen port and upstream nodes swapped for
/// free ones: the configuration docs/deploy.md tells people to use.
struct Nginx {
    port: u16,
    _dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Nginx {
    async fn start(nodes: &[&TestServer]) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut conf = std::fs::read_to_string("deploy/nginx.conf").unwrap();
        for (i, node) in nodes.iter().enumerate() {
            let placeholder = format!("127.0.0.1:300{}", i + 1);
            assert!(
                conf.contains(&placeholder),
                "{placeholder} not in deploy/nginx.conf"
            );
            conf = conf.replace(&placeholder, &node.addr.to_string());
        }
        assert!(conf.contains("listen 8080;"));
        conf = conf.replace("listen 8080;", &format!("listen 127.0.0.1:{port};"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = std::process::Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            // One process, so killing it leaves no workers behind.
            .args(["-g", "daemon off; master_process off;"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx is not installed: run scripts/install.sh");
        // Owned at once, so its Drop stops nginx on every path, panics included.
        let nginx = Nginx {
            port,
            _dir: dir,
            child,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nginx did not start");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn browsers_connect_through_the_tested_nginx_config() {
    let redis = Redis::start().await;
    let nodes = [node(&redis).await, node(&redis).await, node(&redis).await];
    let nginx = Nginx::start(&[&nodes[0], &nodes[1], &nodes[2]]).await;
    let site = format!("http://127.0.0.1:{}", nginx.port);
    let url = format!("ws://127.0.0.1:{}/ws", nginx.port);
    // A browser on the site sends its Origin, port included; it must pass the cross-site
    // check behind the proxy. Three of them spread over the three nodes.
    let mut clients = Vec::new();
    for name in ["ann", "ben", "cat"] {
        let mut c = Client::connect_with(&url, &[("origin", &site)])
            .await
            .expect("a same-site browser connects through nginx");
        c.join(name).await;
        clients.push(c);
    }
    let per_node: Vec<f64> = {
        let mut counts = Vec::new();
        for n in &nodes {
            counts.push(metric(&n.get("/metrics").await.1, "hubbub_connections"));
        }
        counts
    };
    assert_eq!(per_node, [1.0, 1.0, 1.0], "least_conn spreads the clients");
    clients[0].say("through the proxy").await;
    for c in &mut clients {
        assert_eq!(c.recv_message().await.text, "through the proxy");
    }
    // Another site's page is still refused.
    let evil = Client::connect_with(&url, &[("origin", "http://evil.example")]).await;
    assert_eq!(evil.err(), Some(403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_posting_at_once_give_every_node_every_message_once_in_id_order() {
    let redis = Redis::start().await;
    let nodes = [node(&redis).await, node(&redis).await, node(&redis).await];
    // A reader on every node, joined before anyone posts.
    let mut readers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        readers.push(n.joined(&format!("reader{i}")).await);
    }
    const EACH: usize = 60;
    // A sender on every node, all posting at once, each on its own task.
    let mut senders = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut sender = n.joined(&format!("sender{i}")).await;
        senders.push(tokio::spawn(async move {
            for k in 0..EACH {
                sender.say(&format!("{i}:{k}")).await;
            }
            // Its own copies, as acknowledgements.
            let mut acked = 0;
            while acked < EACH {
                if let ServerFrame::Message(m) = sender.recv().await
                    && m.from.username == format!("sender{i}")
                {
                    acked += 1;
                }
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let mut orders = Vec::new();
    for r in readers.iter_mut() {
        let mut ids = Vec::new();
        while ids.len() < 3 * EACH {
            match r.recv().await {
                ServerFrame::Message(m) => ids.push(m.id),
                ServerFrame::Joined { .. } | ServerFrame::Left { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
        orders.push(ids);
    }
    // Every node saw the same messages with the same ids, no gap, no duplicate: the history.
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    let mut late = nodes[1].client().await;
    let ServerFrame::Welcome { history, .. } =
        late.join_as("late", "late@example.com", Some(0)).await
    else {
        unreachable!()
    };
    let stored: Vec<u64> = history.iter().map(|m| m.id).collect();
    assert_eq!(stored, orders[0]);
    for r in readers.iter_mut() {
        r.assert_alive().await;
    }
}

#[tokio::test]
async fn a_postgres_restart_is_survived_with_unavailable_meanwhile_and_nothing_lost() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut alice = a.joined("alice").await;
    let mut bob = b.joined("bob").await;
    alice.recv().await; // bob joined
    alice.say("before").await;
    let before = bob.recv_message().await;
    alice.recv_message().await;

    redis.pg.stop();
    let during = json!({"type":"message","text":"during","client_id":"pg-1"});
    alice.send_json(during.clone()).await;
    let v = alice.recv_json().await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{v}"
    );
    assert_eq!(v["client_id"], "pg-1");
    alice.assert_alive().await;
    bob.assert_alive().await;

    redis.pg.start_again();
    // The outbox resends until the database is back; then it goes through, once.
    let deadline = tokio::time::Instant::now() + WAIT;
    let sent = loop {
        alice.send_json(during.clone()).await;
        let v = alice.recv_json().await;
        if v["type"] == "message" {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "still refused: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let after = bob.recv_message().await;
    assert_eq!(after.text, "during");
    assert!(after.id > before.id);
    assert_eq!(sent["id"].as_u64(), Some(after.id));
    let mut carol = b.client().await;
    let ServerFrame::Welcome { history, .. } = carol.join("carol").await else {
        unreachable!()
    };
    let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["before", "during"]);
}

#[tokio::test]
async fn a_message_acknowledged_by_a_node_killed_right_after_is_not_lost() {
    let mut redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let doomed = Process::start(&node_config(dir.path(), &redis), None).await;
    let survivor = node(&redis).await;
    let mut carol = Client::connect(&doomed.url()).await;
    carol.join("carol").await;
    // Acknowledged (the sender's own copy came back), then the node dies at once.
    for i in 0..20 {
        carol.say(&format!("acked {i}")).await;
    }
    let mut acked = Vec::new();
    while acked.len() < 20 {
        acked.push(carol.recv_message().await.id);
    }
    doomed.kill9().await;
    // Redis dies too, without a goodbye, and comes back empty-handed: it held nothing durable.
    redis.stop();
    for entry in std::fs::read_dir(redis.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    redis.launch().await;
    let mut reader = None;
    for _ in 0..100 {
        let mut c = survivor.client().await;
        c.send_json(
            json!({"type": "join", "username": "dave", "email": "d@example.com", "since": 0}),
        )
        .await;
        // A refused join creates no account: dave's name is still free for the next try.
        if let ServerFrame::Welcome { history, .. } = c.recv().await {
            reader = Some(history);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history = reader.expect("the survivor never took a join again");
    let ids: Vec<u64> = history.iter().map(|m| m.id).collect();
    assert_eq!(ids, acked, "every acknowledged message, in order");
}

#[tokio::test]
async fn a_node_fills_a_gap_of_several_database_pages_in_order() {
    // Messages whose publications never reached the nodes (their node's Redis connection
    // was cut right after each commit): here stored straight into PostgreSQL. The next
    // publication reveals the gap; each node reads it from the database 1,000 at a time.
    use hubbub::server::storage::{Draft, Location, Storage};
    const MISSED: usize = 2_500;
    let redis = Redis::start().await;
    let (url, database) = (redis.url(), redis.database.clone());
    let roomy = move |hub: &mut hubbub::server::config::HubConfig| {
        hub.redis_url = Some(url);
        hub.database = database.into();
        hub.node_ttl_ms = 1_500;
        // The whole gap is handed to the room at once: room for it, so nobody lags.
        hub.room_queue = 8_192;
    };
    let a = TestServer::with(roomy.clone()).await;
    let b = TestServer::with(roomy).await;
    let mut alice = a.joined("alice").await;
    let mut bob = b.joined("bob").await;
    alice.recv().await; // bob joined

    let location = Location::parse(Path::new(&redis.database));
    let silent = Storage::open(&location, Box::new(|_, _, _| {}))
        .await
        .unwrap()
        .storage;
    let user = User {
        username: "ghost".into(),
        avatar: "0".repeat(32),
    };
    let stores = (0..MISSED).map(|i| {
        silent.append(Draft {
            room: "general".into(),
            from: user.clone(),
            sender_key: "ghost".into(),
            text: format!("missed {i} ✉"),
            client_id: None,
            to: None,
            change: None,
            reply_to: None,
            file: None,
        })
    });
    for stored in futures::future::join_all(stores).await {
        stored.unwrap();
    }
    alice.say("after the gap").await;

    for client in [&mut alice, &mut bob] {
        let mut ids = Vec::new();
        loop {
            let message = client.recv_message().await;
            ids.push(message.id);
            if message.text == "after the gap" {
                break;
            }
        }
        assert_eq!(
            ids.len(),
            MISSED + 1,
            "every missed message, then the new one"
        );
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order");
    }
}

#[tokio::test]
async fn two_tabs_of_one_account_on_a_node_are_one_person_across_the_cluster() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut first = a.joined("alice").await;
    let mut bob = b.joined("bob").await;
    first.recv().await; // bob joined
    let mut second = a.client().await;
    second.join("alice").await;
    second.say("two tabs").await;
    assert_eq!(bob.recv_message().await.text, "two tabs");
    assert_eq!(first.recv_message().await.text, "two tabs");
    // One tab closes: alice is still online everywhere.
    drop(second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut carol = b.client().await;
    let ServerFrame::Welcome { online, .. } = carol.join("carol").await else {
        unreachable!()
    };
    assert_eq!(names(&online), ["alice", "bob", "carol"]);
    first.say("still here").await;
    assert_eq!(bob.recv_message().await.text, "still here");
    // The last one closes: she has left, for the other node too.
    drop(first);
    loop {
        match bob.recv().await {
            ServerFrame::Left { user } => {
                assert_eq!(user.username, "alice");
                break;
            }
            ServerFrame::Joined { .. } => {}
            other => panic!("expected alice to leave, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_ban_or_a_removal_on_one_node_reaches_every_node() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut root = a.joined("root").await; // the first account: the admin
    let mut alice = b.client().await;
    alice
        .join_room_as("alice", "alice@example.com", Some("elsewhere"), None)
        .await;
    root.send_json(json!({"type":"ban","username":"alice"}))
        .await;
    assert_eq!(alice.close_code().await, 4007);
    // Removing someone from a room reaches the node they are on, too.
    let mut bob = b.joined("bob").await;
    root.recv().await; // bob joined
    root.send_json(json!({"type":"kick","username":"bob"}))
        .await;
    assert_eq!(bob.close_code().await, 4006);
    root.assert_alive().await;
}

#[tokio::test]
async fn two_tabs_joining_at_the_same_moment_leave_no_presence_behind() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut first = a.client().await;
    first.join("alice").await; // her account and token
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut one, mut two) = (a.client().await, a.client().await);
    let (w1, w2) = futures::join!(one.join("alice"), two.join("alice"));
    assert!(matches!(w1, ServerFrame::Welcome { .. }) && matches!(w2, ServerFrame::Welcome { .. }));
    one.assert_alive().await;
    two.assert_alive().await;
    drop(one);
    drop(two);
    // Both gone: nobody anywhere sees her online any more.
    let mut seen = true;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut carol = b.client().await;
        let ServerFrame::Welcome { online, .. } = carol.join("carol").await else {
            unreachable!()
        };
        seen = names(&online).contains(&"alice");
        if !seen {
            break;
        }
    }
    assert!(!seen, "alice stayed online after her last tab closed");
}

#[tokio::test]
async fn a_file_sent_on_one_node_is_served_by_another_from_the_shared_directory() {
    let redis = Redis::start().await;
    let shared = tempfile::tempdir().unwrap();
    let on = |redis: &Redis| {
        let (url, database) = (redis.url(), redis.database.clone());
        let files = shared.path().to_owned();
        TestServer::with(move |hub| {
            hub.redis_url = Some(url);
            hub.database = database.into();
            hub.node_ttl_ms = 1_500;
            hub.files_dir = Some(files);
        })
    };
    let (a, b) = (on(&redis).await, on(&redis).await);
    let mut alice = a.joined("alice").await;
    let mut bob = b.joined("bob").await;
    let (alice_token, bob_token) = (
        alice.token_for("alice").unwrap(),
        bob.token_for("bob").unwrap(),
    );
    let picture = png(64, 48);
    let (status, head, body) = upload(
        a.addr,
        Some(&alice_token),
        "general",
        "chart.png",
        "image/png",
        &picture,
    )
    .await;
    assert_eq!(status, 200, "{head}");
    let file: hubbub::protocol::Attachment = serde_json::from_slice(&body).unwrap();
    alice
        .send_json(json!({"type": "message", "text": "the chart", "file": file.id}))
        .await;
    let seen = loop {
        let m = bob.recv_message().await;
        if m.text == "the chart" {
            break m;
        }
    };
    assert_eq!(seen.file.as_ref(), Some(&file));
    let (status, _, bytes) = fetch(b.addr, &file.url(), Some(&bob_token)).await;
    assert_eq!((status, bytes == picture), (200, true));
    assert_eq!(
        fetch(b.addr, &file.thumbnail_url(), Some(&bob_token))
            .await
            .0,
        200
    );
    // Deleted on one node: gone from every node.
    alice
        .send_json(json!({"type": "delete", "id": seen.id}))
        .await;
    bob.recv_message().await;
    assert_eq!(fetch(b.addr, &file.url(), Some(&bob_token)).await.0, 404);
}
