//! The connection state in the top bar, and the banner for problems that are not about one
//! field or message.

use crate::client::{Chat, Status};
use leptos::prelude::*;

#[component]
pub fn StatusBar() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let label = move || match chat.status.get() {
        Status::Idle => String::new(),
        Status::Connecting => "Connecting…".into(),
        Status::Online => "Connected".into(),
        Status::Reconnecting { retry_in_ms } => {
            format!("Reconnecting in {}s…", retry_in_ms.div_ceil(1000))
        }
        Status::Offline => "Offline: waiting for the network…".into(),
        Status::Stopped(reason) => format!("Disconnected. {reason}"),
    };
    let kind = move || match chat.status.get() {
        Status::Online => "status is-online",
        Status::Idle => "status is-idle",
        _ => "status is-offline",
    };
    view! {
        <span class=kind role="status">{label}</span>
        <NotificationsButton />
        {move || chat.alert.get().map(|message| view! {
            <p class="alert" role="alert">
                {message}
                <button class="dismiss" aria-label="Dismiss" on:click=move |_| chat.alert.set(None)>"×"</button>
            </p>
        })}
    }
}

/// Offers desktop notifications (for mentions and private messages while the tab is hidden)
/// until the user has answered the browser's question. Asking only on a click: browsers
/// ignore, and users resent, permission prompts nobody asked for.
#[component]
fn NotificationsButton() -> impl IntoView {
    let chat = expect_context::<Chat>();
    // Unknown on the server; the browser fills it in after hydration.
    let undecided = RwSignal::new(false);
    let refresh = move || undecided.set(crate::browser::notifications_undecided());
    Effect::new(refresh);
    let ask = move |_| {
        leptos::task::spawn_local(async move {
            crate::browser::ask_for_notifications().await;
            refresh();
        });
    };
    view! {
        <Show when=move || undecided.get() && chat.me.get().is_some()>
            <button
                class="notify"
                title="Desktop notifications for mentions and private messages"
                on:click=ask
            >
                "Notify me"
            </button>
        </Show>
    }
}
