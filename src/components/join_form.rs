//! The join form: email and username, checked here with the same rules the server applies,
//! with the verdict shown under each field (and the server's, when it disagrees). Joining
//! first signs up over HTTP (`auth::sign_up`): the account's session is an HttpOnly cookie
//! that the WebSocket upgrade then carries. Below it, signing in with a password.

use crate::auth::{Answer, sign_in, sign_up};
use crate::client::{Chat, Field, Identity, Status};
use crate::protocol::{ErrorCode, validate_email, validate_username};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;

#[cfg(feature = "hydrate")]
use crate::browser::IDENTITY_KEY;

#[component]
pub fn JoinForm() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let email = RwSignal::new(String::new());
    let username = RwSignal::new(String::new());
    let email_error = RwSignal::new(None::<String>);
    let username_error = RwSignal::new(None::<String>);

    // Server refusals land under the field they are about.
    Effect::new(move || match chat.join_error.get() {
        Some((Field::Email, message)) => email_error.set(Some(message)),
        Some((Field::Username, message)) => username_error.set(Some(message)),
        None => {}
    });

    let signing_up = RwSignal::new(false);
    // An invitation link (`?invite=…`), needed while an admin has locked sign-ups.
    let query = leptos_router::hooks::use_query_map();
    let invite = Memo::new(move |_| query.read().get("invite").unwrap_or_default());
    let connect = move |identity: Identity| {
        #[cfg(feature = "hydrate")]
        {
            if let Ok(Some(storage)) = window().local_storage() {
                let saved = format!("{}\n{}", identity.email, identity.username);
                let _ = storage.set_item(IDENTITY_KEY, &saved);
            }
            crate::client::connect(chat, identity);
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = identity;
    };
    // Signs up (or finds this browser already signed in as the name), then connects.
    let join = move |identity: Identity| {
        signing_up.set(true);
        spawn_local(async move {
            let answer = sign_up(
                identity.username.clone(),
                identity.email.clone(),
                invite.get_untracked(),
            )
            .await;
            signing_up.set(false);
            match answer {
                Ok(Answer::SignedIn(account)) => connect(Identity {
                    username: account.name,
                    email: identity.email,
                }),
                Ok(Answer::Refused { code, message }) => match code {
                    ErrorCode::InvalidEmail => email_error.set(Some(message)),
                    _ => username_error.set(Some(message)),
                },
                Ok(Answer::Done) => {}
                Err(e) => username_error.set(Some(format!("The server could not be reached: {e}"))),
            }
        });
    };

    // Coming back (reload, new tab): rejoin as before.
    #[cfg(feature = "hydrate")]
    Effect::new(move || {
        let saved = window()
            .local_storage()
            .ok()
            .flatten()
            .and_then(|s| s.get_item(IDENTITY_KEY).ok().flatten());
        if let Some((e, u)) = saved.as_deref().and_then(|s| s.split_once('\n')) {
            email.set(e.to_string());
            username.set(u.to_string());
            if chat.status.get_untracked() == Status::Idle
                && chat.join_error.get_untracked().is_none()
            {
                join(Identity {
                    username: u.to_string(),
                    email: e.to_string(),
                });
            }
        }
    });

    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        chat.join_error.set(None);
        let checked_email = validate_email(&email.get_untracked());
        let checked_name = validate_username(&username.get_untracked());
        email_error.set(checked_email.as_ref().err().map(|e| e.message.clone()));
        username_error.set(checked_name.as_ref().err().map(|e| e.message.clone()));
        if let (Ok(_), Ok(name)) = (checked_email, checked_name) {
            join(Identity {
                username: name,
                email: email.get_untracked().trim().to_string(),
            });
        }
    };
    let busy = move || chat.status.get() == Status::Connecting || signing_up.get();
    let ready = super::hydrated();

    // `autofocus` does nothing on a field that was disabled at load: focus it once enabled,
    // unless the person has already put the focus somewhere else.
    let email_input = NodeRef::<leptos::html::Input>::new();
    #[cfg(feature = "hydrate")]
    Effect::new(move || {
        if !ready.get() {
            return;
        }
        // On the next frame, once the `disabled` attribute is gone.
        request_animation_frame(move || {
            let idle = document()
                .active_element()
                .is_none_or(|el| Some(el) == document().body().map(Into::into));
            if let (true, Some(input)) = (idle, email_input.get_untracked()) {
                let _ = input.focus();
            }
        });
    });

    view! {
        <form class="join" on:submit=submit novalidate>
            <h2>"Join the conversation"</h2>
            // Says why the form is disabled until the script runs (and, without JavaScript,
            // that it never will). Not a <noscript>: its content would not hydrate.
            <p class="hint" hidden=move || ready.get()>
                "Getting the chat ready… (it needs JavaScript)"
            </p>
            <FormField
                id="join-email"
                label="Email"
                autofocus=true
                kind="email"
                autocomplete="email"
                placeholder="you@example.com"
                value=email
                error=email_error
                ready
                node_ref=email_input
            />
            <FormField
                id="join-username"
                label="Username"
                kind="text"
                autocomplete="nickname"
                placeholder="ada"
                value=username
                error=username_error
                ready
            />
            <p class="hint">
                "Your email is used for your Gravatar picture. Other people see only its hash \
                 (which can be guessed for common addresses), never the address itself. \
                 Joining creates your account: the name is yours on this server."
            </p>
            <Show when=move || !invite.get().is_empty()>
                <p class="hint">"You were invited: joining creates your account."</p>
            </Show>
            <button type="submit" disabled=move || busy() || !ready.get()>
                {move || if busy() { "Joining…" } else { "Join chat" }}
            </button>
        </form>
        <SignInForm connect ready />
    }
}

