//! Browser APIs the components use, with the same signatures in the server build (where they
//! do nothing), so components call them without `cfg`.

use leptos::web_sys::Element;

/// Calls `changed` whenever `element` or `content` changes size (after layout, before paint),
/// until the returned guard is dropped. Used to keep a list pinned to its bottom through
/// layout changes that fire no scroll event the list could react to: the join form giving way
/// to the composer, a phone's keyboard opening, web fonts and pictures arriving.
pub fn on_resize(element: &Element, content: &Element, changed: impl Fn() + 'static) -> Resize {
    imp::on_resize(element, content, changed)
}

/// Where the join form remembers the last identity, so a reload rejoins by itself.
pub const IDENTITY_KEY: &str = "hubbub.identity";

/// After signing out: forgets the remembered identity and reloads the page, which then
/// shows the join form. Nothing on the server.
pub fn forget_identity_and_reload() {
    imp::forget_identity_and_reload()
}

/// This page's origin (`https://chat.example.com`), for links to share; empty on the server.
pub fn origin() -> String {
    imp::origin()
}

/// Remembers the email and name this browser joined with, so a reload rejoins by itself.
pub fn remember_identity(email: &str, name: &str) {
    imp::remember_identity(email, name)
}

/// The email and name this browser last joined with, if any.
pub fn saved_identity() -> Option<(String, String)> {
    imp::saved_identity()
}

/// Sends the page to `path` (a full load).
pub fn go_to(path: &str) {
    imp::go_to(path)
}

/// Calls `f` every `period`, for as long as the page lives (nothing on the server).
pub fn every(period: std::time::Duration, f: impl Fn() + 'static) {
    imp::every(period, f)
}

/// Whether the user has not yet answered the browser's notification question (false on the
/// server, and where notifications do not exist).
pub fn notifications_undecided() -> bool {
    imp::notifications_undecided()
}

/// Whether this browser has desktop notifications at all (false on the server).
pub fn has_notifications() -> bool {
    imp::has_notifications()
}

/// Asks the browser's notification question, and waits for the answer.
pub async fn ask_for_notifications() {
    imp::ask_for_notifications().await
}

/// Scrolls the message `id` inside `list` (its `data-id`) to the middle of the view and gives
/// it the keyboard focus; false if it is not there (or on the server).
pub fn bring_into_view(list: &Element, id: u64) -> bool {
    imp::bring_into_view(list, id)
}

/// The hour and minute of `ts` (Unix ms) in the reader's time zone; `None` on the server.
pub fn local_time(ts: i64) -> Option<(u32, u32)> {
    imp::local_time(ts)
}

/// Calls `f` before the next frame is drawn (after this turn's effects; nothing on the
/// server).
pub fn next_frame(f: impl FnOnce() + 'static) {
    imp::next_frame(f)
}

/// A file the person picked, dropped or pasted.
pub struct Picked(imp::PickedFile);

impl Picked {
    pub fn name(&self) -> String {
        imp::file_name(&self.0)
    }
}

/// The files an event carries: a file input's `change`, a `drop`, a `paste`.
pub fn picked(event: &leptos::web_sys::Event) -> Vec<Picked> {
    imp::picked(event)
}

/// An upload under way (`POST /api/files`).
pub struct Upload(imp::UploadHandle);

impl Upload {
    /// Stops it; `done` is then called with an error saying so.
    pub fn cancel(&self) {
        imp::cancel(&self.0)
    }
}

/// Uploads `file` for `room`, telling `progress` the percentage sent, then `done` the
/// file as the server recorded it, or why it was refused.
pub fn upload(
    file: &Picked,
    room: &str,
    progress: impl Fn(u32) + 'static,
    done: impl FnOnce(Result<crate::protocol::Attachment, String>) + 'static,
) -> Upload {
    imp::upload(&file.0, room, progress, done)
}

