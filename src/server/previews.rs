//! Link previews: after a message with a link is stored, the server fetches the page, reads
//! what it says about itself (OpenGraph tags, or its `<title>`), keeps its picture as a file,
//! and posts a `previewed` change entry, so everyone (live, resuming, or reading history)
//! sees the card.
//!
//! Fetching a URL someone typed is a way into the server's network (SSRF). So: `http` and
//! `https` only; the host's addresses are resolved here and every one must be public (not
//! private, loopback, link-local, shared, multicast or reserved), unless listed in
//! `link-previews-allow` (tests, intranets); the connection goes to exactly those addresses
//! (no second resolution to be fooled by); redirects are followed by hand, at most three,
//! each checked the same way; 5 seconds and 512 KiB per page, 2 MiB per picture; no proxy,
//! no cookies. Pages are cached for an hour (pictures are fetched again for each message:
//! they are kept with its visibility).

use super::hub::Hub;
use super::storage::Draft;
use crate::protocol::{Attachment, Change, ChatMessage, Preview, User};
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_PAGE: usize = 512 * 1024;
const MAX_PICTURE: usize = 2 * 1024 * 1024;
const MAX_REDIRECTS: usize = 3;
const CACHE_FOR: Duration = Duration::from_secs(3_600);
const CACHE_PAGES: usize = 1_000;
const TITLE_CHARS: usize = 200;
const PREVIEWS_AT_ONCE: usize = 4;
const DESCRIPTION_CHARS: usize = 300;

/// What a page says about itself.
#[derive(Clone, Debug, PartialEq)]
struct Page {
    site: String,
    title: String,
    description: Option<String>,
    picture: Option<Url>,
}

pub struct Previews {
    enabled: bool,
    /// Previews made at once (each may fetch and decode a picture): past this, links wait
    /// their turn instead of piling up memory and connections.
    running: tokio::sync::Semaphore,
    allow: Vec<SocketAddr>,
    cache: Mutex<HashMap<String, (Instant, Option<Page>)>>,
}

impl Previews {
    pub fn new(config: &super::config::HubConfig) -> Previews {
        // TLS without a C library: rustls on ring, chosen once for the process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Previews {
            enabled: config.link_previews,
            running: tokio::sync::Semaphore::new(PREVIEWS_AT_ONCE),
            allow: config
                .link_previews_allow
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            cache: Mutex::default(),
        }
    }

    /// The link of `text` to preview, if previews are on.
    pub fn link_in(&self, text: &str) -> Option<String> {
        self.enabled.then(|| crate::markdown::first_link(text))?
    }

    /// What the page at `url` says about itself (cached), or why there is nothing to show.
    async fn page(&self, url: &str) -> Result<Page, String> {
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .get(url)
                .filter(|(at, _)| at.elapsed() < CACHE_FOR)
                .map(|(_, page)| page.clone())
        };
        if let Some(page) = cached {
            return page.ok_or_else(|| "not a page to preview (cached)".into());
        }
        let fetched = self.fetch_page(url).await;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_PAGES {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_FOR);
            if cache.len() >= CACHE_PAGES {
                cache.clear();
            }
        }
        cache.insert(url.to_string(), (Instant::now(), fetched.clone().ok()));
        fetched
    }

    async fn fetch_page(&self, url: &str) -> Result<Page, String> {
        let url = Url::parse(url).map_err(|e| e.to_string())?;
        let (at, kind, body) = self.get(url, MAX_PAGE, "text/html").await?;
        if !kind.is_some_and(|k| k.to_ascii_lowercase().starts_with("text/html")) {
            return Err("not an HTML page".into());
        }
        describe(&body, &at).ok_or_else(|| "the page has no title".into())
    }

    /// The addresses `url` may be fetched from: all of its host's, and all public (or allowed).
    async fn addresses(&self, url: &Url) -> Result<Vec<SocketAddr>, String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{} links are not fetched", url.scheme()));
        }
        let port = url.port_or_known_default().ok_or("no port")?;
        let found: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
            Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| format!("{name} cannot be resolved: {e}"))?
                .collect(),
            None => return Err("no host".into()),
        };
        if found.is_empty() {
            return Err("the host has no address".into());
        }
        match found
            .iter()
            .find(|a| !is_public(a.ip()) && !self.allow.contains(a))
        {
            Some(private) => Err(format!("{private} is not a public address")),
            None => Ok(found),
        }
    }

    /// GETs `url` (following up to three redirects, each checked): the final URL, its type
    /// and at most `max` bytes of its body.
    async fn get(
        &self,
        mut url: Url,
        max: usize,
        accept: &str,
    ) -> Result<(Url, Option<String>, Vec<u8>), String> {
        for _ in 0..=MAX_REDIRECTS {
            let addresses = self.addresses(&url).await?;
            let mut client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(TIMEOUT)
                .connect_timeout(TIMEOUT)
                .user_agent("hubbub-link-preview");
            if let Some(url::Host::Domain(name)) = url.host() {
                // Exactly the addresses checked: no second lookup that could answer otherwise.
                client = client.resolve_to_addrs(name, &addresses);
            }
            let client = client.build().map_err(|e| e.to_string())?;
            let mut response = client
                .get(url.clone())
                .header(ACCEPT, accept)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or("a redirect without a location")?;
                url = url.join(location).map_err(|e| e.to_string())?;
                continue;
            }
            if !response.status().is_success() {
                return Err(format!("the server answered {}", response.status()));
            }
            let kind = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|k| k.to_str().ok())
                .map(str::to_string);
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
                body.extend_from_slice(&chunk);
                if body.len() >= max {
                    body.truncate(max);
                    break;
                }
            }
            return Ok((url, kind, body));
        }
        Err("too many redirects".into())
    }
}

