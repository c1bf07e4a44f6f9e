//! Link previews, against pages served here: a card for the first link (title, description,
//! picture) reaches everyone; a link that leads to a private address, directly or by a
//! redirect, is never fetched.

mod common;

use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use common::*;
use hubbub::protocol::{Change, Preview, ServerFrame};
use serde_json::json;
use std::net::SocketAddr;

/// A site with pages to preview; `forbidden` is an address it redirects to.
async fn site(forbidden: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let html = |body: &'static str| {
        move || async move { ([("content-type", "text/html; charset=utf-8")], body) }
    };
    let app = axum::Router::new()
        .route(
            "/story",
            get(html(
                r#"<!doctype html><html><head><title>Fallback</title>
                <meta property="og:title" content="Cats &amp; <b>dogs</b> agree">
                <meta property="og:description" content="A rare   accord.">
                <meta property="og:image" content="/cat.png">
                <meta property="og:site_name" content="The Daily Paw"></head><body></body></html>"#,
            )),
        )
        .route(
            "/cat.png",
            get(|| async { ([("content-type", "image/png")], png(640, 320)).into_response() }),
        )
        .route("/plain", get(|| async { "not html" }))
        .route(
            "/sneaky",
            get(move || async move { Redirect::temporary(&format!("http://{forbidden}/metrics")) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn the_first_link_gets_a_card_and_private_addresses_are_never_fetched() {
    // The chat server itself is a private address the site will try to send it to.
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forbidden = probe.local_addr().unwrap();
    let site = site(forbidden).await;
    let server = TestServer::with(move |c| c.link_previews_allow = vec![site.to_string()]).await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    alice.recv().await; // bob joined

    alice
        .send_json(json!({"type": "message", "text": format!("read **this** http://{site}/story and http://{site}/plain")}))
        .await;
    let said = bob.recv_message().await;
    let card = bob.recv_message().await;
    let Some(Change::Previewed { target, preview }) = card.change.clone() else {
        panic!("not a preview: {card:?}");
    };
    assert_eq!(target, said.id);
    let Preview {
        url,
        site: name,
        title,
        description,
        image,
    } = preview.clone();
    assert_eq!(url, format!("http://{site}/story"));
    assert_eq!(name, "The Daily Paw");
    assert_eq!(title, "Cats & <b>dogs</b> agree");
    assert_eq!(description.as_deref(), Some("A rare accord."));
    let image = image.expect("the page's picture");
    let token = bob.token_for("bob").unwrap();
    let (status, _, thumb) = fetch(server.addr, &image.thumbnail_url(), Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(image::load_from_memory(&thumb).unwrap().width(), 320);
    // History has the card on the message itself.
    let mut carol = server.client().await;
    let ServerFrame::Welcome { history, .. } = carol.join("carol").await else {
        panic!()
    };
    assert_eq!(history.last().unwrap().preview.as_ref(), Some(&preview));

    // A redirect to a private address, a private address itself, a link-local one: never
    // fetched, nothing sent, each counted.
    for link in [
        format!("http://{site}/sneaky"),
        format!("http://{forbidden}/metrics"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://{site}/plain"),
    ] {
        alice
            .send_json(json!({"type": "message", "text": link}))
            .await;
        bob.recv_message().await;
    }
    let refused = loop {
        let (_, text) = server.get("/metrics").await;
        let refused = metric(&text, "hubbub_link_previews_refused_total");
        if refused >= 4.0 {
            break refused;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(refused, 4.0);
    bob.assert_quiet(std::time::Duration::from_millis(300))
        .await;
    // Nothing ever connected to the forbidden address.
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(100), probe.accept()).await;
    assert!(accepted.is_err(), "the private address was contacted");

    // A private message's card picture is seen by its two people, not by anyone else.
    alice
        .send_json(
            json!({"type": "message", "text": format!("psst http://{site}/story"), "to": "bob"}),
        )
        .await;
    let psst = loop {
        let m = alice.recv_message().await;
        if m.text.starts_with("psst") {
            break m.id;
        }
    };
    let private_card = loop {
        let m = alice.recv_message().await;
        if let Some(Change::Previewed { target, preview }) = m.change
            && target == psst
        {
            break preview;
        }
    };
    let picture = private_card.image.expect("a picture").thumbnail_url();
    let alice_token = alice.token_for("alice").unwrap();
    let carol_token = carol.token_for("carol").unwrap();
    for (who, status) in [(&alice_token, 200), (&token, 200), (&carol_token, 404)] {
        assert_eq!(fetch(server.addr, &picture, Some(who)).await.0, status);
    }

    // Deleting the message deletes the card's picture too.
    alice
        .send_json(json!({"type": "delete", "id": said.id}))
        .await;
    // (Bob's queue still holds the private message and its card: wait for the deletion.)
    while bob.recv_message().await.change != Some(Change::Deleted { target: said.id }) {}
    assert_eq!(
        fetch(server.addr, &image.thumbnail_url(), Some(&token))
            .await
            .0,
        404
    );
    // And the card itself: someone resuming from before the message gets its deletion, not
    // the title and link it had (a link posted by mistake is gone once deleted).
    let mut dave = server.client().await;
    let ServerFrame::Welcome { history, .. } = dave
        .join_as("dave", "dave@example.com", Some(said.id - 1))
        .await
    else {
        panic!("not welcomed")
    };
    assert!(
        history.iter().any(|m| m.id == said.id && m.deleted),
        "{history:?}"
    );
    let card = |m: &&hubbub::protocol::ChatMessage| matches!(m.change, Some(Change::Previewed { target, .. }) if target == said.id);
    assert!(!history.iter().any(|m| card(&m)), "{history:?}");
}