/// Stops watching sizes when dropped.
pub struct Resize(#[allow(dead_code)] imp::Handle);

#[cfg(feature = "hydrate")]
mod imp {
    use super::Resize;

    pub fn origin() -> String {
        leptos::prelude::window()
            .location()
            .origin()
            .unwrap_or_default()
    }

    pub fn go_to(path: &str) {
        let _ = leptos::prelude::window().location().set_href(path);
    }

    fn storage() -> Option<leptos::web_sys::Storage> {
        leptos::prelude::window().local_storage().ok().flatten()
    }

    pub fn remember_identity(email: &str, name: &str) {
        if let Some(storage) = storage() {
            let _ = storage.set_item(super::IDENTITY_KEY, &format!("{email}\n{name}"));
        }
    }

    pub fn saved_identity() -> Option<(String, String)> {
        let saved = storage()?.get_item(super::IDENTITY_KEY).ok().flatten()?;
        let (email, name) = saved.split_once('\n')?;
        Some((email.to_string(), name.to_string()))
    }

    pub fn every(period: std::time::Duration, f: impl Fn() + 'static) {
        leptos::prelude::set_interval(f, period);
    }

    // In-app browsers and some mobile ones have no `Notification`: touching it there throws
    // (a JavaScript exception through the WASM stops the app).
    pub fn has_notifications() -> bool {
        js_sys::Reflect::has(&js_sys::global(), &"Notification".into()).unwrap_or(false)
    }

    pub fn notifications_undecided() -> bool {
        has_notifications()
            && web_sys::Notification::permission() == web_sys::NotificationPermission::Default
    }

    pub async fn ask_for_notifications() {
        if !has_notifications() {
            return;
        }
        if let Ok(promise) = web_sys::Notification::request_permission() {
            let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        }
    }

    pub fn bring_into_view(list: &Element, id: u64) -> bool {
        let Ok(Some(item)) = list.query_selector(&format!("[data-id=\"{id}\"]")) else {
            return false;
        };
        let options = web_sys::ScrollIntoViewOptions::new();
        options.set_block(web_sys::ScrollLogicalPosition::Center);
        item.scroll_into_view_with_scroll_into_view_options(&options);
        if let Ok(item) = item.dyn_into::<web_sys::HtmlElement>() {
            let options = web_sys::FocusOptions::new();
            options.set_prevent_scroll(true);
            let _ = item.focus_with_options(&options);
        }
        true
    }

    pub fn next_frame(f: impl FnOnce() + 'static) {
        leptos::prelude::request_animation_frame(f);
    }

    pub fn local_time(ts: i64) -> Option<(u32, u32)> {
        let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ts as f64));
        Some((d.get_hours(), d.get_minutes()))
    }

    pub struct PickedFile(web_sys::File);

    pub fn file_name(file: &PickedFile) -> String {
        file.0.name()
    }

    pub fn picked(event: &web_sys::Event) -> Vec<super::Picked> {
        let list = if let Some(drag) = event.dyn_ref::<web_sys::DragEvent>() {
            drag.data_transfer().and_then(|d| d.files())
        } else if let Some(paste) = event.dyn_ref::<web_sys::ClipboardEvent>() {
            paste.clipboard_data().and_then(|d| d.files())
        } else {
            event
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
                .and_then(|input| input.files())
        };
        let Some(list) = list else { return Vec::new() };
        (0..list.length())
            .filter_map(|i| list.get(i))
            .map(|f| super::Picked(PickedFile(f)))
            .collect()
    }

    pub struct UploadHandle {
        xhr: web_sys::XmlHttpRequest,
        cancelled: std::rc::Rc<std::cell::Cell<bool>>,
    }

    pub fn cancel(handle: &UploadHandle) {
        handle.cancelled.set(true);
        let _ = handle.xhr.abort();
    }

    pub fn upload(
        file: &PickedFile,
        room: &str,
        progress: impl Fn(u32) + 'static,
        done: impl FnOnce(Result<crate::protocol::Attachment, String>) + 'static,
    ) -> super::Upload {
        let file = file.0.clone();
        let encode = |s: &str| String::from(js_sys::encode_uri_component(s));
        let url = format!(
            "/api/files?room={}&name={}",
            encode(room),
            encode(&file.name())
        );
        let xhr = web_sys::XmlHttpRequest::new().expect("XMLHttpRequest");
        let cancelled = std::rc::Rc::new(std::cell::Cell::new(false));
        let handle = super::Upload(UploadHandle {
            xhr: xhr.clone(),
            cancelled: cancelled.clone(),
        });
        if xhr.open_with_async("POST", &url, true).is_err() {
            done(Err("The upload could not start.".into()));
            return handle;
        }
        let kind = file.type_();
        let kind = if kind.is_empty() {
            "application/octet-stream".to_string()
        } else {
            kind
        };
        let _ = xhr.set_request_header("Content-Type", &kind);
        let on_progress =
            Closure::<dyn Fn(web_sys::ProgressEvent)>::new(move |e: web_sys::ProgressEvent| {
                if e.length_computable() && e.total() > 0.0 {
                    progress((e.loaded() / e.total() * 100.0).min(100.0) as u32);
                }
            });
        if let Ok(upload) = xhr.upload() {
            upload.set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
        }
        let done = std::cell::RefCell::new(Some(done));
        let request = xhr.clone();
        let on_end = Closure::<dyn Fn()>::new(move || {
            let Some(done) = done.borrow_mut().take() else {
                return;
            };
            let status = request.status().unwrap_or(0);
            let text = request.response_text().ok().flatten().unwrap_or_default();
            let answer = if cancelled.get() {
                Err("Cancelled.".to_string())
            } else if status == 200 {
                serde_json::from_str(&text)
                    .map_err(|_| "The server's answer was not understood.".to_string())
            } else if status == 0 {
                Err("The upload failed: the connection was lost.".to_string())
            } else {
                let reason = text.trim();
                Err(if reason.is_empty() {
                    format!("The upload failed ({status}).")
                } else {
                    reason.to_string()
                })
            };
            done(answer);
        });
        xhr.set_onloadend(Some(on_end.as_ref().unchecked_ref()));
        // One upload at a time, for as long as the page lives: keeping the callbacks costs
        // little, and they must outlive this call.
        on_progress.forget();
        on_end.forget();
        if xhr.send_with_opt_blob(Some(&file)).is_err() {
            let _ = xhr.abort();
        }
        handle
    }

    pub fn forget_identity_and_reload() {
        let window = leptos::prelude::window();
        if let Ok(Some(storage)) = window.local_storage() {
            let _ = storage.remove_item(super::IDENTITY_KEY);
        }
        let _ = window.location().reload();
    }
    use leptos::wasm_bindgen::{JsCast, closure::Closure};
    use leptos::web_sys::{Element, ResizeObserver};

    pub struct Handle {
        observer: Option<ResizeObserver>,
        // Kept alive for as long as the observer may call it.
        _callback: Closure<dyn Fn()>,
    }

    impl Drop for Handle {
        fn drop(&mut self) {
            if let Some(observer) = &self.observer {
                observer.disconnect();
            }
        }
    }

    pub fn on_resize(element: &Element, content: &Element, changed: impl Fn() + 'static) -> Resize {
        let callback = Closure::<dyn Fn()>::new(changed);
        let observer = ResizeObserver::new(callback.as_ref().unchecked_ref()).ok();
        if let Some(observer) = &observer {
            observer.observe(element);
            observer.observe(content);
        }
        Resize(Handle {
            observer,
            _callback: callback,
        })
    }
}

