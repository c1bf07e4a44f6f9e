//! Chat-message markdown: a deliberately small, safe subset of CommonMark.
//!
//! A message is turned into a tiny document tree ([`Block`] / [`Inline`])
//! rather than into HTML. The renderer (on the server and in wasm) builds DOM
//! nodes from this tree itself, so nothing a user types is ever injected as
//! markup: raw HTML stays text, only `http`, `https` and `mailto` links
//! survive, and images are never loaded.
//!
//! The tree is also bounded in depth (see [`MAX_DEPTH`]): a recursive renderer
//! walking it cannot be driven into a stack overflow by a crafted message.
//!
//! Parsing is delegated to `pulldown-cmark` (CommonMark-correct, no HTML
//! output needed, builds for wasm32 with `default-features = false`). This
//! module only walks its event stream and decides what each event means in a
//! chat: headings and thematic breaks are *not* formatting here, because chat
//! users type `# 1` or `---` and mean the characters.

use std::borrow::Cow;
use std::ops::Range;

use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd};

use crate::text::{Segment, segments};

/// How many quotes, lists, emphasis spans and links may nest.
///
/// Anything deeper is flattened: the inner content is kept, the extra
/// structure is dropped. Eight levels is far beyond what a human writes in a
/// chat, yet small enough that recursive rendering is always cheap.
pub const MAX_DEPTH: usize = 8;

/// A block-level element of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block {
    Paragraph(Vec<Inline>),
    /// Fenced or indented code: the literal text, no highlighting.
    Code(String),
    Quote(Vec<Block>),
    /// `start`: Some(n) for an ordered list starting at n, None for bullets.
    List {
        start: Option<u64>,
        items: Vec<Vec<Block>>,
    },
}

/// An inline element of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inline {
    Text(String),
    /// `@name` as typed, with the `@` (from crate::text::segments).
    Mention(String),
    Strong(Vec<Inline>),
    Emphasis(Vec<Inline>),
    Strike(Vec<Inline>),
    Code(String),
    /// Only http, https and mailto targets; `href` is the URL as given.
    Link {
        href: String,
        children: Vec<Inline>,
    },
    /// A line break inside a paragraph (chat users press shift+enter and expect a new line).
    Break,
}

/// Parses a chat message into blocks.
///
/// Whitespace-only input yields no blocks, so callers can treat "nothing to
/// show" uniformly. A message without markup yields exactly one paragraph
/// holding one text run, which keeps the common case cheap to render.
pub fn parse(text: &str) -> Vec<Block> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    // Normalise line endings up front: HTML blocks and literal headings are
    // split on '\n' into line breaks, and a stray '\r' would otherwise end up
    // in the visible text.
    let text: Cow<'_, str> = if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(text)
    };
    // Only strikethrough is switched on. Tables, footnotes, task lists,
    // heading attributes, math and the like are left off on purpose: in a
    // chat they misfire far more often than they help.
    let parser = Parser::new_ext(&text, Options::ENABLE_STRIKETHROUGH);
    // Link reference definitions (`[label]: destination`) produce no events
    // at all: a chat message "[1]: see above" would silently vanish. Their
    // source spans are shown as text where they stood (references to them
    // still work, subject to the same scheme allowlist).
    let mut defs: Vec<Range<usize>> = parser
        .reference_definitions()
        .iter()
        .map(|(_, def)| def.span.clone())
        .collect();
    // Reversed, so the next definition in source order is popped off the end.
    defs.sort_unstable_by_key(|span| std::cmp::Reverse(span.start));
    let mut builder = Builder::new(&text, defs);
    for (event, range) in parser.into_offset_iter() {
        builder.event(event, range);
    }
    builder.finish()
}

/// The plain text of a message with its markup removed (for notifications, reply quotes and the page title): inline code keeps its text, links keep their text, blocks are joined by a space, shortcodes become emoji.
///
/// It goes through [`parse`] so that it agrees exactly with what the message
/// shows. All runs of whitespace (including line breaks) are collapsed to a
/// single space, because every consumer of this string is a single line.
pub fn plain(text: &str) -> String {
    let mut out = String::new();
    for block in parse(text) {
        plain_block(&block, &mut out);
    }
    let mut collapsed = String::with_capacity(out.len());
    for word in out.split_whitespace() {
        if !collapsed.is_empty() {
            collapsed.push(' ');
        }
        collapsed.push_str(word);
    }
    collapsed
}

/// The first `http` or `https` link the message shows (written as a link or bare), the one
/// the server previews. Never a link inside code.
pub fn first_link(text: &str) -> Option<String> {
    fn in_inlines(inlines: &[Inline]) -> Option<String> {
        inlines.iter().find_map(|i| match i {
            Inline::Link { href, .. } if !href.to_ascii_lowercase().starts_with("mailto:") => {
                Some(href.clone())
            }
            Inline::Link { children, .. }
            | Inline::Strong(children)
            | Inline::Emphasis(children)
            | Inline::Strike(children) => in_inlines(children),
            _ => None,
        })
    }
    fn in_blocks(blocks: &[Block]) -> Option<String> {
        blocks.iter().find_map(|b| match b {
            Block::Paragraph(inlines) => in_inlines(inlines),
            Block::Quote(inner) => in_blocks(inner),
            Block::List { items, .. } => items.iter().find_map(|item| in_blocks(item)),
            Block::Code(_) => None,
        })
    }
    in_blocks(&parse(text))
}

