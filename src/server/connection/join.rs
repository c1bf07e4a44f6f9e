//! `join`: the checks, the room, `welcome`, and the catch-up after a long absence.

use super::*;
use crate::server::accounts;
use crate::server::mailbox::Mailbox;
use crate::server::storage::SecretKind;

/// Whose private messages a join reads before its account exists: nobody's (no sender or
/// recipient key has this form; accounts' keys are `account:<id>`).
const NEW_ACCOUNT: &str = "new-account";

/// What a `join` frame asked for.
pub(super) struct Asked {
    pub(super) username: String,
    pub(super) email: String,
    pub(super) room: Option<String>,
    pub(super) since: Option<u64>,
    pub(super) token: Option<String>,
    pub(super) invite: Option<String>,
}

/// A join the hub accepted: what to send, then the room to follow.
pub(super) struct Welcomed {
    pub(super) welcome: ServerFrame,
    /// Set when `welcome` could not hold everything after `since`.
    catch_up: Option<CatchUp>,
}

/// Where a catch-up goes on from.
struct CatchUp {
    room: String,
    viewer: String,
    last: Option<u64>,
    watermark: u64,
}

/// Checks the join and joins the room (its frames go to `mailbox`, held until it follows); the
/// connection is then `session`. A refused join is a strike: each one costs the server (in
/// cluster mode, Redis round trips), so guessing names cannot go on for free.
pub(super) async fn join(
    hub: &Hub,
    (mailbox, peer): (&Arc<Mailbox>, &Peer),
    session: &mut Option<Session>,
    asked: Asked,
) -> Result<Welcomed, Reply> {
    if session.is_some() {
        let again = Invalid {
            code: ErrorCode::AlreadyJoined,
            message: "this connection already joined".into(),
        };
        return Err(Reply::Refused(again, None));
    }
    let room = protocol::validate_room(asked.room.as_deref().unwrap_or(DEFAULT_ROOM))
        .map_err(|invalid| Reply::Refused(invalid, None))?;
    let who = identify(hub, peer, &asked).await?;
    let user = match &who {
        Who::Account(account) => account.user(),
        Who::New(new) => new.user(),
    };
    let joined = match hub.join(&room, &user, mailbox.clone()).await {
        Ok(joined) => joined,
        Err(JoinRefused::NameTaken(holder)) => {
            let message = match holder {
                Some(holder) if holder.to_lowercase() != user.username.to_lowercase() => format!(
                    "“{}” looks too much like “{holder}”, who is in this room; pick another name",
                    user.username
                ),
                Some(holder) => format!("“{holder}” is already in this room; pick another name"),
                None => format!(
                    "“{}” is already in this room; pick another name",
                    user.username
                ),
            };
            let taken = Invalid {
                code: ErrorCode::UsernameTaken,
                message,
            };
            return Err(Reply::Refused(taken, None));
        }
        Err(JoinRefused::Unavailable(e)) => return Err(Reply::Unavailable(e, None)),
    };
    // The history is read before a new account is created: an account is for good, and its
    // token reaches the client only in the welcome, so a read failing after the sign-up
    // would leave the name taken by an account nobody can sign in to. An account that does
    // not exist yet has no private messages: it sees the public ones.
    let viewer = match &who {
        Who::Account(account) => account.key(),
        Who::New(_) => NEW_ACCOUNT.to_string(),
    };
    let history = match hub
        .welcome_history(&room, &viewer, asked.since, joined.watermark)
        .await
    {
        Ok(history) => history,
        Err(e) => {
            // Not joined after all: the client may try again on this connection.
            leave(hub, &room, &user, mailbox).await;
            return Err(Reply::Unavailable(e, None));
        }
    };
    let (account, token) = match who {
        Who::Account(account) => (account, None),
        Who::New(new) => match hub.accounts.complete_sign_up(new, SecretKind::Join).await {
            Ok((account, token)) => (account, Some(token)),
            Err(refused) => {
                leave(hub, &room, &user, mailbox).await;
                return Err(refusal(refused));
            }
        },
    };
    let sender_key = account.key();
    *session = Some(Session {
        room: room.clone(),
        user: user.clone(),
        sender_key,
        typing_until: None,
        admin: account.admin,
    });
    let catch_up = history.more_after.then(|| CatchUp {
        room: room.clone(),
        viewer,
        last: history.messages.last().map(|m| m.id).or(asked.since),
        watermark: joined.watermark,
    });
    let welcome = ServerFrame::Welcome {
        you: user,
        room,
        online: joined.online,
        online_count: joined.online_count,
        history: history.messages,
        has_more: history.has_more,
        catching_up: catch_up.is_some(),
        heartbeat_ms: hub.config.ping_interval_ms,
        token,
        admin: account.admin,
    };
    Ok(Welcomed { welcome, catch_up })
}

