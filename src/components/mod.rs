//! The chat's UI components, one per file. They read and change the [`Chat`](crate::client::Chat)
//! state from context; only `client` talks to the server.

pub mod account_menu;
pub mod attachment;
pub mod avatar;
pub mod composer;
pub mod join_form;
pub mod link_preview;
pub mod message_list;
pub mod online_list;
pub mod rich_text;
pub mod room_list;
pub mod search;
pub mod status_bar;

use leptos::prelude::*;

/// False while the page is the server's HTML (and during hydration), true once the WASM runs.
///
/// Controls that only work with the WASM stay disabled until then. Without that, a form
/// submitted early does a native GET (there is no server-side handler), reloading the page,
/// and whatever was typed before hydration is wiped when hydration sets the inputs' values:
/// on a slow link or a busy machine, a person's first "Join chat" would silently do nothing.
pub fn hydrated() -> ReadSignal<bool> {
    let (hydrated, set_hydrated) = signal(false);
    // Effects never run on the server, and in the browser run right after hydration.
    Effect::new(move || set_hydrated.set(true));
    hydrated
}

/// Formats a Unix-ms timestamp as `HH:MM`: in UTC on the server, in the reader's own time
/// zone in the browser (see [`message_list`] for how the two meet at hydration).
pub fn clock(ts: i64, local: bool) -> String {
    if let Some((hours, minutes)) = local.then(|| crate::browser::local_time(ts)).flatten() {
        return format!("{hours:02}:{minutes:02}");
    }
    let minutes = ts.div_euclid(60_000);
    format!(
        "{:02}:{:02}",
        minutes.div_euclid(60).rem_euclid(24),
        minutes.rem_euclid(60)
    )
}
