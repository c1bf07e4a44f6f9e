//! Accounts: who may use a name. Sign-up (the seed's name + email, nothing else), sessions
//! and tokens, passwords, sign-in with its limits. The WebSocket join and the HTTP forms
//! (`crate::auth`) both come here, so the rules are the same on both ways in.
//!
//! A secret (browser session, join token, API token) is 256 random bits from the operating
//! system, given to the client once and stored only as its SHA-256: a copy of the database
//! opens no session. Sessions live in the storage seam, so every node of a cluster knows
//! them. Why not `tower-sessions`: its store would still have to be written for both
//! databases, and we need what it does not do: ending every session of an account (sign
//! out everywhere, a password change, a ban) and reading the session on the WebSocket
//! upgrade as well as on pages.

use super::limits::{TokenBucket, client_block};
use super::storage::{Account, SecretKind, Storage, StoreError, TokenInfo};
use crate::protocol::{self, ErrorCode, Invalid, name_key};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// The browser session cookie: `HttpOnly`, out of reach of scripts.
pub const COOKIE: &str = "hubbub_session";
/// How long a browser session lasts without signing in again.
pub const BROWSER_SESSION_DAYS: i64 = 90;
/// How long an invitation link stays valid.
const INVITE_DAYS: i64 = 7;
/// How long a join token lasts (a simple client presents it on every join).
const JOIN_TOKEN_DAYS: i64 = 365;
/// Password attempts (sign-in, or the current password when changing it): every attempt takes
/// a token *before* the password is checked, so attempts sent in parallel are counted too.
/// Per client address and account name: 5, then one a minute. Per client address: 30, then
/// one every 6 s. Per account name from anywhere (a guesser with many addresses): 60, then
/// one every 6 s; high enough that one stranger cannot lock the owner out by himself.
const PAIR_LIMIT: (f64, f64) = (5.0, 60.0);
const ADDRESS_LIMIT: (f64, f64) = (30.0, 6.0);
const NAME_LIMIT: (f64, f64) = (60.0, 6.0);
/// Argon2 hashes at once (each takes ~19 MiB and tens of ms of CPU): a flood of correct
/// sign-ins or password changes queues here instead of taking every core and gigabytes.
const HASHING_AT_ONCE: usize = 2;
/// Attempt counters kept before the ones that no longer limit anybody are dropped.
const MAX_COUNTERS: usize = 10_000;
/// Passwords: long enough to mean something, short enough that hashing stays cheap.
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=256;

/// Why an account operation was refused, as the client is told.
#[derive(Debug)]
pub enum Refused {
    Invalid(Invalid),
    Store(StoreError),
}

impl From<Invalid> for Refused {
    fn from(invalid: Invalid) -> Self {
        Refused::Invalid(invalid)
    }
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Refused::Store(e)
    }
}

fn refused(code: ErrorCode, message: impl Into<String>) -> Refused {
    Refused::Invalid(Invalid {
        code,
        message: message.into(),
    })
}

/// A fresh secret: 32 bytes from the operating system, as 64 hex digits.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system has no random numbers");
    hex(&bytes)
}

/// What is stored of a secret.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn days_from_now(days: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    now + days * 86_400_000
}

/// Deletes expired sessions and tokens every hour, for as long as the server runs, so they
/// do not pile up (in a cluster every node does it; deleting what is gone is harmless).
pub fn sweep_every_hour(storage: Storage) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3_600));
        loop {
            tick.tick().await;
            match storage.forget_expired_secrets().await {
                Ok(0) => {}
                Ok(n) => tracing::info!("accounts: deleted {n} expired sessions"),
                Err(e) => tracing::warn!("accounts: {e}"),
            }
        }
    });
}

/// A sign-up that passed its checks (see [`Accounts::prepare_sign_up`]).
pub struct NewAccount {
    pub name: String,
    key: String,
    pub avatar: String,
    /// The invitation it came with (needed while sign-ups are locked).
    invite_hash: Option<String>,
}

impl NewAccount {
    /// Who the new account will be, before it exists.
    pub fn user(&self) -> crate::protocol::User {
        crate::protocol::User {
            username: self.name.clone(),
            avatar: self.avatar.clone(),
        }
    }
}

