//! `react`: adds the user's reaction to a message, or takes it back if they had it. Storing
//! the change entry toggles it and sums the message's reactions up; the entry carries that
//! emoji's new state, so everyone, live or resuming, just sets it.

use super::target::{find, other_of, refused};
use super::*;
use crate::protocol::{Change, MAX_REACTION_KINDS, Reaction};

/// What a `react` frame asked for.
pub(super) struct Asked {
    pub(super) id: u64,
    pub(super) emoji: String,
    pub(super) remove: bool,
    /// Takes it back if the user had it, adds it otherwise (decided where it is stored).
    pub(super) toggle: bool,
}

pub(super) async fn react(
    hub: &Hub,
    session: &Session,
    bucket: &mut TokenBucket,
    asked: Asked,
) -> Reply {
    let Asked {
        id,
        emoji,
        remove,
        toggle,
    } = asked;
    let emoji = match protocol::validate_reaction(&emoji) {
        Ok(emoji) => emoji,
        Err(invalid) => return Reply::Refused(invalid, None),
    };
    if !bucket.try_take(Instant::now()) {
        return post::too_fast();
    }
    let entry = match find(hub, session, id).await {
        Ok(entry) => entry,
        Err(reply) => return reply,
    };
    if entry.message.deleted {
        return refused(ErrorCode::NotFound, format!("message {id} was deleted"));
    }
    let kinds = &entry.message.reactions;
    // In a draft, the count says what is asked (see `storage::changes::Asked`).
    let count = match (toggle, remove) {
        (true, _) => 2,
        (false, true) => 0,
        (false, false) => 1,
    };
    if count != 0 && kinds.len() >= MAX_REACTION_KINDS && !kinds.iter().any(|r| r.emoji == emoji) {
        return refused(
            ErrorCode::NotAllowed,
            format!("a message has at most {MAX_REACTION_KINDS} different reactions"),
        );
    }
    let reaction = Reaction {
        emoji,
        count,
        users: Vec::new(),
    };
    let draft = Draft {
        to: other_of(&entry, session),
        change: Some(Change::Reacted {
            target: id,
            reaction,
        }),
        ..Draft::message(&session.room, session.user.clone(), &session.sender_key, "")
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

    fn ask(id: u64, emoji: &str) -> Asked {
        Asked {
            id,
            emoji: emoji.into(),
            remove: false,
            toggle: false,
        }
    }

    fn reaction(m: &crate::protocol::ChatMessage) -> (u64, Reaction) {
        match &m.change {
            Some(Change::Reacted { target, reaction }) => (*target, reaction.clone()),
            other => panic!("not a reaction: {other:?}"),
        }
    }

    #[tokio::test]
    async fn reactions_toggle_and_are_summed_up_on_the_message() {
        let bench = Bench::new(|_| {}).await;
        let (alice, mut alice_feed) = bench.joined("alice").await;
        let (bob, _bob_feed) = bench.joined("bob").await;
        bench.say(&alice, "ship it?", None).await;
        let m = delivered(&mut alice_feed).await;
        let mut bucket = bench.bucket();

        assert!(matches!(
            react(&bench.hub, &bob, &mut bucket, ask(m.id, ":+1:")).await,
            Reply::Done
        ));
        let (target, r) = reaction(&delivered(&mut alice_feed).await);
        assert_eq!((target, r.emoji.as_str(), r.count), (m.id, "👍", 1));
        assert_eq!(r.users, ["bob"]);

        react(&bench.hub, &alice, &mut bucket, ask(m.id, "👍")).await;
        let (_, r) = reaction(&delivered(&mut alice_feed).await);
        assert_eq!(
            (r.count, r.users.clone()),
            (2, vec!["bob".to_string(), "alice".into()])
        );

        // Adding it again changes nothing; bob takes his back.
        react(&bench.hub, &bob, &mut bucket, ask(m.id, "👍")).await;
        let (_, r) = reaction(&delivered(&mut alice_feed).await);
        assert_eq!(r.count, 2);
        let remove = Asked {
            remove: true,
            ..ask(m.id, "👍")
        };
        react(&bench.hub, &bob, &mut bucket, remove).await;
        let (_, r) = reaction(&delivered(&mut alice_feed).await);
        assert_eq!((r.count, r.users.clone()), (1, vec!["alice".to_string()]));

        // Pressing a reaction toggles it, whatever the client knew: on, then off again.
        let toggle = || Asked {
            toggle: true,
            ..ask(m.id, "🎉")
        };
        react(&bench.hub, &bob, &mut bucket, toggle()).await;
        let (_, r) = reaction(&delivered(&mut alice_feed).await);
        assert_eq!((r.emoji.as_str(), r.count), ("🎉", 1));
        react(&bench.hub, &bob, &mut bucket, toggle()).await;
        let (_, r) = reaction(&delivered(&mut alice_feed).await);
        assert_eq!((r.emoji.as_str(), r.count), ("🎉", 0));

        let (page, _) = bench
            .hub
            .page("general", Some(&alice.sender_key), None, u64::MAX, 10)
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].reactions.len(), 1);
        assert_eq!(page[0].reactions[0].users, ["alice"]);

        let bad = react(&bench.hub, &bob, &mut bucket, ask(m.id, "<b>")).await;
        assert!(matches!(bad, Reply::Refused(i, _) if i.code == ErrorCode::InvalidReaction));
    }

    #[tokio::test]
    async fn a_reaction_to_a_private_message_stays_between_its_two_people() {
        let bench = Bench::new(|_| {}).await;
        let (alice, mut alice_feed) = bench.joined("alice").await;
        let (bob, mut bob_feed) = bench.joined("bob").await;
        let (carol, mut carol_feed) = bench.joined("carol").await;
        bench.say(&alice, "psst bob", Some("bob")).await;
        let m = delivered(&mut bob_feed).await;
        delivered(&mut alice_feed).await;
        let mut bucket = bench.bucket();
        assert!(matches!(
            react(&bench.hub, &bob, &mut bucket, ask(m.id, "🙂")).await,
            Reply::Done
        ));
        let (target, _) = reaction(&delivered(&mut alice_feed).await);
        assert_eq!(target, m.id);
        assert!(nothing_more(&mut carol_feed).await, "carol sees nothing");
        let hidden = react(&bench.hub, &carol, &mut bucket, ask(m.id, "🙂")).await;
        assert!(matches!(hidden, Reply::Refused(i, _) if i.code == ErrorCode::NotFound));
    }
}
