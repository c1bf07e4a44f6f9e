//! Deleting messages and keeping a community civil: authors delete their own messages, the
//! first account (the admin) deletes any public one, removes people from a room and bans
//! accounts, and every admin action is in the audit log.

mod common;

use common::*;
use hubbub::protocol::{Change, ServerFrame};
use serde_json::json;

/// The next message-or-change this client receives (joins, typing and the like skipped).
async fn next_entry(client: &mut Client) -> hubbub::protocol::ChatMessage {
    client.recv_message().await
}

/// The next error frame, skipping whatever else arrives first (leave notices, changes).
async fn next_error(client: &mut Client) -> String {
    loop {
        let frame = client.recv_json().await;
        if frame["type"] == "error" {
            return frame["code"].as_str().unwrap().to_string();
        }
    }
}

fn database_texts(server: &TestServer) -> Vec<String> {
    let db = rusqlite::Connection::open(server.dir.path().join("chat.db")).unwrap();
    let mut rows = db.prepare("SELECT text FROM messages").unwrap();
    rows.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn an_author_deletes_a_message_for_everyone_and_its_text_leaves_the_database() {
    let server = TestServer::start().await;
    let _admin = server.joined("root").await; // the first account: not alice
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    alice.recv().await; // bob joined
    alice.say("oops, my password is hunter2 ✓").await;
    let sent = next_entry(&mut bob).await;
    assert_eq!(next_entry(&mut alice).await.id, sent.id);
    alice.say("kept").await;
    let kept = next_entry(&mut bob).await;
    next_entry(&mut alice).await;

    // Someone else's message is not theirs to delete; a message that is not there is said so.
    bob.send_json(json!({"type":"delete","id":sent.id})).await;
    assert_eq!(bob.recv_error().await, "not_allowed");
    bob.send_json(json!({"type":"delete","id":9_999})).await;
    assert_eq!(bob.recv_error().await, "not_found");

    alice.send_json(json!({"type":"delete","id":sent.id})).await;
    for client in [&mut alice, &mut bob] {
        let change = next_entry(client).await;
        assert_eq!(change.change, Some(Change::Deleted { target: sent.id }));
        assert!(
            change.id > kept.id,
            "a change has its own place in the order"
        );
        assert_eq!(change.from.username, "alice");
    }
    // Gone from the database, not hidden.
    assert!(
        !database_texts(&server)
            .iter()
            .any(|t| t.contains("hunter2")),
        "the text is still stored"
    );
    // Someone arriving later, or resuming, gets the tombstone and the change in order.
    let mut carol = server.client().await;
    let ServerFrame::Welcome { history, .. } =
        carol.join_as("carol", "c@example.com", Some(0)).await
    else {
        unreachable!()
    };
    let tombstone = history.iter().find(|m| m.id == sent.id).unwrap();
    assert!(
        tombstone.deleted && tombstone.text.is_empty(),
        "{tombstone:?}"
    );
    assert!(
        history
            .iter()
            .any(|m| m.change == Some(Change::Deleted { target: sent.id }))
    );
    assert!(history.iter().any(|m| m.text == "kept"));
    // And not on the page the server renders.
    let (_, html) = server.get("/").await;
    assert!(html.contains("kept") && !html.contains("hunter2"));
    // Deleting it again changes nothing.
    alice.send_json(json!({"type":"delete","id":sent.id})).await;
    alice.say("after").await;
    assert_eq!(next_entry(&mut alice).await.text, "after");
}

#[tokio::test]
async fn the_first_account_moderates_and_every_action_is_in_the_audit_log() {
    let server = TestServer::start().await;
    let mut root = server.client().await;
    let ServerFrame::Welcome { admin, .. } = root.join("root").await else {
        unreachable!()
    };
    assert!(admin, "the first account of a server is its admin");
    let mut alice = server.client().await;
    let ServerFrame::Welcome { admin, .. } = alice.join("alice").await else {
        unreachable!()
    };
    assert!(!admin);
    let mut bob = server.joined("bob").await;
    root.recv().await; // alice joined
    root.recv().await; // bob joined
    alice.recv().await; // bob joined

    // Admin powers are the admin's only.
    for frame in [
        json!({"type":"kick","username":"bob"}),
        json!({"type":"ban","username":"bob"}),
    ] {
        alice.send_json(frame).await;
        assert_eq!(alice.recv_error().await, "not_allowed");
    }
    // A public message: the admin deletes it. A private one: not even the admin sees or
    // deletes it.
    alice.say("spam spam spam").await;
    let spam = next_entry(&mut root).await;
    assert_eq!(next_entry(&mut bob).await.id, spam.id);
    assert_eq!(next_entry(&mut alice).await.id, spam.id);
    alice
        .send_json(json!({"type":"message","text":"just for bob","to":"bob"}))
        .await;
    let private = next_entry(&mut bob).await;
    assert_eq!(next_entry(&mut alice).await.id, private.id);
    root.send_json(json!({"type":"delete","id":private.id}))
        .await;
    let probed = next_error(&mut root).await;
    assert_eq!(probed, "not_found", "not even whether it exists");
    root.send_json(json!({"type":"delete","id":spam.id})).await;
    let change = next_entry(&mut alice).await;
    assert_eq!(change.change, Some(Change::Deleted { target: spam.id }));
    assert_eq!(change.from.username, "root");

    // Removing bob from the room ends his connection there; banning alice ends hers and
    // her way back in.
    root.send_json(json!({"type":"kick","username":"BOB"}))
        .await;
    assert_eq!(bob.close_code().await, 4006);
    let alice_token = alice.token_for("alice").unwrap();
    // A socket opened with her credential before the ban, kept alive without joining.
    let bearer = format!("Bearer {alice_token}");
    let mut spare = Client::connect_with(&server.url(), &[("authorization", &bearer)])
        .await
        .unwrap();
    root.send_json(json!({"type":"ban","username":"alice"}))
        .await;
    assert_eq!(alice.close_code().await, 4007);
    spare
        .send_json(json!({"type":"join","username":"alice"}))
        .await;
    assert_eq!(spare.recv_error().await, "invalid_token", "not back in");
    let mut again = server.client().await;
    again
        .send_json(json!({"type":"join","username":"alice","token":alice_token}))
        .await;
    assert_eq!(again.recv_error().await, "invalid_token");
    root.send_json(json!({"type":"ban","username":"root"}))
        .await;
    assert_eq!(next_error(&mut root).await, "not_allowed");
    root.send_json(json!({"type":"ban","username":"nobody"}))
        .await;
    assert_eq!(next_error(&mut root).await, "not_found");

    // Who did what, to whom, in order.
    let db = rusqlite::Connection::open(server.dir.path().join("chat.db")).unwrap();
    let mut rows = db
        .prepare("SELECT actor, action, subject FROM audit ORDER BY id")
        .unwrap();
    let log: Vec<(String, String, String)> = rows
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [
        (
            "root",
            "deleted",
            format!("message {} by alice in #general", spam.id),
        ),
        ("root", "removed", "bob from #general".to_string()),
        ("root", "banned", "alice".to_string()),
    ];
    let expected: Vec<(String, String, String)> = expected
        .into_iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c))
        .collect();
    assert_eq!(log, expected);
}

