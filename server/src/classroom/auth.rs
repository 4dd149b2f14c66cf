//! Instructor accounts: argon2id password hashes, the `docklab_instructor` login cookie (32 random
//! bytes; only their SHA-256 is stored) and the per-login CSRF token every state-changing request
//! must carry (`csrf` form field or `X-CSRF-Token` header), derived from the cookie and stored
//! nowhere.
//!
//! Logging in is limited ([`LoginGuard`]): 10 attempts per client address and 30 per account
//! name, each bucket refilling over 15 minutes (a successful login gives its tokens back), then
//! `429` with `Retry-After`. The per-account limit holds against addresses taken together, so a
//! guessing run from many addresses also locks the account for everyone, the instructor included,
//! until it refills (one attempt every 30 s). At most two argon2 hashes (19 MiB each) run at
//! once, whatever arrives; the rest wait, then get `503`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{header, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use super::{ClassError, Classroom};
use crate::ratelimit::{Rate, RateLimiter};
use crate::store::classroom::Login;

pub const COOKIE: &str = "docklab_instructor";
/// Twelve hours: one teaching day.
pub const LOGIN_TTL_S: i64 = 12 * 3600;
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Attempts one client address may make: 10, then one every 90 s.
pub const ADDRESS_RATE: Rate = Rate { per_second: 10.0 / 900.0, burst: 10.0 };
/// Attempts on one account name from everywhere together: 30, then one every 30 s.
pub const ACCOUNT_RATE: Rate = Rate { per_second: 30.0 / 900.0, burst: 30.0 };
/// argon2 hashes running at once (each holds 19 MiB and a blocking thread for ~1 s in debug).
pub const HASHING_AT_ONCE: usize = 2;
/// Longest wait for a hashing slot before `503`.
const HASHING_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// What a login attempt is charged to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LoginKey {
    Address(Option<std::net::IpAddr>),
    Account(String),
}

/// Login attempt limits and the argon2 concurrency bound.
pub struct LoginGuard {
    attempts: RateLimiter<LoginKey>,
    hashing: tokio::sync::Semaphore,
}

impl Default for LoginGuard {
    fn default() -> Self {
        LoginGuard { attempts: RateLimiter::with_rate(ADDRESS_RATE), hashing: tokio::sync::Semaphore::new(HASHING_AT_ONCE) }
    }
}

/// Checks a login within the limits: `Ok(Some(cookie))` on success, `Ok(None)` for a wrong name
/// or password, `Err` with 429 (limited) or 503 (hashing busy).
pub async fn attempt(
    classroom: std::sync::Arc<Classroom>,
    client: Option<std::net::IpAddr>,
    name: String,
    password: String,
    secure: bool,
) -> Result<Option<HeaderValue>, ClassError> {
    let account: String = name.chars().take(64).collect();
    let keys = [(LoginKey::Address(client), ADDRESS_RATE), (LoginKey::Account(account), ACCOUNT_RATE)];
    let guard = &classroom.logins;
    if let Err(wait) = guard.attempts.check_all(&keys, std::time::Instant::now()) {
        tracing::warn!(client = ?client, name = %keys[1].0.account(), "instructor login refused: too many attempts");
        return Err(ClassError::rate_limited("too many login attempts", wait));
    }
    let busy = || ClassError(axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy", "the server is busy checking passwords: try again in a minute".into());
    let _permit = match tokio::time::timeout(HASHING_WAIT, guard.hashing.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => return Err(busy()),
    };
    let cl = classroom.clone();
    // argon2 is deliberately slow: off the async workers, on the hashing threads.
    let (tx, rx) = tokio::sync::oneshot::channel();
    hash_workers()
        .try_send(Box::new(move || {
            let _ = tx.send(log_in(&cl, &name, &password, secure));
        }))
        .map_err(|_| busy())?;
    let cookie = rx.await.map_err(|_| busy())?;
    if cookie.is_some() {
        for (key, _) in &keys {
            guard.attempts.refund(key);
        }
    }
    Ok(cookie)
}

type HashJob = Box<dyn FnOnce() + Send>;

/// The threads every login's argon2 runs on: [`HASHING_AT_ONCE`] of their own, for the life of
/// the process. Not tokio's blocking pool: glibc keeps a freed 19 MiB block in the arena of the
/// thread that freed it, so hashes spread over the pool's many threads left one block on each
/// (measured: peak memory +476 MiB after 40 concurrent attempts, hashed two at a time).
fn hash_workers() -> &'static std::sync::mpsc::SyncSender<HashJob> {
    static WORKERS: std::sync::OnceLock<std::sync::mpsc::SyncSender<HashJob>> = std::sync::OnceLock::new();
    WORKERS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<HashJob>(HASHING_AT_ONCE);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..HASHING_AT_ONCE {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("docklab-argon2-{i}")).spawn(move || loop {
                let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                    Ok(job) => job,
                    Err(_) => return,
                };
                job();
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        tx
    })
}

impl LoginKey {
    fn account(&self) -> &str {
        match self {
            LoginKey::Account(name) => name,
            LoginKey::Address(_) => "",
        }
    }
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A fixed hash to verify against when the name is unknown, so both cases take as long.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password").unwrap_or_default())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

use crate::extract::cookie_value;

/// A login's CSRF token: derived from the login cookie, so the database keeps neither (only the
/// cookie's SHA-256, from which this cannot be computed).
fn csrf_of(cookie_id: &str) -> String {
    sha256_hex(&format!("docklab-csrf:{cookie_id}"))
}

/// The logged-in instructor behind a request, if any.
pub fn current(classroom: &Classroom, headers: &HeaderMap) -> Option<Login> {
    let id = cookie_value(headers, COOKIE).filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))?;
    let login = classroom.store.login(&sha256_hex(id), now()).ok().flatten()?;
    Some(Login { csrf: csrf_of(id), ..login })
}

/// Checks a name and password; on success stores a new login and returns the `Set-Cookie` value.
pub fn log_in(classroom: &Classroom, name: &str, password: &str, secure: bool) -> Option<HeaderValue> {
    let found = classroom.store.instructor(name).ok().flatten();
    let hash = found.as_ref().map(|(_, h)| h.as_str()).unwrap_or_else(|| dummy_hash());
    let ok = verify_password(password, hash);
    let (instructor, _) = found.filter(|_| ok)?;
    let id = hex::encode(rand::random::<[u8; 32]>());
    classroom.store.add_login(&sha256_hex(&id), instructor, now() + LOGIN_TTL_S).ok()?;
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/; Max-Age={LOGIN_TTL_S}; HttpOnly; SameSite=Strict{secure}")).ok()
}

pub fn log_out(classroom: &Classroom, headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = cookie_value(headers, COOKIE) {
        let _ = classroom.store.remove_login(&sha256_hex(id));
    }
    HeaderValue::from_static("docklab_instructor=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// Whether the request came through an HTTPS reverse proxy (then the cookie is `Secure`).
pub fn is_https(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// Whether `given` is this login's CSRF token.
pub fn csrf_ok(login: &Login, given: Option<&str>) -> bool {
    given.is_some_and(|g| crate::token::tokens_match(&login.csrf, g))
}

pub fn csrf_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok())
}

/// Refuses a browser POST from another site (an extra layer under SameSite and CSRF tokens).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    origin.eq_ignore_ascii_case(&format!("http://{host}")) || origin.eq_ignore_ascii_case(&format!("https://{host}"))
}
