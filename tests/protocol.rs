//! The wire protocol end to end: every frame and error of docs/protocol.md, against a real
//! server with real WebSocket clients.

mod common;

use common::*;
use futures::SinkExt;
use hubbub::protocol::{ServerFrame, User};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn md5_hex(s: &str) -> String {
    format!("{:x}", md5::compute(s.as_bytes()))
}

#[tokio::test]
async fn welcome_names_you_with_the_hash_of_your_normalised_email() {
    let server = TestServer::start().await;
    let mut alice = server.client().await;
    alice
        .send_json(json!({"type":"join","username":"  alice ","email":"  Alice@Example.COM "}))
        .await;
    let v = alice.recv_json().await;
    assert_eq!(v["type"], "welcome");
    let avatar = md5_hex("alice@example.com");
    assert_eq!(v["you"], json!({"username": "alice", "avatar": avatar}));
    assert_eq!(
        v["online"],
        json!([{"username": "alice", "avatar": avatar}])
    );
    assert_eq!(v["history"], json!([]));
    assert_eq!(v["room"], "general");
}

#[tokio::test]
async fn messages_reach_everyone_in_the_room_in_order_with_increasing_ids() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Interleave senders; both must see one and the same order.
    for i in 0..10 {
        alice.say(&format!("a{i}")).await;
        bob.say(&format!("b{i}")).await;
    }
    let mut seen_by_alice = Vec::new();
    let mut seen_by_bob = Vec::new();
    for _ in 0..20 {
        seen_by_alice.push(alice.recv_message().await);
        seen_by_bob.push(bob.recv_message().await);
    }
    assert_eq!(seen_by_alice, seen_by_bob);
    assert!(seen_by_alice.windows(2).all(|w| w[0].id < w[1].id));
    for m in &seen_by_alice {
        assert!(
            m.ts >= before && m.ts < before + 60_000,
            "ts {} is server time",
            m.ts
        );
    }
    // Each sender's own messages keep their order.
    let texts = |who: char| -> Vec<String> {
        seen_by_alice
            .iter()
            .filter(|m| m.text.starts_with(who))
            .map(|m| m.text.clone())
            .collect()
    };
    assert_eq!(
        texts('a'),
        (0..10).map(|i| format!("a{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        texts('b'),
        (0..10).map(|i| format!("b{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        seen_by_alice[0].from,
        User {
            username: "alice".into(),
            avatar: md5_hex("alice@example.com")
        }
    );
}

#[tokio::test]
async fn the_message_frame_has_the_documented_shape() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    alice.say("hello :robot:").await;
    let v = alice.recv_json().await;
    assert_eq!(v["type"], "message");
    assert!(v["id"].as_u64().unwrap() >= 1);
    assert!(v["ts"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(v["from"]["username"], "alice");
    // Stored and sent as typed: the shortcode is rendered by the client.
    assert_eq!(v["text"], "hello :robot:");
    assert_eq!(v.as_object().unwrap().len(), 5, "{v}");
}

#[tokio::test]
async fn join_and_leave_are_announced() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let bob = server.joined("bob").await;
    let v = alice.recv_json().await;
    assert_eq!(v["type"], "joined");
    assert_eq!(v["user"]["username"], "bob");
    drop(bob);
    let v = alice.recv_json().await;
    assert_eq!(v["type"], "left");
    assert_eq!(v["user"]["username"], "bob");
    // And the online list of the next joiner no longer has bob.
    let mut carol = server.client().await;
    let welcome = carol.join("carol").await;
    let ServerFrame::Welcome { online, .. } = welcome else {
        unreachable!()
    };
    let names: Vec<_> = online.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["alice", "carol"]);
}

#[tokio::test]
async fn the_email_never_reaches_another_client() {
    let server = TestServer::start().await;
    let mut bob = server.joined("bob").await;
    let mut alice = server.client().await;
    alice
        .join_as("alice", "Secret.Alice@Example.com", None)
        .await;
    alice.say("hi").await;
    bob.recv_message().await;
    bob.assert_alive().await;
    let everything = bob.raw.join("\n").to_lowercase();
    assert!(everything.contains("alice"));
    assert!(!everything.contains("secret.alice"), "{everything}");
    assert!(!everything.contains("example.com"), "{everything}");
}

#[tokio::test]
async fn hostile_text_is_relayed_intact() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    let hostile = "<img src=x onerror=alert(1)> </script>\"'&amp; \u{202e} 🤖 \\u0000";
    alice.say(hostile).await;
    assert_eq!(bob.recv_message().await.text, hostile);
}

#[tokio::test]
async fn bad_frames_get_an_error_and_the_connection_stays_open() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.send_text("this is not json").await;
    assert_eq!(c.recv_error().await, "bad_frame");
    c.send_json(json!({"type": "shout", "text": "hi"})).await;
    assert_eq!(c.recv_error().await, "bad_frame");
    c.send_json(json!({"type": "message"})).await;
    assert_eq!(c.recv_error().await, "bad_frame");
    c.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(c.recv_error().await, "bad_frame");
    c.assert_alive().await;
}

