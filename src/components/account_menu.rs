//! The account menu, once joined: set or change the password (so the account can sign in
//! from another browser), sign out here, or sign out of every browser.

use crate::auth::{
    AccountInfo, Answer, ApiToken, AuditLine, api_tokens, audit_log, create_api_token,
    create_invite, lock_signups, me, revoke_api_token, set_password, sign_out, signups_locked,
};
use crate::client::Chat;
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;

#[component]
pub fn AccountMenu() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let account = RwSignal::new(None::<AccountInfo>);
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let said = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    // Read when the menu opens: whether a password is set decides what the form asks.
    let load = move || {
        spawn_local(async move {
            if let Ok(found) = me().await {
                account.set(found);
            }
        });
    };
    let save = move |ev: SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        let (old, fresh) = (current.get_untracked(), new.get_untracked());
        spawn_local(async move {
            let answer = set_password(old, fresh).await;
            busy.set(false);
            match answer {
                Ok(Answer::SignedIn(info)) => {
                    account.set(Some(info));
                    current.set(String::new());
                    new.set(String::new());
                    said.set(Some(
                        "Password saved. Your other browsers were signed out.".into(),
                    ));
                }
                Ok(Answer::Refused { message, .. }) => said.set(Some(message)),
                Ok(Answer::Done) => {}
                Err(e) => said.set(Some(format!("The server could not be reached: {e}"))),
            }
        });
    };
    let leave = move |everywhere: bool| {
        spawn_local(async move {
            match sign_out(everywhere).await {
                Ok(_) => crate::browser::forget_identity_and_reload(),
                Err(e) => chat.alert.set(Some(format!("Could not sign out: {e}"))),
            }
        });
    };
    let has_password = move || account.get().is_some_and(|a| a.has_password);
    view! {
        <details class="account-menu" on:toggle=move |_| load()>
            <summary>"Account"</summary>
            <div class="account-panel">
                <p class="hint">
                    {move || if has_password() {
                        "You can sign in from other browsers with your name and password."
                    } else {
                        "Without a password, your account lives only in this browser's session. \
                         Set one to sign in from other browsers."
                    }}
                </p>
                <form on:submit=save novalidate>
                    <Show when=has_password>
                        <label for="current-password">"Current password"</label>
                        <input
                            id="current-password"
                            type="password"
                            autocomplete="current-password"
                            prop:value=current
                            on:input=move |ev| current.set(event_target_value(&ev))
                        />
                    </Show>
                    <label for="new-password">
                        {move || if has_password() { "New password" } else { "Password" }}
                    </label>
                    <input
                        id="new-password"
                        type="password"
                        autocomplete="new-password"
                        minlength="8"
                        prop:value=new
                        on:input=move |ev| new.set(event_target_value(&ev))
                    />
                    <button type="submit" disabled=move || busy.get()>
                        {move || if has_password() { "Change password" } else { "Set password" }}
                    </button>
                    <p class="field-error" role="status">{move || said.get()}</p>
                </form>
                <ApiTokens />
                <Show when=move || account.get().is_some_and(|a| a.admin)>
                    <SignUps />
                    <AdminLog />
                </Show>
                <button type="button" on:click=move |_| leave(false)>"Sign out"</button>
                <button type="button" on:click=move |_| leave(true)>"Sign out of every browser"</button>
            </div>
        </details>
    }
}

/// Admins: what admins did, newest first.
#[component]
fn AdminLog() -> impl IntoView {
    let lines = RwSignal::new(None::<Result<Vec<AuditLine>, String>>);
    let show = move |_| {
        spawn_local(async move {
            lines.set(Some(audit_log().await.map_err(|e| e.to_string())));
        });
    };
    view! {
        <button type="button" on:click=show>"Show the admin log"</button>
        {move || lines.get().map(|found| match found {
            Ok(lines) if lines.is_empty() => view! { <p class="hint">"No admin actions yet."</p> }.into_any(),
            Ok(lines) => view! {
                <ol class="audit-log" aria-label="Admin log">
                    {lines.into_iter().map(|line| view! {
                        <li>
                            <time>{super::clock(line.ts, true)}</time> " "
                            {line.actor} " " {line.action} " " {line.subject}
                        </li>
                    }).collect_view()}
                </ol>
            }.into_any(),
            Err(e) => view! { <p class="field-error">{e}</p> }.into_any(),
        })}
    }
}

