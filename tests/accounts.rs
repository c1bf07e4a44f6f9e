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

// ---- Browsers: HTTP sign-up, sign-in and sign-out, the session cookie. ----

const SAME_SITE: (&str, &str) = ("Sec-Fetch-Site", "same-origin");

/// Signs `name` up over HTTP as a browser would; returns the session secret and the cookie.
async fn browser_sign_up(server: &TestServer, name: &str) -> (String, String) {
    let email = format!("{name}@example.com");
    let form = [("username", name), ("email", email.as_str())];
    let (status, head, body) = http_post(server.addr, "/api/sign_up", &form, &[SAME_SITE]).await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(body.contains("SignedIn"), "{body}");
    session_cookie(&head).expect("a session cookie")
}

async fn ws_with_cookie(server: &TestServer, secret: &str) -> Result<Client, u16> {
    let cookie = format!("hubbub_session={secret}");
    Client::connect_with(&server.url(), &[("Cookie", cookie.as_str())]).await
}

async fn form(
    server: &TestServer,
    path: &str,
    fields: &[(&str, &str)],
    secret: Option<&str>,
) -> (String, String) {
    let cookie = secret.map(|s| format!("hubbub_session={s}"));
    let mut headers = vec![SAME_SITE];
    if let Some(cookie) = &cookie {
        headers.push(("Cookie", cookie.as_str()));
    }
    let (status, head, body) = http_post(server.addr, path, fields, &headers).await;
    assert_eq!(status, 200, "{path}: {head}\n{body}");
    (head, body)
}

#[tokio::test]
async fn a_browser_signs_up_with_an_http_only_cookie_that_the_socket_then_carries() {
    let server = TestServer::start().await;
    let (secret, cookie) = browser_sign_up(&server, "alice").await;
    assert_eq!(secret.len(), 64);
    for flag in ["httponly", "samesite=lax", "path=/", "max-age="] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("secure"), "plain http: {cookie}");
    // Over https behind a trusted proxy, the cookie is Secure too; anyone else saying so
    // with the header is not believed.
    let bob = [("username", "bob"), ("email", "bob@example.com")];
    let https = [SAME_SITE, ("X-Forwarded-Proto", "http, https")];
    let (_, head, _) = http_post(server.addr, "/api/sign_up", &bob, &https).await;
    assert!(
        !session_cookie(&head).unwrap().1.contains("secure"),
        "{head}"
    );
    let proxied =
        TestServer::with(|hub| hub.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    let (_, head, _) = http_post(proxied.addr, "/api/sign_up", &bob, &https).await;
    assert!(
        session_cookie(&head).unwrap().1.contains("secure"),
        "{head}"
    );

    // The socket knows who it is before any frame: no token needed, none given.
    let mut alice = ws_with_cookie(&server, &secret).await.unwrap();
    alice
        .send_json(json!({"type":"join","username":"alice"}))
        .await;
    let welcome = alice.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert!(welcome.get("token").is_none());
    // Signed in as alice, it cannot be someone else.
    let mut again = ws_with_cookie(&server, &secret).await.unwrap();
    again
        .send_json(json!({"type":"join","username":"carol","email":"c@example.com"}))
        .await;
    assert_eq!(again.recv_error().await, "username_taken");
    // Another browser, without the cookie: the name is taken, the email opens nothing.
    let (_, body) = form(
        &server,
        "/api/sign_up",
        &[("username", "Alice"), ("email", "alice@example.com")],
        None,
    )
    .await;
    assert!(
        body.contains("UsernameTaken") || body.contains("username_taken"),
        "{body}"
    );
    // A stale or made-up cookie is just "not signed in".
    let mut stale = ws_with_cookie(&server, &"f".repeat(64)).await.unwrap();
    stale
        .send_json(json!({"type":"join","username":"alice","email":"alice@example.com"}))
        .await;
    assert_eq!(stale.recv_error().await, "username_taken");
}

#[tokio::test]
async fn cross_site_posts_to_the_account_forms_are_refused() {
    let server = TestServer::start().await;
    let fields = [("username", "victim"), ("email", "v@example.com")];
    for headers in [
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Sec-Fetch-Site", "same-site")],
        vec![("Origin", "https://evil.example")],
        vec![],
    ] {
        let (status, _, body) = http_post(server.addr, "/api/sign_up", &fields, &headers).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
    }
    // The name was not taken by any of them.
    browser_sign_up(&server, "victim").await;
}

