//! Signing up, in and out over HTTP: Leptos server functions, so the browser's session is an
//! `HttpOnly` cookie that scripts never see. The same signatures under both features (the
//! browser gets a fetch, the server the body), so components carry no `cfg`. The rules are
//! `server::accounts`'s, shared with the WebSocket join.
//!
//! Refusals are answers, not errors: [`Answer::Refused`] carries the protocol's error code
//! and a sentence, so the form can put it under the right field.

use crate::protocol::ErrorCode;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Who is signed in, as the page needs to know it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub name: String,
    pub avatar: String,
    /// Whether a password is set: without one, the account lives in its browsers' sessions.
    pub has_password: bool,
    pub admin: bool,
}

/// What an account form's request came to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    SignedIn(AccountInfo),
    Done,
    Refused { code: ErrorCode, message: String },
}

/// Creates the account for a free name (name + email, as the seed asked) and signs this
/// browser in. A browser already signed in as that name just stays signed in.
/// `invite` is the code of an invitation link (empty without one), needed while an admin has
/// locked sign-ups.
#[server(endpoint = "sign_up")]
pub async fn sign_up(
    username: String,
    email: String,
    #[server(default)] invite: String,
) -> Result<Answer, ServerFnError> {
    imp::sign_up(username, email, invite).await
}

/// Whether new accounts need an invitation (the join form says so up front).
#[server(endpoint = "signups_locked")]
pub async fn signups_locked() -> Result<bool, ServerFnError> {
    imp::signups_locked().await
}

/// Admins: locks sign-ups (invitation only) or opens them again.
#[server(endpoint = "lock_signups")]
pub async fn lock_signups(locked: bool) -> Result<Answer, ServerFnError> {
    imp::lock_signups(locked).await
}

/// Admins: a new single-use invitation link (a path on this site), valid for a week.
#[server(endpoint = "create_invite")]
pub async fn create_invite() -> Result<String, ServerFnError> {
    imp::create_invite().await
}

/// Name and password: signs this browser in.
#[server(endpoint = "sign_in")]
pub async fn sign_in(username: String, password: String) -> Result<Answer, ServerFnError> {
    imp::sign_in(username, password).await
}

/// Signs this browser out, or every browser of the account (`everywhere`).
#[server(endpoint = "sign_out")]
pub async fn sign_out(everywhere: bool) -> Result<Answer, ServerFnError> {
    imp::sign_out(everywhere).await
}

/// Sets or changes the password (`current` is needed once one is set); every other session of
/// the account ends.
#[server(endpoint = "set_password")]
pub async fn set_password(current: String, new: String) -> Result<Answer, ServerFnError> {
    imp::set_password(current, new).await
}

/// Admins: the newest admin actions (who did what to whom, when), newest first.
#[server(endpoint = "audit_log")]
pub async fn audit_log() -> Result<Vec<AuditLine>, ServerFnError> {
    imp::audit_log().await
}

/// One admin action, as the audit log shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLine {
    /// Unix milliseconds.
    pub ts: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
}

/// A new API token for this account, for a bot or script (`Authorization: Bearer` on `/ws`):
/// the secret is in the answer this once, never again.
#[server(endpoint = "create_api_token")]
pub async fn create_api_token(label: String) -> Result<Result<String, String>, ServerFnError> {
    imp::create_api_token(label).await
}

/// This account's API tokens (names and dates, never the secrets).
#[server(endpoint = "api_tokens")]
pub async fn api_tokens() -> Result<Vec<ApiToken>, ServerFnError> {
    imp::api_tokens().await
}

/// Revokes one of this account's API tokens: connections using it are refused from now on.
#[server(endpoint = "revoke_api_token")]
pub async fn revoke_api_token(id: String) -> Result<Answer, ServerFnError> {
    imp::revoke_api_token(id).await
}

/// An API token in the list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub label: String,
    pub created_ms: i64,
}

/// The account this browser is signed in as.
#[server(endpoint = "me")]
pub async fn me() -> Result<Option<AccountInfo>, ServerFnError> {
    imp::me().await
}

