//! `:robot:`-style shortcodes to emoji, using the `emojis` crate's GitHub/Slack shortcode table.
//!
//! Messages are stored and broadcast exactly as typed; the substitution happens when a message
//! is shown, so the same text renders the same on the server (SSR) and in the browser. The
//! table is only the names and their emoji, made by build.rs (the whole crate would be ~120 KB
//! of the browser's download).

include!(concat!(env!("OUT_DIR"), "/shortcodes.rs"));

/// The emoji of a shortcode (without its colons), if it has one.
pub fn by_shortcode(code: &str) -> Option<&'static str> {
    SHORTCODES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| SHORTCODES[i].1)
}

/// Replaces every known `:shortcode:` in `text` with its emoji; unknown ones stay as typed.
pub fn replace_shortcodes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(':') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find(':') {
            Some(end) if is_shortcode(&after[..end]) => {
                let code = &after[..end];
                if let Some(emoji) = by_shortcode(code) {
                    out.push_str(emoji);
                    rest = &after[end + 1..];
                } else {
                    // Not an emoji: keep the colon and look again from the next one, so
                    // "time: 10:30 :robot:" still finds the robot.
                    out.push(':');
                    rest = after;
                }
            }
            _ => {
                out.push(':');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_shortcode(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::{SHORTCODES, by_shortcode, replace_shortcodes};

    #[cfg(feature = "ssr")]
    #[test]
    fn the_table_is_the_emojis_crates_shortcodes() {
        let mut count = 0;
        for emoji in emojis::iter() {
            for code in emoji.shortcodes() {
                assert_eq!(by_shortcode(code), Some(emoji.as_str()), ":{code}:");
                count += 1;
            }
        }
        assert_eq!(count, SHORTCODES.len());
        for (code, emoji) in SHORTCODES {
            assert_eq!(
                emojis::get_by_shortcode(code).map(|e| e.as_str()),
                Some(*emoji)
            );
        }
        assert!(by_shortcode("no_such_emoji").is_none());
    }

    #[test]
    fn known_codes_become_emoji() {
        assert_eq!(replace_shortcodes("hello :robot:"), "hello 🤖");
        assert_eq!(replace_shortcodes(":+1::tada:"), "👍🎉");
    }

    #[test]
    fn everything_else_is_left_alone() {
        assert_eq!(
            replace_shortcodes("at 10:30 :nope: ok"),
            "at 10:30 :nope: ok"
        );
        assert_eq!(replace_shortcodes("time: 10:30 :robot:"), "time: 10:30 🤖");
        assert_eq!(replace_shortcodes("::"), "::");
        assert_eq!(replace_shortcodes("<b>:robot:</b>"), "<b>🤖</b>");
    }
}