/// The account service: storage plus the limits kept in memory (per node).
pub struct Accounts {
    storage: Storage,
    signups_per_hour: f64,
    signups: Mutex<HashMap<IpAddr, TokenBucket>>,
    /// Password attempts, by client address, account name, and both.
    attempts: Mutex<HashMap<String, TokenBucket>>,
    hashing: tokio::sync::Semaphore,
}

impl Accounts {
    pub fn new(storage: Storage, signups_per_hour: u64) -> Self {
        Accounts {
            storage,
            signups_per_hour: signups_per_hour as f64,
            signups: Mutex::default(),
            attempts: Mutex::default(),
            hashing: tokio::sync::Semaphore::new(HASHING_AT_ONCE),
        }
    }

    /// Creates the account for `name` with the avatar of `email`, and a secret of `kind` for
    /// it. Refused when the name (or a look-alike) has an account: no email opens one.
    pub async fn sign_up(
        &self,
        ip: IpAddr,
        name: &str,
        email: &str,
        invite: Option<&str>,
        kind: SecretKind,
    ) -> Result<(Account, String), Refused> {
        let new = self.prepare_sign_up(ip, name, email, invite).await?;
        self.complete_sign_up(new, kind).await
    }

    /// The checks of a sign-up, without creating anything: a valid name nobody has, a valid
    /// email, and the address's sign-up budget (taken here). A join creates the account
    /// only once it is in the room, so a join that fails later leaves no account behind
    /// whose token nobody received.
    pub async fn prepare_sign_up(
        &self,
        ip: IpAddr,
        name: &str,
        email: &str,
        invite: Option<&str>,
    ) -> Result<NewAccount, Refused> {
        let name = protocol::validate_username(name)?;
        let key = name_key(&name);
        // A taken name first: someone whose session ended is told to sign in, whatever the
        // email field holds.
        if let Some(owner) = self.storage.account_named(&key).await? {
            return Err(taken(&name, &owner.name));
        }
        let email = protocol::validate_email(email)?;
        // A locked server takes new accounts by invitation only.
        let invite_hash = invite.filter(|code| !code.is_empty()).map(secret_hash);
        if self.storage.signups_locked().await? {
            let valid = match &invite_hash {
                Some(hash) => self.storage.invite_valid(hash).await?,
                None => false,
            };
            if !valid {
                return Err(refused(
                    ErrorCode::InviteRequired,
                    "new accounts on this server need an invitation (a link from an admin); \
                     this one is missing, used or expired",
                ));
            }
        }
        if !self.take_signup(ip) {
            return Err(refused(
                ErrorCode::RateLimited,
                "too many new accounts from your address; try again later",
            ));
        }
        // Only the hash is kept: other users never see the address, nor does the database.
        let avatar = format!("{:x}", md5::compute(email.as_bytes()));
        Ok(NewAccount {
            name,
            key,
            avatar,
            invite_hash,
        })
    }

    /// Creates the prepared account and a secret of `kind` for it.
    pub async fn complete_sign_up(
        &self,
        new: NewAccount,
        kind: SecretKind,
    ) -> Result<(Account, String), Refused> {
        let mut used_invite = None;
        if self.storage.signups_locked().await? {
            let used = match &new.invite_hash {
                Some(hash) => self.storage.use_invite(hash, &new.name).await?,
                None => false,
            };
            if !used {
                return Err(refused(
                    ErrorCode::InviteRequired,
                    "this invitation was used or has expired meanwhile; ask for another",
                ));
            }
            used_invite = new.invite_hash.clone();
        }
        let created = self.create(&new, kind).await;
        // An invitation is only spent on an account that was made.
        if let (Err(_), Some(hash)) = (&created, &used_invite) {
            self.storage.release_invite(hash).await?;
        }
        created
    }

    async fn create(
        &self,
        new: &NewAccount,
        kind: SecretKind,
    ) -> Result<(Account, String), Refused> {
        let created = self
            .storage
            .create_account(&new.name, &new.key, &new.avatar)
            .await?;
        let Some(account) = created else {
            // Someone took it since the check.
            return Err(taken(&new.name, &new.name));
        };
        let secret = self.start(&account, kind).await?;
        Ok((account, secret))
    }

