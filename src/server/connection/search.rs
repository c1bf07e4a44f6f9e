//! `search`: the messages this user may see that match the query, newest first: in this
//! room, or in every room.

use super::*;

pub(super) async fn search(hub: &Hub, session: &Session, query: &str, all_rooms: bool) -> Reply {
    let query = match protocol::validate_query(query) {
        Ok(query) => query,
        Err(invalid) => return Reply::Refused(invalid, None),
    };
    let room = (!all_rooms).then_some(session.room.as_str());
    match hub.search(room, &session.sender_key, &query).await {
        Ok(hits) => Reply::Frame(ServerFrame::SearchResults { query, hits }),
        Err(e) => Reply::Unavailable(e, None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[tokio::test]
    async fn search_finds_stemmed_words_newest_first_and_only_what_the_user_may_see() {
        let bench = Bench::new(|_| {}).await;
        let (alice, _a) = bench.joined("alice").await;
        let (bob, _b) = bench.joined("bob").await;
        let (carol, _c) = bench.joined("carol").await;
        bench.say(&alice, "the cat sat", None).await;
        bench.say(&alice, "no match here", None).await;
        bench.say(&alice, "Cats <b>everywhere</b>", None).await;
        bench.say(&alice, "a secret cat for bob", Some("bob")).await;

        let texts = |reply| match reply {
            Reply::Frame(ServerFrame::SearchResults { hits, .. }) => hits
                .into_iter()
                .map(|h| {
                    let marked: Vec<String> = h
                        .spans
                        .iter()
                        .filter(|(_, m)| *m)
                        .map(|(t, _)| t.clone())
                        .collect();
                    (h.message.text, marked)
                })
                .collect::<Vec<_>>(),
            _ => panic!("no results"),
        };
        let found = texts(search(&bench.hub, &carol, "cat", false).await);
        assert_eq!(
            found,
            [
                (
                    "Cats <b>everywhere</b>".to_string(),
                    vec!["Cats".to_string()]
                ),
                ("the cat sat".into(), vec!["cat".into()]),
            ]
        );
        assert_eq!(
            texts(search(&bench.hub, &bob, "cats", false).await).len(),
            3,
            "bob's own"
        );
        assert!(texts(search(&bench.hub, &carol, "dog", false).await).is_empty());
        // Operators are just words.
        assert!(texts(search(&bench.hub, &carol, "cat OR NEAR(\"x*", false).await).is_empty());
        let blank = search(&bench.hub, &carol, "   ", false).await;
        assert!(matches!(blank, Reply::Refused(i, _) if i.code == ErrorCode::InvalidQuery));
    }
}