/// Name and password, for an account that has one (set from the account menu).
#[component]
fn SignInForm(
    connect: impl Fn(Identity) + Copy + 'static,
    ready: ReadSignal<bool>,
) -> impl IntoView {
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let username_error = RwSignal::new(None::<String>);
    let password_error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        let (name, secret) = (username.get_untracked(), password.get_untracked());
        spawn_local(async move {
            let answer = sign_in(name, secret).await;
            busy.set(false);
            match answer {
                Ok(Answer::SignedIn(account)) => {
                    password.set(String::new());
                    connect(Identity {
                        username: account.name,
                        email: String::new(),
                    })
                }
                Ok(Answer::Refused { message, .. }) => password_error.set(Some(message)),
                Ok(Answer::Done) => {}
                Err(e) => password_error.set(Some(format!("The server could not be reached: {e}"))),
            }
        });
    };
    view! {
        <details class="join sign-in">
        <summary>"Have a password? Sign in"</summary>
        <form on:submit=submit novalidate>
            <p class="hint">"With the password you set for your account in another browser."</p>
            <FormField
                id="sign-in-username"
                label="Account name"
                kind="text"
                autocomplete="username"
                placeholder="ada"
                value=username
                error=username_error
                ready
            />
            <FormField
                id="sign-in-password"
                label="Password"
                kind="password"
                autocomplete="current-password"
                placeholder=""
                value=password
                error=password_error
                ready
            />
            <button type="submit" disabled=move || busy.get() || !ready.get()>
                {move || if busy.get() { "Signing in…" } else { "Sign in" }}
            </button>
        </form>
        </details>
    }
}

/// A labelled input with its inline error underneath (announced via `aria-describedby`).
#[component]
fn FormField(
    id: &'static str,
    label: &'static str,
    #[prop(optional)] autofocus: bool,
    kind: &'static str,
    autocomplete: &'static str,
    placeholder: &'static str,
    value: RwSignal<String>,
    error: RwSignal<Option<String>>,
    /// Disabled until hydrated (see [`super::hydrated`]).
    ready: ReadSignal<bool>,
    #[prop(optional)] node_ref: NodeRef<leptos::html::Input>,
) -> impl IntoView {
    let error_id = format!("{id}-error");
    view! {
        <div class="field">
            <label for=id>{label}</label>
            <input
                id=id
                node_ref=node_ref
                disabled=move || !ready.get()
                autofocus=autofocus
                type=kind
                autocomplete=autocomplete
                placeholder=placeholder
                aria-invalid=move || error.get().is_some().to_string()
                aria-describedby=error_id.clone()
                prop:value=value
                on:input=move |ev| {
                    value.set(event_target_value(&ev));
                    error.set(None);
                }
            />
            <p id=error_id class="field-error">{move || error.get()}</p>
        </div>
    }
}
