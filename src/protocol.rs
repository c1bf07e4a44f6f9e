//! The wire protocol: every frame that crosses `/ws`, as serde types compiled into both the
//! server and the browser, so the two sides cannot drift apart.
//!
//! Frames are JSON text frames tagged by `"type"`. `docs/protocol.md` is the prose version of
//! this module; keep them in step. Validation lives here too, so the join form shows the very
//! same verdict the server will give.

use serde::{Deserialize, Serialize};

/// The room a `join` without `"room"` lands in.
pub const DEFAULT_ROOM: &str = "general";
/// Longest username, in characters, after trimming.
pub const MAX_USERNAME_CHARS: usize = 32;
/// Longest message text, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2_000;
/// Longest room name.
pub const MAX_ROOM_CHARS: usize = 32;
/// Longest `client_id` the server accepts (it is stored with the message).
pub const MAX_CLIENT_ID_CHARS: usize = 64;

/// Close codes the server uses besides the standard ones (1001 going away, 1009 too big).
/// The 4000-4999 range is reserved by RFC 6455 for applications.
pub mod close {
    /// The server is shutting down (standard "going away").
    pub const GOING_AWAY: u16 = 1001;
    /// A frame was larger than the configured limit (standard "message too big").
    pub const TOO_BIG: u16 = 1009;
    /// The server failed handling this connection (standard "internal error").
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The server could not do something the connection needs right now (reading the history
    /// it missed): reconnect a little later (standard "try again later").
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The client did not read its frames fast enough; its queue overflowed.
    pub const SLOW_CONSUMER: u16 = 4000;
    /// The client kept sending after being told it was rate limited.
    pub const RATE_LIMITED: u16 = 4001;
    /// Nothing was heard from the client within the idle timeout.
    pub const IDLE_TIMEOUT: u16 = 4002;
    /// The same user joined again from a newer connection, which takes over.
    pub const REPLACED: u16 = 4003;
    /// The client sent too many frames the server could not understand.
    pub const PROTOCOL_ABUSE: u16 = 4004;
    /// The account signed out of every browser (or was banned): this session has ended.
    pub const SIGNED_OUT: u16 = 4005;
    /// An admin removed this user from the room.
    pub const REMOVED: u16 = 4006;
    /// An admin banned this account.
    pub const BANNED: u16 = 4007;
    /// The account's sessions changed (its password was changed): reconnect, and the join
    /// tells whether this browser is still signed in.
    pub const SESSIONS_ENDED: u16 = 4008;
}

/// Someone in the chat, as other users see them: never the raw email.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct User {
    pub username: String,
    /// md5 hex of the trimmed, lower-cased email: the Gravatar key.
    pub avatar: String,
}

/// One stored chat message, exactly as it is broadcast.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// Increases with every stored message (across all rooms).
    pub id: u64,
    /// Server time, Unix milliseconds.
    pub ts: i64,
    pub from: User,
    pub text: String,
    /// The sender's own id for this message, echoed so its outbox can mark it delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Set on a private message: the one other person who sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<User>,
    /// A tombstone: the message was deleted, and its text is gone from the server.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Set on an entry that changes an earlier message rather than being a message: it has an
    /// id of its own, so live, `since` and history deliver it in order like any message.
    /// Clients apply it to its target and do not show it. `from` is who made the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    /// When the text was last edited (server time, Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<i64>,
    /// The message this one answers, quoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Quote>,
    /// Reactions, one per emoji, in the order each emoji was first used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    /// A picture or file sent with the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Attachment>,
    /// A card for the first link in the text, fetched by the server after the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Preview>,
}

/// What a link points to, as its page describes itself (OpenGraph tags, or its title).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Preview {
    /// The link as written in the message.
    pub url: String,
    /// The site's name, or its host.
    pub site: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The page's picture, kept by the server as a file (its thumbnail is shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Attachment>,
}

