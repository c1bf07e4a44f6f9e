//! Settings, read from one file: `Leptos.toml`.
//!
//! `[site]` holds the Leptos site settings (address, site root, package dir, output name): the
//! server reads them here and `scripts/leptos.sh` exports the same file to cargo-leptos, so the
//! two can never disagree. `[hub]` holds hubbub's own settings. Environment variables override
//! the file: `LEPTOS_SITE_ADDR=...` for `[site]` (that is also how cargo-leptos passes its
//! values) and `HUBBUB_<KEY>` for `[hub]` (`HUBBUB_DATABASE=/var/lib/hubbub/chat.db`,
//! `HUBBUB_MAX_CONNECTIONS=5000`). Unknown keys are errors, not silently ignored.

use leptos::config::LeptosOptions;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Everything the server needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    pub site: LeptosOptions,
    pub hub: HubConfig,
}

/// hubbub's own settings. The defaults are chosen for one small server; every limit can be
/// raised for load tests and big communities.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HubConfig {
    /// Where the message history is kept: a SQLite file (created if missing), or a
    /// `postgres://` URL (see `storage`).
    pub database: PathBuf,
    /// Messages sent in `welcome` and per `history` page.
    pub history_limit: usize,
    /// Most messages sent back for one `since` resume.
    pub resume_limit: usize,
    /// Largest WebSocket frame accepted; bigger ones close the connection with 1009.
    pub max_frame_bytes: usize,
    /// Longest message text in characters (the protocol's hard ceiling is 2,000).
    pub max_message_chars: usize,
    /// Rooms up to this size announce every join and leave and list everyone online in
    /// `welcome`. Larger rooms stop the notices and list only this many: announcing each of
    /// N joins to N people is O(N²) traffic, and nobody reads 10,000 join notices.
    pub presence_limit: usize,
    /// "Is typing" ends this long after the last `typing` frame. Keep it above the browser's
    /// 2 s resend interval, or a steady typist's indicator flickers.
    pub typing_timeout_ms: u64,
    /// Frames that may wait for one reader (its socket full); one more disconnects it.
    pub room_queue: usize,
    /// Frames waiting for one connection beyond which its own replies (history pages,
    /// errors) wait to be queued: a client that asks and does not read is held back.
    pub direct_queue: usize,
    /// A write that cannot complete within this time marks the client a slow consumer.
    pub write_timeout_ms: u64,
    /// Compress large frames (permessage-deflate) for clients that offer it, as browsers do:
    /// each broadcast is compressed once for all of them.
    pub permessage_deflate: bool,
    /// No longer has an effect (a value other than 0 is accepted, with a warning, so older
    /// configuration files still load): a connection's frames go out as soon as its socket
    /// takes them, and a busy connection's writes carry many frames each by themselves.
    pub socket_writes_per_sec: f64,
    /// No longer has an effect (see `socket-writes-per-sec`).
    pub socket_write_burst: f64,
    /// Sustained messages per second per connection.
    pub rate_per_sec: f64,
    /// Messages a connection may send in a burst above the sustained rate.
    pub rate_burst: f64,
    /// Sustained requests per second per connection other than messages (`join`, `history`,
    /// `typing`, `ping`, unreadable frames): each costs a database read or a fan-out, so none
    /// is free. A browser sends about one every two seconds while typing.
    pub requests_per_sec: f64,
    /// Requests a connection may send in a burst above `requests-per-sec`.
    pub request_burst: f64,
    /// Rate-limited or malformed frames tolerated before the connection is closed.
    pub max_strikes: u32,
    /// Open WebSocket connections the server accepts in total (503 beyond).
    pub max_connections: usize,
    /// Open WebSocket connections per client IP (429 beyond).
    pub max_connections_per_ip: usize,
    /// Open HTTP connections (page loads, assets, WebSocket handshakes not yet upgraded) the
    /// server holds at once; beyond it a new connection is answered 503 and closed.
    pub max_http_connections: usize,
    /// Open HTTP connections per client address (not applied to `trusted-proxies`, which
    /// carry many clients); beyond it, 429 and closed. Generous: an office behind one NAT
    /// address is many browsers, each keeping several connections open.
    pub max_http_connections_per_ip: usize,
    /// A request must have sent its whole header within this time, and an idle keep-alive
    /// connection is closed after it (a client trickling one header line at a time cannot
    /// hold a connection: "slowloris").
    pub http_header_timeout_ms: u64,
    /// The kernel's send buffer for each WebSocket (`SO_SNDBUF`; Linux doubles it). It bounds
    /// how much a reader that stopped reading can make the server hold before its writes
    /// block and it is dropped as a slow consumer, whatever the machine's autotuning allows
    /// (`net.ipv4.tcp_wmem`, up to 4 MiB on common defaults). 0: leave the kernel's default.
    pub socket_send_buffer: usize,
    /// The server pings every connection this often.
    pub ping_interval_ms: u64,
    /// A connection silent (not even a pong) for this long is closed.
    pub idle_timeout_ms: u64,
    /// Origins allowed to open `/ws` besides the site's own (e.g. `https://chat.example.com`).
    pub allowed_origins: Vec<String>,
    /// Reverse proxies (nginx, a load balancer) in front of this node, by address. A request
    /// from one of them is counted against the client address in its `X-Forwarded-For`, so
    /// the per-IP limit applies to users, not to the proxy. From any other peer the header
    /// is ignored: anyone could write it.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Messages older than this many days are deleted (checked every hour). 0, the default:
    /// history is kept for ever.
    pub retention_days: u64,
    /// Accounts created from one client address (an IPv6 /64) per hour, sign-up form and
    /// first joins alike; a burst of this many is allowed at once.
    pub signups_per_ip_per_hour: u64,
    /// How long shutdown waits for connections to close and history to be written.
    pub shutdown_grace_ms: u64,
    /// Cluster mode: the Redis shared by every node (`redis://host:6379/`). Unset: one node
    /// with its embedded SQLite history, and nothing about Redis is used.
    pub redis_url: Option<String>,
    /// No longer used: cluster history is kept in PostgreSQL, untrimmed. Accepted so settings
    /// files written for earlier releases still load.
    pub redis_history: usize,
    /// Cluster mode: a node that stops refreshing its heartbeat for this long is considered
    /// gone; its users are announced as left within about 1.5 times this.
    pub node_ttl_ms: u64,
    /// Where uploaded files are kept. Unset: a `files` directory beside the SQLite database
    /// (with PostgreSQL, `hubbub-files` in the working directory). Every node of a cluster
    /// must see the same directory (a shared mount).
    pub files_dir: Option<PathBuf>,
    /// The largest upload, in bytes.
    pub max_upload_bytes: u64,
    /// Uploads one account may make per hour (counted by each node).
    pub uploads_per_hour: u64,
    /// The types of file, besides pictures, that may be uploaded (as browsers name them).
    /// Pictures (PNG, JPEG, GIF, WebP) are recognised by their content, whatever they are
    /// called; nothing else is ever served as anything but a download.
    pub upload_types: Vec<String>,
    /// Fetch a preview card (title, description, picture) for the first link of a message.
    pub link_previews: bool,
    /// Addresses (`ip:port`) previews may fetch from although they are private or loopback:
    /// for tests and intranets. Everything else private, loopback or link-local is refused,
    /// after name resolution and after every redirect.
    pub link_previews_allow: Vec<String>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            database: PathBuf::from("hubbub.db"),
            history_limit: 50,
            resume_limit: 1_000,
            max_frame_bytes: 16 * 1024,
            max_message_chars: crate::protocol::MAX_MESSAGE_CHARS,
            presence_limit: 50,
            typing_timeout_ms: 5_000,
            room_queue: 1_024,
            direct_queue: 64,
            write_timeout_ms: 5_000,
            permessage_deflate: true,
            socket_writes_per_sec: 0.0,
            socket_write_burst: 10.0,
            rate_per_sec: 5.0,
            rate_burst: 20.0,
            requests_per_sec: 10.0,
            request_burst: 30.0,
            max_strikes: 10,
            max_connections: 20_000,
            max_connections_per_ip: 100,
            max_http_connections: 2_000,
            max_http_connections_per_ip: 256,
            http_header_timeout_ms: 10_000,
            socket_send_buffer: 64 * 1024,
            ping_interval_ms: 20_000,
            idle_timeout_ms: 60_000,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            retention_days: 0,
            signups_per_ip_per_hour: 20,
            shutdown_grace_ms: 3_000,
            redis_url: None,
            redis_history: 10_000,
            node_ttl_ms: 10_000,
            files_dir: None,
            max_upload_bytes: 10 * 1024 * 1024,
            uploads_per_hour: 60,
            upload_types: [
                "application/pdf",
                "text/plain",
                "text/csv",
                "application/zip",
                "application/json",
                "audio/mpeg",
                "video/mp4",
            ]
            .map(String::from)
            .to_vec(),
            link_previews: true,
            link_previews_allow: Vec::new(),
        }
    }
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: [site]: {message}")]
    Site { path: PathBuf, message: String },
    #[error("[hub] settings (from {path} and HUBBUB_* variables): {message}")]
    Hub { path: PathBuf, message: String },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    site: toml::Table,
    #[serde(default)]
    hub: toml::Table,
}

