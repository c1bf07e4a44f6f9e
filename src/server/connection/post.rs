//! `message`: the checks, the rate, private messages, storing (which broadcasts it).

use super::*;

/// What a `message` frame asked for.
pub(super) struct Asked {
    pub(super) text: String,
    pub(super) client_id: Option<String>,
    pub(super) to: Option<String>,
}

/// Stores the message; the room's broadcast delivers it to everyone, the sender included
/// (that is its acknowledgement). A resend of one already stored is answered to the sender
/// alone.
pub(super) async fn post(
    hub: &Hub,
    session: &Session,
    bucket: &mut TokenBucket,
    asked: Asked,
) -> Reply {
    let received = Instant::now();
    let Asked {
        text,
        client_id,
        to,
    } = asked;
    let checked = protocol::validate_text(&text).and_then(|()| {
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
    let draft = Draft {
        room: session.room.clone(),
        from: session.user.clone(),
        sender_key: session.sender_key.clone(),
        text,
        client_id: client_id.clone(),
        to,
        change: None,
    };
    match hub.post(draft).await {
        // A repeat of a message already stored: it was broadcast the first time; tell only
        // the sender, so its outbox can mark it delivered.
        Ok(appended) if appended.duplicate => Reply::Frame(ServerFrame::Message(appended.message)),
        Ok(_) => {
            hub.metrics.observe_broadcast(received.elapsed());
            Reply::Done
        }
        Err(e) => Reply::Unavailable(e, client_id),
    }
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
    async fn bad_messages_are_refused_with_what_was_wrong() {
        let bench = Bench::new(|c| c.max_message_chars = 10).await;
        let (alice, mut queue) = bench.joined("alice").await;
        let mut bucket = bench.bucket();
        let ask = |text: &str, to: Option<&str>| Asked {
            text: text.into(),
            client_id: Some("id-7".into()),
            to: to.map(str::to_string),
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
        assert!(matches!(
            post(&bench.hub, &alice, &mut empty, ask("one", None)).await,
            Reply::Done
        ));
        let reply = post(&bench.hub, &alice, &mut empty, ask("two", None)).await;
        assert_eq!(refused(reply).0, ErrorCode::RateLimited);
    }
}
