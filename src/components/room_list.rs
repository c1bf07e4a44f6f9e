//! The rooms with people in them, and a form to open (or create) one by name.
//!
//! Each room is its own page (`/r/<name>`, rendered on the server with its history) and its
//! own connection, so moving to another room is a full page load, not a client-side route.

use crate::app::list_rooms;
use crate::client::Chat;
use crate::protocol::validate_room;
use leptos::ev::SubmitEvent;
use leptos::prelude::*;

/// How often the list is refreshed while the page is open.
const REFRESH_MS: u64 = 10_000;

#[component]
pub fn RoomList() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let refresh = RwSignal::new(0u32);
    let rooms = Resource::new(move || refresh.get(), |_| list_rooms());
    Effect::new(move || {
        crate::browser::every(std::time::Duration::from_millis(REFRESH_MS), move || {
            refresh.update(|n| *n += 1)
        });
    });

    let name = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    // Disabled until hydrated (see [`super::hydrated`]).
    let ready = super::hydrated();
    let open = move |ev: SubmitEvent| {
        ev.prevent_default();
        let wanted = name.get_untracked().trim().to_lowercase();
        match validate_room(&wanted) {
            Err(e) => error.set(Some(e.message)),
            Ok(room) => {
                error.set(None);
                crate::browser::go_to(&format!("/r/{room}"));
            }
        }
    };

    view! {
        <nav class="rooms" aria-labelledby="rooms-title">
            <h2 id="rooms-title">"Rooms"</h2>
            <ul aria-label="Rooms with people">
                <Transition fallback=|| ()>
                    {move || rooms.get().map(|found| {
                        let mut found = found.unwrap_or_default();
                        let here = chat.room.get();
                        if !found.iter().any(|r| r.name == here) {
                            found.push(crate::protocol::RoomSummary { name: here.clone(), online: 0 });
                        }
                        found.into_iter().map(|mut room| {
                            let current = (room.name == here).then_some("page");
                            // Our own room's count is live; the others' are from the last refresh.
                            if current.is_some() && chat.me.get().is_some() {
                                room.online = chat.online_count.get();
                            }
                            view! {
                                <li>
                                    // rel="external": a full page load (see the module doc).
                                    <a href=format!("/r/{}", room.name) rel="external" aria-current=current>
                                        "#" {room.name.clone()}
                                    </a>
                                    <span class="room-count" aria-label=format!("{} online", room.online)>
                                        {room.online}
                                    </span>
                                </li>
                            }
                        }).collect_view()
                    })}
                </Transition>
            </ul>
            <form class="open-room" on:submit=open novalidate>
                <label for="room-name">"Open or create a room"</label>
                <div class="open-room-row">
                    <input
                        id="room-name"
                        type="text"
                        placeholder="book-club"
                        autocomplete="off"
                        disabled=move || !ready.get()
                        aria-invalid=move || error.get().is_some().to_string()
                        aria-describedby="room-name-error"
                        prop:value=name
                        on:input=move |ev| {
                            name.set(event_target_value(&ev));
                            error.set(None);
                        }
                    />
                    <button type="submit" disabled=move || !ready.get()>"Open"</button>
                </div>
                <p id="room-name-error" class="field-error">{move || error.get()}</p>
            </form>
        </nav>
    }
}
