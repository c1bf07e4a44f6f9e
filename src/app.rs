//! The page shell, the router and the chat page.
//!
//! `/` is the default room and `/r/<room>` any other; both are rendered on the server with the
//! room's recent history (so it shows before any script runs), then hydrated.

use crate::client::Chat;
use crate::components::{
    account_menu::AccountMenu, composer::Composer, join_form::JoinForm, message_list::MessageList,
    online_list::OnlineList, room_list::RoomList, search::Search, status_bar::StatusBar,
};
use crate::protocol::{ChatMessage, DEFAULT_ROOM, RoomSummary, validate_room};
use leptos::prelude::*;
use leptos_meta::{Formatter, HashedStylesheet, MetaTags, Title, provide_meta_context};
use leptos_router::{
    SsrMode,
    components::{Route, Router, Routes},
    hooks::{use_params_map, use_query_map},
    path,
};

/// The HTML document around the app (server only).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                // Emoji for browsers without an emoji font (scripts/install.sh copies it).
                <link rel="stylesheet" href="/fonts/emoji/emoji.css" />
                // The release's hashed file names (src/server/assets.rs).
                <HashedStylesheet options=options.clone() id="leptos" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Router>
            <Routes fallback=|| view! { <p class="not-found">"There is nothing here."</p> }>
                // Async: the response waits for the history, so it is in the HTML itself, not
                // streamed in after a fallback (which only a script could swap in).
                <Route path=path!("/") view=ChatPage ssr=SsrMode::Async />
                <Route path=path!("/r/:room") view=ChatPage ssr=SsrMode::Async />
            </Routes>
        </Router>
    }
}

/// The recent history of a room, for the server-rendered page.
#[server]
pub async fn recent_messages(room: String) -> Result<(Vec<ChatMessage>, bool), ServerFnError> {
    use crate::server::hub::Hub;
    let room = validate_room(&room).map_err(|e| ServerFnError::new(e.message))?;
    let hub = use_context::<std::sync::Arc<Hub>>()
        .ok_or_else(|| ServerFnError::new("the hub is not available"))?;
    hub
        // No viewer: the page everyone can load shows public messages only.
        .page(&room, None, None, u64::MAX, hub.config.history_limit)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))
}

/// The rooms with people online, busiest first.
#[server]
pub async fn list_rooms() -> Result<Vec<RoomSummary>, ServerFnError> {
    use crate::server::hub::Hub;
    let hub = use_context::<std::sync::Arc<Hub>>()
        .ok_or_else(|| ServerFnError::new("the hub is not available"))?;
    hub.summaries()
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))
}

#[component]
fn ChatPage() -> impl IntoView {
    let params = use_params_map();
    let room = params
        .read_untracked()
        .get("room")
        .unwrap_or_else(|| DEFAULT_ROOM.to_string());
    let valid = validate_room(&room).is_ok();
    let chat = Chat::new(room.clone());
    provide_context(chat);
    // `?message=<id>` (a search hit in another room): that message is brought into view
    // once the chat is joined (effects only run in the browser).
    let asked = use_query_map()
        .read_untracked()
        .get("message")
        .and_then(|id| id.parse::<u64>().ok());
    Effect::new(move || chat.jump_to.set(asked));
    // Blocking: the response waits for it, so the history is in the HTML itself.
    // Only a valid room name reaches the title; anything else gets the plain name.
    let titled = valid.then(|| room.clone());
    let history = Resource::new_blocking(move || room.clone(), recent_messages);
    let title = move || {
        // Nothing is unread on the server, and there the title is read after the page has
        // rendered, outside the reactive arena (leptos_axum 0.8.10, `handle_response_inner`
        // calling `TitleContext::as_string`), where reading a signal panics now and then
        // ("no Arena is active") and the browser gets an empty response.
        let unread = if cfg!(feature = "hydrate") {
            chat.unread.get()
        } else {
            0
        };
        match (&titled, unread) {
            (None, _) => "hubbub".to_string(),
            (Some(room), 0) => format!("#{room} · hubbub"),
            (Some(room), n) => format!("({n}) #{room} · hubbub"),
        }
    };
    view! {
        <Title text=title formatter=Formatter::from(escape_title) />
        <div class="app">
            <header class="topbar">
                // A full load, like the room links: the chat's state belongs to its page.
                <a class="brand" href="/" rel="external">"hubbub"</a>
                <span class="room-name">"#" {move || chat.room.get()}</span>
                <StatusBar />
                <Show when=move || chat.me.get().is_some()>
                    <AccountMenu />
                </Show>
            </header>
            <Show
                when=move || valid
                fallback=|| view! {
                    <p class="alert" role="alert">
                        "Room names are 1 to 32 lower-case letters, digits or dashes."
                    </p>
                }
            >
                <main class="chat">
                    // A file dropped anywhere on the conversation goes to the message box.
                    <section class="conversation" aria-label="Conversation"
                        on:dragover=|ev: leptos::ev::DragEvent| ev.prevent_default()
                        on:drop=move |ev: leptos::ev::DragEvent| {
                            ev.prevent_default();
                            if chat.me.get_untracked().is_some()
                                && let Some(file) = crate::browser::picked(ev.as_ref()).into_iter().next()
                            {
                                crate::client::attach(chat, file);
                            }
                        }>
                        <Show when=move || chat.me.get().is_some()>
                            <Search />
                        </Show>
                        <Suspense fallback=|| view! { <p class="loading">"Loading messages…"</p> }>
                            {move || Suspend::new(async move {
                                let (initial, has_more) = history.await.unwrap_or_else(|e| {
                                    chat.alert.set(Some(format!("Could not load the history: {e}")));
                                    Default::default()
                                });
                                view! { <MessageList initial has_more /> }.into_any()
                            })}
                        </Suspense>
                        <Show when=move || chat.me.get().is_some() fallback=|| view! { <JoinForm /> }>
                            <Composer />
                        </Show>
                    </section>
                    <aside class="sidebar">
                        <RoomList />
                        <OnlineList />
                    </aside>
                </main>
            </Show>
        </div>
    }
    .into_any()
}

/// leptos_meta 0.8 writes a `<Title>`'s text into the server's HTML as it is, unescaped
/// (leptos_meta 0.8.7, `src/lib.rs`, where the head is built: `buf.push_str(&title)`), so a
/// title holding `</title><script>` would run the script. Until that is fixed upstream, the
/// server escapes it here. (Upstream: Leptos escaped `leptos_meta` attributes in
/// leptos-rs/leptos#1241, and text nodes in #812; the 0.8 title path has no such escaping, and
/// no upstream issue about it was found, so it is reported in this comment's stead.) In the browser the text is set through `document.title`, which
/// takes plain text, so it stays as it is there.
fn escape_title(text: String) -> String {
    if !cfg!(feature = "ssr") {
        return text;
    }
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    escaped
}
