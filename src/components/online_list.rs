//! Who is in the room right now, with a count.

use super::avatar::Avatar;
use crate::client::Chat;
use leptos::prelude::*;

#[component]
pub fn OnlineList() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let count = move || chat.online_count.get();
    view! {
        <aside class="online" aria-labelledby="online-title">
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
                            view! {
                                <li>
                                    <Avatar user=user.clone() />
                                    <span class="name">{user.username.clone()}</span>
                                    {is_me.then_some(view! { <span class="you">" (you)"</span> })}
                                </li>
                            }
                        }
                    </For>
                </ul>
            </Show>
        </aside>
    }
}
