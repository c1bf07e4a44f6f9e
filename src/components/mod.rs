//! The chat's UI components, one per file. They read and change the [`Chat`](crate::client::Chat)
//! state from context; only `client` talks to the server.

pub mod avatar;
pub mod composer;
pub mod join_form;
pub mod message_list;
pub mod online_list;
pub mod room_list;
pub mod status_bar;

/// Formats a Unix-ms timestamp as `HH:MM`: in UTC on the server, in the reader's own time
/// zone in the browser (see [`message_list`] for how the two meet at hydration).
pub fn clock(ts: i64, local: bool) -> String {
    #[cfg(feature = "hydrate")]
    if local {
        let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ts as f64));
        return format!("{:02}:{:02}", d.get_hours(), d.get_minutes());
    }
    let _ = local;
    let minutes = ts.div_euclid(60_000);
    format!(
        "{:02}:{:02}",
        minutes.div_euclid(60).rem_euclid(24),
        minutes.rem_euclid(60)
    )
}