impl Config {
    /// Loads `path`, then applies `LEPTOS_*` and `HUBBUB_*` overrides from `env`.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: ConfigFile = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;

        // leptos_config already knows how to layer LEPTOS_* variables over a settings table;
        // it looks for the table under cargo's metadata header, so hand it one.
        let site_toml = format!(
            "[package.metadata.leptos]\n{}",
            toml::to_string(&file.site).unwrap_or_default()
        );
        let mut site =
            leptos::config::get_config_from_str(&site_toml).map_err(|e| ConfigError::Site {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        // Hashed file names (`hash-files`) come with the hashes cargo-leptos wrote beside the
        // binary it built; a binary run without them (a test, `cargo run`) serves the plain
        // names instead of failing every page (Leptos reads the file when rendering one).
        if site.hash_files && !hashes_beside_binary(&site.hash_file) {
            site.hash_files = false;
        }

        let mut hub = file.hub;
        for (key, value) in env {
            let Some(name) = key.strip_prefix("HUBBUB_") else {
                continue;
            };
            if name == "CONFIG" {
                continue; // the path of this file, not a [hub] key
            }
            let name = name.to_lowercase().replace('_', "-");
            hub.insert(name.clone(), env_value(&name, &value));
        }
        let hub: HubConfig = toml::Value::Table(hub)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Hub {
                path: path.to_owned(),
                message: e.message().to_string(),
            })?;
        hub.check().map_err(|message| ConfigError::Hub {
            path: path.to_owned(),
            message,
        })?;
        Ok(Config { site, hub })
    }
}

