//! What storing a change entry (an edit, a deletion, a reaction) or a reply does to the
//! messages it is about, inside the storing transaction. The rules are the SQL below, run by
//! both databases; [`sqlite`] and [`postgres`] only drive it (one blocking, one async).
//!
//! Every change leaves the target row in its current state (text, `edited_ts`, reactions
//! summed up), so a history page is read without joins, and the entry itself carries the change
//! for clients that were away. A deletion also wipes the text of the target's edits and the
//! quotes of its replies: deleted means gone from the database, not hidden.

use super::Draft;
use crate::protocol::{Attachment, Change, Quote, REACTORS_NAMED, Reaction, excerpt};

/// Placeholders are `$1`, `$2`, … in the order they first appear, for both drivers.
/// A deleted message's file goes with it (its bytes are removed once this is committed).
const DROP_FILE: &str = "DELETE FROM files WHERE id = (SELECT file_id FROM messages WHERE id = $1)";
const WIPE: &str = "UPDATE messages SET text = '', deleted = TRUE, reactions = NULL, \
                    edited_ts = NULL, reply_to = NULL, reply_from = NULL, reply_text = NULL, \
                    file_id = NULL, file = NULL, preview = NULL WHERE id = $1";
/// A deleted message's preview pictures go with it too.
const DROP_PREVIEWED: &str = "DELETE FROM files \
    WHERE name = 'preview:' || CAST(CAST($1 AS BIGINT) AS TEXT) \
    AND owner_key = (SELECT sender_key FROM messages WHERE id = $1)";
/// A deleted message's card goes with it (it holds the link, its title and description).
const DROP_CARDS: &str = "DELETE FROM messages WHERE target = $1 AND change_kind = 'previewed'";
/// A message's card, unless it was deleted meanwhile.
const PREVIEW: &str = "UPDATE messages SET preview = $1 WHERE id = $2 AND NOT deleted";
/// A file is sent once, by its owner, and from then on is seen by whoever sees the message.
const ATTACH: &str = "UPDATE files SET attached = TRUE, recipient_key = $1 \
                      WHERE id = $2 AND owner_key = $3 AND NOT attached";
const WIPE_EDITS: &str =
    "UPDATE messages SET text = '' WHERE target = $1 AND change_kind = 'edited'";
const WIPE_QUOTES: &str = "UPDATE messages SET reply_text = '' WHERE reply_to = $1";
/// What deleting message `$1` does, in this order, on both databases (its reactions too).
const ON_DELETE: [&str; 6] = [
    DROP_FILE,
    DROP_PREVIEWED,
    DROP_CARDS,
    WIPE,
    WIPE_EDITS,
    WIPE_QUOTES,
];
const DROP_REACTIONS: &str = "DELETE FROM reactions WHERE message_id = $1";
/// A deleted message stays deleted: an edit racing its deletion changes nothing.
const EDIT: &str = "UPDATE messages SET text = $1, edited_ts = $2 WHERE id = $3 AND NOT deleted";
const EDIT_QUOTES: &str = "UPDATE messages SET reply_text = $1 WHERE reply_to = $2";
const UNREACT: &str =
    "DELETE FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_key = $3";
/// Only on a message that is not deleted (a reaction racing a deletion leaves nothing), and
/// only once (adding a reaction you have changes nothing).
const REACT: &str = "INSERT INTO reactions (message_id, emoji, user_key, username, ts) \
                     SELECT CAST($1 AS BIGINT), CAST($2 AS TEXT), CAST($3 AS TEXT), \
                     CAST($4 AS TEXT), CAST($5 AS BIGINT) \
                     WHERE EXISTS (SELECT 1 FROM messages WHERE id = $1 AND NOT deleted) \
                     ON CONFLICT DO NOTHING";
/// In the order they reacted: by time, then by insertion (SQLite's `rowid`, PostgreSQL's
/// `seq`), which is the one line the two databases cannot share.
const REACTORS_SQLITE: &str =
    "SELECT emoji, username FROM reactions WHERE message_id = $1 ORDER BY ts, rowid";
const REACTORS_POSTGRES: &str =
    "SELECT emoji, username FROM reactions WHERE message_id = $1 ORDER BY ts, seq";
const SUM_UP: &str = "UPDATE messages SET reactions = $1 WHERE id = $2 AND NOT deleted";
/// After retention deleted old messages: what still spoke of them goes too (the changes to
/// them, the quotes of them, who reacted to them), so nothing of a forgotten message stays.
pub(super) const AFTER_EXPIRY: [&str; 5] = [
    "DELETE FROM files WHERE attached AND name NOT LIKE 'preview:%' \
     AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.file_id = files.id)",
    "DELETE FROM files WHERE attached AND name LIKE 'preview:%' AND NOT EXISTS \
     (SELECT 1 FROM messages m WHERE 'preview:' || CAST(m.id AS TEXT) = files.name)",
    "DELETE FROM messages WHERE target IS NOT NULL \
     AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = messages.target)",
    "UPDATE messages SET reply_text = '' WHERE reply_to IS NOT NULL AND reply_text <> '' \
     AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = messages.reply_to)",
    "DELETE FROM reactions \
     WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = reactions.message_id)",
];
const QUOTED: &str = "SELECT username, text, deleted FROM messages WHERE id = $1";