#[tokio::test]
async fn the_command_line_makes_an_admin_who_can_sign_in_and_read_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dir.path().join("chat.db"));
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hubbub"))
            .args(args)
            .env("HUBBUB_CONFIG", &config)
            .env_remove("LEPTOS_SITE_ADDR")
            .output()
            .unwrap()
    };
    let created = run(&["admin", "create", "boss"]);
    assert!(created.status.success(), "{created:?}");
    let said = String::from_utf8_lossy(&created.stdout).to_string();
    let password = said.rsplit(": ").next().unwrap().trim().to_string();
    assert_eq!(password.len(), 20, "{said}");
    let again = run(&["admin", "create", "BOSS"]);
    assert!(!again.status.success());
    let missing = run(&["admin", "promote", "nobody"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no account"));

    let server = Process::start(&config, None).await;
    let same_site = [("Sec-Fetch-Site", "same-origin")];
    let form = [("username", "boss"), ("password", password.as_str())];
    let (status, head, body) = http_post(server.addr, "/api/sign_in", &form, &same_site).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"admin\":true"), "{body}");
    let (secret, _) = session_cookie(&head).unwrap();
    let cookie = format!("hubbub_session={secret}");
    let headers = [
        ("Sec-Fetch-Site", "same-origin"),
        ("Cookie", cookie.as_str()),
    ];
    let (status, _, body) = http_post(server.addr, "/api/audit_log", &[], &headers).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("created the admin") && body.contains("boss"),
        "{body}"
    );
    // Nobody else reads it.
    let (status, _, _) = http_post(server.addr, "/api/audit_log", &[], &same_site).await;
    assert_ne!(status, 200);
    server.kill9().await;
}

