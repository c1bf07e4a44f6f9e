//! The hub under abuse: slow consumers, oversize frames, floods, cross-site upgrades,
//! connection caps, heartbeats, shutdown, metrics, and the HTTP side (proxies, compressed
//! static files). Real server, real sockets.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

/// A joined client with a tiny receive buffer that never reads: the kind that stalls
/// naive broadcast loops.
async fn stalled_client(server: &TestServer, name: &str) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(server.url(), stream)
        .await
        .unwrap();
    let mut c = Client::from_socket(ws, &server.url());
    c.join(name).await;
    c
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_nobody_else_notices() {
    let server = TestServer::with(|c| {
        c.room_queue = 64;
        c.write_timeout_ms = 500;
        c.rate_per_sec = 1e9;
        c.rate_burst = 1e9;
    })
    .await;
    let mut fast = server.joined("fast").await;
    let mut stalled = stalled_client(&server, "stalled").await;
    let sender = server.joined("sender").await;
    // The sender reads (and discards) its own echoes, or it would be a stalled reader too.
    let (mut sender, mut echoes) = sender.ws.split();
    tokio::spawn(async move { while echoes.next().await.is_some() {} });
    // The fast reader reads all the time, on its own task, until "done".
    let reader = tokio::spawn(async move {
        let mut texts = Vec::new();
        loop {
            let m = fast.recv_message().await;
            if m.text == "done" {
                return (fast, texts);
            }
            texts.push(m.text);
        }
    });
    let text = "x".repeat(1000);
    let mut sent = 0;
    // Keep talking until the server has given up on the stalled reader.
    for _round in 0..50 {
        for _ in 0..100 {
            let frame = json!({"type": "message", "text": format!("{sent} {text}")});
            sender.send(Message::text(frame.to_string())).await.unwrap();
            sent += 1;
        }
        let (_, metrics) = server.get("/metrics").await;
        if metric(&metrics, "hubbub_slow_consumer_drops_total") >= 1.0 {
            break;
        }
    }
    let done = json!({"type": "message", "text": "done"});
    sender.send(Message::text(done.to_string())).await.unwrap();
    let (_, texts) = reader.await.unwrap();
    // Everything, in order, for the one that reads.
    assert_eq!(texts.len(), sent);
    for (i, t) in texts.iter().enumerate() {
        assert!(
            t.starts_with(&format!("{i} ")),
            "message {i} is {}",
            &t[..8]
        );
    }
    let (_, metrics) = server.get("/metrics").await;
    assert_eq!(
        metric(&metrics, "hubbub_slow_consumer_drops_total"),
        1.0,
        "after {sent} messages"
    );
    // When it finally reads, it finds frames it had buffered, then the end of the connection:
    // the 4000 close frame, or a plain drop when even that could not be written. What it had
    // buffered is bounded by the server's socket send buffer (`socket-send-buffer`, 64 KiB by
    // default), not by the kernel's autotuning, which on common defaults (`tcp_wmem` up to
    // 4 MiB) would hold thousands of these frames for a reader that stopped reading.
    let mut buffered = 0;
    let ending = loop {
        match tokio::time::timeout(WAIT, stalled.ws.next()).await {
            Err(_) => panic!("the stalled connection did not end"),
            Ok(Some(Ok(Message::Text(_)))) => buffered += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break None,
        }
    };
    assert!(matches!(ending, None | Some(4000)), "{ending:?}");
    assert!(
        buffered < 400,
        "{buffered} frames of 1 KB were buffered for a reader that stopped reading"
    );
}