fn plain_block(block: &Block, out: &mut String) {
    match block {
        Block::Paragraph(inlines) => plain_inlines(inlines, out),
        Block::Code(code) => out.push_str(code),
        Block::Quote(blocks) => blocks.iter().for_each(|b| plain_block(b, out)),
        Block::List { items, .. } => items.iter().flatten().for_each(|b| plain_block(b, out)),
    }
    out.push(' ');
}

fn plain_inlines(inlines: &[Inline], out: &mut String) {
    for inline in inlines {
        match inline {
            Inline::Text(s) | Inline::Mention(s) | Inline::Code(s) => out.push_str(s),
            Inline::Strong(children)
            | Inline::Emphasis(children)
            | Inline::Strike(children)
            | Inline::Link { children, .. } => plain_inlines(children, out),
            Inline::Break => out.push(' '),
        }
    }
}

/// What an open element on the builder's stack will become when it closes.
enum Kind {
    Root,
    Quote,
    List(Option<u64>),
    Item,
    /// `implicit` paragraphs are opened by the builder itself: pulldown-cmark
    /// emits the text of tight list items without a surrounding paragraph.
    Paragraph {
        implicit: bool,
    },
    Strong,
    Emphasis,
    Strike,
    Link(String),
    /// A link or image whose target is not allowed (or that sits inside
    /// another link): its children are spliced into the parent.
    Unlinked,
}

impl Kind {
    /// Whether this element adds a level of nesting to the output tree.
    fn nests(&self) -> bool {
        matches!(
            self,
            Kind::Quote
                | Kind::List(_)
                | Kind::Strong
                | Kind::Emphasis
                | Kind::Strike
                | Kind::Link(_)
        )
    }

    fn is_link(&self) -> bool {
        matches!(self, Kind::Link(_) | Kind::Unlinked)
    }

    fn holds_blocks(&self) -> bool {
        matches!(self, Kind::Root | Kind::Quote | Kind::Item | Kind::List(_))
    }
}

struct Frame {
    kind: Kind,
    blocks: Vec<Block>,
    inlines: Vec<Inline>,
    items: Vec<Vec<Block>>,
    /// Container elements opened (and not yet closed) on top of this frame
    /// that were flattened away. Their content lands in this frame; counting
    /// them lets the matching `End` events be recognised without keeping a
    /// frame per level, so 1,000 nested `>` cost 8 frames, not 1,000.
    flattened: usize,
}

impl Frame {
    fn new(kind: Kind) -> Frame {
        Frame {
            kind,
            blocks: Vec::new(),
            inlines: Vec::new(),
            items: Vec::new(),
            flattened: 0,
        }
    }
}

/// Turns pulldown-cmark's flat event stream into the tree.
///
/// The stack is explicit (no recursion), so neither pathological input nor
/// the depth of pulldown-cmark's own output can exhaust the call stack.
struct Builder<'s> {
    src: &'s str,
    /// Never empty: `stack[0]` is the root and is never popped.
    stack: Vec<Frame>,
    /// Number of frames on the stack that nest (see [`Kind::nests`]).
    depth: usize,
    /// Number of link frames on the stack; links must not nest, and text
    /// inside a link is not scanned for bare URLs or mentions.
    links: usize,
    /// Number of open block quotes, flattened or not (for literal headings).
    quotes: usize,
    /// Pending text of the innermost inline element. pulldown-cmark splits
    /// text into many events (around `_`, `:`, `*`, entities...), so text is
    /// concatenated here and only segmented once complete; otherwise
    /// `:robot:` or `@bob_smith` spanning two events would be missed.
    text: String,
    /// The text of the code block being read, if any.
    code: Option<String>,
    /// Inside a heading: its literal text was emitted, its events are skipped.
    in_heading: bool,
    /// Source spans of link reference definitions not yet shown, last first.
    defs: Vec<Range<usize>>,
}

