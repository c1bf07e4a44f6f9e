//! What the message box holds, read for the UI: `/msg` commands and the typing line.

/// "alice is typing…", "alice and bob are typing…", "3 people are typing…", or nothing.
pub fn typing_line(names: &[String]) -> Option<String> {
    match names {
        [] => None,
        [one] => Some(format!("{one} is typing…")),
        [a, b] => Some(format!("{a} and {b} are typing…")),
        more => Some(format!("{} people are typing…", more.len())),
    }
}

/// What the message box holds: `/msg <name> <text>` is a private message to `name`.
#[derive(Debug, PartialEq)]
pub enum Compose<'a> {
    Public(&'a str),
    Private {
        to: &'a str,
        text: &'a str,
    },
    /// `/msg` without a name or without a text.
    IncompletePrivate,
}

/// `online` are the names that can follow `/msg`: the longest one that matches wins, so
/// "/msg Ada Lovelace hi" reaches "Ada Lovelace". Otherwise the first word is the name.
pub fn parse_compose<'a>(typed: &'a str, online: &[String]) -> Compose<'a> {
    let Some(rest) = typed.trim_start().strip_prefix("/msg") else {
        return Compose::Public(typed);
    };
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return Compose::Public(typed); // "/message", say
    }
    let rest = rest.trim_start();
    let known = online
        .iter()
        .filter(|name| {
            rest.get(..name.len())
                .is_some_and(|start| start.to_lowercase() == name.to_lowercase())
                && rest[name.len()..].starts_with(char::is_whitespace)
        })
        .max_by_key(|name| name.len())
        .map(|name| rest.split_at(name.len()));
    match known.or_else(|| rest.split_once(char::is_whitespace)) {
        Some((to, text)) if !text.trim().is_empty() => Compose::Private {
            to,
            text: text.trim(),
        },
        _ => Compose::IncompletePrivate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_lines() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(typing_line(&[]), None);
        assert_eq!(typing_line(&names(&["al"])).unwrap(), "al is typing…");
        assert_eq!(
            typing_line(&names(&["al", "bo"])).unwrap(),
            "al and bo are typing…"
        );
        assert_eq!(
            typing_line(&names(&["a", "b", "c"])).unwrap(),
            "3 people are typing…"
        );
    }

    #[test]
    fn msg_commands() {
        let online = ["bob".to_string(), "Ada".into(), "Ada Lovelace".into()];
        let parse = |t| parse_compose(t, &online);
        let private = |to, text| Compose::Private { to, text };
        assert_eq!(parse("hello"), Compose::Public("hello"));
        assert_eq!(parse("/message"), Compose::Public("/message"));
        assert_eq!(parse("/msg bob  hi there "), private("bob", "hi there"));
        // The longest online name wins, in any case.
        assert_eq!(parse("/msg ada lovelace hi"), private("ada lovelace", "hi"));
        assert_eq!(parse("/msg Ada hi"), private("Ada", "hi"));
        assert_eq!(parse("/msg stranger hi"), private("stranger", "hi"));
        assert_eq!(parse("/msg bob"), Compose::IncompletePrivate);
        assert_eq!(parse("/msg Ada Lovelace "), Compose::IncompletePrivate);
        assert_eq!(parse("/msg"), Compose::IncompletePrivate);
    }
}