#[cfg(feature = "ssr")]
mod imp {
    use super::{AccountInfo, Answer};
    use crate::protocol::ErrorCode;
    use crate::server::accounts::{self, BROWSER_SESSION_DAYS, COOKIE, Refused};
    use crate::server::hub::Hub;
    use crate::server::storage::{Account, SecretKind};
    use axum::extract::ConnectInfo;
    use axum::http::{HeaderMap, HeaderValue, header};
    use leptos::prelude::*;
    use std::net::SocketAddr;
    use std::sync::Arc;

    fn info(account: &Account) -> AccountInfo {
        AccountInfo {
            name: account.name.clone(),
            avatar: account.avatar.clone(),
            has_password: account.password_hash.is_some(),
            admin: account.admin,
        }
    }

    fn hub() -> Result<Arc<Hub>, ServerFnError> {
        use_context::<Arc<Hub>>().ok_or_else(|| ServerFnError::new("the hub is not available"))
    }

    fn answer(refused: Refused) -> Result<Answer, ServerFnError> {
        match refused {
            Refused::Invalid(invalid) => Ok(Answer::Refused {
                code: invalid.code,
                message: invalid.message,
            }),
            Refused::Store(e) => {
                tracing::error!("{e}");
                Ok(Answer::Refused {
                    code: ErrorCode::Unavailable,
                    message: "the server cannot reach its database right now; try again".into(),
                })
            }
        }
    }

    /// What a form's request says about who sent it.
    struct Request {
        headers: HeaderMap,
        /// Posted by the HTML form itself (no script yet): the answer is a redirect back to
        /// the page, and a refusal travels in its URL (Leptos's `__err`) for the page to show.
        plain_form: bool,
        /// The client's address (behind a trusted proxy, the one it forwarded).
        ip: std::net::IpAddr,
        via_trusted_proxy: bool,
    }

    async fn request(hub: &Hub) -> Result<Request, ServerFnError> {
        let headers: HeaderMap = leptos_axum::extract().await?;
        let ConnectInfo(peer): ConnectInfo<SocketAddr> = leptos_axum::extract().await?;
        let trusted = &hub.config.trusted_proxies;
        let ip = crate::server::client_ip(peer.ip(), &headers, trusted);
        let peer = peer.ip().to_canonical();
        let via_trusted_proxy = trusted.iter().any(|t| t.to_canonical() == peer);
        let plain_form = headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        Ok(Request {
            headers,
            ip,
            via_trusted_proxy,
            plain_form,
        })
    }

    /// The session cookie: `HttpOnly` (scripts never see it), `SameSite=Lax`, `Secure` when
    /// the page was loaded over https. `None` clears it.
    fn set_cookie(request: &Request, secret: Option<&str>) {
        let headers = &request.headers;
        // `X-Forwarded-Proto` only counts from a trusted proxy (anyone can write it), and
        // any hop that says https makes the cookie Secure.
        let https = headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_some_and(|o| o.starts_with("https://"))
            || (request.via_trusted_proxy
                && headers
                    .get_all("x-forwarded-proto")
                    .iter()
                    .filter_map(|p| p.to_str().ok())
                    .flat_map(|p| p.split(','))
                    .any(|p| p.trim().eq_ignore_ascii_case("https")));
        let mut cookie = cookie::Cookie::build((COOKIE, secret.unwrap_or("").to_string()))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .secure(https);
        cookie = match secret {
            Some(_) => cookie.max_age(cookie::time::Duration::days(BROWSER_SESSION_DAYS)),
            None => cookie.max_age(cookie::time::Duration::ZERO),
        };
        if let (Some(response), Ok(value)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            HeaderValue::from_str(&cookie.build().to_string()),
        ) {
            response.append_header(header::SET_COOKIE, value);
        }
    }

    /// The signed-in account and its session secret.
    async fn current(
        hub: &Hub,
        headers: &HeaderMap,
    ) -> Result<Option<(Account, String)>, ServerFnError> {
        let (cookie, _) = accounts::secrets(headers);
        let Some(secret) = cookie else {
            return Ok(None);
        };
        // The database's own words stay in the log: they can name its host.
        // Only a browser session: a bot's token sent as a cookie is not one.
        let kinds = [crate::server::storage::SecretKind::Browser];
        let account = hub.accounts.by_secret(&secret, &kinds).await.map_err(|e| {
            tracing::error!("{e}");
            ServerFnError::new("the server cannot reach its database right now; try again")
        })?;
        Ok(account.map(|a| (a, secret)))
    }