/// A file sent with a message (uploaded first, over HTTP: `POST /api/files`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attachment {
    /// Its id: the file is at `/files/{id}` (and, for a picture, its thumbnail at
    /// `/files/{id}/thumb`).
    pub id: String,
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// What it is: for pictures, what the server found it to be.
    pub content_type: String,
    /// A picture: its size in pixels (it has a thumbnail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Pixels>,
}

/// A picture's width and height.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
}

/// The longest side of a picture's thumbnail.
pub const THUMBNAIL_PIXELS: u32 = 320;

impl Attachment {
    pub fn url(&self) -> String {
        format!("/files/{}", self.id)
    }

    pub fn thumbnail_url(&self) -> String {
        format!("/files/{}/thumb", self.id)
    }

    /// The thumbnail's size: the picture scaled to fit [`THUMBNAIL_PIXELS`], never enlarged.
    pub fn thumbnail_size(&self) -> Option<Pixels> {
        let Pixels { width, height } = self.image?;
        let scale = (f64::from(THUMBNAIL_PIXELS) / f64::from(width.max(height).max(1))).min(1.0);
        let side = |n: u32| ((f64::from(n) * scale).round() as u32).max(1);
        Some(Pixels {
            width: side(width),
            height: side(height),
        })
    }
}

/// A size for people: "812 bytes", "4.2 KB", "10.0 MB".
pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b < 1_000 => format!("{b} bytes"),
        b if b < 1_000_000 => format!("{:.1} KB", b as f64 / 1e3),
        b if b < 1_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.1} GB", b as f64 / 1e9),
    }
}

/// A file name as given, made safe to keep and show: its last path component, without
/// control or invisible characters, at most 120 characters; "file" if nothing is left.
pub fn clean_file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let name: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_invisible(*c))
        .take(120)
        .collect();
    let name = name.trim().trim_start_matches('.').trim();
    if name.is_empty() {
        "file".to_string()
    } else {
        name.to_string()
    }
}

impl ChatMessage {
    /// A plain message from `from`, nothing else set (tests and drafts fill in the rest).
    pub fn new(id: u64, ts: i64, from: User, text: impl Into<String>) -> Self {
        ChatMessage {
            id,
            ts,
            from,
            text: text.into(),
            client_id: None,
            to: None,
            deleted: false,
            change: None,
            edited: None,
            reply: None,
            reactions: Vec::new(),
            file: None,
            preview: None,
        }
    }
}

/// What a reply quotes of the message it answers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Quote {
    pub id: u64,
    /// The quoted message's author.
    pub from: String,
    /// The start of its text (at most [`QUOTE_CHARS`] characters); empty once it is deleted.
    pub text: String,
}

/// Longest quote a reply carries, in characters.
pub const QUOTE_CHARS: usize = 140;
/// Most reactors named per emoji (the count goes on).
pub const REACTORS_NAMED: usize = 20;

/// The start of `text` for a quote: at most [`QUOTE_CHARS`] characters, an ellipsis if cut.
pub fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let start: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_some() {
        format!("{start}…")
    } else {
        start
    }
}

/// One emoji's reactions to a message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reaction {
    pub emoji: String,
    /// How many people reacted with it (0: the last one took theirs back).
    pub count: u32,
    /// Who, earliest first: the first [`REACTORS_NAMED`] of them.
    pub users: Vec<String>,
}

/// What a change entry does to an earlier message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The message `target` was deleted (by its author or an admin).
    Deleted { target: u64 },
    /// Its author edited `target`: the entry's `text` is the new text, its `ts` the time.
    Edited { target: u64 },
    /// Someone added or took back a reaction to `target`: `reaction` is that emoji's whole
    /// state afterwards, so applying it twice (live, then again in a resume) is harmless.
    Reacted { target: u64, reaction: Reaction },
    /// The server fetched a preview of the first link in `target`.
    Previewed { target: u64, preview: Preview },
}

impl Change {
    pub fn target(&self) -> u64 {
        match self {
            Change::Deleted { target }
            | Change::Edited { target }
            | Change::Reacted { target, .. }
            | Change::Previewed { target, .. } => *target,
        }
    }
}