#[tokio::test]
async fn a_locked_server_takes_new_accounts_by_single_use_invitation_only() {
    let server = TestServer::start().await;
    let same_site = ("Sec-Fetch-Site", "same-origin");
    let post = |path: &'static str, fields: Vec<(&'static str, String)>, cookie: Option<String>| {
        let addr = server.addr;
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let cookie = cookie.map(|c| format!("hubbub_session={c}"));
            let mut headers = vec![same_site];
            if let Some(c) = &cookie {
                headers.push(("Cookie", c.as_str()));
            }
            http_post(addr, path, &fields, &headers).await
        }
    };
    let sign_up = |name: &str, invite: &str| {
        let fields = vec![
            ("username", name.to_string()),
            ("email", format!("{name}@example.com")),
            ("invite", invite.to_string()),
        ];
        post("/api/sign_up", fields, None)
    };
    // The first account is the admin.
    let (_, head, body) = sign_up("root", "").await;
    assert!(body.contains("\"admin\":true"), "{body}");
    let (admin, _) = session_cookie(&head).unwrap();
    let mut early = server.joined("early").await; // an account from before the lock

    // Only the admin locks.
    let (_, head, _) = sign_up("mallory", "").await;
    let (mallory, _) = session_cookie(&head).unwrap();
    let lock = || vec![("locked", "true".to_string())];
    let (status, _, _) = post("/api/lock_signups", lock(), Some(mallory)).await;
    assert_ne!(status, 200);
    let (status, _, body) = post("/api/lock_signups", lock(), Some(admin.clone())).await;
    assert_eq!(status, 200, "{body}");

    // Locked: no new account without an invitation, by form or by socket.
    let (_, _, body) = sign_up("newbie", "").await;
    assert!(body.contains("invite_required"), "{body}");
    let mut socket = server.client().await;
    socket
        .send_json(json!({"type":"join","username":"viasocket","email":"v@example.com"}))
        .await;
    assert_eq!(next_error(&mut socket).await, "invite_required");
    let (_, _, body) = sign_up("newbie", "0123abcd").await;
    assert!(body.contains("invite_required"), "{body}");

    // An invitation opens one account, once.
    let (_, _, body) = post("/api/create_invite", vec![], Some(admin.clone())).await;
    let code = body
        .trim_matches('"')
        .split("invite=")
        .nth(1)
        .unwrap()
        .to_string();
    let (_, _, body) = sign_up("newbie", &code).await;
    assert!(body.contains("SignedIn"), "{body}");
    let (_, _, body) = sign_up("another", &code).await;
    assert!(body.contains("invite_required"), "used: {body}");
    // By socket too.
    let (_, _, body) = post("/api/create_invite", vec![], Some(admin.clone())).await;
    let code = body
        .trim_matches('"')
        .split("invite=")
        .nth(1)
        .unwrap()
        .to_string();
    socket
        .send_json(
            json!({"type":"join","username":"viasocket","email":"v@example.com","invite":code}),
        )
        .await;
    assert_eq!(socket.recv_json().await["type"], "welcome");
    // Accounts from before the lock carry on.
    drop(early.ws.close(None).await);
    let mut back = server.client().await;
    back.join("early").await;
    // And all of it is in the audit log.
    let (_, _, body) = post("/api/audit_log", vec![], Some(admin)).await;
    assert!(
        body.contains("locked sign-ups") && body.contains("an invitation"),
        "{body}"
    );
}
