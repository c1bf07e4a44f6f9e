//! The card under a message for its first link: the site, the page's title (the link), its
//! description and picture, as the server found them.

use crate::protocol::Preview;
use leptos::prelude::*;

#[component]
pub fn LinkPreview(preview: Preview) -> impl IntoView {
    let picture = preview.image.clone().and_then(|file| {
        let size = file.thumbnail_size()?;
        Some(view! {
            <img src=file.thumbnail_url() alt="" width=size.width height=size.height loading="lazy" />
        })
    });
    view! {
        <aside class="link-preview" aria-label=format!("Preview of {}", preview.site)>
            {picture}
            <div>
                <span class="site">{preview.site.clone()}</span>
                <a href=preview.url.clone() target="_blank" rel="noopener noreferrer nofollow">
                    {preview.title.clone()}
                </a>
                {preview.description.clone().map(|d| view! { <p>{d}</p> })}
            </div>
        </aside>
    }
}