/// Frames a client sends.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Must be the first frame.
    Join {
        username: String,
        /// Used for the avatar when this join creates the account; not needed (and ignored)
        /// when the connection is signed in or presents `token`.
        #[serde(default)]
        email: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The last message id this client has; the server sends exactly what came after.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// For clients without cookies: the token an earlier `welcome` gave this account.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// An invitation code, for a join that creates an account while sign-ups are locked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invite: Option<String>,
    },
    Message {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// A username in the room: makes the message private to the two of you.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// The id of the message this one answers (in this room, visible to the sender).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        /// The id of a file this user uploaded for this room, sent with the message (whose
        /// text may then be empty).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    /// Replaces the text of your own message `id`.
    Edit { id: u64, text: String },
    /// Adds your reaction `emoji` to message `id` (or, with `remove`, takes yours back; with
    /// `toggle`, takes it back if you had it and adds it otherwise, which is what pressing a
    /// reaction means when the client cannot tell: only the first reactors are named).
    React {
        id: u64,
        emoji: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        remove: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        toggle: bool,
    },
    /// Full-text search of the messages you can see, newest first: this room's, or (with
    /// `all_rooms`) every room's.
    Search {
        query: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        all_rooms: bool,
    },
    /// Ask for the page of messages older than `before` (scrolling up).
    History { before: u64 },
    /// Application-level heartbeat; the server answers `pong`. Browsers cannot see
    /// WebSocket pings, so this is how the page notices a dead server.
    Ping,
    /// "I am typing": send every couple of seconds while typing. Never stored.
    Typing,
    /// Deletes a message: your own, or (admins) any public one.
    Delete { id: u64 },
    /// Admins: ends `username`'s connections to this room.
    Kick { username: String },
    /// Admins: bans `username`'s account (its sessions end, its connections close, it cannot
    /// sign in again), or lifts the ban (`lift: true`).
    Ban {
        username: String,
        #[serde(default)]
        lift: bool,
    },
}

/// Frames the server sends. (Not boxed: a frame is built, encoded once and dropped, and most
/// are messages, the largest variant.)
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum ServerFrame {
    /// The answer to a valid `join`.
    Welcome {
        you: User,
        room: String,
        /// Who is online, alphabetically; in rooms larger than the server's presence limit,
        /// only the first ones (see `online_count`).
        online: Vec<User>,
        /// How many people are online in the room, including any not listed in `online`.
        online_count: usize,
        /// Oldest first: the recent history, or everything after `since`.
        history: Vec<ChatMessage>,
        /// Whether older messages exist before `history[0]`.
        has_more: bool,
        /// A resume (`since`) found more messages than one frame carries: `history` holds the
        /// first ones, and `catch_up` frames with the rest follow before any live message.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        catching_up: bool,
        /// How often the client should send `ping` when otherwise idle.
        heartbeat_ms: u64,
        /// This account is an admin (the page shows moderation controls).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        admin: bool,
        /// Only when this join created the account (a client without a browser session):
        /// the secret to send as `token` in later joins. Shown once; keep it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    Message(ChatMessage),
    /// After a `welcome` with `catching_up`: the next messages after the last one received,
    /// oldest first. `more` is false on the last of them.
    CatchUp {
        messages: Vec<ChatMessage>,
        more: bool,
    },
    /// The answer to `history`: oldest first.
    History {
        messages: Vec<ChatMessage>,
        has_more: bool,
    },
    Joined {
        user: User,
    },
    Left {
        user: User,
    },
    /// Someone started (`active`) or stopped typing. The server ends it by itself when no
    /// `typing` arrives for a few seconds, and when that person sends a message or leaves.
    Typing {
        user: User,
        active: bool,
    },
    Error {
        code: ErrorCode,
        message: String,
        /// Set when the error is about one `message` frame that carried a `client_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    Pong,
    /// The answer to `search`: at most [`SEARCH_RESULTS`] hits, newest first.
    SearchResults {
        query: String,
        hits: Vec<Hit>,
    },
}

/// Most hits a search returns.
pub const SEARCH_RESULTS: usize = 50;
/// Longest search query, in characters, and in words.
pub const MAX_QUERY_CHARS: usize = 200;
pub const MAX_QUERY_WORDS: usize = 16;
/// Most different emoji one message can be reacted with.
pub const MAX_REACTION_KINDS: usize = 20;

/// One search hit: the message, and its text cut into runs that matched (`true`) or not.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The room the message is in.
    pub room: String,
    pub message: ChatMessage,
    pub spans: Vec<(String, bool)>,
}

/// A room with people in it, for the room list (`/api` server function, not a `/ws` frame).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RoomSummary {
    pub name: String,
    pub online: usize,
}

