//! Who is in the room right now, with a count.

use super::avatar::Avatar;
use crate::client::Chat;
use crate::protocol::ClientFrame;
use leptos::prelude::*;

#[component]
pub fn OnlineList() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let count = move || chat.online_count.get();
    view! {
        <section class="online" aria-labelledby="online-title">
            <h2 id="online-title">
                "Online " <span class="count" data-testid="online-count">{count}</span>
            </h2>
            <Show when=move || chat.me.get().is_some() fallback=|| view! {
                <p class="muted">"Join to see who is here."</p>
            }>
                <ul aria-label="People online">
                    <For each=move || chat.online.get() key=|u| u.username.clone() let:user>
                        {
                            let is_me = chat.me.get_untracked().as_ref() == Some(&user);
                            let name = user.username.clone();
                            let write_privately = move |_| {
                                chat.draft.set(format!("/msg {name} "));
                                chat.focus_composer.update(|n| *n += 1);
                            };
                            let label = format!("Message {} privately", user.username);
                            view! {
                                <li>
                                    <Avatar user=user.clone() />
                                    <span class="name">{user.username.clone()}</span>
                                    {if is_me {
                                        view! { <span class="you">" (you)"</span> }.into_any()
                                    } else {
                                        view! {
                                            <button class="dm" aria-label=label.clone() title=label on:click=write_privately>
                                                "✉"
                                            </button>
                                        }.into_any()
                                    }}
                                    <Show when=move || chat.admin.get() && !is_me>
                                        <AdminControls name=user.username.clone() />
                                    </Show>
                                </li>
                            }
                        }
                    </For>
                </ul>
            </Show>
        </section>
    }
}

/// An admin's buttons next to someone: remove them from the room, ban their account.
#[component]
fn AdminControls(name: String) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let kick = {
        let username = name.clone();
        move |_| {
            crate::client::send_frame(
                chat,
                ClientFrame::Kick {
                    username: username.clone(),
                },
            )
        }
    };
    let ban = {
        let username = name.clone();
        move |_| {
            let frame = ClientFrame::Ban {
                username: username.clone(),
                lift: false,
            };
            crate::client::send_frame(chat, frame)
        }
    };
    view! {
        <button class="admin" aria-label=format!("Remove {name} from the room") on:click=kick>"Remove"</button>
        <button class="admin" aria-label=format!("Ban {name}") on:click=ban>"Ban"</button>
    }
}