/// Undoes a join the room had taken in: the connection leaves it, and the room's frames held
/// for it meanwhile are dropped (a later join must not get them after its own welcome).
async fn leave(hub: &Hub, room: &str, user: &User, mailbox: &Mailbox) {
    hub.leave(room, user, mailbox.id()).await;
    mailbox.unfollow();
}

/// Whose join this is.
enum Who {
    Account(Account),
    /// A name nobody has: its account is created once the join is in the room, and its
    /// token goes in `welcome`.
    New(accounts::NewAccount),
}

fn refusal(refused: accounts::Refused) -> Reply {
    match refused {
        accounts::Refused::Invalid(invalid) => Reply::Refused(invalid, None),
        accounts::Refused::Store(e) => Reply::Unavailable(e, None),
    }
}

/// Whose join this is: the account of the connection's session (or API token), of the join's
/// `token`, or a new one for a name nobody has. A name with an account is never had by
/// typing it, whatever the email.
async fn identify(hub: &Hub, peer: &Peer, asked: &Asked) -> Result<Who, Reply> {
    let refused = |code, message: String| Reply::Refused(Invalid { code, message }, None);
    let account = match (&peer.signed_in, &asked.token) {
        // Again now: the socket may have waited since its upgrade, while the session was
        // ended (signed out everywhere, a new password) or the account banned.
        (Some(signed_in), _) => match hub
            .accounts
            .by_secret(&signed_in.secret, signed_in.kinds)
            .await
        {
            Ok(Some(account)) => account,
            Ok(None) => {
                let message = "this browser's session has ended (signed out, or the account \
                               was banned): sign in again";
                return Err(refused(ErrorCode::InvalidToken, message.into()));
            }
            Err(e) => return Err(Reply::Unavailable(e, None)),
        },
        (None, Some(token)) => match hub
            .accounts
            .by_secret(token, &[SecretKind::Join, SecretKind::Api])
            .await
        {
            Ok(Some(account)) => account,
            Ok(None) => {
                let message = "this token is not valid (unknown, revoked, or its account is \
                               banned): sign in again";
                return Err(refused(ErrorCode::InvalidToken, message.into()));
            }
            Err(e) => return Err(Reply::Unavailable(e, None)),
        },
        (None, None) => {
            let checked = hub
                .accounts
                .prepare_sign_up(
                    peer.ip,
                    &asked.username,
                    &asked.email,
                    asked.invite.as_deref(),
                )
                .await;
            return checked.map(Who::New).map_err(refusal);
        }
    };
    // Signed in, the join names the account (in any spelling that folds the same).
    if protocol::name_key(asked.username.trim()) != protocol::name_key(&account.name) {
        let message = format!(
            "this connection is signed in as “{}”; sign out to use another name",
            account.name
        );
        return Err(refused(ErrorCode::UsernameTaken, message));
    }
    Ok(Who::Account(account))
}