/// What a draft became once its effects were applied: the change as stored (a reaction's
/// new state filled in) and a reply's quote.
pub(super) struct Applied {
    pub change: Option<Change>,
    pub reply: Option<Quote>,
    /// The file sent with the message (`None` if it was already sent with another).
    pub file: Option<Attachment>,
    /// An edit whose target was deleted meanwhile: the entry is stored without its text.
    pub void: bool,
}

/// What a reaction draft asks, by its `count`: 1 adds the reaction, 0 takes it back, 2
/// toggles it (takes it back if the user had it; adds it otherwise).
#[derive(PartialEq)]
enum Asked {
    Add,
    Remove,
    Toggle,
}

fn asked(request: &Reaction) -> Asked {
    match request.count {
        0 => Asked::Remove,
        1 => Asked::Add,
        _ => Asked::Toggle,
    }
}

/// The reactions of a message, summed up per emoji in the order each was first used, from
/// its reactors (emoji, name) in the order they reacted.
fn sum_up(reactors: Vec<(String, String)>) -> Vec<Reaction> {
    let mut out: Vec<Reaction> = Vec::new();
    for (emoji, name) in reactors {
        let at = match out.iter().position(|r| r.emoji == emoji) {
            Some(at) => at,
            None => {
                out.push(Reaction {
                    emoji,
                    count: 0,
                    users: Vec::new(),
                });
                out.len() - 1
            }
        };
        let r = &mut out[at];
        r.count += 1;
        if r.users.len() < REACTORS_NAMED {
            r.users.push(name);
        }
    }
    out
}

/// The stored form of a message's reactions: JSON, or NULL for none.
fn reactions_json(all: &[Reaction]) -> Option<String> {
    (!all.is_empty()).then(|| serde_json::to_string(all).unwrap_or_default())
}

/// `emoji`'s state in `all`, or a zero count when the last reactor took theirs back.
fn state_of(all: &[Reaction], emoji: &str) -> Reaction {
    all.iter()
        .find(|r| r.emoji == emoji)
        .cloned()
        .unwrap_or(Reaction {
            emoji: emoji.to_string(),
            count: 0,
            users: Vec::new(),
        })
}

fn quote(id: u64, row: Option<(String, String, bool)>) -> Option<Quote> {
    row.map(|(from, text, deleted)| Quote {
        id,
        from,
        text: if deleted {
            String::new()
        } else {
            excerpt(&text)
        },
    })
}

pub(super) mod sqlite {
    use super::*;
    use rusqlite::{OptionalExtension, Transaction, params};