    pub async fn sign_up(
        username: String,
        email: String,
        invite: String,
    ) -> Result<Answer, ServerFnError> {
        let hub = hub()?;
        let request = request(&hub).await?;
        let (headers, ip) = (&request.headers, request.ip);
        let same = |a: &Account| {
            crate::protocol::name_key(username.trim()) == crate::protocol::name_key(&a.name)
        };
        if let Some((account, _)) = current(&hub, headers).await? {
            if same(&account) {
                return Ok(Answer::SignedIn(info(&account)));
            }
            // Another account would leave this one's session behind, and an account without
            // a password is only reachable through its sessions.
            let refused = Answer::Refused {
                code: ErrorCode::UsernameTaken,
                message: format!(
                    "this browser is signed in as “{}”: sign out first (Account menu) to \
                     create another account",
                    account.name
                ),
            };
            return for_form(&request, Ok(refused));
        }
        match hub
            .accounts
            .sign_up(ip, &username, &email, Some(&invite), SecretKind::Browser)
            .await
        {
            Ok((account, secret)) => {
                set_cookie(&request, Some(&secret));
                Ok(Answer::SignedIn(info(&account)))
            }
            Err(refused) => for_form(&request, answer(refused)),
        }
    }

    /// For a form posted without the script, a refusal is an error, which Leptos puts in the
    /// URL it redirects back to (the join form shows it from there).
    fn for_form(
        request: &Request,
        answered: Result<Answer, ServerFnError>,
    ) -> Result<Answer, ServerFnError> {
        match answered {
            Ok(Answer::Refused { message, .. }) if request.plain_form => {
                Err(ServerFnError::new(message))
            }
            other => other,
        }
    }

    pub async fn sign_in(username: String, password: String) -> Result<Answer, ServerFnError> {
        let hub = hub()?;
        let request = request(&hub).await?;
        match hub.accounts.sign_in(request.ip, &username, &password).await {
            Ok((account, secret)) => {
                set_cookie(&request, Some(&secret));
                Ok(Answer::SignedIn(info(&account)))
            }
            Err(refused) => for_form(&request, answer(refused)),
        }
    }

    pub async fn sign_out(everywhere: bool) -> Result<Answer, ServerFnError> {
        let hub = hub()?;
        let request = request(&hub).await?;
        let headers = &request.headers;
        if let Some((account, secret)) = current(&hub, headers).await? {
            let ended = if everywhere {
                hub.accounts.sign_out_everywhere(&account).await
            } else {
                hub.accounts.sign_out(&secret).await
            };
            if let Err(e) = ended {
                return answer(Refused::Store(e));
            }
            if everywhere {
                hub.close_account(&account.name, crate::protocol::close::SIGNED_OUT);
            }
        }
        set_cookie(&request, None);
        Ok(Answer::Done)
    }

    pub async fn set_password(
        current_password: String,
        new: String,
    ) -> Result<Answer, ServerFnError> {
        let hub = hub()?;
        let request = request(&hub).await?;
        let (headers, ip) = (&request.headers, request.ip);
        let Some((account, secret)) = current(&hub, headers).await? else {
            return Ok(Answer::Refused {
                code: ErrorCode::NotSignedIn,
                message: "sign in first".into(),
            });
        };
        let current_password = Some(current_password.as_str()).filter(|p| !p.is_empty());
        match hub
            .accounts
            .set_password(ip, &account, current_password, &new, &secret)
            .await
        {
            Ok(()) => {
                // Every open connection of the account is closed; this browser's reconnect at
                // once with its session, the others find theirs ended.
                hub.close_account(&account.name, crate::protocol::close::SESSIONS_ENDED);
                let mut account = account;
                account.password_hash = Some(String::new());
                Ok(Answer::SignedIn(info(&account)))
            }
            Err(refused) => answer(refused),
        }
    }