/// Whether `ip` is on the public internet: not private, loopback, link-local, CGNAT,
/// benchmarking, documentation, multicast, broadcast, reserved or unspecified.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (b & 0xc0) == 64)
                || (a == 198 && (b & 0xfe) == 18)
                || (a == 192 && b == 0 && c == 0))
        }
        IpAddr::V6(v6) => {
            // IPv4 inside IPv6 (mapped, compatible, 6to4) is judged as that IPv4 address.
            if let Some(v4) = v6.to_ipv4() {
                return !v6.is_loopback() && is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if s[0] == 0x2002 {
                let [a, b] = s[1].to_be_bytes();
                let [c, d] = s[2].to_be_bytes();
                return is_public(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0)
                || s[0] == 0x0064)
        }
    }
}

/// What an HTML page says about itself: OpenGraph first, then the usual tags.
fn describe(html: &[u8], base: &Url) -> Option<Page> {
    use lol_html::{HtmlRewriter, Settings, element, text};
    let tags = std::cell::RefCell::new(HashMap::<String, String>::new());
    let title = std::cell::RefCell::new(String::new());
    let mut rewriter = HtmlRewriter::new(
        Settings {
            element_content_handlers: vec![
                element!("meta[content]", |el| {
                    let key = el
                        .get_attribute("property")
                        .or_else(|| el.get_attribute("name"))
                        .map(|k| k.to_ascii_lowercase());
                    if let (Some(key), Some(content)) = (key, el.get_attribute("content")) {
                        tags.borrow_mut().entry(key).or_insert(content);
                    }
                    Ok(())
                }),
                text!("title", |t| {
                    title.borrow_mut().push_str(t.as_str());
                    Ok(())
                }),
            ],
            ..Settings::new()
        },
        |_: &[u8]| {},
    );
    // A page cut at the size limit is read as far as it goes.
    let _ = rewriter.write(html);
    let _ = rewriter.end();
    let tags = tags.into_inner();
    let tag = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| tags.get(*k))
            .map(|v| tidy(v))
            .filter(|v| !v.is_empty())
    };
    let title = tag(&["og:title", "twitter:title"])
        .or_else(|| Some(tidy(&title.into_inner())).filter(|t| !t.is_empty()))?;
    Some(Page {
        site: tag(&["og:site_name"])
            .unwrap_or_else(|| base.host_str().unwrap_or_default().to_string()),
        title: cut(&title, TITLE_CHARS),
        description: tag(&["og:description", "twitter:description", "description"])
            .map(|d| cut(&d, DESCRIPTION_CHARS)),
        picture: tag(&["og:image", "og:image:url", "twitter:image"])
            .and_then(|src| base.join(&src).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https")),
    })
}

