//! Pictures and files: `POST /api/files` takes an upload, `GET /files/{id}` (and
//! `/files/{id}/thumb`) gives it back to those who may see it.
//!
//! - **Where:** the bytes are files named by a random id in the files directory (`files-dir`,
//!   shared by a cluster's nodes); who may see each is in storage (`storage::files`). A file
//!   is its uploader's until it is sent with a message; then the room's (a private message:
//!   its two people's). Deleting the message deletes the file.
//! - **Pictures** (PNG, JPEG, GIF, WebP) are recognised by their content, never by their name,
//!   decoded by the `image` crate under limits (pixels and memory: a small file that unpacks
//!   into gigabytes is refused), and get a thumbnail. Anything else must be of an allowed type
//!   (`upload-types`) and is only ever served as a download.
//! - **Limits:** size (`max-upload-bytes`, counted as it arrives, not trusted from headers),
//!   uploads per account per hour (`uploads-per-hour`), a signed-in account.
//! - **Served** with `X-Content-Type-Options: nosniff`, a `Content-Security-Policy` that
//!   allows nothing (and `sandbox`), and `Content-Disposition`: nothing uploaded ever runs as
//!   a page of this site.

use super::accounts;
use super::config::HubConfig;
use super::hub::Hub;
use super::storage::{Account, SecretKind, StoreError, StoredFile};
use crate::protocol::{Attachment, Pixels, THUMBNAIL_PIXELS, clean_file_name, validate_room};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Largest picture decoded, per side, and the memory its decoding may take.
const MAX_PICTURE_SIDE: u32 = 12_000;
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// The files directory and the upload limits.
pub struct Files {
    dir: PathBuf,
    max_bytes: u64,
    per_hour: u64,
    types: Vec<String>,
    /// Recent uploads per account key (this node's count).
    recent: Mutex<HashMap<String, Vec<Instant>>>,
    /// Pictures being decoded now. Each may take up to `MAX_DECODE_BYTES` and a core for
    /// seconds: without a bound, one account's parallel uploads (each within every limit)
    /// would add up to more memory than the machine has.
    decoding: Arc<tokio::sync::Semaphore>,
}

/// Pictures decoded at once, across every upload of the node.
const DECODING_AT_ONCE: usize = 2;

/// How long an upload waits to be sent with a message before it is removed: long enough to
/// finish writing the message, short enough that uploads nobody sends cannot fill the disk.
pub const UNSENT_FILES_KEPT: Duration = Duration::from_secs(24 * 3_600);

/// Removes, every hour, the uploads never sent within [`UNSENT_FILES_KEPT`] (in a cluster
/// every node does it; removing what is gone is harmless).
pub fn sweep_every_hour(hub: Arc<Hub>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3_600));
        loop {
            tick.tick().await;
            match hub.forget_unsent_files(UNSENT_FILES_KEPT).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("files: removed {n} uploads never sent"),
                Err(e) => tracing::warn!("files: {e}"),
            }
        }
    });
}

/// An upload as asked: for which room, its name and claimed type, its announced length.
struct Incoming<'a> {
    room: &'a str,
    name: &'a str,
    claimed: &'a str,
    length: Option<u64>,
}

/// Why an upload was refused: a status and a sentence for the person.
#[derive(Debug)]
pub struct Refused(pub StatusCode, pub String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        tracing::error!("{e}");
        Refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "files cannot be stored or read right now; try again".into(),
        )
    }
}

fn io_failed(e: std::io::Error) -> Refused {
    tracing::error!("files: {e}");
    Refused(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the file could not be written on the server".into(),
    )
}

impl Files {
    /// Creates the files directory if needed.
    pub fn open(config: &HubConfig) -> std::io::Result<Files> {
        let dir = match &config.files_dir {
            Some(dir) => dir.clone(),
            None => match super::storage::Location::parse(&config.database) {
                super::storage::Location::Sqlite(path) => path
                    .parent()
                    .map(|p| p.join("files"))
                    .unwrap_or_else(|| PathBuf::from("files")),
                super::storage::Location::Postgres(_) => PathBuf::from("hubbub-files"),
            },
        };
        std::fs::create_dir_all(&dir)?;
        Ok(Files {
            dir,
            max_bytes: config.max_upload_bytes,
            per_hour: config.uploads_per_hour,
            types: config.upload_types.clone(),
            recent: Mutex::default(),
            decoding: Arc::new(tokio::sync::Semaphore::new(DECODING_AT_ONCE)),
        })
    }

    fn path(&self, id: &str, thumbnail: bool) -> PathBuf {
        self.dir.join(if thumbnail {
            format!("{id}.thumb.png")
        } else {
            id.to_string()
        })
    }