    /// The signed-in admin, or an error for anyone else.
    async fn admin(hub: &Hub) -> Result<Account, ServerFnError> {
        let request = request(hub).await?;
        match current(hub, &request.headers).await? {
            Some((account, _)) if account.admin => Ok(account),
            _ => Err(ServerFnError::new("only admins can do this")),
        }
    }

    fn unavailable(e: crate::server::storage::StoreError) -> ServerFnError {
        tracing::error!("{e}");
        ServerFnError::new("the server cannot reach its database right now; try again")
    }

    pub async fn signups_locked() -> Result<bool, ServerFnError> {
        hub()?.accounts.signups_locked().await.map_err(unavailable)
    }

    pub async fn lock_signups(locked: bool) -> Result<Answer, ServerFnError> {
        let hub = hub()?;
        let admin = admin(&hub).await?;
        hub.accounts
            .lock_signups(locked)
            .await
            .map_err(unavailable)?;
        let action = if locked {
            "locked sign-ups"
        } else {
            "opened sign-ups"
        };
        hub.record(&admin.name, action, "(invitation only while locked)")
            .await;
        Ok(Answer::Done)
    }

    pub async fn create_invite() -> Result<String, ServerFnError> {
        let hub = hub()?;
        let admin = admin(&hub).await?;
        let code = hub
            .accounts
            .create_invite(&admin.name)
            .await
            .map_err(unavailable)?;
        hub.record(&admin.name, "created", "an invitation").await;
        Ok(format!("/?invite={code}"))
    }

    pub async fn audit_log() -> Result<Vec<super::AuditLine>, ServerFnError> {
        let hub = hub()?;
        admin(&hub).await?;
        let entries = hub
            .audit_log(200)
            .await
            .map_err(|e| ServerFnError::new(e.to_string()))?;
        Ok(entries
            .into_iter()
            .map(|e| super::AuditLine {
                ts: e.ts,
                actor: e.actor,
                action: e.action,
                subject: e.subject,
            })
            .collect())
    }

    /// The signed-in account, or an error.
    async fn signed_in(hub: &Hub) -> Result<Account, ServerFnError> {
        let request = request(hub).await?;
        match current(hub, &request.headers).await? {
            Some((account, _)) => Ok(account),
            None => Err(ServerFnError::new("sign in first")),
        }
    }

    pub async fn create_api_token(label: String) -> Result<Result<String, String>, ServerFnError> {
        let hub = hub()?;
        let account = signed_in(&hub).await?;
        match hub.accounts.create_api_token(&account, &label).await {
            Ok(secret) => Ok(Ok(secret)),
            Err(Refused::Invalid(invalid)) => Ok(Err(invalid.message)),
            Err(Refused::Store(e)) => Err(unavailable(e)),
        }
    }

    pub async fn api_tokens() -> Result<Vec<super::ApiToken>, ServerFnError> {
        let hub = hub()?;
        let account = signed_in(&hub).await?;
        let tokens = hub
            .accounts
            .api_tokens(&account)
            .await
            .map_err(unavailable)?;
        Ok(tokens
            .into_iter()
            .map(|t| super::ApiToken {
                id: t.id,
                label: t.label,
                created_ms: t.created_ms,
            })
            .collect())
    }

    pub async fn revoke_api_token(id: String) -> Result<Answer, ServerFnError> {
        let hub = hub()?;
        let account = signed_in(&hub).await?;
        match hub.accounts.revoke_api_token(&account, &id).await {
            Ok(true) => {
                // A bot already connected with it must not go on: the account's connections
                // are closed; browsers reconnect with their sessions, the bot gets 401.
                hub.close_account(&account.name, crate::protocol::close::SESSIONS_ENDED);
                Ok(Answer::Done)
            }
            Ok(false) => Ok(Answer::Refused {
                code: ErrorCode::NotFound,
                message: "this account has no such token".into(),
            }),
            Err(e) => Err(unavailable(e)),
        }
    }

    pub async fn me() -> Result<Option<AccountInfo>, ServerFnError> {
        let hub = hub()?;
        let request = request(&hub).await?;
        let headers = &request.headers;
        Ok(current(&hub, headers).await?.map(|(a, _)| info(&a)))
    }
}