/// Whether cargo-leptos's `hash_file` is beside the running binary, where Leptos looks.
fn hashes_beside_binary(hash_file: &str) -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(hash_file)))
        .is_some_and(|path| path.is_file())
}

impl HubConfig {
    /// Checks every setting against the range it works in, so a bad value stops the server
    /// at start-up with the key named, instead of failing later (a zero ping interval made
    /// every writer panic). The error names the first key out of range.
    pub fn check(&self) -> Result<(), String> {
        fn within<T: PartialOrd + std::fmt::Display>(
            key: &str,
            value: T,
            low: T,
            high: T,
        ) -> Result<(), String> {
            if value >= low && value <= high {
                Ok(())
            } else {
                Err(format!(
                    "{key} = {value} is out of range: allowed {low} to {high}"
                ))
            }
        }
        fn rate(key: &str, value: f64, low: f64) -> Result<(), String> {
            if value.is_finite() {
                within(key, value, low, 1e9)
            } else {
                Err(format!(
                    "{key} = {value} is not a number: allowed {low} to 1e9"
                ))
            }
        }
        if self.database.as_os_str().is_empty() {
            return Err("database is empty: give the path of the SQLite file".into());
        }
        within("history-limit", self.history_limit, 1, 1_000)?;
        // A resume's pages are frames of this many messages: bounded, so one is not huge.
        within("resume-limit", self.resume_limit, 1, 10_000)?;
        within("max-frame-bytes", self.max_frame_bytes, 1_024, 16 << 20)?;
        let most = crate::protocol::MAX_MESSAGE_CHARS;
        within("max-message-chars", self.max_message_chars, 1, most)?;
        within("presence-limit", self.presence_limit, 0, 1_000_000)?;
        within("typing-timeout-ms", self.typing_timeout_ms, 100, 600_000)?;
        within("room-queue", self.room_queue, 16, 1 << 20)?;
        within("direct-queue", self.direct_queue, 4, 1 << 20)?;
        within("write-timeout-ms", self.write_timeout_ms, 10, 600_000)?;
        if self.socket_writes_per_sec != 0.0 {
            tracing::warn!(
                "socket-writes-per-sec no longer has an effect: frames go out as soon as \
                 each socket takes them"
            );
        }
        rate("rate-per-sec", self.rate_per_sec, 0.001)?;
        rate("rate-burst", self.rate_burst, 1.0)?;
        rate("requests-per-sec", self.requests_per_sec, 0.001)?;
        rate("request-burst", self.request_burst, 1.0)?;
        within("max-strikes", self.max_strikes, 1, 1_000_000)?;
        within("max-connections", self.max_connections, 1, 10_000_000)?;
        within(
            "max-connections-per-ip",
            self.max_connections_per_ip,
            1,
            10_000_000,
        )?;
        within(
            "max-http-connections",
            self.max_http_connections,
            1,
            10_000_000,
        )?;
        let per_ip = self.max_http_connections_per_ip;
        within("max-http-connections-per-ip", per_ip, 1, 10_000_000)?;
        within(
            "http-header-timeout-ms",
            self.http_header_timeout_ms,
            100,
            600_000,
        )?;
        if self.socket_send_buffer != 0 {
            within(
                "socket-send-buffer",
                self.socket_send_buffer,
                4_096,
                64 << 20,
            )?;
        }
        within("ping-interval-ms", self.ping_interval_ms, 10, 600_000)?;
        // At least two pings per idle timeout, or one late pong drops a live client.
        let idle_low = self.ping_interval_ms.saturating_mul(2);
        within("idle-timeout-ms", self.idle_timeout_ms, idle_low, 3_600_000)
            .map_err(|e| format!("{e} (at least twice ping-interval-ms)"))?;
        within("shutdown-grace-ms", self.shutdown_grace_ms, 0, 600_000)?;
        within("retention-days", self.retention_days, 0, 365_000)?;
        within(
            "signups-per-ip-per-hour",
            self.signups_per_ip_per_hour,
            1,
            1_000_000,
        )?;
        within("redis-history", self.redis_history, 1, 100_000_000)?;
        within("node-ttl-ms", self.node_ttl_ms, 1_000, 600_000)?;
        within("max-upload-bytes", self.max_upload_bytes, 1_024, 1 << 30)?;
        within("uploads-per-hour", self.uploads_per_hour, 1, 100_000)?;
        for allowed in &self.link_previews_allow {
            if allowed.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!(
                    "link-previews-allow: {allowed:?} is not an address like \"10.0.0.5:8080\""
                ));
            }
        }
        for kind in &self.upload_types {
            // Never as a page or a script of this site, whatever its name.
            let active = ["html", "xml", "javascript", "svg", "xhtml"]
                .iter()
                .any(|bad| kind.to_ascii_lowercase().contains(bad));
            if active || !kind.contains('/') {
                return Err(format!(
                    "upload-types: {kind:?} cannot be allowed (types are like \"application/pdf\"; \
                     HTML, XML, SVG and scripts never are)"
                ));
            }
        }
        for origin in &self.allowed_origins {
            let scheme = origin.starts_with("http://") || origin.starts_with("https://");
            if !scheme || origin.contains(char::is_whitespace) {
                return Err(format!(
                    "allowed-origins: {origin:?} is not an origin like https://chat.example.com"
                ));
            }
        }
        Ok(())
    }
}

