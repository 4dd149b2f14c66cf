//! Security headers on docklab's own answers (pages, static files, API): a Content-Security-Policy
//! that lets only docklab's own scripts run and nobody frame docklab, `nosniff`, a same-origin
//! referrer and opener policy. Port previews are the learner's content, not docklab's: they get
//! their own sandbox (see [`crate::ports`]) and are left alone here.
//!
//! A handler that sets one of these headers itself keeps its own value.

use std::sync::LazyLock;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::config::ServerConfig;

/// The one template with inline event handlers (`onsubmit="return confirm(…)"`); each handler is
/// allowed by its hash, so an injected handler still is not. `handlers_in_templates_are_hashed`
/// fails if another template grows one.
const TEMPLATES_WITH_HANDLERS: &[&str] = &[include_str!("../../web/templates/classroom_grid.html")];

/// The policy of every page, except the one below.
///
/// - scripts: docklab's own files (`/static/…`, xterm.js vendored there), plus the inline handlers
///   of the templates by hash; no inline `<script>`, no `eval`;
/// - styles: docklab's own, and inline ones (xterm.js and the visuals set element styles and
///   inject a `<style>`; styles cannot run code);
/// - `connect-src 'self'`: the API, the terminal WebSocket (CSP 3 matches `ws:` to the same host),
///   the class event stream;
/// - nothing may frame docklab (`frame-ancestors 'none'`), and docklab frames nothing;
/// - forms post only to docklab; no `<base>`, no plugins, no workers.
static PAGE_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| policy(&script_src(false)));

/// `POST /join/{code}` answers a page whose one inline script puts the new session into
/// `sessionStorage` and moves on to the lesson (`classroom/pages.rs`, `join_form`): its content
/// changes with every session, so it cannot be hashed ahead. That page alone allows inline script;
/// it shows nothing a user typed but the fixed texts of that page.
static JOIN_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| policy(&script_src(true)));

fn script_src(inline: bool) -> String {
    let mut src = String::from("'self'");
    if inline {
        src.push_str(" 'unsafe-inline'");
        return src;
    }
    let hashes: Vec<String> = TEMPLATES_WITH_HANDLERS.iter().flat_map(|t| inline_handlers(t)).map(|h| hash_source(&h)).collect();
    if !hashes.is_empty() {
        src.push_str(" 'unsafe-hashes'");
        for h in hashes {
            src.push(' ');
            src.push_str(&h);
        }
    }
    src
}

fn policy(script_src: &str) -> HeaderValue {
    let value = format!(
        "default-src 'self'; script-src {script_src}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'; frame-src 'none'; worker-src 'none'; manifest-src 'self'"
    );
    // The value is ASCII built from constants and base64.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"))
}

/// `'sha256-<base64>'` of `source`, as CSP writes a hash source.
fn hash_source(source: &str) -> String {
    format!("'sha256-{}'", base64(&Sha256::digest(source.as_bytes())))
}

/// Standard base64 with padding (RFC 4648 section 4), for the hash sources.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The values of the `on…="…"` attributes in a template, as the browser hashes them (the
/// attribute's text; the templates write them without entities).
fn inline_handlers(template: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(" on") {
        rest = &rest[i + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        if name_len == 0 || !rest[name_len..].starts_with("=\"") {
            continue;
        }
        let value = &rest[name_len + 2..];
        if let Some(end) = value.find('"') {
            found.push(value[..end].to_string());
            rest = &value[end..];
        }
    }
    found
}

/// The middleware: adds the headers to every answer that is not a port preview.
/// With `--preview-url`, the preview name serves previews only: docklab's pages and API are not
/// there (404), so nothing of docklab's ever shares an origin with a learner's app.
pub async fn add(State(config): State<Arc<ServerConfig>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if crate::ports::is_preview_path(path) {
        return next.run(req).await;
    }
    if crate::ports::on_preview_host(&config, req.headers(), req.uri()) {
        let body = serde_json::json!({
            "error": "this name serves port previews only (/preview/…); docklab itself is at its own address",
            "code": "preview_host",
        });
        let mut resp = (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
        resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(crate::ports::SANDBOX_CSP));
        return resp;
    }
    let join = req.method() == Method::POST && path.starts_with("/join/");
    let mut resp = next.run(req).await;
    let csp = if join { JOIN_POLICY.clone() } else { PAGE_POLICY.clone() };
    let headers = resp.headers_mut();
    let fixed: [(HeaderName, HeaderValue); 6] = [
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
        (HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("same-origin")),
    ];
    for (name, value) in fixed {
        headers.entry(name).or_insert(value);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_are_found_and_hashed() {
        let page = r#"<form method="post" onsubmit="return confirm('End?')"><button onclick="x()">"#;
        assert_eq!(inline_handlers(page), vec!["return confirm('End?')".to_string(), "x()".to_string()]);
        assert_eq!([base64(b"f"), base64(b"fo"), base64(b"foo"), base64(b"foob")], ["Zg==", "Zm8=", "Zm9v", "Zm9vYg=="]);
        // The hash CSP expects for `alert(1)` (computed independently with openssl).
        assert_eq!(hash_source("alert(1)"), "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='");
        let policy = PAGE_POLICY.to_str().unwrap();
        assert!(policy.contains("frame-ancestors 'none'") && policy.contains("script-src 'self' 'unsafe-hashes' 'sha256-"), "{policy}");
        assert!(!script_src(false).contains("unsafe-inline"));
        assert!(script_src(false).contains("'unsafe-hashes' 'sha256-"));
    }

    /// Every template with an inline handler is in TEMPLATES_WITH_HANDLERS (else CSP would block
    /// the handler, and a `confirm` guarding a form would silently stop asking).
    #[test]
    fn handlers_in_templates_are_hashed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/templates");
        let allowed: Vec<String> = TEMPLATES_WITH_HANDLERS.iter().flat_map(|t| inline_handlers(t)).collect();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for handler in inline_handlers(&text) {
                assert!(allowed.contains(&handler), "{}: inline handler {handler:?} is not hashed in the CSP", path.display());
            }
            assert!(
                !text.contains("<script>") || path.ends_with("classroom_page.html"),
                "{}: an inline <script> is blocked by the CSP; load it from /static",
                path.display()
            );
        }
    }
}
