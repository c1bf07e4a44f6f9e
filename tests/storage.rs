//! The storage contract: the same history, paging, `since`, privacy, resend and ordering rules
//! hold for every database behind the seam. Each case runs against SQLite (a temporary file)
//! and PostgreSQL (a throw-away server of its own; see `common::Postgres`).

mod common;

use common::{Postgres, TestServer, WAIT, test_config};
use hubbub::protocol::{ChatMessage, User};
use hubbub::server::storage::{Draft, Location, Storage};
use std::sync::{Arc, Mutex};

/// What the commit hook saw: (room, id), in the order it was called.
type Committed = Arc<Mutex<Vec<(String, u64)>>>;

async fn open(location: &Location) -> (Storage, Committed, u64) {
    let committed: Committed = Arc::default();
    let seen = committed.clone();
    let opened = Storage::open(
        location,
        Box::new(move |room, message, _prev| {
            seen.lock().unwrap().push((room.to_string(), message.id))
        }),
    )
    .await
    .expect("open");
    (opened.storage, committed, opened.last_id)
}

fn user(name: &str) -> User {
    User {
        username: name.into(),
        avatar: format!("{:x}", md5::compute(format!("{name}@example.com"))),
    }
}

fn key(name: &str) -> String {
    format!("{name}\n{}", user(name).avatar)
}

fn draft(room: &str, from: &str, text: &str) -> Draft {
    Draft {
        room: room.into(),
        from: user(from),
        sender_key: key(from),
        text: text.into(),
        client_id: None,
        to: None,
        change: None,
        reply_to: None,
        file: None,
    }
}

fn private(room: &str, from: &str, to: &str, text: &str) -> Draft {
    Draft {
        to: Some((user(to), key(to))),
        ..draft(room, from, text)
    }
}

fn texts(messages: &[ChatMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.text.as_str()).collect()
}