/// Machine-readable error codes; the `message` next to them is for humans.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadFrame,
    NotJoined,
    AlreadyJoined,
    InvalidUsername,
    UsernameTaken,
    InvalidEmail,
    InvalidRoom,
    EmptyMessage,
    MessageTooLong,
    InvalidClientId,
    /// The `to` of a private message is not online in the room (or is the sender).
    RecipientNotOnline,
    RateLimited,
    /// The server could not store the message; it was not delivered to anyone.
    Unavailable,
    /// The `token` is unknown, expired or revoked, or its account is banned.
    InvalidToken,
    /// Sign-in refused: wrong name or password (which one is not said), or no password set.
    SignInFailed,
    /// A new password that is too short or too long.
    InvalidPassword,
    /// Needs a signed-in session (setting a password, signing out).
    NotSignedIn,
    /// A form posted from another site.
    CrossSite,
    /// Only an admin (or the message's author) may do this.
    NotAllowed,
    /// No such message in this room, or no such account.
    NotFound,
    /// Sign-ups are locked: a new account needs an invitation.
    InviteRequired,
    /// A reaction that is not one emoji.
    InvalidReaction,
    /// A search query that is empty or too long.
    InvalidQuery,
}

/// A rejected input: the code for machines and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub code: ErrorCode,
    pub message: String,
}

impl Invalid {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Invalid {
            code,
            message: message.into(),
        }
    }
}

/// Normalises and checks a username: compatibility forms folded (NFKC: fullwidth `ａ` is `a`,
/// `ﬁ` is `fi`), trimmed, inner runs of spaces made one, 1 to 32 characters, and nothing
/// invisible: no control, zero-width, bidi-control or other default-ignorable characters, which
/// would let `alice\u{200b}` or `\u{202e}alice` pose as `alice`. Returns the normalised name,
/// which is the one shown to everyone. Names that merely look alike (`аlice` in Cyrillic) are
/// refused by the server against the names online, through [`name_key`].
pub fn validate_username(raw: &str) -> Result<String, Invalid> {
    let refuse = |message: &str| Err(Invalid::new(ErrorCode::InvalidUsername, message));
    // Checked before normalising too: NFKC keeps these, but say so before anything else.
    if raw.chars().any(char::is_control) {
        return refuse("Usernames cannot contain control characters.");
    }
    // Variation selectors only choose how an emoji is drawn (phone keyboards add U+FE0F to
    // many): dropped rather than refused.
    let normal: String = nfkc(raw)
        .chars()
        .filter(|c| !is_variation_selector(*c))
        .collect();
    let chars: Vec<char> = normal.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let joiner = c == '\u{200c}' || c == '\u{200d}';
        let between_others = i > 0
            && i + 1 < chars.len()
            && [chars[i - 1], chars[i + 1]]
                .iter()
                .all(|&n| !n.is_ascii() && !n.is_whitespace() && !is_invisible(n));
        // Joiners are part of emoji sequences (👩‍💻) and of Persian and Indic spelling, between
        // two such characters; anywhere else they only hide.
        if (joiner && !between_others) || (!joiner && (is_invisible(c) || c.is_control())) {
            return refuse(
                "Usernames cannot contain invisible characters (zero-width, direction or formatting marks).",
            );
        }
    }
    if normal.chars().any(|c| c.is_whitespace() && c != ' ') {
        return refuse("Usernames can contain ordinary spaces only.");
    }
    let name = normal
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let chars = name.chars().count();
    if chars == 0 {
        return refuse("Choose a username.");
    }
    if chars > MAX_USERNAME_CHARS {
        return Err(Invalid::new(
            ErrorCode::InvalidUsername,
            format!("Usernames are at most {MAX_USERNAME_CHARS} characters."),
        ));
    }
    Ok(name)
}