/// Sends `welcome`, the rest of a long absence, then has the writer follow the room.
///
/// Everything after `since` reaches the client, in order, with no gap before the live
/// messages. One page at a time: the next is read only once the writer has taken the previous
/// one, so a client that reads slowly never makes the server hold the whole history for it.
pub(super) async fn follow(out: &Mailbox, hub: &Hub, welcomed: Welcomed) -> Next {
    if let Next::Stop = send(out, &welcomed.welcome).await {
        return Next::Stop;
    }
    if let Some(mut catch_up) = welcomed.catch_up {
        loop {
            if !out.drained().await {
                return Next::Stop;
            }
            let since = catch_up.last.unwrap_or(0);
            let page = hub
                .resume_page(&catch_up.room, &catch_up.viewer, since, catch_up.watermark)
                .await;
            let (messages, more) = match page {
                Ok(found) => found,
                Err(e) => {
                    // The client has part of what it missed and cannot follow the room with a
                    // gap: it is told, and reconnects (its `since` resumes where this ended).
                    let _ = unavailable(out, e, None).await;
                    out.request_close(close::TRY_AGAIN_LATER, "could not read the history");
                    return Next::Stop;
                }
            };
            catch_up.last = messages.last().map(|m| m.id).or(catch_up.last);
            let more = more && !messages.is_empty();
            if let Next::Stop = send(out, &ServerFrame::CatchUp { messages, more }).await {
                return Next::Stop;
            }
            if !more {
                break;
            }
        }
    }
    out.follow();
    Next::Continue
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn code(reply: Result<Welcomed, Reply>) -> (ErrorCode, String) {
        match reply {
            Err(Reply::Refused(invalid, _)) => (invalid.code, invalid.message),
            _ => panic!("not refused"),
        }
    }

    #[tokio::test]
    async fn welcome_holds_the_history_and_everyone_online() {
        let bench = Bench::new(|_| {}).await;
        let (alice, _queue) = bench.joined("Zoë").await;
        bench.say(&alice, "first", None).await;
        let (mailbox, _client) = connection(&bench.hub).await;
        let mut session = None;
        let asked = Asked {
            username: "bob".into(),
            email: "bob@example.com".into(),
            room: None,
            since: None,
            token: None,
            invite: None,
        };
        let Ok(welcomed) = join(&bench.hub, (&mailbox, &anonymous()), &mut session, asked).await
        else {
            panic!("bob is welcome");
        };
        let ServerFrame::Welcome {
            you,
            online,
            history,
            catching_up,
            ..
        } = welcomed.welcome
        else {
            panic!("a welcome");
        };
        assert_eq!(you.username, "bob");
        let names: Vec<_> = online.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["bob", "Zoë"]);
        assert_eq!(history.len(), 1);
        assert!(!catching_up);
        assert_eq!(session.unwrap().room, DEFAULT_ROOM);
    }

    #[tokio::test]
    async fn a_join_whose_history_cannot_be_read_leaves_the_room_and_may_be_tried_again() {
        let bench = Bench::new(|_| {}).await;
        // The history cannot be read (the table is gone; a database failing otherwise is no
        // different to the join).
        let db = rusqlite::Connection::open(&bench.hub.config.database).unwrap();
        db.execute_batch("DROP TABLE messages_fts; DROP TABLE messages;")
            .unwrap();
        let (mailbox, _client) = connection(&bench.hub).await;
        let mut session = None;
        let peer = anonymous();
        let ask = || Asked {
            username: "bob".into(),
            email: "bob@example.com".into(),
            room: None,
            since: None,
            token: None,
            invite: None,
        };
        for attempt in 0..2 {
            let reply = join(&bench.hub, (&mailbox, &peer), &mut session, ask()).await;
            assert!(
                matches!(reply, Err(Reply::Unavailable(..))),
                "attempt {attempt}: not `unavailable`"
            );
            assert!(session.is_none(), "not joined");
            assert!(
                bench.hub.member(DEFAULT_ROOM, "bob").await.is_none(),
                "bob is not left online in a room he never got the welcome of"
            );
            // Nor is the name taken by an account whose token never reached anyone.
            let account = bench.hub.accounts.key_of("bob").await.unwrap();
            assert!(account.is_none(), "no account was created");
        }
    }

    #[tokio::test]
    async fn taken_names_look_alikes_bad_rooms_and_second_joins_are_refused() {
        let bench = Bench::new(|_| {}).await;
        let (_alice, _queue) = bench.joined("alice").await;
        let (mailbox, _client) = connection(&bench.hub).await;
        let ask = |name: &str, room: &str| Asked {
            username: name.into(),
            email: "x@example.com".into(),
            room: Some(room.into()),
            since: None,
            token: None,
            invite: None,
        };
        let mut session = None;
        let peer = anonymous();
        let (taken, message) = code(
            join(
                &bench.hub,
                (&mailbox, &peer),
                &mut session,
                ask("ALICE", DEFAULT_ROOM),
            )
            .await,
        );
        assert_eq!(taken, ErrorCode::UsernameTaken);
        assert!(message.contains("alice"), "{message}");
        // A Cyrillic "а" in place of the Latin one.
        let (taken, message) = code(
            join(
                &bench.hub,
                (&mailbox, &peer),
                &mut session,
                ask("\u{430}lice", DEFAULT_ROOM),
            )
            .await,
        );
        assert_eq!(taken, ErrorCode::UsernameTaken);
        assert!(message.contains("looks too much like"), "{message}");
        let (bad, _) = code(
            join(
                &bench.hub,
                (&mailbox, &peer),
                &mut session,
                ask("carol", "<b>x</b>"),
            )
            .await,
        );
        assert_eq!(bad, ErrorCode::InvalidRoom);
        assert!(session.is_none(), "nothing was joined");

        assert!(
            join(
                &bench.hub,
                (&mailbox, &peer),
                &mut session,
                ask("carol", "dev")
            )
            .await
            .is_ok()
        );
        let (again, _) = code(
            join(
                &bench.hub,
                (&mailbox, &peer),
                &mut session,
                ask("carol", "dev"),
            )
            .await,
        );
        assert_eq!(again, ErrorCode::AlreadyJoined);
    }
}