    /// Name and password; a new browser session.
    pub async fn sign_in(
        &self,
        ip: IpAddr,
        name: &str,
        password: &str,
    ) -> Result<(Account, String), Refused> {
        // Not a name anyone could have: refused before it costs anything (or a counter).
        let name = protocol::validate_username(name).map_err(|_| sign_in_failed())?;
        let key = name_key(&name);
        self.attempt(ip, &key)?;
        let account = self.storage.account_named(&key).await?;
        let hash = account.as_ref().and_then(|a| a.password_hash.clone());
        // Without an account or a password, the same work is done against a throw-away hash,
        // so the time taken does not tell which names have passwords.
        let matches = self.verify(password, hash).await;
        match account {
            Some(account) if matches && !account.banned => {
                let secret = self.start(&account, SecretKind::Browser).await?;
                Ok((account, secret))
            }
            _ => Err(sign_in_failed()),
        }
    }

    /// Counts a password attempt for `ip` on the account named by `key`; refused when over
    /// any of the limits.
    fn attempt(&self, ip: IpAddr, key: &str) -> Result<(), Refused> {
        let block = client_block(ip);
        let now = Instant::now();
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if attempts.len() > MAX_COUNTERS {
            // Drop the counters that limit nobody right now (they have tokens left).
            attempts.retain(|_, bucket| !bucket.wait(now).is_zero());
        }
        let counters = [
            (format!("pair {block} {key}"), PAIR_LIMIT),
            (format!("ip {block}"), ADDRESS_LIMIT),
            (format!("name {key}"), NAME_LIMIT),
        ];
        // All must have a token before any is taken: a refused attempt costs no other counter.
        let allowed = counters.iter().all(|(who, _)| {
            attempts
                .get(who)
                .is_none_or(|bucket| bucket.wait(now).is_zero())
        });
        if !allowed {
            return Err(refused(
                ErrorCode::RateLimited,
                "too many sign-in attempts; wait a minute and try again",
            ));
        }
        for (who, (burst, every_secs)) in counters {
            attempts
                .entry(who)
                .or_insert_with(|| TokenBucket::new(1.0 / every_secs, burst))
                .try_take(now);
        }
        Ok(())
    }

    /// Whether `password` matches `hash` (Argon2id), a few at a time, off the async threads.
    async fn verify(&self, password: &str, hash: Option<String>) -> bool {
        static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let Ok(_turn) = self.hashing.acquire().await else {
            return false;
        };
        let password = password.to_string();
        tokio::task::spawn_blocking(move || {
            let decoy = DECOY.get_or_init(|| password_auth::generate_hash(new_secret()));
            let checked =
                password_auth::verify_password(&password, hash.as_deref().unwrap_or(decoy));
            checked.is_ok() && hash.is_some()
        })
        .await
        .unwrap_or(false)
    }

    /// A new Argon2id hash of `password`, a few at a time, off the async threads.
    async fn hash(&self, password: &str) -> Result<String, StoreError> {
        let _turn = self
            .hashing
            .acquire()
            .await
            .map_err(|_| StoreError::Stopped)?;
        let password = password.to_string();
        tokio::task::spawn_blocking(move || password_auth::generate_hash(password))
            .await
            .map_err(|_| StoreError::Stopped)
    }

    /// The account a secret belongs to, if it is one of the `kinds` asked for (a bot's token
    /// is no browser session, nor the other way round); `None` for an unknown, expired or
    /// revoked one, another kind, or a banned account.
    pub async fn by_secret(
        &self,
        secret: &str,
        kinds: &[SecretKind],
    ) -> Result<Option<Account>, StoreError> {
        if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let found = self
            .storage
            .account_for_secret(&secret_hash(secret))
            .await?;
        Ok(found
            .filter(|(_, kind)| kinds.contains(kind))
            .map(|(account, _)| account))
    }

