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

/// Asks the browser's notification question, and waits for the answer.
pub async fn ask_for_notifications() {
    imp::ask_for_notifications().await
}

/// Scrolls the message `id` inside `list` (its `data-id`) to the middle of the view and gives
/// it the keyboard focus; false if it is not there (or on the server).
pub fn bring_into_view(list: &Element, id: u64) -> bool {
    imp::bring_into_view(list, id)
}

/// Calls `f` before the next frame is drawn (after this turn's effects; nothing on the
/// server).
pub fn next_frame(f: impl FnOnce() + 'static) {
    imp::next_frame(f)
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

    pub fn notifications_undecided() -> bool {
        web_sys::Notification::permission() == web_sys::NotificationPermission::Default
    }

    pub async fn ask_for_notifications() {
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
}
