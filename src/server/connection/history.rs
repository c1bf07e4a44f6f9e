//! `history`: a page of older messages, as this user may see them.

use super::*;

pub(super) async fn history(hub: &Hub, session: &Session, before: u64) -> Reply {
    let page = hub
        .page(
            &session.room,
            Some(&session.sender_key),
            Some(before),
            u64::MAX,
            hub.config.history_limit,
        )
        .await;
    match page {
        Ok((messages, has_more)) => Reply::Frame(ServerFrame::History { messages, has_more }),
        Err(e) => Reply::Unavailable(e, None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[tokio::test]
    async fn pages_go_back_in_order_and_hold_only_what_the_reader_may_see() {
        let bench = Bench::new(|c| c.history_limit = 2).await;
        let (alice, _a) = bench.joined("alice").await;
        let (bob, _b) = bench.joined("bob").await;
        let (carol, _c) = bench.joined("carol").await;
        for text in ["one", "two", "three"] {
            bench.say(&alice, text, None).await;
        }
        bench.say(&alice, "for bob", Some("bob")).await;

        let page = |reply| match reply {
            Reply::Frame(ServerFrame::History { messages, has_more }) => (
                messages.into_iter().map(|m| m.text).collect::<Vec<_>>(),
                has_more,
            ),
            _ => panic!("not a history page"),
        };
        let (texts, more) = page(history(&bench.hub, &carol, u64::MAX).await);
        assert_eq!(texts, ["two", "three"]);
        assert!(more);
        let (texts, _) = page(history(&bench.hub, &bob, u64::MAX).await);
        assert_eq!(texts, ["three", "for bob"], "bob sees his own");
        let (older, more) = page(history(&bench.hub, &carol, 2).await);
        assert_eq!(older, ["one"]);
        assert!(!more);
    }
}
