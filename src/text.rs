//! How message text is shown: `:shortcodes:` become emoji and `@name` mentions stand out.
//! Plain functions of the text, so the server-rendered page and the browser agree.

use crate::emoji::replace_shortcodes;

/// A piece of a message's text.
#[derive(Debug, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    /// `@name`, as typed (with the `@`).
    Mention(String),
}

/// Splits the (emoji-rendered) text into plain runs and `@mentions`. A mention is `@` at the
/// start or after whitespace, followed by name characters; trailing punctuation is not part
/// of it ("@bob," mentions bob).
pub fn segments(text: &str) -> Vec<Segment> {
    let text = replace_shortcodes(text);
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut chars = text.char_indices().peekable();
    let mut prev_space = true;
    while let Some((i, c)) = chars.next() {
        if c == '@' && prev_space {
            let rest = &text[i + 1..];
            let len = rest
                .find(|ch: char| ch.is_whitespace() || is_trailing_punctuation(ch))
                .unwrap_or(rest.len());
            if len > 0 {
                if !plain.is_empty() {
                    out.push(Segment::Text(std::mem::take(&mut plain)));
                }
                out.push(Segment::Mention(text[i..i + 1 + len].to_string()));
                while chars.peek().is_some_and(|(j, _)| *j < i + 1 + len) {
                    chars.next();
                }
                prev_space = false;
                continue;
            }
        }
        prev_space = c.is_whitespace();
        plain.push(c);
    }
    if !plain.is_empty() {
        out.push(Segment::Text(plain));
    }
    out
}

fn is_trailing_punctuation(c: char) -> bool {
    matches!(
        c,
        ',' | '.' | '!' | '?' | ':' | ';' | ')' | '(' | '"' | '\''
    )
}

/// Whether the text mentions `username` (case-insensitively; a name with spaces is
/// mentioned without them: "Ada Lovelace" by "@AdaLovelace").
pub fn mentions(text: &str, username: &str) -> bool {
    let wanted: String = username
        .split_whitespace()
        .collect::<String>()
        .to_lowercase();
    segments(text).iter().any(|s| match s {
        Segment::Mention(m) => m[1..].to_lowercase() == wanted,
        Segment::Text(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_split_out() {
        assert_eq!(
            segments("hi @bob, see @Ada! mail a@b.io :wave:"),
            vec![
                Segment::Text("hi ".into()),
                Segment::Mention("@bob".into()),
                Segment::Text(", see ".into()),
                Segment::Mention("@Ada".into()),
                Segment::Text("! mail a@b.io 👋".into()),
            ]
        );
        assert_eq!(segments("@ alone"), vec![Segment::Text("@ alone".into())]);
    }

    #[test]
    fn who_is_mentioned() {
        assert!(mentions("hey @BOB!", "bob"));
        assert!(mentions("@AdaLovelace look", "Ada Lovelace"));
        assert!(!mentions("bob@example.com", "bob"));
        assert!(!mentions("@bobby", "bob"));
    }
}
