//! Writes the `:shortcode:` table the message renderer uses (src/emoji.rs) from the `emojis`
//! crate's GitHub/Slack names: only the names and their emoji, sorted for a binary search.
//!
//! Why generated: the `emojis` crate carries every emoji's name, group, version and skin
//! tones, and a Unicode lookup; linked into the browser's WASM that was ~120 KB of the
//! download (brotli), against ~10 KB for this table. The server still links the crate to check
//! reactions exactly (`protocol::validate_reaction`).

use std::fmt::Write;

fn main() {
    let mut pairs: Vec<(&str, &str)> = emojis::iter()
        .flat_map(|e| {
            let skin_tones = e.skin_tones().into_iter().flatten();
            std::iter::once(e).chain(skin_tones)
        })
        .flat_map(|e| e.shortcodes().map(move |code| (code, e.as_str())))
        .collect();
    pairs.sort_unstable();
    pairs.dedup_by(|a, b| a.0 == b.0);
    let mut out = String::from("static SHORTCODES: &[(&str, &str)] = &[\n");
    for (code, emoji) in pairs {
        writeln!(out, "    ({code:?}, {emoji:?}),").unwrap();
    }
    out.push_str("];\n");
    let path = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("shortcodes.rs");
    std::fs::write(path, out).unwrap();
    println!("cargo::rerun-if-changed=build.rs");
}
