//! The search box and its results: full-text search of the room's messages you can see,
//! newest first, matching words marked; a hit brings its message into view in the
//! conversation (loading older pages as needed).

use super::clock;
use crate::client::Chat;
use crate::protocol::{Hit, validate_query};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;

#[component]
pub fn Search() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let query = RwSignal::new(String::new());
    let everywhere = RwSignal::new(false);
    let problem = RwSignal::new(None::<String>);
    let hydrated = super::hydrated();
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        match validate_query(&query.get_untracked()) {
            Ok(q) => {
                problem.set(None);
                if !crate::client::search(chat, q, everywhere.get_untracked()) {
                    problem.set(Some("Not connected: search again once online.".into()));
                }
            }
            Err(e) => problem.set(Some(e.message)),
        }
    };
    let close = move |_| {
        chat.search.set(None);
        query.set(String::new());
    };
    let heading = move || {
        chat.search.with(|s| match s {
            Some((q, hits)) if hits.is_empty() => format!("Nothing found for “{q}”"),
            Some((q, hits)) if hits.len() == 1 => format!("1 message found for “{q}”"),
            Some((q, hits)) => format!("{} messages found for “{q}”", hits.len()),
            None => String::new(),
        })
    };
    view! {
        <form class="search" role="search" on:submit=submit>
            <label for="search-input" class="visually-hidden">"Search messages"</label>
            <input id="search-input" type="search" placeholder="Search this room" autocomplete="off"
                prop:value=query on:input=move |ev| query.set(event_target_value(&ev))
                aria-describedby="search-error" />
            <label class="everywhere">
                <input type="checkbox" prop:checked=everywhere
                    on:change=move |ev| everywhere.set(event_target_checked(&ev)) />
                "All rooms"
            </label>
            <button type="submit" disabled=move || !hydrated.get() || chat.searching.get()>
                "Search"
            </button>
            <span id="search-error" class="field-error" aria-live="polite">{move || problem.get()}</span>
        </form>
        <Show when=move || chat.search.with(Option::is_some)>
            <section class="search-results" aria-label="Search results">
                <div class="search-head">
                    <h2 aria-live="polite">{heading}</h2>
                    <button type="button" on:click=close>"Close search"</button>
                </div>
                <ol>
                    {move || {
                        chat.search
                            .get()
                            .map(|(_, hits)| {
                                hits.into_iter()
                                    .map(|hit| view! { <HitItem hit hydrated /> })
                                    .collect_view()
                            })
                    }}
                </ol>
            </section>
        </Show>
    }
}

#[component]
fn HitItem(hit: Hit, hydrated: ReadSignal<bool>) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let id = hit.message.id;
    let ts = hit.message.ts;
    let spans = hit
        .spans
        .into_iter()
        .map(|(text, matched)| {
            if matched {
                view! { <mark>{text}</mark> }.into_any()
            } else {
                text.into_any()
            }
        })
        .collect_view();
    let here = hit.room == chat.room.get_untracked();
    let label = if here {
        format!("Show the message by {}", hit.message.from.username)
    } else {
        format!(
            "Show the message by {} in #{}",
            hit.message.from.username, hit.room
        )
    };
    let room = hit.room.clone();
    // In this room, it is brought into view; in another, that room opens at it.
    let show = move |_| {
        if here {
            chat.jump_to.set(Some(id));
        } else {
            crate::browser::go_to(&format!("/r/{room}?message={id}"));
        }
    };
    view! {
        <li>
            <button type="button" class="hit" aria-label=label on:click=show>
                {(!here).then(|| view! { <span class="hit-room">"#" {hit.room.clone()}</span> })}
                <span class="author">{hit.message.from.username.clone()}</span>
                <time>{move || clock(ts, hydrated.get())}</time>
                <span class="hit-text">{spans}</span>
            </button>
        </li>
    }
}