#[tokio::test]
async fn a_password_signs_in_elsewhere_and_signing_out_everywhere_ends_every_session() {
    let server = TestServer::start().await;
    let (first, _) = browser_sign_up(&server, "Zoë").await;
    let (_, body) = form(
        &server,
        "/api/set_password",
        &[("current", ""), ("new", "short")],
        Some(&first),
    )
    .await;
    assert!(body.contains("invalid_password"), "{body}");
    let password = "correct horse battery ✓";
    let (_, body) = form(
        &server,
        "/api/set_password",
        &[("current", ""), ("new", password)],
        Some(&first),
    )
    .await;
    assert!(body.contains("\"has_password\":true"), "{body}");

    // Another browser: wrong password, then the right one.
    let (head, body) = form(
        &server,
        "/api/sign_in",
        &[("username", "zoë"), ("password", "nope nope")],
        None,
    )
    .await;
    assert!(
        body.contains("sign_in_failed") && session_cookie(&head).is_none(),
        "{body}"
    );
    let (head, body) = form(
        &server,
        "/api/sign_in",
        &[("username", "ZOË"), ("password", password)],
        None,
    )
    .await;
    assert!(body.contains("SignedIn"), "{body}");
    let (second, _) = session_cookie(&head).unwrap();
    let mut open = ws_with_cookie(&server, &second).await.unwrap();
    open.send_json(json!({"type":"join","username":"Zoë"}))
        .await;
    assert_eq!(open.recv_json().await["type"], "welcome");

    // Signing out of every browser from the first one: the open socket is closed, and
    // neither session opens anything any more.
    form(
        &server,
        "/api/sign_out",
        &[("everywhere", "true")],
        Some(&first),
    )
    .await;
    assert_eq!(open.close_code().await, 4005);
    for secret in [&first, &second] {
        let mut c = ws_with_cookie(&server, secret).await.unwrap();
        c.send_json(json!({"type":"join","username":"Zoë","email":"zoe@example.com"}))
            .await;
        assert_eq!(c.recv_error().await, "username_taken");
    }
    // The password still works.
    let (_, body) = form(
        &server,
        "/api/sign_in",
        &[("username", "Zoë"), ("password", password)],
        None,
    )
    .await;
    assert!(body.contains("SignedIn"), "{body}");
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_account() {
    let server = TestServer::start().await;
    let (secret, _) = browser_sign_up(&server, "target").await;
    form(
        &server,
        "/api/set_password",
        &[("current", ""), ("new", "the real one")],
        Some(&secret),
    )
    .await;
    let mut limited = false;
    for _ in 0..8 {
        let (_, body) = form(
            &server,
            "/api/sign_in",
            &[("username", "target"), ("password", "guess guess")],
            None,
        )
        .await;
        if body.contains("rate_limited") {
            limited = true;
            break;
        }
        assert!(body.contains("sign_in_failed"), "{body}");
    }
    assert!(limited, "guessing went on without a limit");
    // While limited, even the right password waits: a guesser learns nothing.
    let (_, body) = form(
        &server,
        "/api/sign_in",
        &[("username", "target"), ("password", "the real one")],
        None,
    )
    .await;
    assert!(body.contains("rate_limited"), "{body}");
}

#[tokio::test]
async fn an_api_token_signs_a_bot_in_at_the_upgrade_until_it_is_revoked() {
    let server = TestServer::start().await;
    let (secret, _) = browser_sign_up(&server, "botmaker").await;
    let (_, body) = form(
        &server,
        "/api/create_api_token",
        &[("label", " ")],
        Some(&secret),
    )
    .await;
    assert!(body.contains("Err"), "an unnamed token is refused: {body}");
    let (_, body) = form(
        &server,
        "/api/create_api_token",
        &[("label", "deploy bot <b>")],
        Some(&secret),
    )
    .await;
    let created: Result<String, String> = serde_json::from_str(&body).unwrap();
    let token = created.unwrap();
    let bearer = format!("Bearer {token}");

    let mut bot = Client::connect_with(&server.url(), &[("Authorization", bearer.as_str())])
        .await
        .unwrap();
    bot.send_json(json!({"type":"join","username":"botmaker","room":"deploys"}))
        .await;
    let welcome = bot.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["room"], "deploys");

    // The list names it and never shows the secret.
    let (_, body) = form(&server, "/api/api_tokens", &[], Some(&secret)).await;
    assert!(
        body.contains("deploy bot <b>") && !body.contains(&token),
        "{body}"
    );
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    // A bot's token is no browser session: as a cookie it opens none of the account's forms.
    let (_, body) = form(&server, "/api/me", &[], Some(&token)).await;
    assert_eq!(body, "null");
    let as_cookie = format!("hubbub_session={token}");
    let (status, _, _) = http_post(
        server.addr,
        "/api/create_api_token",
        &[("label", "more")],
        &[SAME_SITE, ("Cookie", as_cookie.as_str())],
    )
    .await;
    assert_ne!(status, 200);
    // Nor is a browser session a bot's token.
    let browser_as_bearer = format!("Bearer {secret}");
    let refused = Client::connect_with(
        &server.url(),
        &[("Authorization", browser_as_bearer.as_str())],
    )
    .await;
    assert_eq!(refused.err(), Some(401));
    // Revoked: the bot already connected is closed, and the next upgrade with it refused.
    let (_, body) = form(
        &server,
        "/api/revoke_api_token",
        &[("id", &id)],
        Some(&secret),
    )
    .await;
    assert!(body.contains("Done"), "{body}");
    assert_eq!(bot.close_code().await, 4008);
    let refused = Client::connect_with(&server.url(), &[("Authorization", bearer.as_str())]).await;
    assert_eq!(refused.err(), Some(401));
    let made_up = format!("Bearer {}", "a".repeat(64));
    let refused = Client::connect_with(&server.url(), &[("Authorization", made_up.as_str())]).await;
    assert_eq!(refused.err(), Some(401));
    // Another account cannot revoke or list someone else's tokens.
    let (other, _) = browser_sign_up(&server, "someone").await;
    let (_, body) = form(&server, "/api/api_tokens", &[], Some(&other)).await;
    assert_eq!(body, "[]");
}

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions_and_their_open_sockets() {
    let server = TestServer::start().await;
    let (here, _) = browser_sign_up(&server, "dana").await;
    let (_, body) = form(
        &server,
        "/api/set_password",
        &[("current", ""), ("new", "first secret")],
        Some(&here),
    )
    .await;
    assert!(body.contains("SignedIn"), "{body}");
    let (head, _) = form(
        &server,
        "/api/sign_in",
        &[("username", "dana"), ("password", "first secret")],
        None,
    )
    .await;
    let (thief, _) = session_cookie(&head).unwrap();
    let mut stolen = ws_with_cookie(&server, &thief).await.unwrap();
    stolen
        .send_json(json!({"type":"join","username":"dana"}))
        .await;
    assert_eq!(stolen.recv_json().await["type"], "welcome");

    let change = [("current", "first secret"), ("new", "second secret")];
    let (_, body) = form(&server, "/api/set_password", &change, Some(&here)).await;
    assert!(body.contains("SignedIn"), "{body}");
    assert_eq!(stolen.close_code().await, 4008);
    let mut again = ws_with_cookie(&server, &thief).await.unwrap();
    again
        .send_json(json!({"type":"join","username":"dana"}))
        .await;
    assert_eq!(
        again.recv_error().await,
        "username_taken",
        "that session has ended"
    );
    let mut mine = ws_with_cookie(&server, &here).await.unwrap();
    mine.send_json(json!({"type":"join","username":"dana"}))
        .await;
    assert_eq!(
        mine.recv_json().await["type"],
        "welcome",
        "this one goes on"
    );
}