/// Entities decoded (the scanner hands them over as written), whitespace runs made one space.
fn tidy(raw: &str) -> String {
    html_escape::decode_html_entities(raw)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn cut(s: &str, chars: usize) -> String {
    let mut out: String = s.chars().take(chars).collect();
    if s.chars().count() > chars {
        out.push('…');
    }
    out
}

/// Fetches the preview of the first link of `message` (just stored in `room` by the account
/// `sender_key`, to `to` if private) and posts it as a `previewed` change. Failures are only
/// counted: a message without a card is still the message.
pub async fn announce(
    hub: Arc<Hub>,
    room: String,
    message: ChatMessage,
    sender_key: String,
    to: Option<(User, String)>,
) {
    let Some(link) = hub.previews.link_in(&message.text) else {
        return;
    };
    let Ok(_turn) = hub.previews.running.acquire().await else {
        return;
    };
    let made = async {
        let page = hub.previews.page(&link).await?;
        let picture = match &page.picture {
            Some(src) => picture(&hub, src, &room, &message, &sender_key, to.as_ref()).await,
            None => None,
        };
        Ok::<_, String>(Preview {
            url: link.clone(),
            site: page.site,
            title: page.title,
            description: page.description,
            image: picture,
        })
    };
    let preview = match tokio::time::timeout(TIMEOUT * 3, made).await {
        Ok(Ok(preview)) => preview,
        Ok(Err(reason)) => {
            hub.metrics.link_previews_refused.fetch_add(1, Relaxed);
            tracing::debug!("no preview of {link}: {reason}");
            return;
        }
        Err(_) => {
            hub.metrics.link_previews_refused.fetch_add(1, Relaxed);
            return;
        }
    };
    let picture = preview.image.clone();
    let draft = Draft {
        to,
        change: Some(Change::Previewed {
            target: message.id,
            preview,
        }),
        ..Draft::message(&room, message.from.clone(), &sender_key, "")
    };
    let posted = hub.post(draft).await;
    // Deleted meanwhile (storing the card then dropped its picture's record): the bytes too.
    let gone = !matches!(hub.entry(&room, message.id).await, Ok(Some(e)) if !e.message.deleted);
    if let (true, Some(file)) = (gone || posted.is_err(), picture) {
        hub.files.remove(&file.id).await;
    }
    match posted {
        Ok(_) => {
            hub.metrics.link_previews.fetch_add(1, Relaxed);
        }
        Err(e) => tracing::warn!("link preview of message {}: {e}", message.id),
    }
}

/// The page's picture, fetched under the same guard and kept as a file of the message: its
/// author's, named `preview:<id>`, so whoever sees the message sees it.
async fn picture(
    hub: &Hub,
    src: &Url,
    room: &str,
    message: &ChatMessage,
    sender_key: &str,
    to: Option<&(User, String)>,
) -> Option<Attachment> {
    let (_, _, bytes) = hub
        .previews
        .get(src.clone(), MAX_PICTURE, "image/*")
        .await
        .ok()?;
    let name = format!("preview:{}", message.id);
    let recipient = to.map(|(_, key)| key.as_str());
    hub.files
        .keep_picture(hub, &bytes, room, (sender_key, &name), recipient)
        .await
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_fetched() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "198.18.0.1",
            "::169.254.169.254",
            "fec0::1",
            "2002:a9fe:a9fe::1",
            "100::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn pages_describe_themselves() {
        let base = Url::parse("https://news.example/a/b").unwrap();
        let page = describe(
            br#"<html><head><title>Plain title</title>
            <meta property="og:title" content="A &lt;b&gt;bold&lt;/b&gt; &amp;   claim">
            <meta name="description" content="Second choice">
            <meta property="og:description" content="First choice">
            <meta property="og:image" content="/pic.png">
            <meta property="og:image" content="/other.png"></head><body>x</body></html>"#,
            &base,
        )
        .unwrap();
        assert_eq!(page.title, "A <b>bold</b> & claim");
        assert_eq!(page.description.as_deref(), Some("First choice"));
        assert_eq!(page.site, "news.example");
        assert_eq!(
            page.picture.unwrap().as_str(),
            "https://news.example/pic.png"
        );
        let plain = describe(b"<title> Just   a title </title>", &base).unwrap();
        assert_eq!(
            (plain.title.as_str(), plain.description),
            ("Just a title", None)
        );
        assert_eq!(describe(b"<p>no title</p>", &base), None);
        let scripted = describe(
            b"<title>t</title><meta property=og:image content='javascript:alert(1)'>",
            &base,
        )
        .unwrap();
        assert_eq!(scripted.picture, None);
    }
}
