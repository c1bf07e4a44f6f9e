//! What a first visit to hubbub needs and nothing more: a router with two routes, a title, a
//! room's history from a server function (JSON, like the real page's resource), drawn as a
//! list, and a join form with a checked field. hubbub's own page is this plus rich text,
//! the room and online lists, and the chat itself.

use leptos::prelude::*;
use leptos_meta::{Title, provide_meta_context};
use leptos_router::{
    components::{Route, Router, Routes},
    hooks::use_params_map,
    path,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub id: u64,
    pub username: String,
    pub text: String,
    pub ts: i64,
}

#[server]
pub async fn recent_messages(room: String) -> Result<(Vec<Message>, bool), ServerFnError> {
    let _ = room;
    Ok((Vec::new(), false))
}

#[component]
fn ChatPage() -> impl IntoView {
    let room = use_params_map()
        .read_untracked()
        .get("room")
        .unwrap_or_else(|| "general".to_string());
    let title = format!("#{room} · floor");
    let history = Resource::new_blocking(move || room.clone(), recent_messages);
    let name = RwSignal::new(String::new());
    let joined = RwSignal::new(false);
    let error = move || {
        let n = name.get();
        (n.chars().count() > 32).then_some("At most 32 characters.")
    };
    view! {
        <Title text=title />
        <Suspense fallback=|| view! { <p>"Loading messages…"</p> }>
            {move || Suspend::new(async move {
                let (messages, _more) = history.await.unwrap_or_default();
                view! {
                    <ol>
                        {messages.into_iter().map(|m| view! {
                            <li id=format!("m{}", m.id)><b>{m.username}</b>" "{m.text}</li>
                        }).collect_view()}
                    </ol>
                }
            })}
        </Suspense>
        <Show when=move || joined.get() fallback=move || view! {
            <form on:submit=move |ev| { ev.prevent_default(); joined.set(error().is_none()); }>
                <label for="name">"Username"</label>
                <input id="name" prop:value=name on:input=move |ev| name.set(event_target_value(&ev)) />
                <p role="alert">{error}</p>
                <button type="submit">"Join"</button>
            </form>
        }>
            <p>"Joined as " {move || name.get()}</p>
        </Show>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Router>
            <Routes fallback=|| "There is nothing here.">
                <Route path=path!("/") view=ChatPage />
                <Route path=path!("/r/:room") view=ChatPage />
            </Routes>
        </Router>
    }
}

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
