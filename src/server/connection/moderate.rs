//! `delete`, `kick` and `ban`: removing a message (its author, or an admin for a public one),
//! and an admin removing someone from the room or banning their account. Every admin action
//! on someone else is recorded in the audit log.

use super::*;
use crate::protocol::Change;

use super::target::refused;

fn admins_only() -> Reply {
    refused(ErrorCode::NotAllowed, "only an admin can do that")
}

/// Deletes message `id` of the session's room: a change entry in the log (so everyone, live
/// or resuming, drops it in order) whose storing wipes the text.
pub(super) async fn delete(hub: &Hub, session: &Session, id: u64) -> Reply {
    let entry = match super::target::find(hub, session, id).await {
        Ok(entry) => entry,
        Err(reply) => return reply,
    };
    if entry.message.deleted {
        return Reply::Done;
    }
    let own = entry.sender_key == session.sender_key;
    // Admins remove public messages; private ones are only ever seen by their two people.
    let moderated = !own && session.admin && entry.recipient_key.is_none();
    if !own && !moderated {
        return refused(
            ErrorCode::NotAllowed,
            "you can only delete your own messages",
        );
    }
    let target = entry.message;
    let draft = Draft {
        // The entry is seen by exactly who saw the message.
        to: target.to.clone().zip(entry.recipient_key),
        change: Some(Change::Deleted { target: id }),
        ..Draft::message(&session.room, session.user.clone(), &entry.sender_key, "")
    };
    if let Err(e) = hub.post(draft).await {
        return Reply::Unavailable(e, None);
    }
    // Its file and its card's picture went from storage with it; now their bytes.
    let card = target.preview.as_ref().and_then(|p| p.image.as_ref());
    for file in target.file.iter().chain(card) {
        hub.files.remove(&file.id).await;
    }
    if moderated {
        let subject = format!(
            "message {id} by {} in #{}",
            target.from.username, session.room
        );
        hub.record(&session.user.username, "deleted", &subject)
            .await;
    }
    Reply::Done
}

/// Ends `username`'s connections to this room (they may join again).
pub(super) async fn kick(hub: &Hub, session: &Session, username: &str) -> Reply {
    if !session.admin {
        return admins_only();
    }
    let Some(user) = hub.member(&session.room, username.trim()).await else {
        return refused(
            ErrorCode::NotFound,
            format!("“{}” is not in this room", username.trim()),
        );
    };
    hub.close_in_room(&session.room, &user.username, close::REMOVED);
    let subject = format!("{} from #{}", user.username, session.room);
    hub.record(&session.user.username, "removed", &subject)
        .await;
    Reply::Done
}

/// Bans `username`'s account (or lifts the ban): its sessions and tokens end, its
/// connections on this node close, and it cannot sign in or join again.
pub(super) async fn ban(hub: &Hub, session: &Session, username: &str, lift: bool) -> Reply {
    if !session.admin {
        return admins_only();
    }
    let account = match hub.accounts.named(username.trim()).await {
        Ok(Some(account)) => account,
        Ok(None) => {
            return refused(
                ErrorCode::NotFound,
                format!("there is no account “{}”", username.trim()),
            );
        }
        Err(e) => return Reply::Unavailable(e, None),
    };
    if account.key() == session.sender_key {
        return refused(ErrorCode::NotAllowed, "you cannot ban yourself");
    }
    if let Err(e) = hub.accounts.set_banned(&account, !lift).await {
        return Reply::Unavailable(e, None);
    }
    if !lift {
        hub.close_account(&account.name, close::BANNED);
    }
    let action = if lift { "lifted the ban on" } else { "banned" };
    hub.record(&session.user.username, action, &account.name)
        .await;
    Reply::Done
}
