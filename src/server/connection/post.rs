//! `message`: the checks, the rate, private messages, storing (which broadcasts it).

use super::*;

pub(super) async fn post(
    out: &mpsc::Sender<Outbound>,
    hub: &Arc<Hub>,
    session: &Session,
    pace: &mut Pace,
    text: String,
    client_id: Option<String>,
    to: Option<String>,
) -> Next {
    let received = Instant::now();
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
        return strike(out, hub, &mut pace.strikes, invalid, client_id).await;
    }
    if !pace.bucket.try_take(received) {
        hub.metrics.rate_limited_frames.fetch_add(1, Relaxed);
        let slow_down = Invalid {
            code: ErrorCode::RateLimited,
            message: "you are sending too fast; this message was not sent".into(),
        };
        return strike(out, hub, &mut pace.strikes, slow_down, client_id).await;
    }
    pace.strikes = 0;
    // A private message goes to someone online in this room, other than the sender.
    let to = match to {
        None => None,
        Some(name) => match hub.member(&session.room, name.trim()).await {
            Some(user) if user != session.user => {
                let key = identity_key(&user);
                Some((user, key))
            }
            _ => {
                let message = format!(
                    "“{}” is not online in this room; nothing was sent",
                    name.trim()
                );
                let absent = Invalid {
                    code: ErrorCode::RecipientNotOnline,
                    message,
                };
                return strike(out, hub, &mut pace.strikes, absent, client_id).await;
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
    };
    match hub.post(draft).await {
        // A repeat of a message already stored: it was broadcast the first time; tell only
        // the sender, so its outbox can mark it delivered.
        Ok(appended) if appended.duplicate => {
            send(out, &ServerFrame::Message(appended.message)).await
        }
        Ok(_) => {
            hub.metrics.observe_broadcast(received.elapsed());
            Next::Continue
        }
        Err(e) => unavailable(out, e, client_id).await,
    }
}