#[cfg(not(feature = "hydrate"))]
mod imp {
    use super::Resize;
    use leptos::web_sys::Element;

    pub struct Handle;

    pub fn forget_identity_and_reload() {}

    pub fn origin() -> String {
        String::new()
    }

    pub fn go_to(_: &str) {}

    pub fn remember_identity(_: &str, _: &str) {}

    pub fn saved_identity() -> Option<(String, String)> {
        None
    }

    pub fn every(_: std::time::Duration, _: impl Fn() + 'static) {}

    pub fn has_notifications() -> bool {
        false
    }

    pub fn notifications_undecided() -> bool {
        false
    }

    pub async fn ask_for_notifications() {}

    pub fn on_resize(_: &Element, _: &Element, _: impl Fn() + 'static) -> Resize {
        Resize(Handle)
    }

    pub fn bring_into_view(_: &Element, _: u64) -> bool {
        false
    }

    pub fn next_frame(_: impl FnOnce() + 'static) {}

    pub fn local_time(_: i64) -> Option<(u32, u32)> {
        None
    }

    /// Nothing is ever picked on the server.
    pub enum PickedFile {}

    pub fn file_name(file: &PickedFile) -> String {
        match *file {}
    }

    pub fn picked(_: &leptos::web_sys::Event) -> Vec<super::Picked> {
        Vec::new()
    }

    pub enum UploadHandle {}

    pub fn cancel(handle: &UploadHandle) {
        match *handle {}
    }

    pub fn upload(
        file: &PickedFile,
        _: &str,
        _: impl Fn(u32) + 'static,
        _: impl FnOnce(Result<crate::protocol::Attachment, String>) + 'static,
    ) -> super::Upload {
        match *file {}
    }
}
