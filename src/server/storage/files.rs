//! What storage keeps about uploaded files: who uploaded each, for which room, and, once it
//! was sent with a message, who may see it. (The bytes are in the files directory; see
//! `server::files`.)

use super::postgres::unreachable;
use super::sqlite::with;
use super::statement::Arg;
use super::{Backend, Storage, StoreError, now_ms};
use crate::protocol::{Attachment, Pixels};
use rusqlite::{OptionalExtension, params};

/// One uploaded file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    pub attachment: Attachment,
    /// The uploader's account key.
    pub owner_key: String,
    pub room: String,
    /// Sent with a message (before that, only its owner may fetch it).
    pub attached: bool,
    /// Sent with a private message: the other person's key.
    pub recipient_key: Option<String>,
}

impl StoredFile {
    /// Whether the account `viewer` may fetch it: its owner always; once sent, everyone for a
    /// public message, the two people for a private one.
    pub fn visible_to(&self, viewer: &str) -> bool {
        self.owner_key == viewer
            || (self.attached
                && self
                    .recipient_key
                    .as_deref()
                    .is_none_or(|recipient| recipient == viewer))
    }
}

const FILE_COLUMNS: &str =
    "id, name, size, content_type, width, height, owner_key, room, attached, recipient_key";

type Columns = (
    String,
    String,
    i64,
    String,
    Option<i64>,
    Option<i64>,
    String,
    String,
    bool,
    Option<String>,
);

fn from_columns(c: Columns) -> StoredFile {
    let (id, name, size, content_type, width, height, owner_key, room, attached, recipient_key) = c;
    let image = match (width, height) {
        (Some(w), Some(h)) => Some(Pixels {
            width: w as u32,
            height: h as u32,
        }),
        _ => None,
    };
    StoredFile {
        attachment: Attachment {
            id,
            name,
            size: size as u64,
            content_type,
            image,
        },
        owner_key,
        room,
        attached,
        recipient_key,
    }
}

impl Storage {
    /// Records a file just uploaded by `owner_key` for `room` (not sent yet).
    pub async fn add_file(
        &self,
        file: &Attachment,
        owner_key: &str,
        room: &str,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO files (id, owner_key, room, name, content_type, size, width, \
                   height, ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let pixels = |n: Option<u32>| n.map_or(Arg::Null, |n| Arg::Int(i64::from(n)));
        let args = vec![
            file.id.clone().into(),
            owner_key.into(),
            room.into(),
            file.name.clone().into(),
            file.content_type.clone().into(),
            (file.size as i64).into(),
            pixels(file.image.map(|p| p.width)),
            pixels(file.image.map(|p| p.height)),
            now_ms().into(),
        ];
        self.run("recording an uploaded file", sql, args)
            .await
            .map(drop)
    }

    /// Forgets the files uploaded before `before` (Unix ms) and never sent with a message;
    /// returns their ids, whose bytes the caller removes. (Link previews' pictures are sent
    /// with their message when stored, so none is ever among them.)
    pub async fn forget_unsent_files(&self, before: i64) -> Result<Vec<String>, StoreError> {
        let sql = "DELETE FROM files WHERE NOT attached AND ts < $1 RETURNING id";
        let doing = "forgetting files never sent";
        match &self.log {
            Backend::Sqlite(db) => {
                with(&db.writer, doing, move |conn| {
                    conn.prepare(sql)?
                        .query_map(params![before], |r| r.get(0))?
                        .collect()
                })
                .await
            }
            Backend::Postgres(db) => {
                let client = db.pool.get().await.map_err(unreachable)?;
                let rows = client
                    .query(sql, &[&before])
                    .await
                    .map_err(|e| StoreError::query(doing, e))?;
                Ok(rows.iter().map(|row| row.get(0)).collect())
            }
        }
    }

    /// Marks file `id` as sent (seen by the room, or by `recipient` and its owner).
    pub async fn attach_file(&self, id: &str, recipient: Option<&str>) -> Result<(), StoreError> {
        let sql = "UPDATE files SET attached = TRUE, recipient_key = $1 WHERE id = $2";
        let args = vec![recipient.map_or(Arg::Null, Arg::from), id.into()];
        self.run("attaching a file", sql, args).await.map(drop)
    }

    /// The file `id`, if there is one.
    pub async fn file(&self, id: &str) -> Result<Option<StoredFile>, StoreError> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM files WHERE id = $1");
        let id = id.to_string();
        let doing = "looking up a file";
        match &self.log {
            Backend::Sqlite(db) => {
                with(&db.reader, doing, move |conn| {
                    conn.query_row(&sql, params![id], |r| {
                        Ok(from_columns((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                            r.get(9)?,
                        )))
                    })
                    .optional()
                })
                .await
            }
            Backend::Postgres(db) => {
                let client = db.pool.get().await.map_err(unreachable)?;
                let row = client
                    .query_opt(&sql, &[&id])
                    .await
                    .map_err(|e| StoreError::query(doing, e))?;
                Ok(row.map(|r| {
                    from_columns((
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get(5),
                        r.get(6),
                        r.get(7),
                        r.get(8),
                        r.get(9),
                    ))
                }))
            }
        }
    }
}
