//! The upload of a file for the message box (browser only): one at a time, its progress in
//! `chat.attaching`, cancelled by a newer one or by the person.

use super::{Attaching, Chat};
use crate::browser::Picked;
use crate::protocol::Attachment;
use leptos::prelude::*;

/// Starts uploading `file` for the message box (replacing any file there).
pub fn attach(chat: Chat, file: Picked) {
    cancel(chat);
    chat.attaching.set(Some(Attaching {
        name: file.name(),
        percent: 0,
        ready: None,
        failed: None,
    }));
    let room = chat.room.get_untracked();
    let generation = chat.upload_generation.get_value();
    let current = move || chat.upload_generation.get_value() == generation;
    let progress = move |percent| {
        if !current() {
            return;
        }
        chat.attaching.update(|a| {
            if let Some(a) = a {
                a.percent = percent;
            }
        })
    };
    let done = move |answer: Result<Attachment, String>| {
        if !current() {
            return;
        }
        chat.upload.set_value(None);
        chat.attaching.update(|a| {
            if let Some(a) = a {
                match answer {
                    Ok(file) => {
                        a.percent = 100;
                        a.ready = Some(file);
                    }
                    Err(reason) => a.failed = Some(reason),
                }
            }
        })
    };
    let upload = crate::browser::upload(&file, &room, progress, done);
    chat.upload.set_value(Some(upload));
}

/// Stops the upload under way, or takes the uploaded file out of the message box.
pub fn cancel(chat: Chat) {
    chat.upload_generation.update_value(|g| *g += 1);
    // Taken out before cancelling: cancelling calls the upload's answer right away.
    let under_way = chat.upload.try_update_value(Option::take).flatten();
    if let Some(upload) = under_way {
        upload.cancel();
    }
    chat.attaching.set(None);
}
