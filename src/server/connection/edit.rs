//! `edit`: an author replaces the text of their own message. The edit is a change entry in
//! the log (so clients away get it in order when they resume), and storing it updates the
//! message itself (its text and `edited` time) in the same transaction.

use super::target::{find, other_of, refused};
use super::*;
use crate::protocol::Change;

pub(super) async fn edit(
    hub: &Hub,
    session: &Session,
    bucket: &mut TokenBucket,
    id: u64,
    text: String,
) -> Reply {
    if let Err(invalid) = post::check_text(hub, &text) {
        return Reply::Refused(invalid, None);
    }
    if !bucket.try_take(Instant::now()) {
        return post::too_fast();
    }
    let entry = match find(hub, session, id).await {
        Ok(entry) => entry,
        Err(reply) => return reply,
    };
    if entry.sender_key != session.sender_key {
        return refused(ErrorCode::NotAllowed, "you can only edit your own messages");
    }
    if entry.message.deleted {
        return refused(ErrorCode::NotFound, format!("message {id} was deleted"));
    }
    if entry.message.text == text {
        return Reply::Done;
    }
    let draft = Draft {
        to: other_of(&entry, session),
        change: Some(Change::Edited { target: id }),
        ..Draft::message(
            &session.room,
            session.user.clone(),
            &session.sender_key,
            text,
        )
    };
    match hub.post(draft).await {
        Ok(_) => Reply::Done,
        Err(e) => Reply::Unavailable(e, None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[tokio::test]
    async fn authors_edit_their_own_messages_and_nobody_else_can() {
        let bench = Bench::new(|_| {}).await;
        let (alice, mut alice_feed) = bench.joined("alice").await;
        let (bob, mut bob_feed) = bench.joined("bob").await;
        bench.say(&alice, "helo", None).await;
        let first = delivered(&mut bob_feed).await;
        delivered(&mut alice_feed).await;

        let mut bucket = bench.bucket();
        let reply = edit(&bench.hub, &alice, &mut bucket, first.id, "hello".into()).await;
        assert!(matches!(reply, Reply::Done));
        let change = delivered(&mut bob_feed).await;
        assert_eq!(change.change, Some(Change::Edited { target: first.id }));
        assert_eq!(change.text, "hello");

        // The message itself now reads as edited, in history.
        let (page, _) = bench
            .hub
            .page("general", Some(&bob.sender_key), None, u64::MAX, 10)
            .await
            .unwrap();
        assert_eq!(page.len(), 1, "change entries are not in history pages");
        assert_eq!(page[0].text, "hello");
        assert!(page[0].edited.is_some());

        let code = |reply| match reply {
            Reply::Refused(invalid, _) => invalid.code,
            _ => panic!("not refused"),
        };
        let theirs = edit(&bench.hub, &bob, &mut bucket, first.id, "mine now".into()).await;
        assert_eq!(code(theirs), ErrorCode::NotAllowed);
        let nowhere = edit(&bench.hub, &alice, &mut bucket, 999, "x".into()).await;
        assert_eq!(code(nowhere), ErrorCode::NotFound);
        let blank = edit(&bench.hub, &alice, &mut bucket, first.id, "  ".into()).await;
        assert_eq!(code(blank), ErrorCode::EmptyMessage);
        let of_a_change = edit(&bench.hub, &alice, &mut bucket, change.id, "x".into()).await;
        assert_eq!(code(of_a_change), ErrorCode::NotFound);
        assert!(nothing_more(&mut bob_feed).await);
    }
}