impl<'s> Builder<'s> {
    fn new(src: &'s str, defs: Vec<Range<usize>>) -> Builder<'s> {
        Builder {
            src,
            stack: vec![Frame::new(Kind::Root)],
            depth: 0,
            links: 0,
            quotes: 0,
            text: String::new(),
            code: None,
            in_heading: false,
            defs,
        }
    }

    fn top(&mut self) -> &mut Frame {
        self.stack
            .last_mut()
            .expect("the root frame is never popped")
    }

    fn finish(mut self) -> Vec<Block> {
        self.flush();
        self.close_implicit();
        // pulldown-cmark always balances its events; this only guards
        // against a future version that does not.
        while self.stack.len() > 1 {
            self.top().flattened = 0;
            self.close();
        }
        self.emit_defs(usize::MAX);
        self.stack.pop().map(|root| root.blocks).unwrap_or_default()
    }

    fn event(&mut self, event: Event<'_>, range: Range<usize>) {
        if self.in_heading {
            self.in_heading = !matches!(event, Event::End(TagEnd::Heading(_)));
            return;
        }
        if let Some(code) = &mut self.code {
            match event {
                Event::Text(t) => code.push_str(&t),
                Event::End(TagEnd::CodeBlock) => {
                    let mut code = self.code.take().unwrap_or_default();
                    // The fence's closing line leaves a trailing newline that
                    // is not part of what the user wants to show.
                    code.truncate(code.trim_end_matches('\n').len());
                    self.top().blocks.push(Block::Code(code));
                }
                _ => {}
            }
            return;
        }
        // End events carry the range of the whole element, so a definition
        // at the end of a quote or list item is shown before it closes.
        let pos = if matches!(event, Event::End(_)) {
            range.end
        } else {
            range.start
        };
        self.emit_defs(pos);
        match event {
            // Raw HTML is just text here; the renderer escapes it.
            Event::Text(t) | Event::Html(t) | Event::InlineHtml(t) => {
                self.ensure_inline();
                self.text.push_str(&t);
                return;
            }
            _ => self.flush(),
        }
        match event {
            Event::Start(tag) => self.start(tag, range),
            Event::End(tag) => self.end(tag),
            Event::Code(code) => {
                self.ensure_inline();
                self.push_inline(Inline::Code(code.into_string()));
            }
            // A newline typed in a chat is meant as one, soft or not.
            Event::SoftBreak | Event::HardBreak => {
                self.ensure_inline();
                self.push_inline(Inline::Break);
            }
            Event::Rule => {
                self.close_implicit();
                self.literal(range);
            }
            // Math, footnotes and task lists are not enabled, so these do
            // not occur; if they ever do, their source is shown as typed.
            Event::InlineMath(_)
            | Event::DisplayMath(_)
            | Event::FootnoteReference(_)
            | Event::TaskListMarker(_) => {
                self.ensure_inline();
                let src = self.src;
                self.text.push_str(src.get(range).unwrap_or_default());
            }
            Event::Text(_) | Event::Html(_) | Event::InlineHtml(_) => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>, range: Range<usize>) {
        match tag {
            Tag::Paragraph | Tag::HtmlBlock => {
                self.close_implicit();
                self.stack
                    .push(Frame::new(Kind::Paragraph { implicit: false }));
            }
            Tag::Heading { .. } => {
                self.close_implicit();
                self.literal(range);
                self.in_heading = true;
            }
            Tag::CodeBlock(_) => {
                self.close_implicit();
                self.code = Some(String::new());
            }
            Tag::BlockQuote(_) => {
                self.close_implicit();
                self.quotes += 1;
                self.open(Kind::Quote);
            }
            Tag::List(start) => {
                self.close_implicit();
                self.open(Kind::List(start));
            }
            Tag::Item => {
                self.close_implicit();
                self.open(Kind::Item);
            }
            Tag::Emphasis => self.open_inline(Kind::Emphasis),
            Tag::Strong => self.open_inline(Kind::Strong),
            Tag::Strikethrough => self.open_inline(Kind::Strike),
            // An image is never loaded (it would leak the reader's IP to any
            // host and show unmoderated pictures): it becomes a link to the
            // picture, with the alt text as the link text.
            Tag::Link {
                link_type,
                dest_url,
                ..
            }
            | Tag::Image {
                link_type,
                dest_url,
                ..
            } => {
                let kind = match allowed_href(link_type, &dest_url) {
                    // Nested anchors are invalid HTML; CommonMark forbids links
                    // in links, but an image inside a link can still occur.
                    Some(href) if self.links == 0 => Kind::Link(href),
                    _ => Kind::Unlinked,
                };
                self.open_inline(kind);
            }
            // Tables, footnotes, definition lists, super/subscript and
            // metadata blocks are not enabled. Ignoring the tags lets any
            // content flow into the surrounding element.
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph | TagEnd::HtmlBlock => self.pop_paragraph(),
            TagEnd::BlockQuote(_) => {
                self.close_implicit();
                self.quotes = self.quotes.saturating_sub(1);
                self.close();
            }
            TagEnd::List(_) | TagEnd::Item => {
                self.close_implicit();
                self.close();
            }
            TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough
            | TagEnd::Link
            | TagEnd::Image => self.close(),
            _ => {}
        }
    }

    fn open_inline(&mut self, kind: Kind) {
        self.ensure_inline();
        self.open(kind);
    }

    /// Opens a container, or flattens it away when the tree is deep enough.
    fn open(&mut self, kind: Kind) {
        let depth = self.depth;
        let top = self.top();
        // Once something was flattened, everything inside it is too: an item
        // of a flattened list has no list to belong to.
        if top.flattened > 0 || (kind.nests() && depth >= MAX_DEPTH) {
            top.flattened += 1;
            return;
        }
        if kind.nests() {
            self.depth += 1;
        }
        if kind.is_link() {
            self.links += 1;
        }
        self.stack.push(Frame::new(kind));
    }

    /// Closes the container opened last (the text was already flushed).
    fn close(&mut self) {
        let top = self.top();
        if top.flattened > 0 {
            top.flattened -= 1;
            return;
        }
        if self.stack.len() == 1 {
            return;
        }
        let Some(frame) = self.stack.pop() else {
            return;
        };
        if frame.kind.nests() {
            self.depth -= 1;
        }
        if frame.kind.is_link() {
            self.links -= 1;
        }
        match frame.kind {
            Kind::Root => {}
            Kind::Paragraph { .. } => {
                if !frame.inlines.is_empty() {
                    self.top().blocks.push(Block::Paragraph(frame.inlines));
                }
            }
            Kind::Quote => self.top().blocks.push(Block::Quote(frame.blocks)),
            Kind::List(start) => self.top().blocks.push(Block::List {
                start,
                items: frame.items,
            }),
            Kind::Item => self.top().items.push(frame.blocks),
            Kind::Strong => self.push_inline(Inline::Strong(frame.inlines)),
            Kind::Emphasis => self.push_inline(Inline::Emphasis(frame.inlines)),
            Kind::Strike => self.push_inline(Inline::Strike(frame.inlines)),
            Kind::Link(href) => {
                // `[](https://x)` would otherwise be an invisible link.
                let children = if frame.inlines.is_empty() {
                    vec![Inline::Text(href.clone())]
                } else {
                    frame.inlines
                };
                self.push_inline(Inline::Link { href, children });
            }
            Kind::Unlinked => {
                for inline in frame.inlines {
                    self.push_inline(inline);
                }
            }
        }
    }

    /// Makes sure inline content has a paragraph to go into.
    fn ensure_inline(&mut self) {
        if self.top().kind.holds_blocks() {
            self.stack
                .push(Frame::new(Kind::Paragraph { implicit: true }));
        }
    }

    /// Ends the paragraph the builder opened for a tight list item's text,
    /// before a block-level element starts or the item ends.
    fn close_implicit(&mut self) {
        if matches!(self.top().kind, Kind::Paragraph { implicit: true }) {
            self.pop_paragraph();
        }
    }

    fn pop_paragraph(&mut self) {
        self.flush();
        if matches!(self.top().kind, Kind::Paragraph { .. }) {
            self.top().flattened = 0;
            self.close();
        }
    }

    /// Shows the link reference definitions that start before `pos` as
    /// literal paragraphs, once the builder is between blocks.
    fn emit_defs(&mut self, pos: usize) {
        while matches!(self.top().kind, Kind::Root | Kind::Quote | Kind::Item)
            && self.defs.last().is_some_and(|span| span.start < pos)
        {
            if let Some(span) = self.defs.pop() {
                self.literal(span);
            }
        }
    }

    /// Emits the source of `range` as a paragraph of plain text.
    ///
    /// Used for headings and thematic breaks, which are not formatting in a
    /// chat. The source is used rather than the parsed content so that the
    /// `#` marks, the setext underline and any markup show exactly as typed.
    fn literal(&mut self, range: Range<usize>) {
        let src = self.src.get(range).unwrap_or_default().trim_matches('\n');
        let mut text = String::with_capacity(src.len());
        for (n, line) in src.split('\n').enumerate() {
            // The range of a multi-line (setext) heading inside a quote or a
            // list also covers the container markers of its later lines.
            let line = if n == 0 {
                line
            } else {
                strip_container_prefix(line, self.quotes)
            };
            if n > 0 {
                text.push('\n');
            }
            text.push_str(line.trim());
        }
        self.stack
            .push(Frame::new(Kind::Paragraph { implicit: false }));
        self.text = text;
        self.pop_paragraph();
    }

    /// Moves the pending text into the innermost inline element, splitting it
    /// into text, mentions, bare-URL links and line breaks.
    fn flush(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.text);
        let in_link = self.links > 0;
        // A bare URL becomes a Link, which is one more level of nesting.
        let autolink = !in_link && self.depth < MAX_DEPTH;
        let inlines = &mut self.top().inlines;
        // Only HTML blocks and literal headings carry '\n' in their text;
        // the final one just ends the block.
        for (n, line) in text.trim_end_matches('\n').split('\n').enumerate() {
            if n > 0 {
                push_inline(inlines, Inline::Break);
            }
            push_text(line, autolink, in_link, inlines);
        }
    }

    fn push_inline(&mut self, inline: Inline) {
        push_inline(&mut self.top().inlines, inline);
    }
}

/// Appends an inline, merging adjacent text so that the tree stays small and
/// a plain message is a single text run.
fn push_inline(inlines: &mut Vec<Inline>, inline: Inline) {
    if let Inline::Text(new) = &inline {
        if new.is_empty() {
            return;
        }
        if let Some(Inline::Text(last)) = inlines.last_mut() {
            last.push_str(new);
            return;
        }
    }
    inlines.push(inline);
}

/// Appends one line of text, turning bare URLs into links and the rest into
/// text and mentions.
fn push_text(line: &str, autolink: bool, in_link: bool, inlines: &mut Vec<Inline>) {
    let mut rest = line;
    if autolink {
        while let Some(url) = find_bare_url(rest) {
            push_segments(&rest[..url.start], in_link, inlines);
            let href = &rest[url.clone()];
            inlines.push(Inline::Link {
                href: href.to_string(),
                children: vec![Inline::Text(href.to_string())],
            });
            rest = &rest[url.end..];
        }
    }
    push_segments(rest, in_link, inlines);
}

/// Runs the app's own text splitter, which replaces `:shortcodes:` with
/// emoji and finds `@mentions`.
fn push_segments(text: &str, in_link: bool, inlines: &mut Vec<Inline>) {
    if text.is_empty() {
        return;
    }
    for segment in segments(text) {
        let inline = match segment {
            // A mention renders as its own interactive element, which must
            // not be nested inside an anchor.
            Segment::Mention(name) if !in_link => Inline::Mention(name),
            Segment::Mention(text) | Segment::Text(text) => Inline::Text(text),
        };
        push_inline(inlines, inline);
    }
}

/// Finds the first `http://` or `https://` URL typed as plain text.
///
/// pulldown-cmark does not implement GFM's autolink literals, yet chat users
/// paste bare URLs all the time. The rules follow GFM loosely: the URL must
/// not be glued to a preceding word, it ends at whitespace or `<`, and
/// trailing punctuation belongs to the sentence, not to the URL — except a
/// `)` that closes a `(` inside it (Wikipedia-style URLs).
fn find_bare_url(text: &str) -> Option<Range<usize>> {
    let mut from = 0;
    while let Some(offset) = text[from..].find(['h', 'H']) {
        let start = from + offset;
        from = start + 1;
        let tail = &text[start..];
        let scheme = if starts_with_ignore_case(tail, "https://") {
            "https://".len()
        } else if starts_with_ignore_case(tail, "http://") {
            "http://".len()
        } else {
            continue;
        };
        if text[..start]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric)
        {
            continue;
        }
        let len = tail
            .find(|c: char| c.is_whitespace() || c == '<')
            .unwrap_or(tail.len());
        let mut url = &tail[..len];
        while let Some(last) = url.chars().next_back() {
            let trim = match last {
                '.' | ',' | ':' | ';' | '!' | '?' | '\'' | '"' => true,
                ')' => url.matches(')').count() > url.matches('(').count(),
                _ => false,
            };
            if !trim {
                break;
            }
            url = &url[..url.len() - last.len_utf8()];
        }
        if url.len() > scheme {
            return Some(start..start + url.len());
        }
    }
    None
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Returns the href to use for a link destination, or `None` if it must not
/// become a link.
///
/// This is an allowlist: `javascript:`, `data:`, `vbscript:` and every other
/// scheme, but also relative and protocol-relative (`//host`) URLs, are
/// refused. Relative URLs would resolve against the app itself, letting a
/// message link to (and trigger GET actions on) the app's own routes.
fn allowed_href(link_type: LinkType, dest: &CowStr<'_>) -> Option<String> {
    // Browsers strip leading and trailing C0 controls and spaces from URLs,
    // so do the same before looking at the scheme.
    let dest = dest.trim_matches(|c: char| c <= ' ');
    let href = if link_type == LinkType::Email && !starts_with_ignore_case(dest, "mailto:") {
        // `<user@example.com>` comes with a bare address as destination.
        format!("mailto:{dest}")
    } else {
        dest.to_string()
    };
    // `https:` alone is not enough: `https:/admin` is a path on this very site to a browser
    // (a scheme-relative URL); an outside link names its host after `//`.
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| starts_with_ignore_case(&href, scheme))
        .then_some(href)
}

