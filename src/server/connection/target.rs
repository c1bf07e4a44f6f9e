//! The message a change or a reply is about: in this room, a message (not a change entry),
//! and one this user may see. Anything else is "not found": answering "not allowed" for a
//! private message of others would tell that one exists with this id.

use super::*;
use crate::server::storage::Entry;

pub(super) fn refused(code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::Refused(
        Invalid {
            code,
            message: message.into(),
        },
        None,
    )
}

/// Message `id` of the session's room, as this user may see it, or the reply to give.
pub(super) async fn find(hub: &Hub, session: &Session, id: u64) -> Result<Entry, Reply> {
    let not_found = || {
        refused(
            ErrorCode::NotFound,
            format!("there is no message {id} in this room"),
        )
    };
    let entry = match hub.entry(&session.room, id).await {
        Ok(Some(entry)) if entry.message.change.is_none() => entry,
        Ok(_) => return Err(not_found()),
        Err(e) => return Err(Reply::Unavailable(e, None)),
    };
    let visible = entry.recipient_key.is_none()
        || entry.sender_key == session.sender_key
        || entry.recipient_key.as_deref() == Some(session.sender_key.as_str());
    if visible { Ok(entry) } else { Err(not_found()) }
}

/// For a change to a private message: the other person of the two, with their key, so the
/// change is seen by exactly who saw the message. `None` for a public message.
pub(super) fn other_of(entry: &Entry, session: &Session) -> Option<(User, String)> {
    let recipient = entry.message.to.clone().zip(entry.recipient_key.clone())?;
    if entry.sender_key == session.sender_key {
        Some(recipient)
    } else {
        Some((entry.message.from.clone(), entry.sender_key.clone()))
    }
}
