//! `message`: the checks, the rate, private messages, storing (which broadcasts it).

use super::*;

/// What a `message` frame asked for.
pub(super) struct Asked {
    pub(super) text: String,
    pub(super) client_id: Option<String>,
    pub(super) to: Option<String>,
    pub(super) reply_to: Option<u64>,
    /// An uploaded file's id, sent with the message.
    pub(super) file: Option<String>,
}

/// Checks a message's text against the protocol and this server's length limit.
pub(super) fn check_text(hub: &Hub, text: &str) -> Result<(), Invalid> {
    protocol::validate_text(text)?;
    let chars = text.chars().count();
    if chars > hub.config.max_message_chars {
        return Err(Invalid {
            code: ErrorCode::MessageTooLong,
            message: format!(
                "Messages are at most {} characters (this one has {chars}).",
                hub.config.max_message_chars
            ),
        });
    }
    Ok(())
}

/// The answer to a write over the connection's message rate.
pub(super) fn too_fast() -> Reply {
    let slow_down = Invalid {
        code: ErrorCode::RateLimited,
        message: "you are sending too fast; this was not done".into(),
    };
    Reply::Refused(slow_down, None)
}

/// Stores the message; the room's broadcast delivers it to everyone, the sender included
/// (that is its acknowledgement). A resend of one already stored is answered to the sender
/// alone, even when the resend itself would now be refused: a client that lost the answer
/// sends it again after reconnecting, when its file is attached already, its recipient may
/// have left, or the resends of a whole outbox go over the rate. (Looked up only on a
/// refusal, so the path of every message stays one write; refusals are bounded by strikes.)
pub(super) async fn post(
    hub: &Arc<Hub>,
    session: &Session,
    bucket: &mut TokenBucket,
    asked: Asked,
) -> Reply {
    let reply = check_and_store(hub, session, bucket, asked).await;
    let Reply::Refused(invalid, Some(client_id)) = reply else {
        return reply;
    };
    if protocol::validate_client_id(&client_id).is_ok()
        && let Ok(Some(stored)) = hub
            .resent(&session.room, &session.sender_key, &client_id)
            .await
    {
        return answer_stored(hub, &session.room, stored, Some(client_id), HANDED_ON_WAIT).await;
    }
    Reply::Refused(invalid, Some(client_id))
}

/// How long the answer to a resend waits for this node's room to catch up with it.
const HANDED_ON_WAIT: Duration = Duration::from_secs(3);

