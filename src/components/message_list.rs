//! The conversation: messages, join/leave notices and the sender's pending messages.
//!
//! It follows the newest message while the reader is at the bottom: when messages arrive, and
//! when the layout changes under it (the join form giving way to the composer, a phone's
//! keyboard, fonts and pictures arriving), which fires no scroll event to react to. A reader who
//! has scrolled up is left where they are and gets a "new messages" button instead. Scrolling to the top
//! (or the "Load older messages" button) fetches the previous page, keeping the view steady.

use super::avatar::Avatar;
use super::clock;
use crate::client::{Chat, Entry, Pending};
use crate::protocol::ChatMessage;
use crate::text::{Segment, mentions, segments};
use leptos::html::{Div, Ol};
use leptos::prelude::*;

/// Within this many pixels of the bottom counts as "at the bottom".
const STICKY_PX: i32 = 48;

#[component]
pub fn MessageList(initial: Vec<ChatMessage>, has_more: bool) -> impl IntoView {
    let chat = expect_context::<Chat>();
    // Seed with the server-rendered history (same ids the welcome frame will bring again;
    // merging dedupes by id, so nothing flashes or doubles at join).
    if chat.entries.with_untracked(Vec::is_empty) {
        chat.merge_messages(initial);
        chat.has_more.set(has_more);
    }
    let scroller = NodeRef::<Div>::new();
    let list = NodeRef::<Ol>::new();
    let at_bottom = RwSignal::new(true);
    let unseen = RwSignal::new(0usize);
    // Times switch to the reader's time zone once hydrated (the server renders them in UTC).
    let hydrated = super::hydrated();

    // After every change to the list: stick to the bottom, count unseen messages, or keep the
    // view steady when older messages were added above.
    let shape = Memo::new(move |_| {
        let (first, last, len) = chat
            .entries
            .with(|e| (e.first().map(Entry::key), e.last().map(Entry::key), e.len()));
        (first, last, len, chat.outbox.with(Vec::len))
    });
    let height = StoredValue::new(0);
    Effect::new(
        move |previous: Option<(Option<String>, Option<String>, usize, usize)>| {
            let now = shape.get();
            let Some(el) = scroller.get() else { return now };
            if let Some((first, last, len, pending)) = previous.clone() {
                let grew_on_top = first != now.0 && last == now.1;
                let grew_below = last != now.1 || pending < now.3;
                // Your own message always brings you to the bottom, wherever you were.
                let last_is_mine = chat.entries.with_untracked(|e| match e.last() {
                    Some(Entry::Message(m)) => {
                        chat.me.with_untracked(|me| me.as_ref() == Some(&m.from))
                    }
                    _ => false,
                });
                if grew_on_top {
                    el.set_scroll_top(el.scroll_top() + el.scroll_height() - height.get_value());
                } else if grew_below
                    && !at_bottom.get_untracked()
                    && pending >= now.3
                    && !last_is_mine
                {
                    unseen.update(|n| *n += now.2.saturating_sub(len).max(1));
                } else if grew_below {
                    el.set_scroll_top(el.scroll_height());
                }
            } else {
                el.set_scroll_top(el.scroll_height());
            }
            height.set_value(el.scroll_height());
            now
        },
    );

    // Pinned through layout changes: while the reader is at the bottom, any change in the size
    // of the list or of its viewport keeps the newest message in view.
    // The watcher is the effect's value, so it lives as long as the effect (which only ever
    // runs in the browser: nothing of it exists on the server, where the page's reactive
    // owner is dropped on another thread than the one that made it).
    Effect::new(move |_: Option<Option<crate::browser::Resize>>| {
        let (Some(el), Some(content)) = (scroller.get(), list.get()) else {
            return None;
        };
        let pin = move || {
            if at_bottom.get_untracked()
                && let Some(el) = scroller.get_untracked()
            {
                el.set_scroll_top(el.scroll_height());
                height.set_value(el.scroll_height());
            }
        };
        Some(crate::browser::on_resize(&el, &content, pin))
    });

    let on_scroll = move |_| {
        let Some(el) = scroller.get() else { return };
        let bottom = el.scroll_height() - el.scroll_top() - el.client_height() < STICKY_PX;
        at_bottom.set(bottom);
        if bottom {
            unseen.set(0);
        }
        height.set_value(el.scroll_height());
        if el.scroll_top() < 80
            && chat.has_more.get_untracked()
            && !chat.loading_older.get_untracked()
            && chat.me.get_untracked().is_some()
        {
            crate::client::load_older(chat);
        }
    };
    let jump_down = move |_| {
        if let Some(el) = scroller.get() {
            el.set_scroll_top(el.scroll_height());
        }
        unseen.set(0);
        at_bottom.set(true);
    };
    let load_older = move |_| crate::client::load_older(chat);

    view! {
        // Focusable, so the history can be scrolled from the keyboard.
        <div class="scroller" tabindex="0" node_ref=scroller on:scroll=on_scroll>
            <Show when=move || chat.has_more.get() && chat.me.get().is_some()>
                <button class="older" on:click=load_older disabled=move || chat.loading_older.get()>
                    {move || if chat.loading_older.get() { "Loading…" } else { "Load older messages" }}
                </button>
            </Show>
            <Show when=move || chat.entries.with(Vec::is_empty) && chat.outbox.with(Vec::is_empty)>
                <p class="empty">"No messages yet. Say hello!"</p>
            </Show>
            // The live region wraps the list (a role on the <ol> itself would take away its
            // list semantics): screen readers announce each message as it arrives.
            <div role="log" aria-label="Messages">
            <ol class="messages" node_ref=list>
                <For each=move || chat.entries.get() key=Entry::key let:entry>
                    {match entry {
                        Entry::Message(m) => view! { <MessageItem message=m hydrated /> }.into_any(),
                        Entry::Notice { text, .. } => view! { <li class="notice">{text}</li> }.into_any(),
                    }}
                </For>
                <For each=move || chat.outbox.get() key=|p| (p.client_id.clone(), p.failed.clone()) let:pending>
                    <PendingItem pending />
                </For>
            </ol>
            </div>
        </div>
        <Show when=move || { unseen.get() > 0 }>
            <button class="jump" on:click=jump_down>
                {move || match unseen.get() {
                    1 => "1 new message ↓".to_string(),
                    n => format!("{n} new messages ↓"),
                }}
            </button>
        </Show>
    }
}

