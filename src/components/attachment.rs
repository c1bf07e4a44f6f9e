//! A file sent with a message: a picture as its thumbnail (opening the full picture), any
//! other file as its name, size and a download link.

use crate::protocol::{Attachment, human_size};
use leptos::prelude::*;

#[component]
pub fn AttachmentView(file: Attachment) -> impl IntoView {
    let size = human_size(file.size);
    match file.thumbnail_size() {
        Some(thumb) => {
            let label = format!("{} ({size}): open the full picture", file.name);
            view! {
                <a class="picture" href=file.url() target="_blank" rel="noopener" aria-label=label>
                    <img src=file.thumbnail_url() alt=file.name.clone() width=thumb.width
                        height=thumb.height loading="lazy" />
                </a>
            }
            .into_any()
        }
        None => view! {
            <a class="file" href=file.url() download=file.name.clone()>
                <span aria-hidden="true">"📄 "</span>
                {file.name.clone()}
            </a>
            <span class="file-size">{format!(" ({size})")}</span>
        }
        .into_any(),
    }
}