    /// Counts an upload against the account's hourly allowance; false when it is used up.
    fn allowed(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let times = recent.entry(key.to_string()).or_default();
        times.retain(|t| now.duration_since(*t) < Duration::from_secs(3_600));
        if times.len() as u64 >= self.per_hour {
            return false;
        }
        times.push(now);
        true
    }

    /// Removes a file's bytes (its message was deleted). Missing ones are no error.
    pub async fn remove(&self, id: &str) {
        for thumbnail in [false, true] {
            let _ = tokio::fs::remove_file(self.path(id, thumbnail)).await;
        }
    }

    /// Receives an upload from `owner`.
    async fn receive(
        &self,
        hub: &Hub,
        owner: &Account,
        incoming: Incoming<'_>,
        body: Body,
    ) -> Result<Attachment, Refused> {
        let Incoming {
            room,
            name,
            claimed,
            length,
        } = incoming;
        let too_big = || {
            Refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "files are at most {}",
                    crate::protocol::human_size(self.max_bytes)
                ),
            )
        };
        if length.is_some_and(|n| n > self.max_bytes) {
            return Err(too_big());
        }
        if !self.allowed(&owner.key()) {
            return Err(Refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!("at most {} uploads an hour; try again later", self.per_hour),
            ));
        }
        let id = random_id();
        let partial = self.dir.join(format!(".incoming-{id}"));
        let received = self.write(&partial, body).await;
        let size = match received {
            Ok(Some(size)) => size,
            Ok(None) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(too_big());
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(e);
            }
        };
        let (content_type, image) = self.settle(&partial, &id, claimed).await?;
        let attachment = Attachment {
            id,
            name: clean_file_name(name),
            size,
            content_type,
            image,
        };
        if let Err(e) = hub.add_file(&attachment, &owner.key(), room).await {
            self.remove(&attachment.id).await;
            return Err(e.into());
        }
        Ok(attachment)
    }

    /// Keeps `bytes`, which must be a picture, as a file of `room` already sent (to
    /// `recipient`'s eyes too, if private), owned by `owner` and called `name`: a link
    /// preview's picture.
    pub async fn keep_picture(
        &self,
        hub: &Hub,
        bytes: &[u8],
        room: &str,
        (owner, name): (&str, &str),
        recipient: Option<&str>,
    ) -> Result<Attachment, Refused> {
        let id = random_id();
        let partial = self.dir.join(format!(".incoming-{id}"));
        tokio::fs::write(&partial, bytes).await.map_err(io_failed)?;
        // Claimed as a picture: anything that is not one is refused.
        let (content_type, image) = self.settle(&partial, &id, "image/*").await?;
        let attachment = Attachment {
            id,
            name: name.into(),
            size: bytes.len() as u64,
            content_type,
            image,
        };
        let kept = async {
            hub.add_file(&attachment, owner, room).await?;
            hub.attach_file(&attachment.id, recipient).await
        };
        if let Err(e) = kept.await {
            self.remove(&attachment.id).await;
            return Err(e.into());
        }
        Ok(attachment)
    }

    /// Checks the file received at `partial` (see [`Files::check`]) and moves it into place
    /// as `id`; a refused one leaves nothing behind.
    async fn settle(
        &self,
        partial: &std::path::Path,
        id: &str,
        claimed: &str,
    ) -> Result<(String, Option<Pixels>), Refused> {
        match self.check(partial, id, claimed).await {
            Ok(found) => {
                tokio::fs::rename(partial, self.path(id, false))
                    .await
                    .map_err(io_failed)?;
                Ok(found)
            }
            Err(refused) => {
                let _ = tokio::fs::remove_file(partial).await;
                self.remove(id).await;
                Err(refused)
            }
        }
    }

    /// Writes the body to `path`; `None` once it goes over the size limit.
    async fn write(&self, path: &std::path::Path, body: Body) -> Result<Option<u64>, Refused> {
        let mut file = tokio::fs::File::create(path).await.map_err(io_failed)?;
        let mut stream = body.into_data_stream();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                Refused(
                    StatusCode::BAD_REQUEST,
                    format!("the upload was cut off: {e}"),
                )
            })?;
            size += chunk.len() as u64;
            if size > self.max_bytes {
                return Ok(None);
            }
            file.write_all(&chunk).await.map_err(io_failed)?;
        }
        file.flush().await.map_err(io_failed)?;
        Ok(Some(size))
    }

    /// What the file is: a picture (decoded, with its thumbnail written), or an allowed type.
    async fn check(
        &self,
        path: &std::path::Path,
        id: &str,
        claimed: &str,
    ) -> Result<(String, Option<Pixels>), Refused> {
        let mut start = [0u8; 32];
        let n = {
            use tokio::io::AsyncReadExt;
            let mut f = tokio::fs::File::open(path).await.map_err(io_failed)?;
            f.read(&mut start).await.map_err(io_failed)?
        };
        let format = image::guess_format(&start[..n]).ok().filter(|f| {
            use image::ImageFormat::{Gif, Jpeg, Png, WebP};
            matches!(f, Png | Jpeg | Gif | WebP)
        });
        let claimed = claimed
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let Some(format) = format else {
            if claimed.starts_with("image/") {
                return Err(Refused(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "pictures can be PNG, JPEG, GIF or WebP".into(),
                ));
            }
            if !self.types.iter().any(|t| t.eq_ignore_ascii_case(&claimed)) {
                return Err(Refused(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "files of this type ({}) cannot be sent; pictures and {} can",
                        if claimed.is_empty() {
                            "unknown"
                        } else {
                            &claimed
                        },
                        self.types.join(", ")
                    ),
                ));
            }
            return Ok((claimed, None));
        };
        let (source, thumb) = (path.to_owned(), self.path(id, true));
        // Waits its turn (the semaphore is never closed), and holds it in the decoding
        // itself: an upload whose client went away meanwhile still counts until it is done.
        let turn = self.decoding.clone().acquire_owned().await.ok();
        let made = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            thumbnail(&source, format, &thumb)
        })
        .await
        .map_err(|_| io_failed(std::io::Error::other("the thumbnail task stopped")))?;
        match made {
            Ok(pixels) => Ok((format.to_mime_type().to_string(), Some(pixels))),
            Err(reason) => Err(Refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("this picture cannot be read: {reason}"),
            )),
        }
    }

    /// Answers `GET /files/{id}` (`thumbnail`: `/files/{id}/thumb`) for `viewer`.
    async fn serve(
        &self,
        file: &StoredFile,
        thumbnail: bool,
        headers: &HeaderMap,
    ) -> Result<Response, Refused> {
        let not_found = || Refused(StatusCode::NOT_FOUND, "there is no such file".into());
        if thumbnail && file.attachment.image.is_none() {
            return Err(not_found());
        }
        let path = self.path(&file.attachment.id, thumbnail);
        // Streamed from the disk: many downloads of a large file do not each hold it whole.
        let bytes = match tokio::fs::File::open(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(io_failed(e)),
        };
        let length = bytes.metadata().await.map_err(io_failed)?.len();
        // The id never changes what it names: a browser may keep it (privately).
        let etag = format!(
            "\"{}{}\"",
            file.attachment.id,
            if thumbnail { "t" } else { "" }
        );
        if headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes())
        {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
        let picture = file.attachment.image.is_some();
        let content_type = match (thumbnail, picture) {
            (true, _) => "image/png".to_string(),
            (false, true) => file.attachment.content_type.clone(),
            // Never interpreted by the browser: a download, whatever it says it is.
            (false, false) => "application/octet-stream".to_string(),
        };
        let disposition = format!(
            "{}; filename*=UTF-8''{}",
            if picture { "inline" } else { "attachment" },
            percent_encode(&file.attachment.name)
        );
        let body = Body::from_stream(tokio_util::io::ReaderStream::new(bytes));
        let mut response = Response::new(body);
        let h = response.headers_mut();
        let mut set = |name, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                h.insert(name, value);
            }
        };
        set(header::CONTENT_TYPE, content_type);
        set(header::CONTENT_DISPOSITION, disposition);
        set(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox; frame-ancestors 'none'".into(),
        );
        set(header::CACHE_CONTROL, "private, max-age=86400".into());
        set(header::CONTENT_LENGTH, length.to_string());
        set(header::ETAG, etag);
        Ok(response)
    }
}

