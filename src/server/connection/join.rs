//! `join`: the checks, the room, `welcome`, and the catch-up after a long absence.

use super::*;

/// What a `join` frame asked for.
pub(super) struct Asked<'a> {
    pub(super) username: &'a str,
    pub(super) email: &'a str,
    pub(super) room: Option<String>,
    pub(super) since: Option<u64>,
}

/// Joins the room, sends `welcome` (and `catch_up` frames after a long absence), then has the
/// writer follow the room. A refused join counts as a strike: each one costs the server (in
/// cluster mode, Redis round trips), so guessing names cannot go on for free.
pub(super) async fn join(
    out: &mpsc::Sender<Outbound>,
    hub: &Arc<Hub>,
    conn: u64,
    session: &mut Option<Session>,
    strikes: &mut u32,
    asked: Asked<'_>,
) -> Next {
    if session.is_some() {
        let again = Invalid {
            code: ErrorCode::AlreadyJoined,
            message: "this connection already joined".into(),
        };
        return strike(out, hub, strikes, again, None).await;
    }
    let checked = protocol::validate_username(asked.username).and_then(|name| {
        let email = protocol::validate_email(asked.email)?;
        let room = protocol::validate_room(asked.room.as_deref().unwrap_or(DEFAULT_ROOM))?;
        Ok((name, email, room))
    });
    let (username, email, room) = match checked {
        Ok(ok) => ok,
        Err(invalid) => return strike(out, hub, strikes, invalid, None).await,
    };
    // Only the hash leaves this function: other users never see the address.
    let user = User {
        avatar: format!("{:x}", md5::compute(email.as_bytes())),
        username,
    };
    let joined = match hub.join(&room, &user, conn, out.clone()).await {
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
            return strike(out, hub, strikes, taken, None).await;
        }
        Err(JoinRefused::Unavailable(e)) => return unavailable(out, e, None).await,
    };
    *strikes = 0;
    let sender_key = identity_key(&user);
    *session = Some(Session {
        room: room.clone(),
        user: user.clone(),
        sender_key: sender_key.clone(),
        typing_until: None,
    });
    let history = match hub
        .welcome_history(&room, &sender_key, asked.since, joined.watermark)
        .await
    {
        Ok(found) => found,
        Err(e) => return unavailable(out, e, None).await,
    };
    let mut last = history.messages.last().map(|m| m.id);
    let mut catching_up = history.more_after;
    let welcome = ServerFrame::Welcome {
        you: user,
        room: room.clone(),
        online: joined.online,
        online_count: joined.online_count,
        history: history.messages,
        has_more: history.has_more,
        catching_up,
        heartbeat_ms: hub.config.ping_interval_ms,
    };
    if let Next::Stop = send(out, &welcome).await {
        return Next::Stop;
    }
    // The rest of a long absence, before the writer follows the room: everything after
    // `since` reaches the client, in order, with no gap before the live messages. One page
    // at a time: the next is read only once the writer has taken the previous one, so a
    // client that reads slowly never makes the server hold the whole history for it.
    while catching_up {
        let (reached, taken) = oneshot::channel();
        if let Next::Stop = forward(out, Outbound::Reached(reached)).await {
            return Next::Stop;
        }
        if taken.await.is_err() {
            return Next::Stop;
        }
        let since = last.unwrap_or(0);
        let (messages, more) = match hub
            .resume_page(&room, &sender_key, since, joined.watermark)
            .await
        {
            Ok(found) => found,
            Err(e) => return unavailable(out, e, None).await,
        };
        last = messages.last().map(|m| m.id).or(last);
        catching_up = more && !messages.is_empty();
        let frame = ServerFrame::CatchUp {
            messages,
            more: catching_up,
        };
        if let Next::Stop = send(out, &frame).await {
            return Next::Stop;
        }
    }
    forward(out, Outbound::Subscribe(Box::new(joined.feed))).await
}