#[tokio::test]
async fn messages_before_joining_are_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.say("hello?").await;
    assert_eq!(c.recv_error().await, "not_joined");
    c.join("late").await;
}

#[tokio::test]
async fn joining_twice_is_refused() {
    let server = TestServer::start().await;
    let mut c = server.joined("alice").await;
    c.send_json(json!({"type":"join","username":"alice2","email":"a@b.io"}))
        .await;
    assert_eq!(c.recv_error().await, "already_joined");
    c.assert_alive().await;
}

#[tokio::test]
async fn usernames_are_validated() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    for bad in ["", "   ", &"x".repeat(33), "bell\u{7}", "new\nline"] {
        c.send_json(json!({"type":"join","username": bad,"email":"a@b.io"}))
            .await;
        assert_eq!(c.recv_error().await, "invalid_username", "{bad:?}");
    }
    // 32 characters (not bytes) is fine.
    c.join_as(&"é".repeat(32), "a@b.io", None).await;
}

#[tokio::test]
async fn emails_are_validated() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    for bad in [
        "",
        "alice",
        "alice@",
        "@example.com",
        "a b@example.com",
        "alice@localhost",
    ] {
        c.send_json(json!({"type":"join","username":"alice","email": bad}))
            .await;
        assert_eq!(c.recv_error().await, "invalid_email", "{bad:?}");
    }
    c.assert_alive().await;
}

#[tokio::test]
async fn a_name_belongs_to_its_account_in_any_case_even_after_its_owner_leaves() {
    let server = TestServer::start().await;
    let alice = server.joined("Alice").await;
    let token = alice
        .token_for("Alice")
        .expect("the first join gave a token");
    let mut other = server.client().await;
    let join = json!({"type":"join","username":"aLiCe","email":"someone@else.io"});
    other.send_json(join.clone()).await;
    let refused = other.recv_json().await;
    assert_eq!(refused["code"], "username_taken");
    assert!(
        refused["message"].as_str().unwrap().contains("sign in"),
        "{refused}"
    );
    drop(alice);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    other.send_json(join).await;
    assert_eq!(other.recv_error().await, "username_taken", "still hers");
    // Her token, in any spelling of her name, is her.
    other
        .send_json(json!({"type":"join","username":"ALICE","token": token}))
        .await;
    let welcome = other.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["you"]["username"], "Alice");
    assert!(
        welcome.get("token").is_none(),
        "a token is given once, at sign-up"
    );
}

#[tokio::test]
async fn one_account_on_two_connections_is_one_person_in_the_room() {
    let server = TestServer::start().await;
    let mut first = server.joined("alice").await;
    let mut watcher = server.joined("bob").await;
    first.recv().await; // bob joined
    // Without her token, even her own name and email are refused.
    let mut other = server.client().await;
    other
        .send_json(
            serde_json::json!({"type": "join", "username": "ALICE", "email": "alice@example.com"}),
        )
        .await;
    assert_eq!(other.recv_error().await, "username_taken");
    // A second tab of her account: both connections stay, she is listed once, and nobody is
    // told she joined or left.
    let mut second = server.client().await;
    let ServerFrame::Welcome {
        online,
        online_count,
        ..
    } = second.join_as("alice", "alice@example.com", None).await
    else {
        unreachable!()
    };
    assert_eq!(online_count, 2);
    assert_eq!(online.iter().filter(|u| u.username == "alice").count(), 1);
    second.say("from the second tab").await;
    for client in [&mut watcher, &mut first, &mut second] {
        assert_eq!(client.recv_message().await.text, "from the second tab");
    }
    drop(second);
    first.say("still here").await;
    assert_eq!(watcher.recv_message().await.text, "still here");
    assert!(
        !watcher
            .raw
            .iter()
            .any(|f| f.contains("\"left\"") || f.contains("\"joined\"")),
        "{:?}",
        watcher.raw
    );
    // Her last connection gone, she has left.
    drop(first);
    let ServerFrame::Left { user } = watcher.recv().await else {
        panic!("expected alice to leave");
    };
    assert_eq!(user.username, "alice");
}

#[tokio::test]
async fn empty_and_too_long_messages_are_refused() {
    let server = TestServer::start().await;
    let mut c = server.joined("alice").await;
    c.say("").await;
    assert_eq!(c.recv_error().await, "empty_message");
    c.say(" \n\t ").await;
    assert_eq!(c.recv_error().await, "empty_message");
    c.say(&"é".repeat(2001)).await;
    assert_eq!(c.recv_error().await, "message_too_long");
    c.say(&"é".repeat(2000)).await;
    assert_eq!(c.recv_message().await.text.chars().count(), 2000);
}