#[tokio::test]
async fn an_oversized_frame_closes_the_connection_with_1009() {
    let server = TestServer::with(|c| c.max_frame_bytes = 8 * 1024).await;
    let mut c = server.joined("big").await;
    c.say(&"y".repeat(9 * 1024)).await;
    assert_eq!(c.close_code().await, 1009);
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_closed() {
    let server = TestServer::with(|c| {
        c.rate_per_sec = 1.0;
        c.rate_burst = 5.0;
        c.max_strikes = 3;
    })
    .await;
    let mut flooder = server.joined("flooder").await;
    let mut bystander = server.joined("bystander").await;
    for i in 0..20 {
        flooder
            .send_json(json!({"type": "message", "text": format!("spam {i}"), "client_id": format!("c{i}")}))
            .await;
    }
    let (mut delivered, mut limited) = (0, 0);
    let code = loop {
        match flooder.ending_or_frame().await {
            Err(code) => break code,
            Ok(v) if v["type"] == "message" => delivered += 1,
            Ok(v) if v["type"] == "error" => {
                assert_eq!(v["code"], "rate_limited", "{v}");
                assert!(
                    v["client_id"].as_str().is_some(),
                    "names the refused message: {v}"
                );
                limited += 1;
            }
            Ok(_) => {}
        }
    };
    assert_eq!(code, 4001);
    assert_eq!(delivered, 5, "the burst is delivered");
    assert_eq!(
        limited, 3,
        "then each refused message is named, until the close"
    );
    let (_, metrics) = server.get("/metrics").await;
    assert!(metric(&metrics, "hubbub_rate_limited_frames_total") >= 4.0);
    // The bystander saw exactly the accepted burst.
    for i in 0..5 {
        assert_eq!(bystander.recv_message().await.text, format!("spam {i}"));
    }
}

#[tokio::test]
async fn cross_site_upgrades_are_refused() {
    let server =
        TestServer::with(|c| c.allowed_origins = vec!["https://chat.example.org".into()]).await;
    let url = server.url();
    let evil = Client::connect_with(&url, &[("Origin", "https://evil.example")]).await;
    assert_eq!(evil.err(), Some(403));
    let own = format!("http://{}", server.addr);
    assert!(
        Client::connect_with(&url, &[("Origin", &own)])
            .await
            .is_ok()
    );
    assert!(
        Client::connect_with(&url, &[("Origin", "https://chat.example.org")])
            .await
            .is_ok()
    );
    // No Origin at all: a non-browser client.
    assert!(Client::connect_with(&url, &[]).await.is_ok());
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("hubbub_rejected_upgrades_total{reason=\"origin\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn connections_are_capped_per_ip_and_in_total() {
    let server = TestServer::with(|c| c.max_connections_per_ip = 2).await;
    let a = server.client().await;
    let _b = server.client().await;
    assert_eq!(
        Client::connect_with(&server.url(), &[]).await.err(),
        Some(429)
    );
    drop(a);
    eventually_connects(&server).await;

    let server = TestServer::with(|c| c.max_connections = 1).await;
    let a = server.client().await;
    assert_eq!(
        Client::connect_with(&server.url(), &[]).await.err(),
        Some(503)
    );
    drop(a);
    eventually_connects(&server).await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    // Everyone arrives from 127.0.0.1, as behind nginx on the same host.
    let server = TestServer::with(|c| {
        c.max_connections_per_ip = 1;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let via = |ip: &'static str| [("x-forwarded-for", ip)];
    let _a = Client::connect_with(&server.url(), &via("203.0.113.1"))
        .await
        .unwrap();
    let _b = Client::connect_with(&server.url(), &via("203.0.113.2"))
        .await
        .unwrap();
    let again = Client::connect_with(&server.url(), &via("203.0.113.1")).await;
    assert_eq!(again.err(), Some(429));
    // A client cannot escape its limit by writing the header itself: the proxy appends the
    // address it saw, and that is the one counted.
    let forged = Client::connect_with(&server.url(), &via("198.51.100.1, 203.0.113.2")).await;
    assert_eq!(forged.err(), Some(429));

    // Without the setting, the header is not believed: one address, one connection.
    let server = TestServer::with(|c| c.max_connections_per_ip = 1).await;
    let _a = Client::connect_with(&server.url(), &via("203.0.113.1"))
        .await
        .unwrap();
    let other = Client::connect_with(&server.url(), &via("203.0.113.2")).await;
    assert_eq!(other.err(), Some(429));
}

/// A freed slot is given back as soon as the server has noticed the close.
async fn eventually_connects(server: &TestServer) {
    for _ in 0..100 {
        if Client::connect_with(&server.url(), &[]).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the slot was never given back");
}

#[tokio::test]
async fn silent_connections_are_dropped_and_live_ones_kept() {
    let server = TestServer::with(|c| {
        c.ping_interval_ms = 100;
        c.idle_timeout_ms = 600;
    })
    .await;
    // Not joined: idle detection does not depend on joining (and no notices interfere).
    let mut silent = server.client().await;
    let mut live = server.client().await;
    // Reading answers the server's pings (the WebSocket layer replies with pongs).
    live.assert_quiet(Duration::from_millis(1500)).await;
    live.assert_alive().await;
    // The silent one never read, so never answered a ping.
    assert_eq!(silent.close_code().await, 4002);
}

#[tokio::test]
async fn shutdown_says_goodbye_with_1001() {
    let server = TestServer::start().await;
    let mut a = server.joined("a").await;
    let mut b = server.client().await; // not even joined
    let started = std::time::Instant::now();
    let done = tokio::spawn(server.shutdown());
    assert_eq!(a.close_code().await, 1001);
    assert_eq!(b.close_code().await, 1001);
    tokio::time::timeout(Duration::from_secs(5), done)
        .await
        .expect("shutdown finishes within a few seconds")
        .unwrap();
    // Well inside the 3 s grace period: nothing (connections, the store's last writes) had
    // to be given up on.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn health_and_metrics_are_served() {
    let server = TestServer::start().await;
    let mut a = server.joined("a").await;
    let _b = server.joined("b").await;
    a.say("count me").await;
    a.recv_message().await;
    let (status, body) = server.get("/healthz").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let (status, m) = server.get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metric(&m, "hubbub_connections"), 2.0);
    assert_eq!(metric(&m, "hubbub_messages_stored_total"), 1.0);
    assert_eq!(metric(&m, "hubbub_deliveries_total"), 2.0);
    assert_eq!(metric(&m, "hubbub_broadcast_latency_seconds_count"), 1.0);
    assert!(metric(&m, "hubbub_frames_in_total") >= 3.0);
}

#[tokio::test]
async fn a_burst_arrives_whole_and_in_order_and_drops_no_reader_that_keeps_up() {
    // A burst of 400 through a 128-frame queue: frames wait only while a socket is full, and
    // go out together with the next write. (Not a smaller queue: the store delivers a
    // commit's messages in one go, and on a busy machine a commit can hold dozens.)
    let server = TestServer::with(|hub| hub.room_queue = 128).await;
    let mut a = server.joined("a").await;
    let mut b = server.joined("b").await;
    for i in 0..400 {
        a.say(&format!("m{i}")).await;
    }
    for i in 0..400 {
        assert_eq!(b.recv_message().await.text, format!("m{i}"));
    }
    for i in 0..400 {
        assert_eq!(a.recv_message().await.text, format!("m{i}"));
    }
    let (_, m) = server.get("/metrics").await;
    assert_eq!(metric(&m, "hubbub_slow_consumer_drops_total"), 0.0);
}

#[tokio::test]
async fn static_files_are_gzipped_for_browsers_that_ask() {
    let server = TestServer::start().await;
    // Something shaped like the app's WASM: big and compressible.
    let pkg = server.dir.path().join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    let original: Vec<u8> = (0..200_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    std::fs::write(pkg.join("app.wasm"), &original).unwrap();
    let fetch = |encoding: &'static str| async move {
        let (_, head, body) = http_response(
            server.addr,
            "/pkg/app.wasm",
            &[("accept-encoding", encoding)],
        )
        .await;
        (head, body.len())
    };
    let (head, size) = fetch("gzip, deflate, br").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(size < original.len() / 3, "{size} bytes on the wire");
    // A client that does not accept gzip gets the file as it is.
    let (head, size) = fetch("identity").await;
    assert!(!head.contains("content-encoding"), "{head}");
    assert_eq!(size, original.len());
}

/// Reads from a raw connection until the server closes it; how long that took, or `None` if
/// it stayed open for `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let start = tokio::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(start + limit, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_request_trickling_its_headers_is_cut_off_and_idle_connections_closed() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::with(|c| c.http_header_timeout_ms = 1_000).await;
    // Slowloris: one header line every 300 ms, for ever.
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let cut = tokio::time::timeout(Duration::from_secs(5), trickle).await;
    assert!(
        cut.is_ok(),
        "a connection trickling headers stayed open for 5 s"
    );
    // A connection that says nothing at all.
    let mut mute = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let took = closed_within(&mut mute, Duration::from_secs(5)).await;
    assert!(took.is_some(), "a silent connection stayed open for 5 s");
    // A keep-alive connection after its response: closed once idle for the timeout.
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    idle.write_all(request.as_bytes()).await.unwrap();
    let took = closed_within(&mut idle, Duration::from_secs(5)).await;
    let took = took.expect("an idle keep-alive connection stayed open for 5 s");
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    // Ordinary requests are unaffected.
    assert_eq!(server.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn open_http_connections_are_capped_per_address_and_in_total() {
    use tokio::io::AsyncReadExt;
    async fn refused(server: &TestServer) -> String {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(WAIT, s.read_to_string(&mut answer))
            .await
            .expect("the refusal did not come")
            .unwrap();
        answer
    }
    let server = TestServer::with(|c| c.max_http_connections_per_ip = 2).await;
    let held: Vec<_> =
        futures::future::join_all((0..2).map(|_| tokio::net::TcpStream::connect(server.addr)))
            .await;
    // Let the server accept them before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = refused(&server).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("too many open connections"), "{answer}");
    drop(held);
    let mut back = None;
    for _ in 0..100 {
        let (status, _) = server.get("/healthz").await;
        if status == 200 {
            back = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(back, Some(200), "the places were never given back");

    let server = TestServer::with(|c| c.max_http_connections = 1).await;
    let _held = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = refused(&server).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // An upgraded WebSocket no longer counts as an HTTP connection.
    drop(_held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ws = server.joined("alice").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn a_flood_of_history_requests_is_limited_then_closed() {
    // The default request budget; only the message rate is raised (as in every test).
    let server = TestServer::with(|c| {
        let defaults = hubbub::server::config::HubConfig::default();
        c.requests_per_sec = defaults.requests_per_sec;
        c.request_burst = defaults.request_burst;
    })
    .await;
    let mut c = server.joined("reader").await;
    for i in 0..20 {
        c.say(&format!("m{i}")).await;
        c.recv_message().await;
    }
    for _ in 0..400 {
        if c.ws
            .send(Message::text(
                json!({"type": "history", "before": 15}).to_string(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let (mut answered, mut limited) = (0, 0);
    let code = loop {
        match c.ending_or_frame().await {
            Err(code) => break code,
            Ok(v) if v["type"] == "history" => answered += 1,
            Ok(v) if v["type"] == "error" => {
                assert_eq!(v["code"], "rate_limited", "{v}");
                limited += 1;
            }
            Ok(_) => {}
        }
    };
    assert_eq!(code, 4001, "closed for flooding");
    assert!(answered <= 40, "{answered} history requests were answered");
    assert_eq!(limited, 10, "each refusal is said, until the close");
    let (_, metrics) = server.get("/metrics").await;
    assert!(metric(&metrics, "hubbub_rate_limited_frames_total") >= 11.0);
}

#[tokio::test]
async fn refused_joins_are_strikes() {
    let server = TestServer::with(|c| c.max_strikes = 3).await;
    let _alice = server.joined("alice").await;
    let mut guesser = server.client().await;
    let attempts = [
        json!({"type": "join", "username": "alice", "email": "x@example.com"}),
        json!({"type": "join", "username": "ALICE", "email": "y@example.com"}),
        json!({"type": "join", "username": "bob", "email": "b@example.com", "room": "Nope!"}),
        json!({"type": "join", "username": "аlice", "email": "z@example.com"}),
    ];
    let mut codes = Vec::new();
    for attempt in attempts {
        guesser.send_json(attempt).await;
        match guesser.ending_or_frame().await {
            Ok(v) => codes.push(v["code"].as_str().unwrap_or_default().to_string()),
            Err(code) => {
                codes.push(code.to_string());
                break;
            }
        }
    }
    assert_eq!(
        codes,
        ["username_taken", "username_taken", "invalid_room", "4004"]
    );
    // Strikes are counted in a row: a successful join starts again from zero.
    let mut fine = server.client().await;
    fine.send_json(json!({"type": "join", "username": "alice", "email": "q@example.com"}))
        .await;
    assert_eq!(fine.recv_error().await, "username_taken");
    fine.join("carol").await;
    fine.assert_alive().await;
}

#[tokio::test]
async fn a_request_body_that_stalls_is_cut_off_and_a_large_one_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::with(|c| c.http_header_timeout_ms = 1_000).await;
    // Headers in time, then a body that never comes: the connection is closed, it does not
    // keep its place for ever.
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/list_rooms HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nSec-Fetch-Site: same-origin\r\nContent-Length: 100\r\n\r\nx",
        server.addr
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let took = closed_within(&mut stalled, Duration::from_secs(5)).await;
    assert!(
        took.is_some(),
        "a stalled request body held its connection for 5 s"
    );
    // A body larger than anything the site takes: 413, not read into memory.
    let mut big = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/list_rooms HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nSec-Fetch-Site: same-origin\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n",
        server.addr
    );
    big.write_all(head.as_bytes()).await.unwrap();
    let _ = big.write_all(&vec![b'a'; 256 * 1024]).await;
    let mut answer = vec![0u8; 12];
    big.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
}

#[tokio::test]
async fn a_slow_link_reading_a_large_welcome_is_not_taken_for_a_stalled_reader() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A one-second write timeout, and a welcome of about 400 KB that takes this client
    // several seconds to read: it keeps reading, so it is slow, not stalled.
    let server = TestServer::with(|c| {
        c.write_timeout_ms = 1_000;
        c.history_limit = 200;
    })
    .await;
    let mut alice = server.joined("alice").await;
    let long = "é".repeat(1_000);
    for i in 0..200 {
        alice.say(&format!("{i} {long}")).await;
        alice.recv_message().await;
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut raw = socket.connect(server.addr).await.unwrap();
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    raw.write_all(handshake.as_bytes()).await.unwrap();
    // The join, as a masked text frame (mask of zeros: the payload goes as it is).
    let join = br#"{"type":"join","username":"slowpoke","email":"s@example.com"}"#;
    let mut frame = vec![0x81, 0x80 | join.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(join);
    raw.write_all(&frame).await.unwrap();
    // Read about 130 KB/s.
    let started = tokio::time::Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let n = tokio::time::timeout(WAIT, raw.read(&mut chunk))
            .await
            .expect("the server stopped sending")
            .unwrap();
        assert!(n > 0, "dropped after {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
        if let Some(welcome) = welcome_payload(&got) {
            let v: serde_json::Value = serde_json::from_slice(&welcome).unwrap();
            assert_eq!(v["type"], "welcome");
            assert_eq!(v["history"].as_array().unwrap().len(), 200);
            break;
        }
    }
    assert!(
        started.elapsed() > Duration::from_millis(1_500),
        "the welcome was read too fast to test anything ({:?})",
        started.elapsed()
    );
}

/// The payload of the first WebSocket message after the HTTP response in `raw` (its fragments
/// joined), once it is complete.
fn welcome_payload(raw: &[u8]) -> Option<Vec<u8>> {
    let start = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut f = &raw[start..];
    let mut payload = Vec::new();
    loop {
        if f.len() < 2 {
            return None;
        }
        let fin = f[0] & 0x80 != 0;
        let (len, at) = match f[1] & 0x7f {
            126 if f.len() >= 4 => (u16::from_be_bytes([f[2], f[3]]) as usize, 4),
            127 if f.len() >= 10 => (
                u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n if n < 126 => (n as usize, 2),
            _ => return None,
        };
        payload.extend_from_slice(f.get(at..at + len)?);
        if fin {
            return Some(payload);
        }
        f = &f[at + len..];
    }
}

/// A browser-like client that negotiates permessage-deflate, by hand: tungstenite has no
/// permessage-deflate.
mod deflating {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub struct Raw {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    /// Deflates `data` as a browser does: raw, sync-flushed, the `00 00 ff ff` tail removed.
    pub fn deflate(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 1024);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        assert_eq!(c.total_in() as usize, data.len());
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    fn inflate(data: &[u8]) -> Vec<u8> {
        let mut d = Decompress::new(false);
        let mut input = data.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(1 << 20);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    impl Raw {
        /// Upgrades with a permessage-deflate offer; the response's head, lowercased.
        pub async fn connect(addr: std::net::SocketAddr) -> (Raw, String) {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let request = format!(
                "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut buf = Vec::new();
            let end = loop {
                let mut chunk = [0u8; 1024];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed during the upgrade");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            buf.drain(..end);
            (Raw { stream, buf }, head)
        }

        /// Sends a text message, compressed or not.
        pub async fn send(&mut self, text: &str, compressed: bool) {
            let payload = if compressed {
                deflate(text.as_bytes())
            } else {
                text.as_bytes().to_vec()
            };
            let first = 0x81 | if compressed { 0x40 } else { 0 };
            let mut frame = Vec::new();
            hubbub::server::wire::push_client_frame(&mut frame, first, &payload, [9, 8, 7, 6]);
            self.stream.write_all(&frame).await.unwrap();
        }

        /// The next frame: (compressed, opcode, payload inflated).
        pub async fn recv(&mut self) -> (bool, u8, Vec<u8>) {
            loop {
                if self.buf.len() >= 2 {
                    let (b0, b1) = (self.buf[0], self.buf[1]);
                    assert_eq!(b1 & 0x80, 0, "a server frame is never masked");
                    let (header, len) = match b1 & 0x7F {
                        126 if self.buf.len() >= 4 => {
                            (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize)
                        }
                        127 if self.buf.len() >= 10 => (
                            10,
                            u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        ),
                        126 | 127 => (usize::MAX, 0),
                        n => (2, n as usize),
                    };
                    if header != usize::MAX && self.buf.len() >= header + len {
                        let payload: Vec<u8> = self.buf[header..header + len].to_vec();
                        self.buf.drain(..header + len);
                        let compressed = b0 & 0x40 != 0;
                        let payload = if compressed {
                            inflate(&payload)
                        } else {
                            payload
                        };
                        return (compressed, b0 & 0x0F, payload);
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    self.stream.read(&mut chunk),
                )
                .await
                .expect("a frame within 5 s")
                .unwrap();
                assert!(n > 0, "the server closed the connection");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }

        /// The next text frame of type `kind`, as JSON, and whether it came compressed.
        pub async fn recv_type(&mut self, kind: &str) -> (bool, serde_json::Value) {
            loop {
                let (compressed, opcode, payload) = self.recv().await;
                if opcode != 1 {
                    continue;
                }
                let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                if value["type"] == kind {
                    return (compressed, value);
                }
            }
        }
    }
}

#[tokio::test]
async fn large_frames_go_compressed_to_clients_that_offer_permessage_deflate() {
    use deflating::Raw;
    let server = TestServer::start().await;
    let mut plain = server.joined("plain").await;
    let long = "a long message, the kind that is worth compressing; ".repeat(12);
    plain.say(&long).await;
    plain.recv_message().await;

    let (mut raw, head) = Raw::connect(server.addr).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains(
            "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover"
        ),
        "{head}"
    );
    // Its own frames compressed, as a browser's are: the join is understood.
    let join = json!({"type": "join", "username": "zip", "email": "zip@example.com"});
    raw.send(&join.to_string(), true).await;
    let (compressed, welcome) = raw.recv_type("welcome").await;
    assert!(compressed, "the welcome, with its history, is large");
    assert_eq!(welcome["history"][0]["text"], long.as_str());

    // A long message from it: compressed once for it, plain for the client that did not
    // negotiate (tungstenite would refuse a compressed frame: it reads it as it is).
    let reply = format!("{long} (a reply with ünïcödé ✓)");
    raw.send(&json!({"type": "message", "text": reply}).to_string(), true)
        .await;
    assert_eq!(plain.recv_message().await.text, reply);
    let (compressed, echo) = raw.recv_type("message").await;
    assert!(compressed);
    assert_eq!(echo["text"], reply.as_str());
    // Small frames stay plain, and plain frames from the client are fine too.
    raw.send(&json!({"type": "message", "text": "hi"}).to_string(), false)
        .await;
    let (compressed, echo) = raw.recv_type("message").await;
    assert!(!compressed);
    assert_eq!(echo["text"], "hi");
    assert_eq!(plain.recv_message().await.text, "hi");

    // A message that inflates far beyond the frame limit: refused with 1009, not inflated.
    let bomb = format!(r#"{{"type":"message","text":"{}"}}"#, "a".repeat(4 << 20));
    raw.send(&bomb, true).await;
    loop {
        let (_, opcode, payload) = raw.recv().await;
        if opcode == 8 {
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
            break;
        }
    }
    plain.assert_alive().await;
}
