//! The conversation: messages, join/leave notices and the sender's pending messages.
//!
//! It follows the newest message while the reader is at the bottom: when messages arrive, and
//! when the layout changes under it (the join form giving way to the composer, a phone's
//! keyboard, fonts and pictures arriving), which fires no scroll event to react to. A reader who
//! has scrolled up is left where they are and gets a "new messages" button instead. Scrolling to the top
//! (or the "Load older messages" button) fetches the previous page, keeping the view steady.

use super::attachment::AttachmentView;
use super::avatar::Avatar;
use super::clock;
use super::link_preview::LinkPreview;
use super::rich_text::RichText;
use crate::client::{Chat, Entry, Pending};
use crate::protocol::{ChatMessage, Quote, Reaction};
use crate::text::mentions;
use leptos::html::{Div, Ol};
use leptos::prelude::*;

/// Within this many pixels of the bottom counts as "at the bottom".
const STICKY_PX: i32 = 48;

/// Most pages of older messages loaded to bring one message into view (`history-limit`
/// messages each: 50 by default, so 1,000 messages back).
const JUMP_PAGES: u32 = 20;

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
    // view steady when older messages were added above. Entries by identity, not by render
    // key: a reaction, an edit or a link preview on the last message is not a new one (and
    // must neither pull a reader who scrolled up to the bottom nor count as unseen); notices
    // ("bob joined") are not messages to catch up on.
    let shape = Memo::new(move |_| {
        let (first, last, messages) = chat.entries.with(|e| {
            let messages = e.iter().filter(|x| matches!(x, Entry::Message(_))).count();
            (
                e.first().map(Entry::identity),
                e.last().map(Entry::identity),
                messages,
            )
        });
        (first, last, messages, chat.outbox.with(Vec::len))
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
                    unseen.update(|n| *n += now.2.saturating_sub(len));
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

    // A quote or a search hit was clicked: bring that message into view, paging back until
    // it is loaded (or there is nothing older: then say so). At most `JUMP_PAGES` pages: a
    // link anyone can post (`?message=1`) must not make a reader's tab load a room's whole
    // history, nor a failing server make it ask again and again.
    let jump_pages = StoredValue::new((None::<u64>, 0u32));
    Effect::new(move || {
        let Some(id) = chat.jump_to.get() else { return };
        chat.entries.track();
        // Older pages come over the socket: wait until it is up (a link to a message opens
        // the page before the chat has joined).
        if chat.status.get() != crate::client::Status::Online {
            return;
        }
        let Some(content) = list.get() else { return };
        if chat.message(id).is_some() {
            chat.jump_to.set(None);
            chat.flash.set(Some(id));
            // In the next frame, once the list has kept its view steady under the page that
            // just arrived on top (which moves the view), and so that no layout change snaps
            // the list back to the bottom (it is not at the bottom any more).
            crate::browser::next_frame(move || {
                at_bottom.set(false);
                crate::browser::bring_into_view(&content, id);
            });
        } else if chat.first_id().is_some_and(|first| first < id) || !chat.has_more.get() {
            chat.jump_to.set(None);
            chat.alert
                .set(Some("That message is no longer there.".into()));
        } else if !chat.loading_older.get() {
            let (for_id, asked) = jump_pages.get_value();
            let asked = if for_id == Some(id) { asked } else { 0 };
            if asked >= JUMP_PAGES {
                chat.jump_to.set(None);
                chat.alert.set(Some(
                    "That message is too far back to bring into view here; scroll up to find it."
                        .into(),
                ));
                return;
            }
            jump_pages.set_value((Some(id), asked + 1));
            crate::client::load_older(chat);
        }
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
    let can_edit = {
        let mine = mine.clone();
        move || !deleted && mine()
    };
    let joined = move || !deleted && chat.me.with(Option::is_some);
    let delete = move |_| crate::client::delete_message(chat, id);
    // Kept once per message, so the buttons' handlers are `Copy`.
    let text = StoredValue::new(message.text.clone());
    let edit = move |_| {
        chat.replying.set(None);
        chat.editing.set(Some(id));
        chat.draft.set(text.get_value());
        chat.focus_composer.update(|n| *n += 1);
    };
    let reply = {
        let quote = StoredValue::new(Quote {
            id,
            from: message.from.username.clone(),
            text: crate::protocol::excerpt(&message.text),
        });
        let to = StoredValue::new(message.to.clone());
        move |_| {
            let (quote, to) = (quote.get_value(), to.get_value());
            if chat.editing.get_untracked().is_some() {
                chat.editing.set(None);
                chat.draft.set(String::new());
            }
            // A private message is answered privately, to the other one of the two.
            if let Some(to) = &to {
                let me = chat.me.get_untracked();
                let other = if me.as_ref() == Some(to) {
                    &quote.from
                } else {
                    &to.username
                };
                chat.draft.set(format!("/msg {other} "));
            }
            chat.replying.set(Some(quote));
            chat.focus_composer.update(|n| *n += 1);
        }
    };
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
    let edited = message.edited.map(|at| {
        view! {
            <span class="edited" title=move || format!("edited at {}", clock(at, hydrated.get()))>
                "(edited)"
            </span>
        }
    });
    let quote = message.reply.clone().map(|q| {
        let target = q.id;
        let text = if q.text.is_empty() {
            "(deleted message)".to_string()
        } else {
            crate::markdown::plain(&q.text)
        };
        let label = format!("In reply to {}: {text}. Show it", q.from);
        view! {
            <button type="button" class="quote" aria-label=label
                on:click=move |_| chat.jump_to.set(Some(target))>
                <span class="quote-author">{q.from.clone()}</span>
                <span class="quote-text">{text}</span>
            </button>
        }
    });
    let flash = move || chat.flash.get() == Some(id);
    let author = message.from.username.clone();
    view! {
        <li
            class="message"
            class:mine=mine
            class:private=message.to.is_some()
            class:mentions-me=mentions_me
            class:flash=flash
            data-id=message.id
            tabindex="-1"
        >
            <Avatar user=message.from.clone() />
            <div class="bubble">
                <div class="meta">
                    <span class="author">{author}</span>
                    {private}
                    <time>{move || clock(ts, hydrated.get())}</time>
                    {edited}
                </div>
                {quote}
                {if deleted {
                    view! { <p class="text deleted">"This message was deleted."</p> }.into_any()
                } else if message.text.trim().is_empty() {
                    ().into_any()
                } else {
                    view! { <div class="text"><RichText text=message.text.clone() /></div> }.into_any()
                }}
                {message.file.clone().map(|file| view! { <div class="attachment"><AttachmentView file /></div> })}
                {message.preview.clone().map(|preview| view! { <LinkPreview preview /> })}
                <Reactions id reactions=message.reactions.clone() />
                <Show when=joined>
                    <div class="actions">
                        <button type="button" class="reply" aria-label="Reply" title="Reply" on:click=reply>
                            "↩"
                        </button>
                        <ReactionPicker id />
                        <Show when=can_edit.clone()>
                            <button type="button" class="edit" aria-label="Edit message" on:click=edit>
                                "Edit"
                            </button>
                        </Show>
                        <Show when=can_delete.clone()>
                            <button type="button" class="delete" aria-label="Delete message" on:click=delete>
                                "Delete"
                            </button>
                        </Show>
                    </div>
                </Show>
            </div>
        </li>
    }
}

/// The reactions under a message: one button per emoji with its count, pressed if it is
/// yours (pressing it takes yours back, or adds it); who reacted shows on hover, on a long
/// press and to screen readers.
#[component]
fn Reactions(id: u64, reactions: Vec<Reaction>) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let chips = reactions
        .into_iter()
        .map(|r| {
            let more = (r.count as usize).saturating_sub(r.users.len());
            let mut who = r.users.join(", ");
            if more > 0 {
                who.push_str(&format!(" and {more} more"));
            }
            let pressed = {
                let users = r.users.clone();
                move || {
                    chat.me
                        .with(|me| me.as_ref().is_some_and(|me| users.contains(&me.username)))
                        .to_string()
                }
            };
            let label = format!("{} {}: {who}", r.emoji, r.count);
            let emoji = r.emoji.clone();
            // Pressed: this takes yours back; otherwise it adds yours. The server decides
            // which: only the first reactors are named, so the page cannot always tell.
            let toggle = move |_| crate::client::react(chat, id, emoji.clone(), true);
            view! {
                <button type="button" class="reaction" aria-pressed=pressed aria-label=label
                    title=who.clone()
                    on:click=toggle>
                    <span aria-hidden="true">{r.emoji.clone()} " " {r.count}</span>
                    <span class="who" aria-hidden="true">{who.clone()}</span>
                </button>
            }
        })
        .collect_view();
    view! { <div class="reactions">{chips}</div> }
}

/// Quick reactions; any other emoji can be typed (or its `:shortcode:`).
const QUICK: [&str; 6] = ["👍", "❤️", "😂", "🎉", "😮", "👀"];

#[component]
fn ReactionPicker(id: u64) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let open = RwSignal::new(false);
    let other = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<String>);
    let react = move |emoji: String| {
        crate::client::react(chat, id, emoji, false);
        open.set(false);
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match crate::protocol::validate_reaction(&other.get_untracked()) {
            Ok(emoji) => {
                other.set(String::new());
                problem.set(None);
                react(emoji);
            }
            Err(e) => problem.set(Some(e.message)),
        }
    };
    let field = format!("react-other-{id}");
    view! {
        <button type="button" class="react" aria-label="Add reaction"
            aria-expanded=move || open.get().to_string()
            on:click=move |_| open.update(|o| *o = !*o)>
            "☺+"
        </button>
        <Show when=move || open.get()>
            <div class="picker" role="group" aria-label="Reactions">
                {QUICK
                    .iter()
                    .map(|e| {
                        let emoji = e.to_string();
                        view! {
                            <button type="button" aria-label=format!("React with {e}")
                                on:click=move |_| react(emoji.clone())>{*e}</button>
                        }
                    })
                    .collect_view()}
                <form on:submit=submit>
                    <label for=field.clone()>"Other emoji"</label>
                    <input id=field.clone() size="6" autocomplete="off" placeholder=":tada:"
                        prop:value=other on:input=move |ev| other.set(event_target_value(&ev)) />
                    <button type="submit">"React"</button>
                    <span class="field-error" aria-live="polite">{move || problem.get()}</span>
                </form>
            </div>
        </Show>
    }
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
                {pending.reply.clone().map(|q| view! {
                    <div class="quote"><span class="quote-author">{q.from}</span>
                    <span class="quote-text">{crate::markdown::plain(&q.text)}</span></div>
                })}
                <div class="text"><RichText text=pending.text.clone() /></div>
                {pending.file.clone().map(|file| view! {
                    <div class="attachment">"📎 " {file.name}</div>
                })}
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