/// Decodes the picture at `source` under the limits and writes its thumbnail to `thumb`.
fn thumbnail(
    source: &std::path::Path,
    format: image::ImageFormat,
    thumb: &std::path::Path,
) -> Result<Pixels, String> {
    let mut reader = image::ImageReader::open(source).map_err(|e| e.to_string())?;
    reader.set_format(format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_PICTURE_SIDE);
    limits.max_image_height = Some(MAX_PICTURE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let picture = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => {
            format!("it is larger than {MAX_PICTURE_SIDE} pixels a side or too large to unpack")
        }
        other => other.to_string(),
    })?;
    let pixels = Pixels {
        width: picture.width(),
        height: picture.height(),
    };
    let small = if pixels.width.max(pixels.height) > THUMBNAIL_PIXELS {
        picture.thumbnail(THUMBNAIL_PIXELS, THUMBNAIL_PIXELS)
    } else {
        picture
    };
    small
        .save_with_format(thumb, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(pixels)
}

/// 128 random bits, hex: a file's id (not guessable, so not listable).
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random numbers");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// RFC 8187 encoding for `filename*`.
fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The signed-in account of a request (browser cookie or API token), or the answer to give.
async fn account_of(hub: &Hub, headers: &HeaderMap) -> Result<Account, Refused> {
    let (cookie, bearer) = accounts::secrets(headers);
    let secret = match (&bearer, &cookie) {
        (Some(token), _) => Some((token.clone(), &[SecretKind::Api, SecretKind::Join][..])),
        (None, Some(cookie)) => Some((cookie.clone(), &[SecretKind::Browser][..])),
        (None, None) => None,
    };
    let found = match secret {
        Some((secret, kinds)) => hub.accounts.by_secret(&secret, kinds).await?,
        None => None,
    };
    found.ok_or_else(|| {
        Refused(
            StatusCode::UNAUTHORIZED,
            "sign in to send or see files".into(),
        )
    })
}