    pub fn apply(tx: &Transaction<'_>, d: &Draft, ts: i64) -> rusqlite::Result<Applied> {
        let reply = match d.reply_to {
            Some(id) => {
                let row = tx
                    .prepare_cached(QUOTED)?
                    .query_row(params![id as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?;
                quote(id, row)
            }
            None => None,
        };
        let mut void = false;
        let change = match &d.change {
            None => None,
            Some(Change::Deleted { target }) => {
                let t = *target as i64;
                for sql in ON_DELETE {
                    tx.prepare_cached(sql)?.execute(params![t])?;
                }
                tx.prepare_cached(DROP_REACTIONS)?.execute(params![t])?;
                d.change.clone()
            }
            Some(Change::Previewed { target, preview }) => {
                let json = serde_json::to_string(preview).unwrap_or_default();
                let shown = tx
                    .prepare_cached(PREVIEW)?
                    .execute(params![json, *target as i64])?;
                void = shown == 0;
                if void {
                    // Deleted while its page was fetched: its picture goes too.
                    tx.prepare_cached(DROP_PREVIEWED)?
                        .execute(params![*target as i64])?;
                }
                d.change.clone()
            }
            Some(Change::Edited { target }) => {
                let t = *target as i64;
                let edited = tx.prepare_cached(EDIT)?.execute(params![d.text, ts, t])?;
                void = edited == 0;
                if !void {
                    tx.prepare_cached(EDIT_QUOTES)?
                        .execute(params![excerpt(&d.text), t])?;
                }
                d.change.clone()
            }
            Some(Change::Reacted { target, reaction }) => {
                let t = *target as i64;
                let emoji = &reaction.emoji;
                let want = asked(reaction);
                let removed = if want == Asked::Add {
                    0
                } else {
                    tx.prepare_cached(UNREACT)?
                        .execute(params![t, emoji, d.sender_key])?
                };
                if want == Asked::Add || (want == Asked::Toggle && removed == 0) {
                    tx.prepare_cached(REACT)?.execute(params![
                        t,
                        emoji,
                        d.sender_key,
                        d.from.username,
                        ts
                    ])?;
                }
                let reactors = tx
                    .prepare_cached(REACTORS_SQLITE)?
                    .query_map(params![t], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let all = sum_up(reactors);
                tx.prepare_cached(SUM_UP)?
                    .execute(params![reactions_json(&all), t])?;
                Some(Change::Reacted {
                    target: *target,
                    reaction: state_of(&all, emoji),
                })
            }
        };
        let file = match &d.file {
            Some(file) => {
                let recipient = d.to.as_ref().map(|(_, key)| key);
                let attached = tx.prepare_cached(ATTACH)?.execute(params![
                    recipient,
                    file.id,
                    d.sender_key
                ])?;
                (attached == 1).then(|| file.clone())
            }
            None => None,
        };
        Ok(Applied {
            change,
            reply,
            file,
            void,
        })
    }
}

pub(super) mod postgres {
    use super::*;
    use tokio_postgres::{Error, Transaction};

    pub async fn apply(tx: &Transaction<'_>, d: &Draft, ts: i64) -> Result<Applied, Error> {
        let reply = match d.reply_to {
            Some(id) => {
                let row = tx.query_opt(QUOTED, &[&(id as i64)]).await?;
                quote(id, row.map(|r| (r.get(0), r.get(1), r.get(2))))
            }
            None => None,
        };
        let mut void = false;
        let change = match &d.change {
            None => None,
            Some(Change::Deleted { target }) => {
                let t = *target as i64;
                for sql in ON_DELETE {
                    tx.execute(sql, &[&t]).await?;
                }
                tx.execute(DROP_REACTIONS, &[&t]).await?;
                d.change.clone()
            }
            Some(Change::Previewed { target, preview }) => {
                let json = serde_json::to_string(preview).unwrap_or_default();
                let shown = tx.execute(PREVIEW, &[&json, &(*target as i64)]).await?;
                void = shown == 0;
                if void {
                    // Deleted while its page was fetched: its picture goes too.
                    tx.execute(DROP_PREVIEWED, &[&(*target as i64)]).await?;
                }
                d.change.clone()
            }
            Some(Change::Edited { target }) => {
                let t = *target as i64;
                let edited = tx.execute(EDIT, &[&d.text, &ts, &t]).await?;
                void = edited == 0;
                if !void {
                    tx.execute(EDIT_QUOTES, &[&excerpt(&d.text), &t]).await?;
                }
                d.change.clone()
            }
            Some(Change::Reacted { target, reaction }) => {
                let t = *target as i64;
                let emoji = &reaction.emoji;
                let want = asked(reaction);
                let removed = if want == Asked::Add {
                    0
                } else {
                    tx.execute(UNREACT, &[&t, emoji, &d.sender_key]).await?
                };
                if want == Asked::Add || (want == Asked::Toggle && removed == 0) {
                    tx.execute(REACT, &[&t, emoji, &d.sender_key, &d.from.username, &ts])
                        .await?;
                }
                let reactors = tx
                    .query(REACTORS_POSTGRES, &[&t])
                    .await?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                let all = sum_up(reactors);
                tx.execute(SUM_UP, &[&reactions_json(&all), &t]).await?;
                Some(Change::Reacted {
                    target: *target,
                    reaction: state_of(&all, emoji),
                })
            }
        };
        let file = match &d.file {
            Some(file) => {
                let recipient = d.to.as_ref().map(|(_, key)| key);
                let attached = tx
                    .execute(ATTACH, &[&recipient, &file.id, &d.sender_key])
                    .await?;
                (attached == 1).then(|| file.clone())
            }
            None => None,
        };
        Ok(Applied {
            change,
            reply,
            file,
            void,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_sum_up_per_emoji_in_first_use_order_naming_the_first_reactors() {
        let mut reactors = vec![
            ("👍".to_string(), "ann".to_string()),
            ("🎉".into(), "bob".into()),
            ("👍".into(), "cy".into()),
        ];
        for i in 0..30 {
            reactors.push(("🎉".into(), format!("u{i}")));
        }
        let all = sum_up(reactors);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].emoji.as_str(), all[0].count), ("👍", 2));
        assert_eq!(all[0].users, ["ann", "cy"]);
        assert_eq!((all[1].emoji.as_str(), all[1].count), ("🎉", 31));
        assert_eq!(all[1].users.len(), REACTORS_NAMED);
        assert_eq!(state_of(&all, "😮").count, 0);
        assert_eq!(reactions_json(&[]), None);
    }
}
