//! The message input: sends on Enter or the Send button; says inline why it will not send.

use crate::client::{Chat, Compose, parse_compose, typing_line};
use crate::protocol::{ErrorCode, validate_text};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;

#[component]
pub fn Composer() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let text = chat.draft;
    let error = RwSignal::new(None::<String>);
    // Just joined: the keyboard goes to the message box.
    let input = NodeRef::<leptos::html::Input>::new();
    // Also whenever someone asks for it (the online list's envelope button), with the cursor
    // after what is there.
    Effect::new(move || {
        chat.focus_composer.track();
        if let Some(input) = input.get() {
            let _ = input.focus();
            let end = input.value().len() as u32;
            let _ = input.set_selection_range(end, end);
        }
    });
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let typed = text.get_untracked();
        let online: Vec<String> = chat
            .online
            .with_untracked(|o| o.iter().map(|u| u.username.clone()).collect());
        let (body, to) = match parse_compose(&typed, &online) {
            Compose::Public(body) => (body.to_string(), None),
            Compose::Private { to, text } => (text.to_string(), Some(to.to_string())),
            Compose::IncompletePrivate => {
                error.set(Some("Write /msg, a name, then your message.".into()));
                return;
            }
        };
        match validate_text(&body) {
            // An empty Enter is not worth a scolding.
            Err(e) if e.code == ErrorCode::EmptyMessage => {}
            Err(e) => error.set(Some(e.message)),
            Ok(()) => {
                error.set(None);
                text.set(String::new());
                crate::client::send_message(chat, body, to);
            }
        }
    };
    view! {
        <form class="composer" on:submit=submit>
            <label for="composer-input" class="visually-hidden">"Message"</label>
            <input
                id="composer-input"
                node_ref=input
                type="text"
                autocomplete="off"
                placeholder="Write a message… (/msg name text: private)"
                aria-invalid=move || error.get().is_some().to_string()
                aria-describedby="composer-error"
                prop:value=text
                on:input=move |ev| {
                    text.set(event_target_value(&ev));
                    error.set(None);
                    crate::client::typing(chat);
                }
            />
            <button type="submit">"Send"</button>
            <p id="composer-error" class="field-error" aria-live="polite">{move || error.get()}</p>
            <p class="typing" aria-live="polite">{move || chat.typing.with(|t| typing_line(t))}</p>
        </form>
    }
}