async fn history_pages_and_since(location: Location) {
    let (store, committed, _) = open(&location).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            store
                .append(draft("a", "alice", &format!("m{i} ✓")))
                .await
                .unwrap()
                .message
                .id,
        );
        store
            .append(draft("b", "bob", &format!("other {i}")))
            .await
            .unwrap();
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // The newest page, oldest first, and whether older ones exist.
    let (page, more) = store.page("a", None, None, u64::MAX, 3).await.unwrap();
    assert_eq!(texts(&page), ["m4 ✓", "m5 ✓", "m6 ✓"]);
    assert!(more);
    let (page, more) = store
        .page("a", None, Some(page[0].id), u64::MAX, 3)
        .await
        .unwrap();
    assert_eq!(texts(&page), ["m1 ✓", "m2 ✓", "m3 ✓"]);
    assert!(more);
    let (page, more) = store
        .page("a", None, Some(page[0].id), u64::MAX, 3)
        .await
        .unwrap();
    assert_eq!(texts(&page), ["m0 ✓"]);
    assert!(!more);
    // Never past `upto`.
    let (page, _) = store.page("a", None, None, ids[2], 10).await.unwrap();
    assert_eq!(texts(&page), ["m0 ✓", "m1 ✓", "m2 ✓"]);
    // Exactly what came after `since`, up to `upto`, at most `limit`.
    let after = store.after("a", None, ids[3], u64::MAX, 100).await.unwrap();
    assert_eq!(texts(&after), ["m4 ✓", "m5 ✓", "m6 ✓"]);
    let after = store.after("a", None, ids[3], ids[5], 100).await.unwrap();
    assert_eq!(texts(&after), ["m4 ✓", "m5 ✓"]);
    let after = store.after("a", None, ids[0], u64::MAX, 2).await.unwrap();
    assert_eq!(texts(&after), ["m1 ✓", "m2 ✓"]);
    assert!(
        store
            .after("a", None, ids[6], u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Every new message reached the hook once, in id order.
    let committed = committed.lock().unwrap().clone();
    assert_eq!(committed.len(), 14);
    assert!(committed.windows(2).all(|w| w[0].1 < w[1].1));
    // Reopened: the history and the highest id are still there.
    drop(store);
    let (store, _, last) = open(&location).await;
    assert_eq!(last, committed.last().unwrap().1);
    let (page, _) = store.page("a", None, None, u64::MAX, 1).await.unwrap();
    assert_eq!(texts(&page), ["m6 ✓"]);
    assert!(
        store
            .append(draft("a", "alice", "after"))
            .await
            .unwrap()
            .message
            .id
            > last
    );
}

async fn private_messages_are_seen_by_their_two_people_only(location: Location) {
    let (store, _, _) = open(&location).await;
    store.append(draft("a", "alice", "public")).await.unwrap();
    let pm = store
        .append(private("a", "alice", "bob", "psst <b>"))
        .await
        .unwrap()
        .message;
    assert_eq!(pm.to, Some(user("bob")));
    store
        .append(private("a", "bob", "alice", "reply"))
        .await
        .unwrap();
    let seen = |viewer: Option<String>| {
        let store = store.clone();
        async move {
            let (page, _) = store
                .page("a", viewer.as_deref(), None, u64::MAX, 10)
                .await
                .unwrap();
            let after = store
                .after("a", viewer.as_deref(), 0, u64::MAX, 10)
                .await
                .unwrap();
            assert_eq!(page, after, "paging and resuming agree");
            page.iter().map(|m| m.text.clone()).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        seen(Some(key("alice"))).await,
        ["public", "psst <b>", "reply"]
    );
    assert_eq!(
        seen(Some(key("bob"))).await,
        ["public", "psst <b>", "reply"]
    );
    assert_eq!(seen(Some(key("carol"))).await, ["public"]);
    assert_eq!(seen(None).await, ["public"]);
    // The same name with another email is another person.
    assert_eq!(seen(Some("bob\nsomeone-else".into())).await, ["public"]);
}

async fn a_resend_is_stored_once_per_sender_and_room(location: Location) {
    let (store, committed, _) = open(&location).await;
    let with_id = |room: &str, from: &str, text: &str| Draft {
        client_id: Some("c-1".into()),
        ..draft(room, from, text)
    };
    let first = store.append(with_id("a", "alice", "once")).await.unwrap();
    assert!(!first.duplicate);
    let again = store
        .append(with_id("a", "alice", "once (resent)"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    // Found again by who sent it, where, under which client_id (the answer to a resend that
    // would be refused now); nobody else's, nowhere else.
    let found = store.resent("a", &key("alice"), "c-1").await.unwrap();
    assert_eq!(found, Some(first.message.clone()));
    assert_eq!(store.resent("a", &key("bob"), "c-1").await.unwrap(), None);
    assert_eq!(store.resent("b", &key("alice"), "c-1").await.unwrap(), None);
    assert_eq!(store.resent("a", &key("alice"), "c-2").await.unwrap(), None);
    // Another room, or another sender: another message.
    assert!(
        !store
            .append(with_id("b", "alice", "elsewhere"))
            .await
            .unwrap()
            .duplicate
    );
    assert!(
        !store
            .append(with_id("a", "bob", "bob's"))
            .await
            .unwrap()
            .duplicate
    );
    // A resend inside one batch is recognised too.
    let (x, y) = tokio::join!(
        store.append(with_id("c", "carol", "twice")),
        store.append(with_id("c", "carol", "twice"))
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.message, y.message);
    assert!(x.duplicate != y.duplicate);
    // The hook saw four messages; a resend is handed on again under its first id (in case
    // the first commit's hand-over was lost), which rooms that have it skip.
    let seen = committed.lock().unwrap().clone();
    let mut ids: Vec<u64> = seen.iter().map(|(_, id)| *id).collect();
    ids.dedup();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{seen:?}");
}

async fn concurrent_writers_commit_in_id_order(location: Location) {
    // Two handles on the same database, as two nodes would be (SQLite: two stores on one
    // file, each with its writer), posting at once.
    let (one, seen_one, _) = open(&location).await;
    let (two, seen_two, _) = open(&location).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .append(draft("busy", "alice", &format!("{i}")))
                .await
                .unwrap()
                .message
                .id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200, "every message got its own id");
    // Each writer handed its messages on in increasing id order.
    for seen in [seen_one, seen_two] {
        let seen = seen.lock().unwrap();
        assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "{seen:?}");
    }
    // And the history holds them all, in one order.
    let all = one.after("busy", None, 0, u64::MAX, 1_000).await.unwrap();
    assert_eq!(all.len(), 200);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
}

async fn retention_forgets_old_messages_and_never_reuses_their_ids(location: Location) {
    let (store, _, _) = open(&location).await;
    let old = store
        .append(draft("a", "alice", "old"))
        .await
        .unwrap()
        .message;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let kept = store
        .append(draft("a", "alice", "kept"))
        .await
        .unwrap()
        .message;
    // Nothing is as old as a day: the setting's own call deletes nothing.
    assert_eq!(store.forget_older_than(1).await.unwrap(), 0);
    assert_eq!(store.forget_before(kept.ts).await.unwrap(), 1);
    let (page, more) = store.page("a", None, None, u64::MAX, 10).await.unwrap();
    assert_eq!(texts(&page), ["kept"]);
    assert!(!more);
    assert!(
        store
            .after("a", None, 0, u64::MAX, 10)
            .await
            .unwrap()
            .iter()
            .all(|m| m.id != old.id)
    );
    // Gone from the database, and its id is not given out again.
    drop(store);
    let (store, _, last) = open(&location).await;
    assert_eq!(last, kept.id);
    assert!(
        store
            .append(draft("a", "bob", "new"))
            .await
            .unwrap()
            .message
            .id
            > kept.id
    );
}

async fn accounts_own_names_and_sessions_end_as_asked(location: Location) {
    use hubbub::server::storage::SecretKind;
    let (storage, _, _) = open(&location).await;
    let zoe = storage.create_account("Zoë", "zoe", "a1").await.unwrap();
    let zoe = zoe.expect("a new name");
    assert!(zoe.admin, "the first account is the server's admin");
    let bob = storage
        .create_account("bob", "bob", "a2")
        .await
        .unwrap()
        .unwrap();
    assert!(!bob.admin && !bob.banned && bob.password_hash.is_none());
    let again = storage.create_account("BOB", "bob", "a3").await.unwrap();
    assert!(again.is_none(), "one account per name key");
    assert_eq!(
        storage.account_named("bob").await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(storage.account_named("nobody").await.unwrap(), None);

    let (later, gone) = (i64::MAX / 2, 1);
    for (hash, kind, expires) in [
        ("browser", SecretKind::Browser, later),
        ("other-browser", SecretKind::Browser, later),
        ("join", SecretKind::Join, later),
        ("api", SecretKind::Api, later),
        ("expired", SecretKind::Browser, gone),
    ] {
        storage
            .add_secret(bob.id, hash, kind, expires)
            .await
            .unwrap();
    }
    let owner = |hash: &'static str| {
        let storage = storage.clone();
        async move {
            storage
                .account_for_secret(hash)
                .await
                .unwrap()
                .map(|(a, _)| a.id)
        }
    };
    assert_eq!(owner("browser").await, Some(bob.id));
    assert_eq!(owner("expired").await, None, "expired");
    assert_eq!(storage.forget_expired_secrets().await.unwrap(), 1);
    assert_eq!(owner("unknown").await, None);
    // Signing out everywhere but here: other sessions and join tokens end, API tokens stay.
    storage.end_sessions(bob.id, Some("browser")).await.unwrap();
    assert_eq!(owner("other-browser").await, None);
    assert_eq!(owner("join").await, None);
    assert_eq!(owner("browser").await, Some(bob.id));
    assert_eq!(owner("api").await, Some(bob.id));
    storage.end_secret("browser").await.unwrap();
    assert_eq!(owner("browser").await, None);

    storage
        .add_api_token(bob.id, "bot", "deploy bot ✓", later)
        .await
        .unwrap();
    let tokens = storage.api_tokens(bob.id).await.unwrap();
    assert_eq!(tokens.len(), 2, "{tokens:?}"); // "api" from above and this one
    assert!(
        tokens
            .iter()
            .any(|t| t.id == "bot" && t.label == "deploy bot ✓")
    );
    assert_eq!(owner("bot").await, Some(bob.id));
    assert!(
        !storage.revoke_api_token(zoe.id, "bot").await.unwrap(),
        "not zoe's"
    );
    assert!(storage.revoke_api_token(bob.id, "bot").await.unwrap());
    assert_eq!(owner("bot").await, None);

    storage
        .set_password_hash(bob.id, "$argon2id$…")
        .await
        .unwrap();
    let bob = storage.account_named("bob").await.unwrap().unwrap();
    assert_eq!(bob.password_hash.as_deref(), Some("$argon2id$…"));
}

async fn deletions_bans_invitations_and_the_audit_log(location: Location) {
    use hubbub::protocol::Change;
    let (storage, committed, _) = open(&location).await;
    let said = storage
        .append(draft("r", "alice", "regret ✓"))
        .await
        .unwrap();
    let private = storage
        .append(private("r", "alice", "bob", "between us"))
        .await
        .unwrap();
    let entry = storage.entry("r", said.message.id).await.unwrap().unwrap();
    assert_eq!(entry.sender_key, key("alice"));
    assert_eq!(entry.recipient_key, None);
    let entry = storage
        .entry("r", private.message.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.recipient_key, Some(key("bob")));
    assert!(
        storage
            .entry("elsewhere", said.message.id)
            .await
            .unwrap()
            .is_none()
    );
    // A deletion: its own entry, and the target's text gone.
    let deletion = Draft {
        change: Some(Change::Deleted {
            target: said.message.id,
        }),
        text: String::new(),
        ..draft("r", "alice", "")
    };
    let change = storage.append(deletion).await.unwrap().message;
    assert!(change.id > private.message.id);
    let (page, _) = storage.page("r", None, None, u64::MAX, 10).await.unwrap();
    let tombstone = page.iter().find(|m| m.id == said.message.id).unwrap();
    assert!(tombstone.deleted && tombstone.text.is_empty());
    // History pages hold the messages as they are now; a resume gets the change itself.
    assert!(page.iter().all(|m| m.change.is_none()));
    let resumed = storage.after("r", None, 0, u64::MAX, 10).await.unwrap();
    assert_eq!(
        resumed.last().unwrap().change,
        Some(Change::Deleted {
            target: said.message.id
        })
    );
    assert!(
        committed
            .lock()
            .unwrap()
            .iter()
            .any(|(_, id)| *id == change.id)
    );

    // Bans end sessions; the audit log keeps order.
    let carol = storage
        .create_account("carol", "carol", "a")
        .await
        .unwrap()
        .unwrap();
    storage
        .add_secret(
            carol.id,
            "s",
            hubbub::server::storage::SecretKind::Browser,
            i64::MAX / 2,
        )
        .await
        .unwrap();
    storage.set_banned(carol.id, true).await.unwrap();
    assert!(storage.account_for_secret("s").await.unwrap().is_none());
    assert!(
        storage
            .account_named("carol")
            .await
            .unwrap()
            .unwrap()
            .banned
    );
    storage.set_banned(carol.id, false).await.unwrap();
    assert!(
        !storage
            .account_named("carol")
            .await
            .unwrap()
            .unwrap()
            .banned
    );
    storage.promote(carol.id).await.unwrap();
    assert!(storage.account_named("carol").await.unwrap().unwrap().admin);
    storage.record("root", "banned", "carol").await.unwrap();
    storage
        .record("root", "lifted the ban on", "carol")
        .await
        .unwrap();
    let log = storage.audit_log(10).await.unwrap();
    assert_eq!(log[0].action, "lifted the ban on");
    assert_eq!(log[1].action, "banned");

    // Sign-ups locked and unlocked; invitations are single use and expire.
    assert!(!storage.signups_locked().await.unwrap());
    storage.set_signups_locked(true).await.unwrap();
    assert!(storage.signups_locked().await.unwrap());
    storage
        .add_invite("fresh", "root", i64::MAX / 2)
        .await
        .unwrap();
    storage.add_invite("stale", "root", 1).await.unwrap();
    assert!(storage.invite_valid("fresh").await.unwrap());
    assert!(!storage.invite_valid("stale").await.unwrap());
    assert!(storage.use_invite("fresh", "dan").await.unwrap());
    assert!(
        !storage.use_invite("fresh", "eve").await.unwrap(),
        "single use"
    );
    assert!(!storage.invite_valid("fresh").await.unwrap());
    storage.set_signups_locked(false).await.unwrap();
    assert!(!storage.signups_locked().await.unwrap());
}

async fn edits_reactions_replies_and_search(location: Location) {
    use hubbub::protocol::{Change, Reaction};
    let (storage, _, _) = open(&location).await;
    let post = |d: Draft| {
        let storage = storage.clone();
        async move { storage.append(d).await.unwrap().message }
    };
    let cats = post(draft("r", "alice", "The cats are ＳＬＥＥＰＩＮＧ 😴")).await;
    let dogs = post(draft("r", "bob", "dogs bark; <b>loud</b>")).await;
    let secret = post(private("r", "alice", "bob", "secret cat plans")).await;
    post(draft("other", "alice", "cats in another room")).await;

    // Replies quote what they answer.
    let answer = post(Draft {
        reply_to: Some(cats.id),
        ..draft("r", "bob", "aww")
    })
    .await;
    let quote = answer.reply.clone().unwrap();
    assert_eq!((quote.id, quote.from.as_str()), (cats.id, "alice"));
    assert_eq!(quote.text, cats.text);

    // An edit: the message reads as edited, and the reply's quote follows.
    let edit = post(Draft {
        change: Some(Change::Edited { target: cats.id }),
        ..draft("r", "alice", "The kittens are sleeping")
    })
    .await;
    assert_eq!(edit.change, Some(Change::Edited { target: cats.id }));
    let (page, _) = storage.page("r", None, None, u64::MAX, 10).await.unwrap();
    assert_eq!(
        texts(&page),
        ["The kittens are sleeping", "dogs bark; <b>loud</b>", "aww"]
    );
    assert_eq!(page[0].edited, Some(edit.ts));
    assert_eq!(
        page[2].reply.as_ref().unwrap().text,
        "The kittens are sleeping"
    );

    // Reactions toggle per account and are summed up on the message, in the order given.
    // (In a draft, the reaction's count asks: 1 adds, 0 takes back.)
    let react = |who: &'static str, emoji: &'static str, add: bool| {
        let storage = storage.clone();
        async move {
            let d = Draft {
                change: Some(Change::Reacted {
                    target: dogs.id,
                    reaction: Reaction {
                        emoji: emoji.into(),
                        count: u32::from(add),
                        users: vec![],
                    },
                }),
                ..draft("r", who, "")
            };
            match storage.append(d).await.unwrap().message.change {
                Some(Change::Reacted { reaction, .. }) => reaction,
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(react("carol", "👍", true).await.users, ["carol"]);
    assert_eq!(react("alice", "👍", true).await.users, ["carol", "alice"]);
    assert_eq!(
        react("alice", "👍", true).await.count,
        2,
        "adding twice is once"
    );
    assert_eq!(react("alice", "🎉", true).await.count, 1);
    let taken_back = react("carol", "👍", false).await;
    assert_eq!(
        (taken_back.count, taken_back.users),
        (1, vec!["alice".to_string()])
    );
    let (page, _) = storage.page("r", None, None, u64::MAX, 10).await.unwrap();
    let summed: Vec<(&str, u32)> = page[1]
        .reactions
        .iter()
        .map(|r| (r.emoji.as_str(), r.count))
        .collect();
    assert_eq!(summed, [("👍", 1), ("🎉", 1)]);
    // Someone who was away gets every change, in order.
    let since = storage
        .after("r", None, answer.id, u64::MAX, 20)
        .await
        .unwrap();
    assert_eq!(since.len(), 6, "the edit and five reactions");

    // Search: stemmed ("cat" finds "cats"), per room, private ones only for their two people,
    // newest first, with the matching words marked; edits are found by their new words.
    let found = |viewer: &'static str, query: &'static str| {
        let storage = storage.clone();
        async move {
            storage
                .search(Some("r"), &key(viewer), query, 50)
                .await
                .unwrap()
                .into_iter()
                .map(|hit| {
                    let marked: Vec<String> = hit
                        .spans
                        .iter()
                        .filter(|s| s.1)
                        .map(|s| s.0.clone())
                        .collect();
                    (hit.message.id, marked)
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("carol", "cat").await, []);
    assert_eq!(
        found("bob", "cat").await,
        [(secret.id, vec!["cat".to_string()])]
    );
    assert_eq!(
        found("carol", "kitten sleep").await,
        [(cats.id, vec!["kittens".to_string(), "sleeping".into()])]
    );
    assert_eq!(
        found("carol", "barking dog").await,
        [(dogs.id, vec!["dogs".to_string(), "bark".into()])]
    );
    // Every room at once (this room has no cats any more: the message was edited): the hits
    // say where they are.
    let everywhere = storage
        .search(None, &key("carol"), "cats", 50)
        .await
        .unwrap();
    let rooms: Vec<&str> = everywhere.iter().map(|h| h.room.as_str()).collect();
    assert_eq!(rooms, ["other"]);
    let everywhere = storage.search(None, &key("bob"), "cat", 50).await.unwrap();
    let rooms: Vec<&str> = everywhere.iter().map(|h| h.room.as_str()).collect();
    assert_eq!(rooms, ["other", "r"], "newest first, bob's private one too");
    // Whatever is typed is words, never the search engine's syntax.
    assert_eq!(found("carol", "\"dogs* OR NEAR(").await, []);
    assert_eq!(found("carol", "\"dogs*\"").await.len(), 1);

    // A deletion wipes the text, its edits, the quotes of its replies and its reactions, and
    // it is found no more.
    post(Draft {
        change: Some(Change::Deleted { target: cats.id }),
        ..draft("r", "alice", "")
    })
    .await;
    assert_eq!(found("carol", "kittens").await, []);
    let resumed = storage.after("r", None, 0, u64::MAX, 50).await.unwrap();
    assert!(
        resumed
            .iter()
            .filter(|m| m.change == Some(Change::Edited { target: cats.id }))
            .all(|m| m.text.is_empty())
    );
    let (page, _) = storage.page("r", None, None, u64::MAX, 10).await.unwrap();
    assert!(page[0].deleted && page[0].text.is_empty());
    assert_eq!(page[2].reply.as_ref().unwrap().text, "");
    // An edit racing the deletion changes nothing.
    let late = post(Draft {
        change: Some(Change::Edited { target: cats.id }),
        ..draft("r", "alice", "back from the dead")
    })
    .await;
    assert_eq!(late.text, "");
    let (page, _) = storage.page("r", None, None, u64::MAX, 10).await.unwrap();
    assert!(page[0].deleted && page[0].text.is_empty());

    // A reply and an edit stored in the same batch as the deletion of what they are about
    // keep nothing of it either.
    let doomed = post(draft("r", "alice", "soon gone")).await;
    let (reply, edit, _) = tokio::join!(
        storage.append(Draft {
            reply_to: Some(doomed.id),
            ..draft("r", "bob", "quoting it")
        }),
        storage.append(Draft {
            change: Some(Change::Edited { target: doomed.id }),
            ..draft("r", "alice", "soon gone, edited")
        }),
        storage.append(Draft {
            change: Some(Change::Deleted { target: doomed.id }),
            ..draft("r", "alice", "")
        }),
    );
    let (reply, edit) = (reply.unwrap().message, edit.unwrap().message);
    let resumed = storage
        .after("r", None, doomed.id, u64::MAX, 10)
        .await
        .unwrap();
    let stored = |id| resumed.iter().find(|m| m.id == id).unwrap();
    assert_eq!(stored(reply.id).reply.as_ref().unwrap().text, "");
    assert_eq!(stored(edit.id).text, "");

    // Retention takes what spoke of the messages it forgets with them.
    assert!(storage.forget_before(i64::MAX).await.unwrap() > 0);
    assert!(
        storage
            .after("r", None, 0, u64::MAX, 50)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn files_never_sent_are_forgotten_and_sent_ones_kept(location: Location) {
    let (store, _, _) = open(&location).await;
    let file = |id: &str| hubbub::protocol::Attachment {
        id: id.into(),
        name: "plan ✓.pdf".into(),
        size: 1,
        content_type: "application/pdf".into(),
        image: None,
    };
    let (sent, unsent) = ("f".repeat(32), "e".repeat(32));
    for id in [&sent, &unsent] {
        store
            .add_file(&file(id), "account:9", "files")
            .await
            .unwrap();
    }
    store.attach_file(&sent, None).await.unwrap();
    // Nothing was uploaded before 1970.
    assert!(store.forget_unsent_files(0).await.unwrap().is_empty());
    let forgotten = store.forget_unsent_files(i64::MAX).await.unwrap();
    assert!(forgotten.contains(&unsent), "{forgotten:?}");
    assert!(!forgotten.contains(&sent), "{forgotten:?}");
    assert!(store.file(&unsent).await.unwrap().is_none());
    assert!(store.file(&sent).await.unwrap().is_some());
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sqlite_keeps_the_contract() {
            $(
                let dir = tempfile::tempdir().unwrap();
                $case(Location::Sqlite(dir.path().join("chat.db"))).await;
            )*
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres_keeps_the_contract() {
            let pg = Postgres::start();
            $(
                $case(Location::Postgres(pg.database())).await;
            )*
        }
    };
}

contract!(
    history_pages_and_since,
    private_messages_are_seen_by_their_two_people_only,
    a_resend_is_stored_once_per_sender_and_room,
    concurrent_writers_commit_in_id_order,
    retention_forgets_old_messages_and_never_reuses_their_ids,
    accounts_own_names_and_sessions_end_as_asked,
    deletions_bans_invitations_and_the_audit_log,
    edits_reactions_replies_and_search,
    files_never_sent_are_forgotten_and_sent_ones_kept,
);

#[tokio::test]
async fn a_server_on_postgres_chats_and_survives_a_database_restart() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = hubbub::server::config::HubConfig {
        database: pg.database().into(),
        ..test_config(dir.path())
    };
    let server = TestServer::start_in(dir, hub).await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    alice.say("hello from postgres ✓").await;
    let first = bob.recv_message().await;
    assert_eq!(first.text, "hello from postgres ✓");
    alice.recv_message().await;

    // The database goes away: a message is refused clearly, nothing is half-sent.
    pg.stop();
    alice
        .send_json(serde_json::json!({"type": "message", "text": "while down", "client_id": "d-1"}))
        .await;
    let v = alice.recv_json().await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{v}"
    );
    assert_eq!(v["client_id"], "d-1");
    // Back: the resend goes through once, and the history holds everything acknowledged.
    pg.start_again();
    let deadline = tokio::time::Instant::now() + WAIT;
    let resent = loop {
        alice
            .send_json(
                serde_json::json!({"type": "message", "text": "while down", "client_id": "d-1"}),
            )
            .await;
        let v = alice.recv_json().await;
        if v["type"] == "message" {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "still refused: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(resent["id"].as_u64().unwrap() > first.id);
    assert_eq!(bob.recv_message().await.text, "while down");
    let mut carol = server.client().await;
    let hubbub::protocol::ServerFrame::Welcome { history, .. } = carol.join("carol").await else {
        unreachable!()
    };
    assert_eq!(texts(&history), ["hello from postgres ✓", "while down"]);
}