/// Admins: lock sign-ups (invitation only) or open them, and make invitation links.
#[component]
fn SignUps() -> impl IntoView {
    let locked = RwSignal::new(None::<bool>);
    let link = RwSignal::new(None::<String>);
    spawn_local(async move {
        if let Ok(now) = signups_locked().await {
            locked.set(Some(now));
        }
    });
    let toggle = move |_| {
        let lock = !locked.get_untracked().unwrap_or(false);
        spawn_local(async move {
            if lock_signups(lock).await.is_ok() {
                locked.set(Some(lock));
            }
        });
    };
    let invite = move |_| {
        spawn_local(async move {
            if let Ok(path) = create_invite().await {
                let origin = crate::browser::origin();
                link.set(Some(format!("{origin}{path}")));
            }
        });
    };
    view! {
        <p class="hint">
            {move || match locked.get() {
                Some(true) => "Sign-ups are locked: new accounts need an invitation.",
                Some(false) => "Anyone can sign up.",
                None => "",
            }}
        </p>
        <button type="button" on:click=toggle>
            {move || if locked.get().unwrap_or(false) { "Open sign-ups" } else { "Lock sign-ups" }}
        </button>
        <button type="button" on:click=invite>"Create an invitation link"</button>
        <Show when=move || link.get().is_some()>
            <label for="invite-link">"Invitation link (one use, a week)"</label>
            <input id="invite-link" readonly prop:value=move || link.get().unwrap_or_default() />
        </Show>
    }
}

/// API tokens for bots and scripts: make one (its secret shown once), see and revoke them.
#[component]
fn ApiTokens() -> impl IntoView {
    let tokens = RwSignal::new(Vec::<ApiToken>::new());
    let label = RwSignal::new(String::new());
    let fresh = RwSignal::new(None::<String>);
    let said = RwSignal::new(None::<String>);
    let reload = move || {
        spawn_local(async move {
            if let Ok(list) = api_tokens().await {
                tokens.set(list);
            }
        });
    };
    reload();
    let create = move |ev: SubmitEvent| {
        ev.prevent_default();
        let name = label.get_untracked();
        spawn_local(async move {
            match create_api_token(name).await {
                Ok(Ok(secret)) => {
                    fresh.set(Some(secret));
                    said.set(None);
                    label.set(String::new());
                    reload();
                }
                Ok(Err(message)) => said.set(Some(message)),
                Err(e) => said.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <form class="api-tokens" on:submit=create novalidate>
            <label for="token-label">"New API token, named"</label>
            <input
                id="token-label"
                placeholder="deploy bot"
                prop:value=label
                on:input=move |ev| label.set(event_target_value(&ev))
            />
            <button type="submit">"Create API token"</button>
            <p class="field-error" role="status">{move || said.get()}</p>
        </form>
        <Show when=move || fresh.get().is_some()>
            <label for="token-secret">"Your token (shown this once)"</label>
            <input id="token-secret" readonly prop:value=move || fresh.get().unwrap_or_default() />
        </Show>
        <ul class="tokens" aria-label="API tokens">
            <For each=move || tokens.get() key=|t| t.id.clone() let:token>
                {
                    let id = token.id.clone();
                    let revoke = move |_| {
                        let id = id.clone();
                        spawn_local(async move {
                            let _ = revoke_api_token(id).await;
                            reload();
                        });
                    };
                    let name = token.label.clone();
                    view! {
                        <li>
                            {token.label.clone()}
                            <button type="button" aria-label=format!("Revoke {name}") on:click=revoke>"Revoke"</button>
                        </li>
                    }
                }
            </For>
        </ul>
    }
}
