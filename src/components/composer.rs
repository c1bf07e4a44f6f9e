//! The message box: Enter sends, Shift+Enter starts a new line; says inline why it will not
//! send. It also edits (the up arrow in an empty box takes your last message back into it),
//! replies (the quote of what the next message answers is shown above it) and attaches a file
//! (the paper clip, a paste, or a drop anywhere on the conversation), with its progress.

use crate::client::{Chat, Compose, Extras, parse_compose, typing_line};
use crate::protocol::{ErrorCode, validate_text};
use leptos::ev::{KeyboardEvent, SubmitEvent};
use leptos::prelude::*;

/// Most lines the box grows to before it scrolls.
const MAX_ROWS: usize = 6;

#[component]
pub fn Composer() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let text = chat.draft;
    let error = RwSignal::new(None::<String>);
    // Just joined: the keyboard goes to the message box.
    let input = NodeRef::<leptos::html::Textarea>::new();
    let file_input = NodeRef::<leptos::html::Input>::new();
    // Also whenever someone asks for it (the online list's envelope button, Edit, Reply), with
    // the cursor after what is there.
    Effect::new(move || {
        chat.focus_composer.track();
        if let Some(input) = input.get() {
            let _ = input.focus();
            let end = input.value().len() as u32;
            let _ = input.set_selection_range(end, end);
        }
    });
    let cancel = move || {
        if chat.editing.get_untracked().is_some() {
            chat.editing.set(None);
            text.set(String::new());
        }
        chat.replying.set(None);
        error.set(None);
    };
    let send = move || {
        let typed = text.get_untracked();
        if let Some(id) = chat.editing.get_untracked() {
            match validate_text(&typed) {
                Err(e) => error.set(Some(e.message)),
                Ok(()) => {
                    let unchanged = chat.message(id).is_some_and(|m| m.text == typed);
                    if unchanged || crate::client::edit_message(chat, id, typed) {
                        cancel();
                    } else {
                        // Kept in the box: nothing is lost, it can be saved once online.
                        error.set(Some("Not connected: save again once online.".into()));
                    }
                }
            }
            return;
        }
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
        let attaching = chat.attaching.get_untracked();
        if attaching
            .as_ref()
            .is_some_and(|a| a.ready.is_none() && a.failed.is_none())
        {
            error.set(Some(
                "Wait for the file to finish uploading (or cancel it).".into(),
            ));
            return;
        }
        let file = attaching.and_then(|a| a.ready);
        match validate_text(&body) {
            // A file needs no words; an empty Enter is not worth a scolding.
            Err(e) if e.code == ErrorCode::EmptyMessage && file.is_none() => {}
            Err(e) if e.code != ErrorCode::EmptyMessage => error.set(Some(e.message)),
            _ => {
                error.set(None);
                text.set(String::new());
                let reply = chat.replying.get_untracked();
                chat.replying.set(None);
                if file.is_some() {
                    chat.attaching.set(None);
                }
                crate::client::send_message(chat, body, Extras { to, reply, file });
            }
        }
    };
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        send();
    };
    let keydown = move |ev: KeyboardEvent| {
        match ev.key().as_str() {
            // Enter sends; Shift+Enter is a new line; an input method composing a word keeps
            // its Enter.
            "Enter" if !ev.shift_key() && !ev.is_composing() => {
                ev.prevent_default();
                send();
            }
            "ArrowUp" if text.with_untracked(String::is_empty) => {
                if let Some(last) = chat.last_own_message() {
                    ev.prevent_default();
                    chat.replying.set(None);
                    chat.editing.set(Some(last.id));
                    text.set(last.text);
                    chat.focus_composer.update(|n| *n += 1);
                }
            }
            "Escape" => cancel(),
            _ => {}
        }
    };
    let rows = move || text.with(|t| t.lines().count().clamp(1, MAX_ROWS));
    // A picture pasted into the box is attached, not pasted as text.
    let paste = move |ev: leptos::ev::ClipboardEvent| {
        if let Some(file) = crate::browser::picked(ev.as_ref()).into_iter().next() {
            ev.prevent_default();
            crate::client::attach(chat, file);
        }
    };
    let pick = move |ev: leptos::ev::Event| {
        if let Some(file) = crate::browser::picked(&ev).into_iter().next() {
            crate::client::attach(chat, file);
        }
        // The same file can be picked again after cancelling.
        if let Some(input) = file_input.get_untracked() {
            input.set_value("");
        }
    };
    let attaching = move || {
        chat.attaching.get().map(|a| {
            let state = match (&a.ready, &a.failed) {
                (_, Some(reason)) => view! { <span class="field-error">{reason.clone()}</span> }.into_any(),
                (Some(file), None) => {
                    let size = crate::protocol::human_size(file.size);
                    view! { <span>{format!("ready to send ({size})")}</span> }.into_any()
                }
                (None, None) => view! {
                    <progress max="100" value=a.percent aria-label=format!("Uploading {}", a.name)></progress>
                }
                .into_any(),
            };
            let label = if a.ready.is_some() || a.failed.is_some() {
                "Remove file"
            } else {
                "Cancel upload"
            };
            view! {
                <div class="attaching" role="status">
                    <span class="file-name">"📎 " {a.name.clone()}</span>
                    {state}
                    <button type="button" on:click=move |_| crate::client::cancel_attachment(chat)>
                        {label}
                    </button>
                </div>
            }
        })
    };
    let context = move || {
        if chat.editing.get().is_some() {
            let line = "Editing your message (Esc to cancel)";
            return Some(
                view! {
                    <div class="composing">
                        <span>{line}</span>
                        <button type="button" on:click=move |_| cancel()>"Cancel edit"</button>
                    </div>
                }
                .into_any(),
            );
        }
        chat.replying.get().map(|quote| {
            let line = format!("Replying to {}: ", quote.from);
            let quoted = crate::markdown::plain(&quote.text);
            view! {
                <div class="composing">
                    <span>{line}<q>{quoted}</q></span>
                    <button type="button" on:click=move |_| cancel()>"Cancel reply"</button>
                </div>
            }
            .into_any()
        })
    };
    view! {
        <form class="composer" on:submit=submit>
            {context}
            {attaching}
            // Before the message box: from the box, Tab goes on to Send.
            <div class="composer-attach">
                <input id="attach-input" class="visually-hidden" type="file" node_ref=file_input
                    on:change=pick />
                <label for="attach-input" class="attach" title="Attach a file">
                    <span aria-hidden="true">"📎"</span>
                    <span class="visually-hidden">"Attach a file"</span>
                </label>
            </div>
            <label for="composer-input" class="visually-hidden">"Message"</label>
            <textarea
                id="composer-input"
                node_ref=input
                rows=rows
                autocomplete="off"
                placeholder="Write a message… (Shift+Enter: new line, ↑: edit your last, /msg name text: private)"
                aria-invalid=move || error.get().is_some().to_string()
                aria-describedby="composer-error"
                prop:value=text
                on:keydown=keydown
                on:paste=paste
                on:input=move |ev| {
                    text.set(event_target_value(&ev));
                    error.set(None);
                    if chat.editing.get_untracked().is_none() {
                        crate::client::typing(chat);
                    }
                }
            ></textarea>
            <button type="submit">{move || if chat.editing.get().is_some() { "Save" } else { "Send" }}</button>
            <p id="composer-error" class="field-error" aria-live="polite">{move || error.get()}</p>
            <p class="typing" aria-live="polite">{move || chat.typing.with(|t| typing_line(t))}</p>
        </form>
    }
}
