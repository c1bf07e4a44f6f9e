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

    pub fn on_resize(_: &Element, _: &Element, _: impl Fn() + 'static) -> Resize {
        Resize(Handle)
    }
}