/// Answers a resend, to its sender alone, with the message stored for it before. Once this
/// node's room has handed on everything up to that message: the client takes each message it
/// gets as "everything up to here" (its `since`), so an answer ahead of earlier messages (in a
/// cluster, those another node stored whose publication has not reached this one yet) would
/// let it skip them after its next reconnection. On one node the room always has it already.
/// If the room does not catch up within `wait`, the resend is refused as `unavailable` (the
/// client keeps it, and sends it again later).
async fn answer_stored(
    hub: &Hub,
    room: &str,
    stored: protocol::ChatMessage,
    client_id: Option<String>,
    wait: Duration,
) -> Reply {
    let deadline = Instant::now() + wait;
    while hub.rooms.watermark_of(room).is_some_and(|w| w < stored.id) {
        if Instant::now() >= deadline {
            let behind = StoreError::Unreachable {
                service: "Redis",
                reason: format!(
                    "this node has not yet received the messages before {}",
                    stored.id
                ),
            };
            return Reply::Unavailable(behind, client_id);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Reply::Frame(ServerFrame::Message(stored))
}

async fn check_and_store(
    hub: &Arc<Hub>,
    session: &Session,
    bucket: &mut TokenBucket,
    asked: Asked,
) -> Reply {
    let received = Instant::now();
    let Asked {
        text,
        client_id,
        to,
        reply_to,
        file,
    } = asked;
    // With a file, the text may be empty (a picture needs no words).
    let text_needed = file.is_none() || !text.trim().is_empty() || text.contains('\0');
    let checked = (if text_needed {
        check_text(hub, &text)
    } else {
        Ok(())
    })
    .and_then(|()| {
        client_id
            .as_deref()
            .map_or(Ok(()), protocol::validate_client_id)
    });
    if let Err(invalid) = checked {
        return Reply::Refused(invalid, client_id);
    }
    if !bucket.try_take(received) {
        hub.metrics.rate_limited_frames.fetch_add(1, Relaxed);
        let slow_down = Invalid {
            code: ErrorCode::RateLimited,
            message: "you are sending too fast; this message was not sent".into(),
        };
        return Reply::Refused(slow_down, client_id);
    }
    // A private message goes to someone online in this room, other than the sender.
    let to = match to {
        None => None,
        Some(name) => match recipient(hub, session, name.trim()).await {
            Ok(Some(found)) => Some(found),
            Err(e) => return Reply::Unavailable(e, client_id),
            Ok(None) => {
                let message = format!(
                    "“{}” is not online in this room; nothing was sent",
                    name.trim()
                );
                let absent = Invalid {
                    code: ErrorCode::RecipientNotOnline,
                    message,
                };
                return Reply::Refused(absent, client_id);
            }
        },
    };
    if let Some(id) = reply_to
        && let Err(refusal) = answerable(hub, session, id, to.as_ref()).await
    {
        return match refusal {
            Reply::Refused(invalid, _) => Reply::Refused(invalid, client_id),
            Reply::Unavailable(e, _) => Reply::Unavailable(e, client_id),
            other => other,
        };
    }
    let file = match file {
        None => None,
        Some(id) => match sendable(hub, session, &id).await {
            Ok(file) => Some(file),
            Err(Reply::Refused(invalid, _)) => return Reply::Refused(invalid, client_id),
            Err(Reply::Unavailable(e, _)) => return Reply::Unavailable(e, client_id),
            Err(other) => return other,
        },
    };
    let recipient = to.clone();
    let draft = Draft {
        client_id: client_id.clone(),
        to,
        reply_to,
        file,
        ..Draft::message(
            &session.room,
            session.user.clone(),
            &session.sender_key,
            text,
        )
    };
    match hub.post(draft).await {
        // A repeat of a message already stored: it was broadcast the first time; tell only
        // the sender, so its outbox can mark it delivered.
        Ok(appended) if appended.duplicate => {
            let room = &session.room;
            answer_stored(hub, room, appended.message, client_id, HANDED_ON_WAIT).await
        }
        Ok(appended) => {
            hub.metrics.observe_broadcast(received.elapsed());
            // A card for its first link follows, when the page has been fetched.
            if hub.previews.link_in(&appended.message.text).is_some() {
                tokio::spawn(super::super::previews::announce(
                    hub.clone(),
                    session.room.clone(),
                    appended.message,
                    session.sender_key.clone(),
                    recipient,
                ));
            }
            Reply::Done
        }
        Err(e) => Reply::Unavailable(e, client_id),
    }
}

/// Whether message `id` may be answered by this message (to `to`, if private): one this user
/// sees and, if it is private, answered privately to the same person, so its
/// quote is never shown to anyone who could not see it.
async fn answerable(
    hub: &Hub,
    session: &Session,
    id: u64,
    to: Option<&(User, String)>,
) -> Result<(), Reply> {
    // A deleted message may be answered (its quote is empty): a reply resent after a
    // reconnect must not be refused because what it answers went meanwhile.
    let entry = super::target::find(hub, session, id).await?;
    let same_two = match (super::target::other_of(&entry, session), to) {
        (None, _) => true,
        (Some((_, theirs)), Some((_, key))) => theirs == *key,
        (Some(_), None) => false,
    };
    if same_two {
        Ok(())
    } else {
        Err(super::target::refused(
            ErrorCode::NotAllowed,
            "a reply to a private message goes privately to the same person",
        ))
    }
}

/// The file `id`, if this user uploaded it for this room and has not sent it yet.
async fn sendable(
    hub: &Hub,
    session: &Session,
    id: &str,
) -> Result<crate::protocol::Attachment, Reply> {
    let missing = || {
        super::target::refused(
            ErrorCode::NotFound,
            "there is no such file of yours to send here; upload it again",
        )
    };
    let file = match hub.file(id).await {
        Ok(Some(file)) => file,
        Ok(None) => return Err(missing()),
        Err(e) => return Err(Reply::Unavailable(e, None)),
    };
    if file.owner_key != session.sender_key || file.room != session.room {
        return Err(missing());
    }
    if file.attached {
        return Err(super::target::refused(
            ErrorCode::NotAllowed,
            "this file was already sent; upload it again to send it once more",
        ));
    }
    Ok(file.attachment)
}

/// Someone online in the sender's room, other than the sender, with their account's key.
async fn recipient(
    hub: &Hub,
    session: &Session,
    name: &str,
) -> Result<Option<(User, String)>, StoreError> {
    let Some(user) = hub.member(&session.room, name).await else {
        return Ok(None);
    };
    if user == session.user {
        return Ok(None);
    }
    Ok(hub
        .accounts
        .key_of(&user.username)
        .await?
        .map(|key| (user, key)))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::protocol::ChatMessage;

    fn refused(reply: Reply) -> (ErrorCode, Option<String>) {
        match reply {
            Reply::Refused(invalid, client_id) => (invalid.code, client_id),
            _ => panic!("not refused"),
        }
    }

    #[tokio::test]
    async fn a_message_is_stored_once_and_a_resend_answers_only_the_sender() {
        let bench = Bench::new(|_| {}).await;
        let (alice, mut alice_queue) = bench.joined("alice").await;
        let (_bob, mut bob_queue) = bench.joined("bob").await;
        let mut bucket = bench.bucket();
        let hello = || Asked {
            text: "hello ✨".into(),
            client_id: Some("c-1".into()),
            to: None,
            reply_to: None,
            file: None,
        };
        assert!(matches!(
            post(&bench.hub, &alice, &mut bucket, hello()).await,
            Reply::Done
        ));
        let first = delivered(&mut bob_queue).await;
        assert_eq!(delivered(&mut alice_queue).await, first);
        let Reply::Frame(ServerFrame::Message(again)) =
            post(&bench.hub, &alice, &mut bucket, hello()).await
        else {
            panic!("a resend is answered with the stored message");
        };
        assert_eq!(again, first);
        assert!(nothing_more(&mut bob_queue).await, "not broadcast twice");
    }

    #[tokio::test]
    async fn a_resend_is_answered_only_once_the_room_has_handed_on_everything_before_it() {
        let bench = Bench::new(|_| {}).await;
        let (alice, mut feed) = bench.joined("alice").await;
        bench.say(&alice, "stored", None).await;
        let stored = delivered(&mut feed).await;
        let room = &alice.room;
        // The room has it: answered at once.
        let now = answer_stored(&bench.hub, room, stored.clone(), None, Duration::ZERO).await;
        assert!(matches!(now, Reply::Frame(ServerFrame::Message(m)) if m == stored));
        // Stored, but not yet handed on here (a cluster node behind another's publications):
        // answered once the room gets there, not ahead of the messages before it...
        let next = ChatMessage {
            id: stored.id + 1,
            ..stored.clone()
        };
        let waiting = answer_stored(&bench.hub, room, next.clone(), None, Duration::from_secs(5));
        let catching_up = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            bench.say(&alice, "the room gets there", None).await;
        };
        let (answer, ()) = tokio::join!(waiting, catching_up);
        assert!(matches!(answer, Reply::Frame(ServerFrame::Message(m)) if m == next));
        // ...and refused as unavailable (kept for later) if it does not get there in time.
        let far = ChatMessage {
            id: stored.id + 100,
            ..stored
        };
        let wait = Duration::from_millis(50);
        let late = answer_stored(&bench.hub, room, far, Some("c-9".into()), wait).await;
        assert!(matches!(late, Reply::Unavailable(_, Some(id)) if id == "c-9"));
    }

    #[tokio::test]
    async fn bad_messages_are_refused_with_what_was_wrong() {
        let bench = Bench::new(|c| c.max_message_chars = 10).await;
        let (alice, mut queue) = bench.joined("alice").await;
        let mut bucket = bench.bucket();
        let ask = |text: &str, to: Option<&str>| Asked {
            text: text.into(),
            client_id: Some("id-7".into()),
            to: to.map(str::to_string),
            reply_to: None,
            file: None,
        };
        let cases = [
            (ask("   ", None), ErrorCode::EmptyMessage),
            (ask("ééééééééééé", None), ErrorCode::MessageTooLong),
            (ask("psst", Some("nobody")), ErrorCode::RecipientNotOnline),
            (ask("psst", Some("ALICE")), ErrorCode::RecipientNotOnline),
        ];
        for (asked, code) in cases {
            let reply = post(&bench.hub, &alice, &mut bucket, asked).await;
            assert_eq!(refused(reply), (code, Some("id-7".into())));
        }
        assert!(nothing_more(&mut queue).await, "nothing was stored or sent");

        let mut empty = TokenBucket::new(1.0, 1.0);
        let numbered = |text: &str, id: &str| Asked {
            client_id: Some(id.into()),
            ..ask(text, None)
        };
        assert!(matches!(
            post(&bench.hub, &alice, &mut empty, numbered("one", "id-8")).await,
            Reply::Done
        ));
        let reply = post(&bench.hub, &alice, &mut empty, numbered("two", "id-9")).await;
        assert_eq!(refused(reply).0, ErrorCode::RateLimited);
    }

    #[tokio::test]
    async fn a_resend_of_a_stored_message_is_answered_even_where_it_would_now_be_refused() {
        // Alice's private message to Bob is stored, but her connection drops before the
        // answer. Meanwhile Bob leaves; after reconnecting her outbox sends it again, in a
        // burst over the rate. It was sent: she gets it back, not "nobody to send it to".
        let bench = Bench::new(|_| {}).await;
        let (alice, mut alice_feed) = bench.joined("alice").await;
        let (bob, _bob_feed) = bench.joined("bob").await;
        let psst = || Asked {
            text: "psst <b>bob</b>".into(),
            client_id: Some("p-1".into()),
            to: Some("bob".into()),
            reply_to: None,
            file: None,
        };
        let mut bucket = bench.bucket();
        assert!(matches!(
            post(&bench.hub, &alice, &mut bucket, psst()).await,
            Reply::Done
        ));
        let stored = delivered(&mut alice_feed).await;
        let (_, _, conn) = bench
            .hub
            .rooms
            .local_members()
            .into_iter()
            .find(|(_, user, _)| user.username == "bob")
            .unwrap();
        bench.hub.leave(&bob.room, &bob.user, conn).await;
        let mut empty = TokenBucket::new(0.0, 0.0);
        for _ in 0..2 {
            let Reply::Frame(ServerFrame::Message(again)) =
                post(&bench.hub, &alice, &mut empty, psst()).await
            else {
                panic!("the resend is answered with the stored message");
            };
            assert_eq!(again, stored);
        }
        // A new message refused for the same reasons is still refused.
        let new = Asked {
            client_id: Some("p-2".into()),
            ..psst()
        };
        let reply = post(&bench.hub, &alice, &mut bucket, new).await;
        assert_eq!(
            refused(reply),
            (ErrorCode::RecipientNotOnline, Some("p-2".into()))
        );
    }

    #[tokio::test]
    async fn a_reply_quotes_what_it_answers_and_the_quote_goes_with_a_deletion() {
        let bench = Bench::new(|_| {}).await;
        let (alice, mut alice_feed) = bench.joined("alice").await;
        let (bob, mut bob_feed) = bench.joined("bob").await;
        let (carol, _carol_feed) = bench.joined("carol").await;
        let mut bucket = bench.bucket();
        bench.say(&alice, &"long question ".repeat(20), None).await;
        let question = delivered(&mut bob_feed).await;
        let answer = |reply_to, to: Option<&str>| Asked {
            text: "yes".into(),
            client_id: None,
            to: to.map(str::to_string),
            reply_to: Some(reply_to),
            file: None,
        };
        let reply = post(&bench.hub, &bob, &mut bucket, answer(question.id, None)).await;
        assert!(matches!(reply, Reply::Done));
        delivered(&mut alice_feed).await;
        let yes = delivered(&mut alice_feed).await;
        let quote = yes.reply.clone().expect("a quote");
        assert_eq!((quote.id, quote.from.as_str()), (question.id, "alice"));
        assert_eq!(
            quote.text.chars().count(),
            protocol::QUOTE_CHARS + 1,
            "cut, with …"
        );

        // A private message is only answered privately, to the same person.
        delivered(&mut bob_feed).await;
        bench.say(&alice, "psst", Some("bob")).await;
        let psst = delivered(&mut bob_feed).await;
        let public = post(&bench.hub, &bob, &mut bucket, answer(psst.id, None)).await;
        assert!(matches!(public, Reply::Refused(i, _) if i.code == ErrorCode::NotAllowed));
        let to_carol = post(
            &bench.hub,
            &bob,
            &mut bucket,
            answer(psst.id, Some("carol")),
        )
        .await;
        assert!(matches!(to_carol, Reply::Refused(i, _) if i.code == ErrorCode::NotAllowed));
        let hidden = post(&bench.hub, &carol, &mut bucket, answer(psst.id, None)).await;
        assert!(matches!(hidden, Reply::Refused(i, _) if i.code == ErrorCode::NotFound));
        let private = post(
            &bench.hub,
            &bob,
            &mut bucket,
            answer(psst.id, Some("alice")),
        )
        .await;
        assert!(matches!(private, Reply::Done));

        // Deleting the question wipes its quote in the stored reply.
        super::super::moderate::delete(&bench.hub, &alice, question.id).await;
        let entry = bench.hub.entry("general", yes.id).await.unwrap().unwrap();
        assert_eq!(entry.message.reply.unwrap().text, "");
    }
}