/// Where an upload goes and what it is called: `?room=general&name=cat.png`.
#[derive(serde::Deserialize)]
pub struct UploadQuery {
    room: String,
    #[serde(default)]
    name: String,
}

/// `POST /api/files?room=…&name=…`, the file as the body: answers its [`Attachment`] (JSON),
/// to send with a `message` frame.
pub async fn upload(
    State(hub): State<Arc<Hub>>,
    Query(asked): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = async {
        let owner = account_of(&hub, &headers).await?;
        let room =
            validate_room(&asked.room).map_err(|e| Refused(StatusCode::BAD_REQUEST, e.message))?;
        let claimed = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let incoming = Incoming {
            room: &room,
            name: &asked.name,
            claimed,
            length,
        };
        hub.files.receive(&hub, &owner, incoming, body).await
    };
    match answer.await {
        Ok(attachment) => axum::Json(attachment).into_response(),
        Err(refused) => refused.into_response(),
    }
}

/// `GET /files/{id}`.
pub async fn download(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    send(&hub, &id, false, &headers).await
}

/// `GET /files/{id}/thumb`: a picture's thumbnail.
pub async fn download_thumbnail(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    send(&hub, &id, true, &headers).await
}

async fn send(hub: &Hub, id: &str, thumbnail: bool, headers: &HeaderMap) -> Response {
    let answer = async {
        let not_found = || Refused(StatusCode::NOT_FOUND, "there is no such file".into());
        if !is_id(id) {
            return Err(not_found());
        }
        let viewer = account_of(hub, headers).await?;
        let file = hub.file(id).await?.ok_or_else(not_found)?;
        // Someone who may not see it is told it is not there.
        if !file.visible_to(&viewer.key()) {
            return Err(not_found());
        }
        hub.files.serve(&file, thumbnail, headers).await
    };
    match answer.await {
        Ok(response) => response,
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::metrics::Metrics;

    #[tokio::test]
    async fn uploads_never_sent_are_removed_after_a_while_and_sent_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let config = HubConfig {
            database: dir.path().join("chat.db"),
            ..HubConfig::default()
        };
        let hub = Hub::open(Arc::new(config), Arc::new(Metrics::default()))
            .await
            .unwrap();
        let file = |id: &str| Attachment {
            id: id.into(),
            name: "notes 📝.pdf".into(),
            size: 5,
            content_type: "application/pdf".into(),
            image: None,
        };
        let (sent, unsent) = ("0".repeat(32), "1".repeat(32));
        for id in [&sent, &unsent] {
            hub.add_file(&file(id), "account:1", "general")
                .await
                .unwrap();
            std::fs::write(hub.files.path(id, false), b"%PDF-").unwrap();
        }
        hub.attach_file(&sent, None).await.unwrap();
        // Younger than the limit: kept.
        assert_eq!(hub.forget_unsent_files(UNSENT_FILES_KEPT).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Older: the one never sent goes, record and bytes; the sent one stays.
        assert_eq!(hub.forget_unsent_files(Duration::ZERO).await.unwrap(), 1);
        assert!(hub.file(&unsent).await.unwrap().is_none());
        assert!(!hub.files.path(&unsent, false).exists());
        assert!(hub.file(&sent).await.unwrap().is_some());
        assert!(hub.files.path(&sent, false).exists());
    }

    #[test]
    fn ids_and_names_on_the_wire() {
        let id = random_id();
        assert!(is_id(&id), "{id}");
        assert_ne!(id, random_id());
        assert!(!is_id("../../etc/passwd"));
        assert!(!is_id(&id.to_uppercase()));
        assert_eq!(percent_encode("cat pic.png"), "cat%20pic.png");
        assert_eq!(percent_encode("猫\"\r\n.png"), "%E7%8C%AB%22%0D%0A.png");
    }
}