/// Removes the block-quote markers (and indentation) that pulldown-cmark
/// leaves in the source range of a multi-line element.
fn strip_container_prefix(line: &str, quotes: usize) -> &str {
    let mut line = line.trim_start();
    for _ in 0..quotes {
        match line.strip_prefix('>') {
            Some(rest) => line = rest.trim_start(),
            None => break,
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_web_link_is_the_one_previewed() {
        assert_eq!(
            first_link(
                "see `https://in.code` and <me@x.io> then **[it](https://a.example/x)** https://b.example"
            ),
            Some("https://a.example/x".into())
        );
        assert_eq!(
            first_link("bare https://b.example/p?q=1."),
            Some("https://b.example/p?q=1".into())
        );
        assert_eq!(first_link("no links, javascript:alert(1)"), None);
    }
    use std::time::{Duration, Instant};

    fn t(s: &str) -> Inline {
        Inline::Text(s.to_string())
    }

    fn p(inlines: Vec<Inline>) -> Block {
        Block::Paragraph(inlines)
    }

    fn link(href: &str, children: Vec<Inline>) -> Inline {
        Inline::Link {
            href: href.to_string(),
            children,
        }
    }

    /// The single paragraph of a one-paragraph message.
    fn para(text: &str) -> Vec<Inline> {
        match parse(text).as_slice() {
            [Block::Paragraph(inlines)] => inlines.clone(),
            other => panic!("expected one paragraph for {text:?}, got {other:?}"),
        }
    }

    /// Nesting depth of containers (quotes, lists, strong/emphasis/strike,
    /// links). Recursive on purpose: it is what a renderer would do.
    fn depth(blocks: &[Block]) -> usize {
        blocks.iter().map(block_depth).max().unwrap_or(0)
    }

    fn block_depth(block: &Block) -> usize {
        match block {
            Block::Paragraph(inlines) => inline_depth(inlines),
            Block::Code(_) => 0,
            Block::Quote(blocks) => 1 + depth(blocks),
            Block::List { items, .. } => 1 + items.iter().map(|i| depth(i)).max().unwrap_or(0),
        }
    }

    fn inline_depth(inlines: &[Inline]) -> usize {
        inlines
            .iter()
            .map(|inline| match inline {
                Inline::Strong(c) | Inline::Emphasis(c) | Inline::Strike(c) => 1 + inline_depth(c),
                Inline::Link { children, .. } => 1 + inline_depth(children),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }

    fn has_link(blocks: &[Block]) -> bool {
        fn inl(inlines: &[Inline]) -> bool {
            inlines.iter().any(|i| match i {
                Inline::Link { .. } => true,
                Inline::Strong(c) | Inline::Emphasis(c) | Inline::Strike(c) => inl(c),
                _ => false,
            })
        }
        blocks.iter().any(|b| match b {
            Block::Paragraph(i) => inl(i),
            Block::Code(_) => false,
            Block::Quote(b) => has_link(b),
            Block::List { items, .. } => items.iter().any(|i| has_link(i)),
        })
    }

    #[test]
    fn plain_message_is_one_text_run() {
        assert_eq!(parse("hello world"), vec![p(vec![t("hello world")])]);
        // Escapes and entities split pulldown-cmark's text events; the
        // runs are merged back together.
        assert_eq!(
            parse(r"a \*b\* &amp; c_d_e"),
            vec![p(vec![t("a *b* & c_d_e")])]
        );
    }

    #[test]
    fn empty_input_has_no_blocks() {
        assert_eq!(parse(""), vec![]);
        assert_eq!(parse("   "), vec![]);
        assert_eq!(parse("\n \t\n\r\n"), vec![]);
        assert_eq!(plain("  \n "), "");
    }

    #[test]
    fn emphasis_strong_strike() {
        assert_eq!(
            para("**b** __b__ *i* _i_ ~~s~~"),
            vec![
                Inline::Strong(vec![t("b")]),
                t(" "),
                Inline::Strong(vec![t("b")]),
                t(" "),
                Inline::Emphasis(vec![t("i")]),
                t(" "),
                Inline::Emphasis(vec![t("i")]),
                t(" "),
                Inline::Strike(vec![t("s")]),
            ]
        );
        assert_eq!(
            para("***both***"),
            vec![Inline::Emphasis(vec![Inline::Strong(vec![t("both")])])]
        );
    }

    #[test]
    fn inline_code_is_literal() {
        assert_eq!(
            para("`:robot: @bob **x**` :robot:"),
            vec![Inline::Code(":robot: @bob **x**".into()), t(" 🤖")]
        );
    }

    #[test]
    fn code_blocks_are_literal() {
        assert_eq!(
            parse("```rust\nfn main() {}\n:robot: @bob <b>\n```"),
            vec![Block::Code("fn main() {}\n:robot: @bob <b>".into())]
        );
        assert_eq!(
            parse("    let x = 1;\n    let y = 2;"),
            vec![Block::Code("let x = 1;\nlet y = 2;".into())]
        );
        assert_eq!(
            parse("before\n```\nhttps://e.com\n```\nafter"),
            vec![
                p(vec![t("before")]),
                Block::Code("https://e.com".into()),
                p(vec![t("after")]),
            ]
        );
    }

    #[test]
    fn links_and_autolinks() {
        assert_eq!(
            para("[a *b*](https://e.com/x)"),
            vec![link(
                "https://e.com/x",
                vec![t("a "), Inline::Emphasis(vec![t("b")])]
            )]
        );
        assert_eq!(
            para("<https://e.com>"),
            vec![link("https://e.com", vec![t("https://e.com")])]
        );
        assert_eq!(
            para("<me@e.com>"),
            vec![link("mailto:me@e.com", vec![t("me@e.com")])]
        );
        assert_eq!(
            para("[mail](MAILTO:me@e.com) [h](HTTP://E.COM)"),
            vec![
                link("MAILTO:me@e.com", vec![t("mail")]),
                t(" "),
                link("HTTP://E.COM", vec![t("h")]),
            ]
        );
        assert_eq!(
            parse("[ref][1]\n\n[1]: https://e.com/r")[0],
            p(vec![link("https://e.com/r", vec![t("ref")])])
        );
        assert_eq!(
            para("[](https://e.com)"),
            vec![link("https://e.com", vec![t("https://e.com")])]
        );
    }

    #[test]
    fn unsafe_links_keep_only_their_text() {
        for dest in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "%20javascript:alert(1)",
            "javascript&#58;alert(1)",
            "data:text/html;base64,PHNjcmlwdD4=",
            "vbscript:msgbox(1)",
            "/relative/path",
            "//evil.com",
            "evil.com",
            "ftp://e.com",
        ] {
            let msg = format!("a [click **me**]({dest}) b");
            assert_eq!(
                para(&msg),
                vec![t("a click "), Inline::Strong(vec![t("me")]), t(" b")],
                "{msg}"
            );
        }
        assert_eq!(para("[x](<javascript:alert(1)>)"), vec![t("x")]);
        assert_eq!(
            parse("[x][r]\n\n[r]: javascript:alert(1)")[0],
            p(vec![t("x")])
        );
    }

    #[test]
    fn images_are_links_never_loaded() {
        assert_eq!(
            para("![a cat](https://e.com/cat.png)"),
            vec![link("https://e.com/cat.png", vec![t("a cat")])]
        );
        assert_eq!(para("![a cat](javascript:alert(1))"), vec![t("a cat")]);
        assert_eq!(para("![a cat](cat.png)"), vec![t("a cat")]);
        // No anchor inside an anchor.
        assert_eq!(
            para("[![img](https://e.com/i.png)](https://e.com)"),
            vec![link("https://e.com", vec![t("img")])]
        );
    }

    #[test]
    fn headings_are_literal_paragraphs() {
        assert_eq!(parse("# 1"), vec![p(vec![t("# 1")])]);
        assert_eq!(parse("#general"), vec![p(vec![t("#general")])]);
        assert_eq!(
            parse("## **Title** ##"),
            vec![p(vec![t("## **Title** ##")])]
        );
        assert_eq!(
            parse("# see https://e.com"),
            vec![p(vec![
                t("# see "),
                link("https://e.com", vec![t("https://e.com")])
            ])]
        );
        assert_eq!(
            parse("hi\n# 2\nthere"),
            vec![p(vec![t("hi")]), p(vec![t("# 2")]), p(vec![t("there")])]
        );
        assert_eq!(
            parse("Title\n---"),
            vec![p(vec![t("Title"), Inline::Break, t("---")])]
        );
        assert_eq!(
            parse("two *lines*\nof title\n==="),
            vec![p(vec![
                t("two *lines*"),
                Inline::Break,
                t("of title"),
                Inline::Break,
                t("===")
            ])]
        );
        assert_eq!(
            parse("> # x\n> a\n> ---"),
            vec![Block::Quote(vec![
                p(vec![t("# x")]),
                p(vec![t("a"), Inline::Break, t("---")]),
            ])]
        );
        assert_eq!(
            parse("- # x"),
            vec![Block::List {
                start: None,
                items: vec![vec![p(vec![t("# x")])]]
            }]
        );
    }

    #[test]
    fn thematic_breaks_are_literal() {
        assert_eq!(parse("---"), vec![p(vec![t("---")])]);
        assert_eq!(parse("***"), vec![p(vec![t("***")])]);
        assert_eq!(parse("* * *"), vec![p(vec![t("* * *")])]);
        assert_eq!(
            parse("a\n\n___\n\nb"),
            vec![p(vec![t("a")]), p(vec![t("___")]), p(vec![t("b")])]
        );
    }

    #[test]
    fn raw_html_is_text() {
        assert_eq!(parse("<b>hi</b>"), vec![p(vec![t("<b>hi</b>")])]);
        assert_eq!(para("say <b>hi</b> now"), vec![t("say <b>hi</b> now")]);
        let script = "<script>alert(1)</script>";
        assert_eq!(parse(script), vec![p(vec![t(script)])]);
        let img = "<img src=x onerror=alert(1)>";
        assert_eq!(parse(img), vec![p(vec![t(img)])]);
        assert_eq!(
            para("look <img src=x onerror=alert(1)> here"),
            vec![t("look <img src=x onerror=alert(1)> here")]
        );
        assert_eq!(
            parse("<div>\n<a href=\"javascript:x\">y</a>\n</div>"),
            vec![p(vec![
                t("<div>"),
                Inline::Break,
                t("<a href=\"javascript:x\">y</a>"),
                Inline::Break,
                t("</div>"),
            ])]
        );
        for msg in [script, img, "<a href=\"javascript:alert(1)\">x</a>"] {
            assert!(!has_link(&parse(msg)), "{msg}");
        }
    }

    #[test]
    fn bare_urls_become_links() {
        let url = |u: &str| link(u, vec![t(u)]);
        assert_eq!(
            para("see https://example.com/a?b=1."),
            vec![t("see "), url("https://example.com/a?b=1"), t(".")]
        );
        assert_eq!(
            para("(https://en.wikipedia.org/wiki/Foo_(bar)) and http://e.com/x)!"),
            vec![
                t("("),
                url("https://en.wikipedia.org/wiki/Foo_(bar)"),
                t(") and "),
                url("http://e.com/x"),
                t(")!"),
            ]
        );
        assert_eq!(
            para("'https://e.com/a_b_c', \"HTTPS://E.COM\"?"),
            vec![
                t("'"),
                url("https://e.com/a_b_c"),
                t("', \""),
                url("HTTPS://E.COM"),
                t("\"?")
            ]
        );
        assert_eq!(
            para("https://e.com<br>"),
            vec![url("https://e.com"), t("<br>")]
        );
        assert_eq!(
            para("xhttps://e.com https:// ftp://e.com"),
            vec![t("xhttps://e.com https:// ftp://e.com")]
        );
        assert_eq!(
            para("`https://e.com`"),
            vec![Inline::Code("https://e.com".into())]
        );
        assert_eq!(
            para("[https://a.com](https://b.com)"),
            vec![link("https://b.com", vec![t("https://a.com")])]
        );
        assert_eq!(
            para("**https://e.com/x**"),
            vec![Inline::Strong(vec![url("https://e.com/x")])]
        );
    }

    #[test]
    fn shortcodes_and_mentions_across_events() {
        assert_eq!(
            para(":+1: and @bob_smith_x"),
            vec![t("👍 and "), Inline::Mention("@bob_smith_x".into())]
        );
        assert_eq!(
            para("hey @alice, :robot: *@bob*"),
            vec![
                t("hey "),
                Inline::Mention("@alice".into()),
                t(", 🤖 "),
                Inline::Emphasis(vec![Inline::Mention("@bob".into())]),
            ]
        );
        // A mention inside a link stays text: no interactive element in an anchor.
        assert_eq!(
            para("[@bob :wave:](https://e.com)"),
            vec![link("https://e.com", vec![t("@bob 👋")])]
        );
    }

    #[test]
    fn line_breaks() {
        let expected = vec![t("a"), Inline::Break, t("b")];
        assert_eq!(para("a\nb"), expected);
        assert_eq!(para("a  \nb"), expected);
        assert_eq!(para("a\\\nb"), expected);
        assert_eq!(para("a\r\nb"), expected);
        assert_eq!(parse("a\n\nb"), vec![p(vec![t("a")]), p(vec![t("b")])]);
    }

    #[test]
    fn quotes_and_lists() {
        assert_eq!(
            parse("> a\n> b\n\nc"),
            vec![
                Block::Quote(vec![p(vec![t("a"), Inline::Break, t("b")])]),
                p(vec![t("c")]),
            ]
        );
        assert_eq!(
            parse("> > x"),
            vec![Block::Quote(vec![Block::Quote(vec![p(vec![t("x")])])])]
        );
        assert_eq!(
            parse("- a\n- **b**"),
            vec![Block::List {
                start: None,
                items: vec![
                    vec![p(vec![t("a")])],
                    vec![p(vec![Inline::Strong(vec![t("b")])])],
                ],
            }]
        );
        assert_eq!(
            parse("3. x\n4. y"),
            vec![Block::List {
                start: Some(3),
                items: vec![vec![p(vec![t("x")])], vec![p(vec![t("y")])]],
            }]
        );
        // Tight item text followed by a nested list, and a loose list.
        assert_eq!(
            parse("1. a\n   - b\n\n2. c"),
            vec![Block::List {
                start: Some(1),
                items: vec![
                    vec![
                        p(vec![t("a")]),
                        Block::List {
                            start: None,
                            items: vec![vec![p(vec![t("b")])]]
                        },
                    ],
                    vec![p(vec![t("c")])],
                ],
            }]
        );
        assert_eq!(
            parse("- ```\n  code\n  ```"),
            vec![Block::List {
                start: None,
                items: vec![vec![Block::Code("code".into())]]
            }]
        );
    }

    #[test]
    fn disabled_extensions_stay_text() {
        assert_eq!(
            parse("| a | b |\n|---|---|"),
            vec![p(vec![t("| a | b |"), Inline::Break, t("|---|---|")])]
        );
        assert_eq!(para("note[^1]"), vec![t("note[^1]")]);
        assert_eq!(
            parse("- [ ] task"),
            vec![Block::List {
                start: None,
                items: vec![vec![p(vec![t("[ ] task")])]]
            }]
        );
        assert_eq!(para("$x$ and ^sup^"), vec![t("$x$ and ^sup^")]);
    }

    #[test]
    fn deep_nesting_is_flattened() {
        let star_run = format!("{}x{}", "*".repeat(1000), "*".repeat(1000));
        let under_run = format!("{}x{}", "_".repeat(999), "_".repeat(999));
        let cases = [
            format!("{}x", ">".repeat(1000)),
            "*".repeat(1000),
            format!("{}x", "*".repeat(1000)),
            star_run,
            under_run,
            format!("{}x", "- ".repeat(1000)),
            format!("{}x", "1. ".repeat(600)),
            format!("{}x", "> - ".repeat(500)),
            format!("{}x{}", "[".repeat(1000), "](https://e.com)".repeat(1000)),
            format!("a{}x{}", "~~".repeat(500), "~~".repeat(500)),
        ];
        for msg in &cases {
            let started = Instant::now();
            let blocks = parse(msg);
            let elapsed = started.elapsed();
            assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
            assert!(
                depth(&blocks) <= MAX_DEPTH,
                "depth {} for {:.20}",
                depth(&blocks),
                msg
            );
            assert!(!plain(msg).is_empty());
        }
        // The innermost content survives the flattening.
        let quoted = parse(&format!("{}x", ">".repeat(1000)));
        assert_eq!(depth(&quoted), MAX_DEPTH);
        assert_eq!(plain(&format!("{}x", ">".repeat(1000))), "x");
        let mut inner = vec![p(vec![t("x")])];
        for _ in 0..MAX_DEPTH {
            inner = vec![Block::Quote(inner)];
        }
        assert_eq!(quoted, inner);
        assert_eq!(plain(&format!("{}x", "- ".repeat(1000))), "x");
    }

    #[test]
    fn flattened_lists_keep_their_items() {
        let msg = format!(
            "{}- a\n{}- b",
            "> ".repeat(MAX_DEPTH),
            "> ".repeat(MAX_DEPTH)
        );
        let blocks = parse(&msg);
        assert_eq!(depth(&blocks), MAX_DEPTH);
        assert_eq!(plain(&msg), "a b");
    }

    #[test]
    fn reference_definitions_stay_visible() {
        assert_eq!(parse("[1]: see above"), vec![p(vec![t("[1]: see above")])]);
        assert_eq!(
            parse("hi\n\n[a]: https://e.com\n\nsee [a]"),
            vec![
                p(vec![t("hi")]),
                p(vec![
                    t("[a]: "),
                    link("https://e.com", vec![t("https://e.com")])
                ]),
                p(vec![t("see "), link("https://e.com", vec![t("a")])]),
            ]
        );
        assert_eq!(
            parse("> [x]: javascript:alert(1)\n\n[x]"),
            vec![
                Block::Quote(vec![p(vec![t("[x]: javascript:alert(1)")])]),
                p(vec![t("x")]),
            ]
        );
        assert_eq!(
            parse("- [n]: /a\n  text"),
            vec![Block::List {
                start: None,
                items: vec![vec![p(vec![t("[n]: /a")]), p(vec![t("text")])]]
            }]
        );
        // Without footnotes enabled, `[^1]: x` is a reference definition.
        assert_eq!(
            parse("note[^1]\n\n[^1]: x"),
            vec![p(vec![t("note^1")]), p(vec![t("[^1]: x")])]
        );
    }

    #[test]
    fn unicode() {
        let msg = "héllo 👋🏽 مرحبا بالعالم 你好世界 e\u{301}a\u{308} 👨‍👩‍👧";
        assert_eq!(parse(msg), vec![p(vec![t(msg)])]);
        assert_eq!(
            para("**你好** _مرحبا_ ~~Zoë~~ @Zoë"),
            vec![
                Inline::Strong(vec![t("你好")]),
                t(" "),
                Inline::Emphasis(vec![t("مرحبا")]),
                t(" "),
                Inline::Strike(vec![t("Zoë")]),
                t(" "),
                Inline::Mention("@Zoë".into()),
            ]
        );
        assert_eq!(
            para("見て https://例え.jp/パス。 ok"),
            vec![
                t("見て "),
                link("https://例え.jp/パス。", vec![t("https://例え.jp/パス。")]),
                t(" ok")
            ]
        );
        assert_eq!(para("`👋🏽 :wave:`"), vec![Inline::Code("👋🏽 :wave:".into())]);
        let long = "👍".repeat(500);
        assert_eq!(parse(&long), vec![p(vec![t(&long)])]);
        assert_eq!(plain("# עברית **שלום** :wave:"), "# עברית **שלום** 👋");
    }

    #[test]
    fn plain_text() {
        assert_eq!(plain("**hi** `x` [a](https://e.com) :wave:"), "hi x a 👋");
        assert_eq!(
            plain("> quoted\n\n- one\n- two\n\n```\ncode\nblock\n```"),
            "quoted one two code block"
        );
        assert_eq!(plain("line\nbreak"), "line break");
        assert_eq!(
            plain("<b>hi</b> [x](javascript:y) @bob"),
            "<b>hi</b> x @bob"
        );
        assert_eq!(plain("![cat](https://e.com/c.png)"), "cat");
        assert_eq!(plain("# 1\n---"), "# 1 ---");
        assert_eq!(plain("`:robot:`"), ":robot:");
    }
}