#[tokio::test]
async fn the_load_generator_comes_back_as_the_same_accounts_with_their_tokens() {
    let server = TestServer::start().await;
    let tokens = server.dir.path().join("tokens.txt");
    let url = server.url();
    let run = |with_tokens: bool| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubbub-load"));
        cmd.args([
            "--url",
            &url,
            "--clients",
            "3",
            "--senders",
            "1",
            "--rate",
            "5",
        ])
        .args(["--seconds", "0.5"]);
        if with_tokens {
            cmd.arg("--tokens").arg(&tokens);
        }
        cmd.output()
    };
    let first = run(true).await.unwrap();
    assert!(first.status.success(), "{first:?}");
    // It recognises its own messages in what it receives, and loses none.
    let report = String::from_utf8_lossy(&first.stdout);
    let delivered: u64 = report
        .split_once("delivered=")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no delivery count in {report}"));
    assert!(delivered >= 3, "{report}");
    assert!(report.contains(" lost=0 "), "{report}");
    let saved = std::fs::read_to_string(&tokens).unwrap();
    assert_eq!(saved.lines().count(), 3, "{saved}");
    assert!(saved.lines().all(|l| l.starts_with("lg") && l.len() > 64));
    // Without them the names are taken; with them, the same accounts join again.
    let refused = run(false).await.unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("username_taken"));
    let again = run(true).await.unwrap();
    assert!(again.status.success(), "{again:?}");
}

#[tokio::test]
async fn the_forms_work_without_the_script_and_bring_refusals_back_in_the_url() {
    let server = TestServer::start().await;
    let page = format!("http://{}/r/dev", server.addr);
    let as_a_form = [
        SAME_SITE,
        ("Accept", "text/html,application/xhtml+xml"),
        ("Referer", page.as_str()),
    ];
    let fields = [("username", "plain"), ("email", "plain@example.com")];
    let (status, head, _) = http_post(server.addr, "/api/sign_up", &fields, &as_a_form).await;
    assert!((300..400).contains(&status), "a redirect back: {head}");
    assert!(
        head.contains("location: http://") && head.contains("/r/dev"),
        "{head}"
    );
    assert!(session_cookie(&head).is_some(), "{head}");

    let (status, head, _) = http_post(server.addr, "/api/sign_up", &fields, &as_a_form).await;
    assert!((300..400).contains(&status), "{head}");
    assert!(
        head.contains("__err="),
        "the refusal travels in the URL: {head}"
    );
    assert!(session_cookie(&head).is_none());
    // (The page it leads to shows the message: end2end/tests/accounts.spec.ts.)
}
