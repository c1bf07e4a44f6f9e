//! The join form: email and username, checked here with the same rules the server applies,
//! with the verdict shown under each field (and the server's, when it disagrees). Joining
//! first signs up over HTTP (`auth::sign_up`): the account's session is an HttpOnly cookie
//! that the WebSocket upgrade then carries. Below it, signing in with a password.
//!
//! Both are real HTML forms posting to their server functions, so they work before the
//! script has arrived (a slow link) or without it: the server answers with the cookie and a
//! redirect back to the page, which joins by itself once the script runs; a refusal comes
//! back in the URL (Leptos's `__err`) and is shown under the field. The inputs are not bound
//! to signals (`prop:value`): hydration would wipe what was typed before it; values are read
//! from the fields themselves.

use crate::auth::{Answer, sign_in, sign_up};
use crate::client::{Chat, Field, Identity, Status};
use crate::protocol::{ErrorCode, validate_email, validate_username};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;

#[component]
pub fn JoinForm() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let email_input = NodeRef::<leptos::html::Input>::new();
    let username_input = NodeRef::<leptos::html::Input>::new();
    let email_error = RwSignal::new(None::<String>);
    let username_error = RwSignal::new(None::<String>);

    // A refusal of a form posted without the script, from the URL the server sent us back to.
    let query = leptos_router::hooks::use_query_map();
    if let Some(message) = refusal_in_url(&query.read_untracked(), "sign_up") {
        username_error.set(Some(message));
    }
    // Server refusals land under the field they are about.
    Effect::new(move || match chat.join_error.get() {
        Some((Field::Email, message)) => email_error.set(Some(message)),
        Some((Field::Username, message)) => username_error.set(Some(message)),
        None => {}
    });

    let signing_up = RwSignal::new(false);
    // An invitation link (`?invite=…`), needed while an admin has locked sign-ups.
    let invite = Memo::new(move |_| query.read().get("invite").unwrap_or_default());
    let connect = move |identity: Identity| {
        crate::browser::remember_identity(&identity.email, &identity.username);
        crate::client::connect(chat, identity);
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

    // Coming back (reload, new tab, or the redirect after a form posted without the script):
    // a browser signed in joins as its account; otherwise as the name it last used, if any.
    // (Effects run in the browser only.)
    Effect::new(move || {
        let saved = crate::browser::saved_identity();
        if let (Some((e, u)), Some(email), Some(name)) = (
            &saved,
            email_input.get_untracked(),
            username_input.get_untracked(),
        ) {
            email.set_value(e);
            name.set_value(u);
        }
        spawn_local(async move {
            let idle = || {
                chat.status.get_untracked() == Status::Idle
                    && chat.join_error.get_untracked().is_none()
                    && username_error.get_untracked().is_none()
            };
            if let Ok(Some(account)) = crate::auth::me().await {
                if idle() {
                    let email = saved.map(|(e, _)| e).unwrap_or_default();
                    connect(Identity {
                        username: account.name,
                        email,
                    });
                }
            } else if let Some((e, u)) = saved
                && idle()
            {
                join(Identity {
                    username: u,
                    email: e,
                });
            }
        });
    });

    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        chat.join_error.set(None);
        let value = |input: NodeRef<leptos::html::Input>| {
            input.get_untracked().map(|i| i.value()).unwrap_or_default()
        };
        let (email, name) = (value(email_input), value(username_input));
        let checked_email = validate_email(&email);
        let checked_name = validate_username(&name);
        email_error.set(checked_email.as_ref().err().map(|e| e.message.clone()));
        username_error.set(checked_name.as_ref().err().map(|e| e.message.clone()));
        if let (Ok(_), Ok(name)) = (checked_email, checked_name) {
            join(Identity {
                username: name,
                email: email.trim().to_string(),
            });
        }
    };
    let busy = move || chat.status.get() == Status::Connecting || signing_up.get();
    let ready = super::hydrated();

    view! {
        <form class="join" method="post" action="/api/sign_up" on:submit=submit novalidate>
            <h2>"Join the conversation"</h2>
            // Not a <noscript>: its content would not hydrate.
            <p class="hint" hidden=move || ready.get()>"Getting the chat ready…"</p>
            <FormField
                id="join-email"
                name="email"
                label="Email"
                autofocus=true
                kind="email"
                autocomplete="email"
                placeholder="you@example.com"
                error=email_error
                node_ref=email_input
            />
            <FormField
                id="join-username"
                name="username"
                label="Username"
                kind="text"
                autocomplete="nickname"
                placeholder="ada"
                error=username_error
                node_ref=username_input
            />
            <input type="hidden" name="invite" value=move || invite.get() />
            <p class="hint">
                "Your email is used for your Gravatar picture. Other people see only its hash \
                 (which can be guessed for common addresses), never the address itself. \
                 Joining creates your account: the name is yours on this server."
            </p>
            <Show when=move || !invite.get().is_empty()>
                <p class="hint">"You were invited: joining creates your account."</p>
            </Show>
            <button type="submit" disabled=busy>
                {move || if busy() { "Joining…" } else { "Join chat" }}
            </button>
        </form>
        <SignInForm connect />
    }
}