    /// Sets the account's password (replacing any), and ends its other sessions: whoever
    /// knew the old one is signed out.
    pub async fn set_password(
        &self,
        ip: IpAddr,
        account: &Account,
        current: Option<&str>,
        new: &str,
        keep_secret: &str,
    ) -> Result<(), Refused> {
        let chars = new.chars().count();
        if !PASSWORD_CHARS.contains(&chars) {
            return Err(refused(
                ErrorCode::InvalidPassword,
                format!(
                    "a password has {} to {} characters",
                    PASSWORD_CHARS.start(),
                    PASSWORD_CHARS.end()
                ),
            ));
        }
        if let Some(old_hash) = account.password_hash.clone() {
            // A stolen session must not be a way to guess the password without limits.
            self.attempt(ip, &name_key(&account.name))?;
            let ok = self
                .verify(current.unwrap_or_default(), Some(old_hash))
                .await;
            if !ok {
                return Err(refused(
                    ErrorCode::SignInFailed,
                    "the current password is not right",
                ));
            }
        }
        let hash = self.hash(new).await?;
        self.storage.set_password_hash(account.id, &hash).await?;
        self.storage
            .end_sessions(account.id, Some(&secret_hash(keep_secret)))
            .await?;
        Ok(())
    }

    /// The account that owns `name` (or a look-alike of it).
    pub async fn named(&self, name: &str) -> Result<Option<Account>, StoreError> {
        self.storage.account_named(&name_key(name)).await
    }

    /// Bans (or lifts the ban on) the account; a ban ends its sessions and tokens.
    pub async fn set_banned(&self, account: &Account, banned: bool) -> Result<(), StoreError> {
        self.storage.set_banned(account.id, banned).await
    }

    /// Locks sign-ups (invitation only) or opens them again.
    pub async fn lock_signups(&self, locked: bool) -> Result<(), StoreError> {
        self.storage.set_signups_locked(locked).await
    }

    pub async fn signups_locked(&self) -> Result<bool, StoreError> {
        self.storage.signups_locked().await
    }

    /// A new single-use invitation code, valid for a week; only its hash is stored.
    pub async fn create_invite(&self, by: &str) -> Result<String, StoreError> {
        let code = new_secret();
        self.storage
            .add_invite(&secret_hash(&code), by, days_from_now(INVITE_DAYS))
            .await?;
        Ok(code)
    }

    /// A new API token for the account (bots, scripts: `Authorization: Bearer` on `/ws`),
    /// returned once; only its hash is kept. Valid for a year unless revoked.
    pub async fn create_api_token(
        &self,
        account: &Account,
        label: &str,
    ) -> Result<String, Refused> {
        let label = label.trim();
        if label.is_empty() || label.chars().count() > 64 || label.chars().any(char::is_control) {
            return Err(refused(
                ErrorCode::BadFrame,
                "name the token (1 to 64 characters), so you know which one to revoke",
            ));
        }
        let secret = new_secret();
        self.storage
            .add_api_token(
                account.id,
                &secret_hash(&secret),
                label,
                days_from_now(JOIN_TOKEN_DAYS),
            )
            .await?;
        Ok(secret)
    }

    pub async fn api_tokens(&self, account: &Account) -> Result<Vec<TokenInfo>, StoreError> {
        self.storage.api_tokens(account.id).await
    }

    pub async fn revoke_api_token(&self, account: &Account, id: &str) -> Result<bool, StoreError> {
        self.storage.revoke_api_token(account.id, id).await
    }

    /// Ends this one session.
    pub async fn sign_out(&self, secret: &str) -> Result<(), StoreError> {
        self.storage.end_secret(&secret_hash(secret)).await
    }

    /// Ends every session and join token of the account (API tokens stay).
    pub async fn sign_out_everywhere(&self, account: &Account) -> Result<(), StoreError> {
        self.storage.end_sessions(account.id, None).await
    }

    async fn start(&self, account: &Account, kind: SecretKind) -> Result<String, StoreError> {
        let secret = new_secret();
        let days = match kind {
            SecretKind::Browser => BROWSER_SESSION_DAYS,
            SecretKind::Join | SecretKind::Api => JOIN_TOKEN_DAYS,
        };
        self.storage
            .add_secret(account.id, &secret_hash(&secret), kind, days_from_now(days))
            .await?;
        Ok(secret)
    }