#[component]
fn MessageItem(message: ChatMessage, hydrated: ReadSignal<bool>) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let from = message.from.clone();
    let mine = {
        let from = from.clone();
        move || chat.me.with(|me| me.as_ref() == Some(&from))
    };
    let id = message.id;
    let deleted = message.deleted;
    // Authors delete their own messages; admins any public one.
    let public = message.to.is_none();
    let can_delete = {
        let mine = mine.clone();
        move || !deleted && (mine() || (public && chat.admin.get()))
    };
    let delete = move |_| crate::client::delete_message(chat, id);
    let ts = message.ts;
    let mentions_me = {
        let text = message.text.clone();
        move || {
            chat.me
                .with(|me| me.as_ref().is_some_and(|me| mentions(&text, &me.username)))
        }
    };
    let private = message.to.clone().map(|to| {
        let label = format!("private, to {}", to.username);
        view! { <span class="private-label">{label}</span> }
    });
    view! {
        <li
            class="message"
            class:mine=mine
            class:private=message.to.is_some()
            class:mentions-me=mentions_me
            data-id=message.id
        >
            <Avatar user=message.from.clone() />
            <div class="bubble">
                <div class="meta">
                    <span class="author">{message.from.username.clone()}</span>
                    {private}
                    <time>{move || clock(ts, hydrated.get())}</time>
                </div>
                {if deleted {
                    view! { <p class="text deleted">"This message was deleted."</p> }.into_any()
                } else {
                    view! { <p class="text">{rich_text(&message.text)}</p> }.into_any()
                }}
                <Show when=can_delete.clone()>
                    <button class="delete" aria-label="Delete message" on:click=delete>
                        "Delete"
                    </button>
                </Show>
            </div>
        </li>
    }
}

/// The text with emoji and highlighted `@mentions`, every piece as text (never HTML).
fn rich_text(text: &str) -> impl IntoView + use<> {
    segments(text)
        .into_iter()
        .map(|segment| match segment {
            Segment::Text(t) => t.into_any(),
            Segment::Mention(m) => view! { <span class="mention">{m}</span> }.into_any(),
        })
        .collect_view()
}

#[component]
fn PendingItem(pending: Pending) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let me = chat.me.get_untracked();
    let failed = pending.failed.clone();
    let is_failed = failed.is_some();
    let client_id = pending.client_id.clone();
    let retry = move |_| crate::client::retry(chat, &client_id);
    view! {
        <li class="message mine pending" class:failed=is_failed class:private=pending.to.is_some()>
            {me.map(|user| view! { <Avatar user /> })}
            <div class="bubble">
                {pending.to.clone().map(|to| view! {
                    <div class="meta"><span class="private-label">{format!("private, to {to}")}</span></div>
                })}
                <p class="text">{rich_text(&pending.text)}</p>
                {match failed {
                    None => view! { <span class="state">"Sending…"</span> }.into_any(),
                    Some(reason) => view! {
                        <span class="state" role="alert">"Not sent: " {reason}</span>
                        <button class="retry" on:click=retry>"Retry"</button>
                    }.into_any(),
                }}
            </div>
        </li>
    }
}
