//! Private messages: only the two people ever receive them (live, on resume, in history),
//! they are stored like any message, and sending to someone not online is a clear error.

mod common;

use common::*;
use hubbub::protocol::ServerFrame;
use serde_json::json;

fn pm(text: &str, to: &str) -> serde_json::Value {
    json!({"type": "message", "text": text, "to": to, "client_id": format!("pm-{text}")})
}

#[tokio::test]
async fn only_the_sender_and_the_recipient_ever_see_a_private_message() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    let mut carol = server.joined("carol").await;
    alice.send_json(pm("psst secret", "BOB")).await; // any case
    alice.say("public hello").await;

    let to_bob = bob.recv_message().await;
    assert_eq!(to_bob.text, "psst secret");
    assert_eq!(to_bob.to.as_ref().unwrap().username, "bob");
    assert_eq!(
        bob.recv_message().await.text,
        "public hello",
        "order is kept"
    );
    let echo = alice.recv_message().await;
    assert_eq!(
        echo, to_bob,
        "the sender gets it back as its acknowledgement"
    );

    // Carol sees the public message, and nothing at all of the private one.
    assert_eq!(carol.recv_message().await.text, "public hello");
    carol.assert_alive().await;
    assert!(
        !carol.raw.iter().any(|f| f.contains("secret")),
        "{:?}",
        carol.raw
    );

    // Not on resume, not in history, not in a page of older messages...
    let mut carol_again = server.client().await;
    let welcome = carol_again
        .join_as("carol2", "carol@example.com", Some(0))
        .await;
    let mut back = server.client().await;
    let fresh = back.join_as("dave", "dave@example.com", None).await;
    for frame in [welcome, fresh] {
        let ServerFrame::Welcome { history, .. } = frame else {
            unreachable!()
        };
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(history[0].text, "public hello");
    }
    back.send_json(json!({"type": "history", "before": u32::MAX}))
        .await;
    let page = back.recv_text().await;
    assert!(
        page.contains("public hello") && !page.contains("secret"),
        "{page}"
    );
    // ...and not on the server-rendered page.
    let (_, html) = server.get("/").await;
    assert!(html.contains("public hello") && !html.contains("secret"));
}

#[tokio::test]
async fn a_private_message_survives_a_reconnect_for_both_people() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    alice.say("before").await;
    let seen = bob.recv_message().await.id;
    drop(bob);
    // Bob reconnects (same name and email) before the old connection is noticed gone, then
    // Alice writes to him privately; he resumes from `since` and then from history.
    let mut bob = server.client().await;
    bob.join("bob").await;
    alice.send_json(pm("while you were away", "bob")).await;
    bob.recv_message().await;
    drop(bob);
    let mut bob = server.client().await;
    let ServerFrame::Welcome { history, .. } =
        bob.join_as("bob", "bob@example.com", Some(seen)).await
    else {
        unreachable!()
    };
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].text, "while you were away");
    let mut alice_again = server.client().await;
    let ServerFrame::Welcome { history, .. } = alice_again
        .join_as("alice2", "alice@example.com", None)
        .await
    else {
        unreachable!()
    };
    // A different name with Alice's email is not Alice: she sees only the public message.
    assert_eq!(history.len(), 1);
    // Alice herself (same name and email; her old connection is taken over).
    let mut alice = server.client().await;
    let ServerFrame::Welcome { history, .. } = alice.join("alice").await else {
        unreachable!()
    };
    assert_eq!(
        history.len(),
        2,
        "Alice sees her own private message: {history:?}"
    );
}

#[tokio::test]
async fn sending_to_someone_not_online_is_refused_clearly() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let mut elsewhere = server.client().await;
    elsewhere
        .send_json(json!({"type":"join","username":"zed","email":"z@example.com","room":"other"}))
        .await;
    elsewhere.recv_json().await;
    for to in ["nobody", "zed", "alice"] {
        alice.send_json(pm("hello?", to)).await;
        let v = alice.recv_json().await;
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["code"], "recipient_not_online", "{to}: {v}");
        assert_eq!(v["client_id"], "pm-hello?");
    }
    alice.assert_alive().await;
}

#[tokio::test]
async fn a_private_message_does_not_end_typing_for_the_room() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    let mut carol = server.joined("carol").await;
    alice.recv_json().await; // bob joined
    alice.recv_json().await; // carol joined
    bob.recv_json().await; // carol joined
    alice.send_json(json!({"type": "typing"})).await;
    let v = carol.recv_json().await;
    assert_eq!(
        (v["type"].as_str(), v["active"].as_bool()),
        (Some("typing"), Some(true))
    );
    bob.recv_json().await; // typing, for bob too
    alice
        .send_json(json!({"type": "message", "text": "psst", "to": "bob"}))
        .await;
    assert_eq!(bob.recv_message().await.text, "psst");
    // Carol's next frame is bob's public message: no "stopped typing" gave the private
    // message away (the typing notice itself lasts its 5 s unless a public message ends it).
    bob.say("marker").await;
    let v = carol.recv_json().await;
    assert_eq!(
        (v["type"].as_str(), v["text"].as_str()),
        (Some("message"), Some("marker")),
        "{v}"
    );
    // A public message from alice ends it for everyone, as before.
    alice.say("public").await;
    let v = carol.recv_json().await;
    assert_eq!(
        (v["type"].as_str(), v["active"].as_bool()),
        (Some("typing"), Some(false)),
        "{v}"
    );
    assert!(!carol.raw.iter().any(|f| f.contains("psst")));
}

#[tokio::test]
async fn names_that_look_like_an_online_name_are_refused() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    for twin in [
        "alice\u{200b}",
        "\u{202e}alice",
        "a\u{307}lice",
        "аlice",
        "ALICE",
        "ａｌｉｃｅ",
    ] {
        let mut c = server.client().await;
        c.send_json(json!({"type": "join", "username": twin, "email": "mallory@example.com"}))
            .await;
        let v = c.recv_json().await;
        assert_eq!(v["type"], "error", "{twin:?} was accepted: {v}");
        let code = v["code"].as_str().unwrap();
        assert!(
            code == "username_taken" || code == "invalid_username",
            "{twin:?}: {v}"
        );
        if code == "username_taken" && twin != "ALICE" && twin != "ａｌｉｃｅ" {
            let message = v["message"].as_str().unwrap();
            assert!(message.contains("looks too much like “alice”"), "{message}");
        }
    }
    // A private message to a look-alike spelling reaches the real alice, nobody else.
    let mut bob = server.joined("bob").await;
    alice.recv_json().await; // bob joined
    bob.send_json(json!({"type": "message", "text": "hi", "to": "АLICE"}))
        .await;
    let got = alice.recv_message().await;
    assert_eq!(
        (got.text.as_str(), got.to.unwrap().username.as_str()),
        ("hi", "alice")
    );
    // The name is shown as normalised: fullwidth letters become ordinary ones.
    let mut wide = server.client().await;
    let ServerFrame::Welcome { you, .. } = wide.join_as("ｄａｖｅ", "dave@example.com", None).await
    else {
        unreachable!()
    };
    assert_eq!(you.username, "dave");
}