/// What two names are compared by: two names with the same key cannot be online in one room
/// at once. The key folds case, compatibility forms (NFKC), look-alike characters (the UTS #39
/// skeleton: Cyrillic `а` is Latin `a`, `rn` is `m`) and accents (`ȧlice` is `alice`), so a
/// name cannot pose as another by looking the same.
pub fn name_key(name: &str) -> String {
    use unicode_normalization::char::is_combining_mark;
    // Full case folding: `ß` is `ss`.
    let folded = caseless::default_case_fold_str(&nfkc(name));
    // The skeleton is in NFD: accents are separate combining marks. They are dropped from
    // Latin, Greek and Cyrillic letters (`ȧlice` is `alice`) but kept elsewhere, where marks
    // are vowels and spell different names (`राम`, `रमा`).
    let mut key = String::with_capacity(folded.len());
    let mut drop_marks = false;
    for c in unicode_security::skeleton(&folded) {
        if is_combining_mark(c) {
            if drop_marks {
                continue;
            }
        } else {
            drop_marks = is_latin_greek_or_cyrillic(c);
        }
        key.extend(c.to_lowercase());
    }
    // Capital `I` looks like `l` (the skeleton maps it so) and folds to `i`, so in a
    // case-insensitive comparison `i` and `l` cannot be told apart: `AIice`, `ALICE` and
    // `alice` are one name. (`Ali` and `All` too: the rule errs on the side of safety.)
    key.replace('i', "l")
}

/// Letters of the scripts whose accents are decoration on a base letter.
fn is_latin_greek_or_cyrillic(c: char) -> bool {
    matches!(
        c as u32,
        0x0000..=0x024F
            | 0x0370..=0x052F
            | 0x1C80..=0x1C8F
            | 0x1D00..=0x1DBF
            | 0x1E00..=0x1FFF
            | 0x2C60..=0x2C7F
            | 0x2DE0..=0x2DFF
            | 0xA640..=0xA69F
            | 0xA720..=0xA7FF
            | 0xAB30..=0xAB6F
    )
}

/// Variation selectors: they pick a glyph's presentation (emoji or text), nothing else.
fn is_variation_selector(c: char) -> bool {
    matches!(c as u32, 0xFE00..=0xFE0F | 0xE0100..=0xE01EF)
}

/// The NFKC form of `s`. In the browser, the JavaScript engine's `String.prototype.normalize`
/// does it, so the WASM does not carry Unicode's normalisation tables (the server's copy is
/// the one that decides).
#[cfg(feature = "hydrate")]
fn nfkc(s: &str) -> String {
    String::from(js_sys::JsString::from(s).normalize("NFKC"))
}

#[cfg(not(feature = "hydrate"))]
fn nfkc(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfkc().collect()
}

/// Characters that show as nothing, or reorder the text around them: Unicode's
/// Default_Ignorable_Code_Point set (zero-width spaces and joiners, bidi controls, variation
/// selectors, fillers, tags), plus the braille blank, which also looks like a space.
fn is_invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x2800
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// Trims and lower-cases the email and checks its shape (`local@domain.tld`, no spaces).
/// Returns the normalised form, which is what the avatar hash is computed from.
pub fn validate_email(raw: &str) -> Result<String, Invalid> {
    let email = raw.trim().to_lowercase();
    let bad = || {
        Invalid::new(
            ErrorCode::InvalidEmail,
            "Enter an email like name@example.com.",
        )
    };
    if email.is_empty() {
        return Err(Invalid::new(
            ErrorCode::InvalidEmail,
            "Enter your email address.",
        ));
    }
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let domain_ok = !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    if local.is_empty() || !domain_ok {
        return Err(bad());
    }
    Ok(email)
}