#[tokio::test]
async fn rooms_are_isolated() {
    let server = TestServer::start().await;
    let mut general = server.joined("alice").await;
    let mut dev = server.client().await;
    let welcome = dev
        .join_room_as("alice", "x@y.io", Some("dev-team"), None)
        .await;
    let ServerFrame::Welcome { room, .. } = welcome else {
        unreachable!()
    };
    assert_eq!(room, "dev-team");
    dev.say("only for dev").await;
    assert_eq!(dev.recv_message().await.text, "only for dev");
    general
        .assert_quiet(std::time::Duration::from_millis(300))
        .await;
    dev.send_json(json!({"type":"join","username":"x","email":"x@y.io","room":"Bad Room"}))
        .await;
    let mut bad = server.client().await;
    bad.send_json(json!({"type":"join","username":"x","email":"x@y.io","room":"Bad Room"}))
        .await;
    assert_eq!(bad.recv_error().await, "invalid_room");
}

#[tokio::test]
async fn large_rooms_stop_announcing_joins_but_count_everyone() {
    let server = TestServer::with(|c| c.presence_limit = 2).await;
    let mut a = server.joined("a").await;
    let _b = server.joined("b").await;
    assert_eq!(
        a.recv_json().await["type"],
        "joined",
        "small rooms announce joins"
    );
    let mut c = server.client().await;
    c.send_json(json!({"type":"join","username":"c","email":"c@example.com"}))
        .await;
    let welcome = c.recv_json().await;
    assert_eq!(welcome["online_count"], 3);
    assert_eq!(welcome["online"].as_array().unwrap().len(), 2, "{welcome}");
    // Past the limit, nobody is told about the third join.
    a.assert_alive().await;
    assert!(
        !a.raw.iter().any(|f| f.contains("\"username\":\"c\"")),
        "{:?}",
        a.raw
    );
}

#[tokio::test]
async fn typing_is_announced_once_expires_on_the_server_and_is_never_stored() {
    let server = TestServer::with(|c| c.typing_timeout_ms = 300).await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    alice.recv_json().await; // bob joined
    for _ in 0..3 {
        alice.send_json(json!({"type": "typing"})).await;
    }
    let v = bob.recv_json().await;
    assert_eq!(
        (v["type"].as_str(), v["active"].as_bool()),
        (Some("typing"), Some(true)),
        "{v}"
    );
    assert_eq!(v["user"]["username"], "alice");
    // Nothing more until the server ends it by itself.
    let v = bob.recv_json().await;
    assert_eq!(
        (v["type"].as_str(), v["active"].as_bool()),
        (Some("typing"), Some(false)),
        "{v}"
    );

    // Sending a message ends it too, before the message arrives.
    alice.send_json(json!({"type": "typing"})).await;
    assert_eq!(bob.recv_json().await["active"], true);
    alice.say("done typing").await;
    assert_eq!(bob.recv_json().await["active"], false);
    assert_eq!(bob.recv_message().await.text, "done typing");

    // Never stored: a newcomer's history has the message only.
    let mut carol = server.client().await;
    let ServerFrame::Welcome { history, .. } = carol.join("carol").await else {
        unreachable!()
    };
    assert_eq!(history.len(), 1);
    // And typing before joining is refused like any frame that needs a room.
    let mut stranger = server.client().await;
    stranger.send_json(json!({"type": "typing"})).await;
    assert_eq!(stranger.recv_error().await, "not_joined");
}

#[tokio::test]
async fn a_plain_http_request_to_the_websocket_endpoint_is_told_what_is_wrong() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/ws").await;
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("WebSocket"), "{body}");
    let (status, body) = http_get(
        server.addr,
        "/ws",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "8"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Sec-WebSocket-Version"), "{body}");
}

#[tokio::test]
async fn a_welcome_larger_than_one_fragment_arrives_whole() {
    // Frames above 1 KiB are written as fragments (src/server/websocket.rs); the client must
    // still get one intact message, multi-byte characters included.
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let long = "€uro ".repeat(80); // 480 chars, 880 bytes
    for _ in 0..6 {
        alice.say(&long).await;
        alice.recv_message().await;
    }
    let mut bob = server.client().await;
    let ServerFrame::Welcome { history, .. } = bob.join("bob").await else {
        panic!("expected welcome");
    };
    assert_eq!(history.len(), 6);
    assert!(history.iter().all(|m| m.text == long));
}

/// The writer owns the sending side, so the WebSocket layer cannot answer by itself: a ping
/// still gets its pong, and a client's close its echo, through the writer.
#[tokio::test]
async fn a_ping_gets_its_pong_and_a_close_its_echo() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    alice
        .ws
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = loop {
        match alice.ws.next().await.unwrap().unwrap() {
            Message::Pong(payload) => break payload,
            Message::Text(_) => continue,
            other => panic!("expected a pong, got {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"are you there");
    // A big message after it still arrives whole.
    alice.say(&"long ✓ ".repeat(250)).await;
    assert_eq!(alice.recv_message().await.text, "long ✓ ".repeat(250));

    let goodbye = CloseFrame {
        code: 4321.into(),
        reason: "bye".into(),
    };
    alice.ws.send(Message::Close(Some(goodbye))).await.unwrap();
    let echo = loop {
        match alice.ws.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected the close echoed, got {other:?}"),
        }
    };
    assert_eq!(echo.map(|f| u16::from(f.code)), Some(4321));
}
