//! A user's picture: their Gravatar over an initials badge. When the image cannot load (no
//! Gravatar, or no internet) it is hidden and the badge shows; never a broken-image icon.

use crate::protocol::{User, gravatar_url, initials};
use leptos::html::Img;
use leptos::prelude::*;

#[component]
pub fn Avatar(user: User) -> impl IntoView {
    let failed = RwSignal::new(false);
    let img = NodeRef::<Img>::new();
    // An image that failed before hydration fired its `error` event before we listened.
    Effect::new(move || {
        if let Some(img) = img.get()
            && img.complete()
            && img.natural_width() == 0
        {
            failed.set(true);
        }
    });
    // A hue from the hash, so different people get different badge colours.
    let hue = u32::from_str_radix(user.avatar.get(..3).unwrap_or("0"), 16).unwrap_or(0) % 360;
    view! {
        <span class="avatar" style=format!("--hue: {hue}") aria-hidden="true">
            <span class="initials">{initials(&user.username)}</span>
            <img
                node_ref=img
                src=gravatar_url(&user.avatar)
                alt=""
                loading="lazy"
                class:failed=failed
                on:error=move |_| failed.set(true)
            />
        </span>
    }
}
