//! Full-text search of a room's messages as one viewer may see them, newest first, with the
//! matching words marked: SQLite's FTS5 (the `messages_fts` index, English stemming) and
//! PostgreSQL's text search (`to_tsvector('english', text)`, a GIN index) behind one call.

use super::postgres::unreachable;
use super::sqlite::with;
use super::{Backend, COLUMNS, NCOLUMNS, Storage, StoreError, visible_to};
use crate::protocol::Hit;
use rusqlite::params;

/// Longest a search may run (SQLite; PostgreSQL's `statement_timeout` does the same).
const MAX_SEARCH_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Private-use characters the databases put around each matching word.
const START: char = '\u{E000}';
const STOP: char = '\u{E001}';

impl Storage {
    /// Up to `limit` messages of `room` (`None`: of every room) that `viewer` may see and
    /// that match every word of `query` (stemmed: "cats" finds "cat"), newest first.
    pub async fn search(
        &self,
        room: Option<&str>,
        viewer: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        let doing = format!("searching {}", room.unwrap_or("every room"));
        let (room, viewer, limit) = (room.map(str::to_string), viewer.to_string(), limit as i64);
        match &self.log {
            Backend::Sqlite(db) => {
                let Some(matching) = fts5_query(query) else {
                    return Ok(Vec::new());
                };
                // FTS5 hands its matches over in rowid (= message id) order, newest first
                // here, so the newest `limit` visible ones end the scan: no sort, and the
                // highlighting is only done for those.
                let sql = format!(
                    "SELECT {}, highlight(messages_fts, 0, char({}), char({})), m.room \
                     FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid \
                     WHERE messages_fts MATCH ?1 AND (?2 IS NULL OR m.room = ?2) \
                     AND m.change_kind IS NULL \
                     AND {} ORDER BY messages_fts.rowid DESC LIMIT ?4",
                    qualified("m"),
                    START as u32,
                    STOP as u32,
                    visible_to("?3"),
                );
                with(&db.searcher, doing, move |conn| {
                    // A search that runs too long is interrupted (and answered `unavailable`).
                    let deadline = std::time::Instant::now() + MAX_SEARCH_TIME;
                    conn.progress_handler(
                        10_000,
                        Some(move || std::time::Instant::now() > deadline),
                    );
                    let hits = conn
                        .prepare_cached(&sql)?
                        .query_map(params![matching, room, viewer, limit], |row| {
                            Ok(Hit {
                                message: super::sqlite::read_row(row)?,
                                spans: spans(&row.get::<_, String>(NCOLUMNS)?),
                                room: row.get(NCOLUMNS + 1)?,
                            })
                        })?
                        .collect();
                    conn.progress_handler(0, None::<fn() -> bool>);
                    hits
                })
                .await
            }
            Backend::Postgres(db) => {
                // The matches are found through the GIN index first (materialized, so the
                // planner cannot instead walk the room newest first and stem every message
                // until it has enough: 0.5 s for a rare word in 100,000 messages), then the
                // newest are marked.
                let sql = format!(
                    "WITH q AS (SELECT plainto_tsquery('english', $1) AS q), \
                     hits AS MATERIALIZED (SELECT id FROM messages, q \
                     WHERE to_tsvector('english', text) @@ q.q AND change_kind IS NULL \
                     AND ($2::TEXT IS NULL OR room = $2) AND {}) \
                     SELECT {COLUMNS}, ts_headline('english', text, q.q, \
                     'StartSel={START}, StopSel={STOP}, HighlightAll=true'), room \
                     FROM messages JOIN hits USING (id), q ORDER BY id DESC LIMIT $4",
                    visible_to("$3::TEXT")
                );
                let client = db.pool.get().await.map_err(unreachable)?;
                let rows = client
                    .query(&sql, &[&query, &room, &viewer, &limit])
                    .await
                    .map_err(|e| StoreError::query(doing, e))?;
                Ok(rows
                    .iter()
                    .map(|row| Hit {
                        message: super::postgres::read_row(row),
                        spans: spans(row.get(NCOLUMNS)),
                        room: row.get(NCOLUMNS + 1),
                    })
                    .collect())
            }
        }
    }
}

/// [`COLUMNS`] of the table aliased `alias` (the search joins a second table with a `text`).
fn qualified(alias: &str) -> String {
    COLUMNS
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The query as FTS5 syntax: every word quoted (so nothing typed is an operator: `NEAR`,
/// `-`, `*`, `"` are just text), all of them required. None without a word.
fn fts5_query(query: &str) -> Option<String> {
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\""))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Text with marked words, as runs: `(text, matched)`.
fn spans(marked: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let mut matched = false;
    let mut run = String::new();
    for c in marked.chars() {
        if c == START || c == STOP {
            if !run.is_empty() {
                out.push((std::mem::take(&mut run), matched));
            }
            matched = c == START;
        } else {
            run.push(c);
        }
    }
    if !run.is_empty() {
        out.push((run, matched));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_words_never_operators() {
        assert_eq!(fts5_query("big cats"), Some("\"big\" \"cats\"".into()));
        assert_eq!(
            fts5_query("NEAR(a\" OR -b*) é"),
            Some("\"NEAR\" \"a\" \"OR\" \"b\" \"é\"".into())
        );
        assert_eq!(fts5_query(" \"*- "), None);
    }

    #[test]
    fn marked_text_becomes_runs() {
        let marked = format!("the {START}cats{STOP} sat on {START}cat{STOP}");
        assert_eq!(
            spans(&marked),
            [
                ("the ".to_string(), false),
                ("cats".into(), true),
                (" sat on ".into(), false),
                ("cat".into(), true),
            ]
        );
    }
}