/// Checks a room name: 1 to 32 of lower-case ASCII letters, digits and dashes.
pub fn validate_room(raw: &str) -> Result<String, Invalid> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_ROOM_CHARS
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(Invalid::new(
            ErrorCode::InvalidRoom,
            format!("Room names are 1 to {MAX_ROOM_CHARS} lower-case letters, digits or dashes."),
        ))
    }
}

/// Checks message text: not blank, at most 2,000 characters. The text is kept as typed.
pub fn validate_text(text: &str) -> Result<(), Invalid> {
    // NUL is no character anyone types, and PostgreSQL's text cannot hold it.
    if text.contains('\0') {
        return Err(Invalid::new(
            ErrorCode::BadFrame,
            "Messages cannot contain NUL characters.",
        ));
    }
    if text.trim().is_empty() {
        return Err(Invalid::new(
            ErrorCode::EmptyMessage,
            "Type a message first.",
        ));
    }
    let chars = text.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(Invalid::new(
            ErrorCode::MessageTooLong,
            format!("Messages are at most {MAX_MESSAGE_CHARS} characters (this one has {chars})."),
        ));
    }
    Ok(())
}

/// Checks a reaction: exactly one emoji (or its `:shortcode:`). Returns its standard form, so
/// `❤` and `❤️` (with the emoji presentation selector) count as one reaction.
///
/// The server checks against every emoji (the `emojis` crate). The browser, which does not
/// carry that table (~120 KB of its download), knows the shortcodes and otherwise only refuses
/// what cannot be one emoji ([`could_be_one_emoji`]); the server's answer decides.
pub fn validate_reaction(raw: &str) -> Result<String, Invalid> {
    let raw = raw.trim();
    let refused = || Invalid::new(ErrorCode::InvalidReaction, "A reaction is one emoji.");
    if let Some(code) = raw.strip_prefix(':').and_then(|r| r.strip_suffix(':')) {
        return crate::emoji::by_shortcode(code)
            .map(str::to_string)
            .ok_or_else(refused);
    }
    #[cfg(feature = "ssr")]
    let one = emojis::get(raw).map(|emoji| emoji.as_str().to_string());
    #[cfg(not(feature = "ssr"))]
    let one = could_be_one_emoji(raw).then(|| raw.to_string());
    one.ok_or_else(refused)
}

/// Whether `raw` could be a single emoji: a short run with no spaces and nothing from ASCII
/// (but a keycap, `1️⃣`, starts with its digit). Every emoji passes; some non-emoji do too.
pub fn could_be_one_emoji(raw: &str) -> bool {
    let chars = raw.chars().count();
    (1..=16).contains(&chars)
        && !raw.chars().any(|c| c.is_whitespace() || c.is_control())
        && (raw.ends_with('\u{20e3}') || !raw.chars().any(|c| c.is_ascii()))
}

/// Checks a search query: some words, at most [`MAX_QUERY_CHARS`] characters.
pub fn validate_query(raw: &str) -> Result<String, Invalid> {
    let query = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if query.is_empty() || query.chars().any(char::is_control) {
        return Err(Invalid::new(
            ErrorCode::InvalidQuery,
            "Type what to search for.",
        ));
    }
    if query.chars().count() > MAX_QUERY_CHARS || query.split(' ').count() > MAX_QUERY_WORDS {
        return Err(Invalid::new(
            ErrorCode::InvalidQuery,
            format!(
                "Searches are at most {MAX_QUERY_WORDS} words and {MAX_QUERY_CHARS} characters."
            ),
        ));
    }
    Ok(query)
}

/// Checks a client-chosen message id: 1 to 64 printable characters.
pub fn validate_client_id(id: &str) -> Result<(), Invalid> {
    let n = id.chars().count();
    if n == 0 || n > MAX_CLIENT_ID_CHARS || id.chars().any(char::is_control) {
        return Err(Invalid::new(
            ErrorCode::InvalidClientId,
            format!("client_id must be 1 to {MAX_CLIENT_ID_CHARS} printable characters."),
        ));
    }
    Ok(())
}

