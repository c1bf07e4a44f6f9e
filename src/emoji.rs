//! `:robot:`-style shortcodes to emoji, using the `emojis` crate's GitHub/Slack shortcode table.
//!
//! Messages are stored and broadcast exactly as typed; the substitution happens when a message
//! is shown, so the same text renders the same on the server (SSR) and in the browser.

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
                if let Some(emoji) = emojis::get_by_shortcode(code) {
                    out.push_str(emoji.as_str());
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
    use super::replace_shortcodes;

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