/// `[hub]` keys whose environment value is a comma-separated list.
const LIST_KEYS: [&str; 4] = [
    "allowed-origins",
    "trusted-proxies",
    "upload-types",
    "link-previews-allow",
];

/// Reads an environment value as the TOML value it spells (`5`, `true`, `2.5`), falling back to
/// a string; the [`LIST_KEYS`] are comma-separated lists.
fn env_value(name: &str, raw: &str) -> toml::Value {
    if LIST_KEYS.contains(&name) {
        return toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        );
    }
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn file_then_environment() {
        let f = write(
            "[site]\noutput-name = \"hubbub\"\nsite-addr = \"127.0.0.1:4000\"\n\
             [hub]\ndatabase = \"a.db\"\nhistory-limit = 10\n",
        );
        let env = [
            ("HUBBUB_HISTORY_LIMIT".to_string(), "20".to_string()),
            (
                "HUBBUB_ALLOWED_ORIGINS".into(),
                "https://a.io, https://b.io".into(),
            ),
            ("HUBBUB_CONFIG".into(), "ignored".into()),
            ("HUBBUB_TRUSTED_PROXIES".into(), "127.0.0.1,::1".into()),
            ("LEPTOS_SITE_ADDR".into(), "127.0.0.1:5000".into()),
        ];
        let config = Config::load(f.path(), env).unwrap();
        assert_eq!(config.hub.database, PathBuf::from("a.db"));
        assert_eq!(config.hub.history_limit, 20);
        assert_eq!(config.hub.allowed_origins, ["https://a.io", "https://b.io"]);
        let proxies: Vec<std::net::IpAddr> =
            vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(config.hub.trusted_proxies, proxies);
        assert_eq!(
            config.hub.idle_timeout_ms,
            HubConfig::default().idle_timeout_ms
        );
        // LEPTOS_* variables are read from the process environment by leptos_config itself.
        assert_eq!(&*config.site.output_name, "hubbub");
    }

    #[test]
    fn hashed_names_need_the_hashes_beside_the_binary() {
        // The test binary has no hash.txt beside it (cargo-leptos writes one beside the
        // binary it builds): plain names, rather than a page that cannot be rendered.
        let f = write("[site]\noutput-name = \"hubbub\"\nhash-files = true\n");
        let config = Config::load(f.path(), Vec::new()).unwrap();
        assert!(!config.site.hash_files);
        let exe = std::env::current_exe().unwrap();
        let hashes = tempfile::Builder::new()
            .suffix(".txt")
            .tempfile_in(exe.parent().unwrap())
            .unwrap();
        let name = hashes.path().file_name().unwrap().to_str().unwrap();
        let f = write(&format!(
            "[site]\noutput-name = \"hubbub\"\nhash-files = true\nhash-file = \"{name}\"\n"
        ));
        assert!(Config::load(f.path(), Vec::new()).unwrap().site.hash_files);
    }

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        let f = write("[site]\noutput-name = \"hubbub\"\n[hub]\nping-interval-ms = 0\n");
        let err = Config::load(f.path(), []).unwrap_err().to_string();
        assert!(
            err.contains("ping-interval-ms = 0 is out of range"),
            "{err}"
        );
        for (key, value) in [
            ("HUBBUB_ROOM_QUEUE", "0"),
            ("HUBBUB_RATE_PER_SEC", "nan"),
            ("HUBBUB_IDLE_TIMEOUT_MS", "20000"),
            ("HUBBUB_SOCKET_SEND_BUFFER", "10"),
            ("HUBBUB_ALLOWED_ORIGINS", "chat.example.com"),
        ] {
            let f = write("[site]\noutput-name = \"hubbub\"\n");
            let err = Config::load(f.path(), [(key.into(), value.into())]).unwrap_err();
            let name = key["HUBBUB_".len()..].to_lowercase().replace('_', "-");
            assert!(err.to_string().contains(&name), "{key}: {err}");
        }
        assert_eq!(HubConfig::default().check(), Ok(()));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let f = write("[site]\noutput-name = \"hubbub\"\n[hub]\nhistory-limt = 3\n");
        let err = Config::load(f.path(), []).unwrap_err().to_string();
        assert!(err.contains("history-limt"), "{err}");
        let f = write("[site]\noutput-name = \"hubbub\"\n");
        let err = Config::load(f.path(), [("HUBBUB_NOPE".into(), "1".into())]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
