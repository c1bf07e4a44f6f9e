//! A message's text as formatted: the Markdown subset of [`crate::markdown`] drawn as Leptos
//! views. Every piece of text goes in as text (escaped), never as HTML, so no sanitiser is
//! needed; the server and the browser draw the same tree.

use crate::markdown::{Block, Inline, parse};
use leptos::prelude::*;

#[component]
pub fn RichText(#[prop(into)] text: String) -> impl IntoView {
    parse(&text).into_iter().map(block).collect_view()
}

fn blocks(all: Vec<Block>) -> impl IntoView {
    all.into_iter().map(block).collect_view()
}

fn block(b: Block) -> AnyView {
    match b {
        Block::Paragraph(line) => view! { <p>{inlines(line)}</p> }.into_any(),
        Block::Code(code) => view! { <pre tabindex="0"><code>{code}</code></pre> }.into_any(),
        Block::Quote(inner) => view! { <blockquote>{blocks(inner)}</blockquote> }.into_any(),
        Block::List { start, items } => {
            let items = items
                .into_iter()
                .map(|item| view! { <li>{blocks(item)}</li> })
                .collect_view();
            match start {
                Some(n) => view! { <ol start=n>{items}</ol> }.into_any(),
                None => view! { <ul>{items}</ul> }.into_any(),
            }
        }
    }
}

fn inlines(all: Vec<Inline>) -> impl IntoView {
    all.into_iter().map(inline).collect_view()
}

fn inline(i: Inline) -> AnyView {
    match i {
        Inline::Text(t) => t.into_any(),
        Inline::Mention(m) => view! { <span class="mention">{m}</span> }.into_any(),
        Inline::Strong(inner) => view! { <strong>{inlines(inner)}</strong> }.into_any(),
        Inline::Emphasis(inner) => view! { <em>{inlines(inner)}</em> }.into_any(),
        Inline::Strike(inner) => view! { <s>{inlines(inner)}</s> }.into_any(),
        Inline::Code(code) => view! { <code>{code}</code> }.into_any(),
        // Links leave the page: a new tab, without telling the other site where from.
        Inline::Link { href, children } => view! {
            <a href=href target="_blank" rel="noopener noreferrer nofollow">{inlines(children)}</a>
        }
        .into_any(),
        Inline::Break => view! { <br /> }.into_any(),
    }
}