    fn take_signup(&self, ip: IpAddr) -> bool {
        let mut signups = self.signups.lock().unwrap_or_else(|e| e.into_inner());
        let rate = self.signups_per_hour / 3_600.0;
        let burst = self.signups_per_hour;
        signups
            .entry(client_block(ip))
            .or_insert_with(|| TokenBucket::new(rate, burst))
            .try_take(Instant::now())
    }
}

/// What `hubbub admin` does.
pub enum AdminAction {
    Create,
    Promote,
    ResetPassword,
}

/// `hubbub admin …` on the database the settings name (the server may be running): returns
/// what to tell the operator, including a new password once.
pub async fn admin(
    database: &std::path::Path,
    action: AdminAction,
    name: &str,
) -> Result<String, String> {
    use super::storage::Location;
    let opened = Storage::open(&Location::parse(database), Box::new(|_, _, _| {}))
        .await
        .map_err(|e| e.to_string())?;
    let storage = opened.storage;
    let fail = |e: StoreError| e.to_string();
    let find = |name: String| {
        let storage = storage.clone();
        async move {
            storage
                .account_named(&name_key(&name))
                .await
                .map_err(fail)?
                .ok_or_else(|| format!("there is no account “{name}”"))
        }
    };
    // 80 random bits, in hex: typed once, then changed from the account menu.
    let password = || new_secret()[..20].to_string();
    let set_password = |account: Account, password: String| {
        let storage = storage.clone();
        async move {
            let hash = tokio::task::spawn_blocking(move || password_auth::generate_hash(password))
                .await
                .map_err(|e| e.to_string())?;
            storage
                .set_password_hash(account.id, &hash)
                .await
                .map_err(fail)?;
            storage.end_sessions(account.id, None).await.map_err(fail)
        }
    };
    match action {
        AdminAction::Create => {
            let name = protocol::validate_username(name).map_err(|e| e.message)?;
            let created = storage
                .create_account(&name, &name_key(&name), &"0".repeat(32))
                .await
                .map_err(fail)?
                .ok_or_else(|| format!("“{name}” already has an account: use promote"))?;
            storage.promote(created.id).await.map_err(fail)?;
            let secret = password();
            set_password(created, secret.clone()).await?;
            storage
                .record("(command line)", "created the admin", &name)
                .await
                .map_err(fail)?;
            Ok(format!(
                "admin account “{name}” created; its password: {secret}"
            ))
        }
        AdminAction::Promote => {
            let account = find(name.to_string()).await?;
            storage.promote(account.id).await.map_err(fail)?;
            storage
                .record("(command line)", "promoted", &account.name)
                .await
                .map_err(fail)?;
            Ok(format!(
                "“{}” is an admin (from its next join)",
                account.name
            ))
        }
        AdminAction::ResetPassword => {
            let account = find(name.to_string()).await?;
            let account_name = account.name.clone();
            let secret = password();
            set_password(account, secret.clone()).await?;
            storage
                .record("(command line)", "reset the password of", &account_name)
                .await
                .map_err(fail)?;
            Ok(format!(
                "new password for “{account_name}”: {secret} (its sessions have ended)"
            ))
        }
    }
}

fn sign_in_failed() -> Refused {
    refused(
        ErrorCode::SignInFailed,
        "that name and password do not match an account with a password",
    )
}

fn taken(asked: &str, owner: &str) -> Refused {
    let message = if name_key(asked) == name_key(owner)
        && asked.to_lowercase() == owner.to_lowercase()
    {
        format!(
            "“{owner}” belongs to an account on this server: sign in to use it, or pick another name"
        )
    } else {
        format!(
            "“{asked}” looks too much like “{owner}”, which belongs to an account on this \
             server: pick another name (or sign in as “{owner}”)"
        )
    };
    refused(ErrorCode::UsernameTaken, message)
}

/// The secrets a request carries: its session cookie, and an `Authorization: Bearer` token.
pub fn secrets(headers: &axum::http::HeaderMap) -> (Option<String>, Option<String>) {
    let cookie = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string());
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_string());
    (cookie, bearer)
}

impl Accounts {
    /// The storage key of the account that owns `name` (for a private message's recipient).
    pub async fn key_of(&self, name: &str) -> Result<Option<String>, StoreError> {
        let account = self.storage.account_named(&name_key(name)).await?;
        Ok(account.map(|a| a.key()))
    }
}