/// Up to two initials for the avatar fallback badge: "Ada Lovelace" -> "AL", "bob" -> "B".
pub fn initials(username: &str) -> String {
    let mut words = username.split_whitespace();
    let first = words.next().and_then(|w| w.chars().next());
    let second = words.last().and_then(|w| w.chars().next());
    first
        .into_iter()
        .chain(second)
        .flat_map(char::to_uppercase)
        .collect()
}

/// The Gravatar image for an avatar hash; `d=404` so users without a Gravatar get the
/// initials badge too, instead of a generic picture.
pub fn gravatar_url(avatar: &str) -> String {
    format!("https://www.gravatar.com/avatar/{avatar}?s=80&d=404")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_the_documented_shapes() {
        let join: ClientFrame =
            serde_json::from_str(r#"{"type":"join","username":"alice","email":"a@b.co"}"#).unwrap();
        assert_eq!(
            join,
            ClientFrame::Join {
                username: "alice".into(),
                email: "a@b.co".into(),
                room: None,
                since: None,
                token: None,
                invite: None,
            }
        );
        let msg = ServerFrame::Message(ChatMessage::new(
            17,
            1_732_300_000_000,
            User {
                username: "alice".into(),
                avatar: "abc".into(),
            },
            "hello :robot:",
        ));
        assert_eq!(
            serde_json::to_string(&msg).unwrap(),
            r#"{"type":"message","id":17,"ts":1732300000000,"from":{"username":"alice","avatar":"abc"},"text":"hello :robot:"}"#
        );
        let err = ServerFrame::Error {
            code: ErrorCode::UsernameTaken,
            message: "x".into(),
            client_id: None,
        };
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"type":"error","code":"username_taken","message":"x"}"#
        );
    }

    #[test]
    fn file_names_sizes_and_thumbnails() {
        assert_eq!(clean_file_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_file_name("C:\\x\\cat pic.png"), "cat pic.png");
        assert_eq!(clean_file_name("a\u{202e}gnp.exe"), "agnp.exe");
        assert_eq!(clean_file_name(".hidden"), "hidden");
        assert_eq!(clean_file_name("  "), "file");
        assert_eq!(clean_file_name("猫.png"), "猫.png");
        assert_eq!(human_size(812), "812 bytes");
        assert_eq!(human_size(10 * 1024 * 1024), "10.5 MB");
        let picture = |width, height| Attachment {
            id: "x".into(),
            name: "p".into(),
            size: 1,
            content_type: "image/png".into(),
            image: Some(Pixels { width, height }),
        };
        assert_eq!(
            picture(800, 600).thumbnail_size(),
            Some(Pixels {
                width: 320,
                height: 240
            })
        );
        assert_eq!(
            picture(100, 50).thumbnail_size(),
            Some(Pixels {
                width: 100,
                height: 50
            })
        );
    }

    #[test]
    fn reactions_are_one_emoji_in_one_form() {
        assert_eq!(validate_reaction("👍").unwrap(), "👍");
        assert_eq!(validate_reaction(":+1:").unwrap(), "👍");
        assert_eq!(
            validate_reaction("❤\u{fe0f}").unwrap(),
            validate_reaction("❤").unwrap()
        );
        assert_eq!(validate_reaction("👩\u{200d}💻").unwrap(), "👩\u{200d}💻");
        for bad in ["", "x", "👍👍", "<b>", ":nope:", "👍 hi"] {
            assert_eq!(
                validate_reaction(bad).unwrap_err().code,
                ErrorCode::InvalidReaction,
                "{bad:?}"
            );
        }
        for emoji in emojis::iter() {
            assert!(could_be_one_emoji(emoji.as_str()), "{emoji}");
        }
        for bad in ["", "x", "<b>", "👍 hi", ":+1", "a\u{20e3}b"] {
            assert!(!could_be_one_emoji(bad), "{bad:?}");
        }
        assert_eq!(validate_query("  big   cats ").unwrap(), "big cats");
        assert!(validate_query(" ").is_err());
        assert!(validate_query(&"x".repeat(201)).is_err());
        assert!(validate_query(&"a ".repeat(17)).is_err());
        assert!(validate_query(&"a ".repeat(16)).is_ok());
    }

    #[test]
    fn unknown_types_and_fields_are_rejected() {
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"shout"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"message"}"#).is_err());
    }

    #[test]
    fn usernames() {
        assert_eq!(validate_username("  bob ").unwrap(), "bob");
        assert!(validate_username("   ").is_err());
        assert!(validate_username(&"x".repeat(33)).is_err());
        assert!(validate_username(&"é".repeat(32)).is_ok());
        assert!(validate_username("a\u{7}b").is_err());
        // Invisible and direction-changing characters are refused, wherever they are.
        for sneaky in [
            "alice\u{200b}",
            "\u{202e}alice",
            "al\u{2060}ice",
            "al\u{200d}ice",
            "alice\u{200c}",
        ] {
            let e = validate_username(sneaky).unwrap_err();
            assert!(e.message.contains("invisible"), "{sneaky:?}: {e:?}");
        }
        // Compatibility forms are folded; spaces are tidied, not refused.
        assert_eq!(validate_username("ａｌｉｃｅ").unwrap(), "alice");
        assert_eq!(
            validate_username(" Ada \u{3000} Lovelace ").unwrap(),
            "Ada Lovelace"
        );
        assert!(validate_username("a\u{2028}b").is_err());
        assert_eq!(validate_username("Zoë 🦀").unwrap(), "Zoë 🦀");
        // What phone keyboards and other scripts need: emoji presentation (dropped), emoji
        // sequences and Persian joiners (kept).
        assert_eq!(validate_username("❤\u{fe0f} Ana").unwrap(), "❤ Ana");
        assert_eq!(validate_username("👩\u{200d}💻").unwrap(), "👩\u{200d}💻");
        assert_eq!(
            validate_username("می\u{200c}خواهم").unwrap(),
            "می\u{200c}خواهم"
        );
    }

    #[test]
    fn look_alike_names_share_a_key() {
        assert_eq!(name_key("Straße"), name_key("STRASSE"));
        let alice = name_key("alice");
        for twin in [
            "Alice",
            "ALICE",
            "аlice",
            "ȧlice",
            "a\u{307}lice",
            "ａｌｉｃｅ",
            "alİce",
        ] {
            assert_eq!(name_key(twin), alice, "{twin:?}");
        }
        for other in ["alicia", "bob", "alice2"] {
            assert_ne!(name_key(other), alice, "{other:?}");
        }
        // Marks that spell other names in other scripts are kept.
        assert_ne!(name_key("राम"), name_key("रमा"));
        // Scripts other than Latin keep their own names.
        assert_ne!(name_key("Дмитрий"), name_key("Dmitry"));
        assert_eq!(name_key("Дмитрий"), name_key("дмитрий"));
    }

    #[test]
    fn emails() {
        assert_eq!(
            validate_email(" Bob@Example.COM ").unwrap(),
            "bob@example.com"
        );
        for bad in [
            "",
            "bob",
            "bob@",
            "@x.io",
            "bob@localhost",
            "a b@x.io",
            "a@x..io",
            "a@@x.io",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rooms_texts_and_initials() {
        assert!(validate_room("dev-ops-2").is_ok());
        for bad in ["", "Dev", "a_b", "a b", &"a".repeat(33)] {
            assert!(validate_room(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_text(" \n ").unwrap_err().code,
            ErrorCode::EmptyMessage
        );
        assert!(validate_text(&"x".repeat(2000)).is_ok());
        assert_eq!(validate_text("a\0b").unwrap_err().code, ErrorCode::BadFrame);
        assert_eq!(
            validate_text(&"x".repeat(2001)).unwrap_err().code,
            ErrorCode::MessageTooLong
        );
        assert_eq!(initials("Ada Lovelace"), "AL");
        assert_eq!(initials("bob"), "B");
        assert_eq!(initials("émile zola x"), "ÉX");
    }
}
