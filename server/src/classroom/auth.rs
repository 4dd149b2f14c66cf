//! Instructor accounts: argon2id password hashes, the `docklab_instructor` login cookie (32 random
//! bytes; only their SHA-256 is stored) and the per-login CSRF token every state-changing request
//! must carry (`csrf` form field or `X-CSRF-Token` header).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{header, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use super::Classroom;
use crate::store::classroom::Login;

pub const COOKIE: &str = "docklab_instructor";
/// Twelve hours: one teaching day.
pub const LOGIN_TTL_S: i64 = 12 * 3600;
pub const CSRF_HEADER: &str = "x-csrf-token";

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

/// The logged-in instructor behind a request, if any.
pub fn current(classroom: &Classroom, headers: &HeaderMap) -> Option<Login> {
    let id = cookie_value(headers, COOKIE).filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))?;
    classroom.store.login(&sha256_hex(id), now()).ok().flatten()
}

/// Checks a name and password; on success stores a new login and returns the `Set-Cookie` value.
pub fn log_in(classroom: &Classroom, name: &str, password: &str, secure: bool) -> Option<HeaderValue> {
    let found = classroom.store.instructor(name).ok().flatten();
    let hash = found.as_ref().map(|(_, h)| h.as_str()).unwrap_or_else(|| dummy_hash());
    let ok = verify_password(password, hash);
    let (instructor, _) = found.filter(|_| ok)?;
    let id = hex::encode(rand::random::<[u8; 32]>());
    let csrf = hex::encode(rand::random::<[u8; 32]>());
    classroom.store.add_login(&sha256_hex(&id), instructor, &csrf, now() + LOGIN_TTL_S).ok()?;
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
