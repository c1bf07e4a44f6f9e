//! Accounts over the WebSocket: a name belongs to the account that first took it. Typing its
//! name and email opens nothing, a token is the way back for clients without cookies, and
//! private messages belong to accounts.

mod common;

use common::*;
use hubbub::protocol::ServerFrame;
use serde_json::json;

#[tokio::test]
async fn typing_someones_name_and_email_gives_neither_their_name_nor_their_private_messages() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    alice.recv().await; // bob joined
    alice
        .send_json(json!({"type":"message","text":"the secret plan","to":"bob"}))
        .await;
    assert_eq!(bob.recv_message().await.text, "the secret plan");
    bob.send_json(json!({"type":"message","text":"my secret reply","to":"alice"}))
        .await;
    assert_eq!(alice.recv_message().await.text, "the secret plan");
    assert_eq!(alice.recv_message().await.text, "my secret reply");
    assert_eq!(bob.recv_message().await.text, "my secret reply");
    drop(alice);

    // Another browser, with alice's name and email and `since: 0`, offline or online.
    for name in ["alice", "ALICE", "\u{430}lice"] {
        let mut mallory = server.client().await;
        mallory
            .send_json(json!({"type":"join","username":name,"email":"alice@example.com","since":0}))
            .await;
        let refused = mallory.recv_json().await;
        assert_eq!(refused["type"], "error", "{refused}");
        assert_eq!(refused["code"], "username_taken", "{refused}");
        // Nor can anything be read or sent on that connection.
        mallory
            .send_json(json!({"type":"history","before":u32::MAX}))
            .await;
        assert_eq!(mallory.recv_error().await, "not_joined");
        mallory
            .send_json(json!({"type":"message","text":"hi, it's alice"}))
            .await;
        assert_eq!(mallory.recv_error().await, "not_joined");
        assert!(
            !mallory.raw.iter().any(|f| f.contains("secret")),
            "{:?}",
            mallory.raw
        );
    }
    bob.assert_alive().await;
}

#[tokio::test]
async fn a_stolen_avatar_hash_or_a_made_up_token_opens_nothing() {
    let server = TestServer::start().await;
    let alice = server.joined("alice").await;
    let avatar = format!("{:x}", md5::compute("alice@example.com"));
    let guesses = [
        avatar.clone(),
        format!("{avatar}{avatar}"),
        "0".repeat(64),
        "<script>".into(),
    ];
    for token in guesses {
        let mut mallory = server.client().await;
        mallory
            .send_json(json!({"type":"join","username":"alice","token":token}))
            .await;
        assert_eq!(mallory.recv_error().await, "invalid_token");
    }
    drop(alice);
}

#[tokio::test]
async fn the_first_join_gives_a_token_that_brings_the_account_back_from_anywhere() {
    let server = TestServer::start().await;
    let mut first = server.client().await;
    let welcome = first.join("Zoë").await;
    let ServerFrame::Welcome { token, you, .. } = welcome else {
        unreachable!()
    };
    let token = token.expect("a token for the new account");
    assert_eq!(token.len(), 64, "256 bits, hex");
    assert_eq!(you.username, "Zoë");
    first.say("from the first connection").await;
    let mine = first.recv_message().await;
    drop(first);

    // Later, elsewhere: the token (no email needed) is the account, with its own messages'
    // client ids and private messages.
    let mut again = server.client().await;
    again
        .send_json(json!({"type":"join","username":"zoë","token":token,"since":0}))
        .await;
    let welcome = again.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["you"]["username"], "Zoë");
    assert_eq!(welcome["you"]["avatar"], mine.from.avatar);
    assert_eq!(welcome["history"][0]["id"], mine.id);
    // A token is its account's only: it does not fit another name.
    let mut other = server.client().await;
    other
        .send_json(json!({"type":"join","username":"bob","token":token}))
        .await;
    assert_eq!(other.recv_error().await, "username_taken");
}

#[tokio::test]
async fn new_accounts_are_limited_per_address() {
    let server = TestServer::with(|hub| hub.signups_per_ip_per_hour = 2).await;
    let _one = server.joined("one").await;
    let _two = server.joined("two").await;
    let mut three = server.client().await;
    three
        .send_json(json!({"type":"join","username":"three","email":"3@example.com"}))
        .await;
    let refused = three.recv_json().await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    // Existing accounts are not new ones: their tokens still work.
    let mut back = server.client().await;
    back.join("one").await;
}