/// The message of a refusal the server put in this page's URL (`__err`) after a form for
/// server function `endpoint` was posted without the script.
fn refusal_in_url(query: &leptos_router::params::ParamsMap, endpoint: &str) -> Option<String> {
    let path = query.get("__path")?;
    if !path.ends_with(endpoint) {
        return None;
    }
    let encoded = query.get("__err")?;
    let error = leptos::server_fn::error::ServerFnUrlError::<ServerFnError>::decode_err(&encoded);
    Some(match error {
        ServerFnError::ServerError(message) => message,
        other => other.to_string(),
    })
}

/// Name and password, for an account that has one (set from the account menu).
#[component]
fn SignInForm(connect: impl Fn(Identity) + Copy + 'static) -> impl IntoView {
    let username_input = NodeRef::<leptos::html::Input>::new();
    let password_input = NodeRef::<leptos::html::Input>::new();
    let username_error = RwSignal::new(None::<String>);
    let password_error = RwSignal::new(None::<String>);
    let query = leptos_router::hooks::use_query_map();
    let refused = refusal_in_url(&query.read_untracked(), "sign_in");
    let open = refused.is_some();
    password_error.set(refused);
    let busy = RwSignal::new(false);
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        let value = |input: NodeRef<leptos::html::Input>| {
            input.get_untracked().map(|i| i.value()).unwrap_or_default()
        };
        let (name, secret) = (value(username_input), value(password_input));
        spawn_local(async move {
            let answer = sign_in(name, secret).await;
            busy.set(false);
            match answer {
                Ok(Answer::SignedIn(account)) => {
                    if let Some(input) = password_input.get_untracked() {
                        input.set_value("");
                    }
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
        <details class="join sign-in" open=open>
        <summary>"Have a password? Sign in"</summary>
        <form method="post" action="/api/sign_in" on:submit=submit novalidate>
            <p class="hint">"With the password you set for your account in another browser."</p>
            <FormField
                id="sign-in-username"
                name="username"
                label="Account name"
                kind="text"
                autocomplete="username"
                placeholder="ada"
                error=username_error
                node_ref=username_input
            />
            <FormField
                id="sign-in-password"
                name="password"
                label="Password"
                kind="password"
                autocomplete="current-password"
                placeholder=""
                error=password_error
                node_ref=password_input
            />
            <button type="submit" disabled=move || busy.get()>
                {move || if busy.get() { "Signing in…" } else { "Sign in" }}
            </button>
        </form>
        </details>
    }
}

/// A labelled input with its inline error underneath (announced via `aria-describedby`).
/// Uncontrolled: what is typed stays the field's own (see the module comment).
#[component]
fn FormField(
    id: &'static str,
    name: &'static str,
    label: &'static str,
    #[prop(optional)] autofocus: bool,
    kind: &'static str,
    autocomplete: &'static str,
    placeholder: &'static str,
    error: RwSignal<Option<String>>,
    node_ref: NodeRef<leptos::html::Input>,
) -> impl IntoView {
    let error_id = format!("{id}-error");
    view! {
        <div class="field">
            <label for=id>{label}</label>
            <input
                id=id
                name=name
                node_ref=node_ref
                autofocus=autofocus
                type=kind
                autocomplete=autocomplete
                placeholder=placeholder
                aria-invalid=move || error.get().is_some().to_string()
                aria-describedby=error_id.clone()
                on:input=move |_| error.set(None)
            />
            <p id=error_id class="field-error">{move || error.get()}</p>
        </div>
    }
}
