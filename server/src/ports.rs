//! Port preview: a port published inside the learner's machine (`docker run -p 8080:80 nginx`)
//! reached from the browser, HTTP and WebSocket alike, at
//! `/preview/{id}/{key}/{port}/…`, where `key` is the session's preview key (a capability in the
//! path, see [`preview_key`]); `GET /api/sessions/{id}/preview` gives it to the session's owner.
//! The older `/sessions/{id}/ports/{port}/…` still answers scripts that hold the session token
//! (`?token=` traded for a cookie scoped to `/sessions/{id}/`); a browser navigating there is sent
//! to the capability URL.
//!
//! Everything the learner's app serves is hostile to docklab and to whoever opens the link (an
//! instructor, a classmate). So:
//! - every preview answer carries `Content-Security-Policy: sandbox …` without `allow-same-origin`:
//!   the page runs in an opaque origin, so it cannot read or write docklab's cookies or storage,
//!   register a service worker, or read any docklab API (those are cross-origin to it and answer
//!   no CORS), and its WebSockets carry `Origin: null`, which docklab's own sockets refuse;
//! - the app's own sub-requests (`fetch("data.json")`, `<script src>`, WebSocket) work because the
//!   capability is in the path, not in a cookie an opaque origin would not send; requests from the
//!   preview (`Origin: null`) get `Access-Control-Allow-Origin: null` and preflights are answered;
//! - answer headers that act on docklab's origin are dropped ([`DROPPED_RESPONSE_HEADERS`]:
//!   `Set-Cookie`, `Clear-Site-Data`, `Service-Worker-Allowed`, `Refresh`, HSTS, reporting…), a
//!   `Location` is kept only if it stays inside this preview (paths of the app itself are moved
//!   under it), otherwise the answer is refused with 502;
//! - `Referrer-Policy: no-referrer`, so the key never leaves in a `Referer`;
//! - the request reaches the app without `Authorization`, `Cookie`, `Referer`, docklab's CSRF
//!   header or forwarding headers ([`DROPPED_REQUEST_HEADERS`]); a `Service-Worker: script` fetch
//!   is refused.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use axum::Router;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tracing::{debug, info_span, Instrument};

use crate::app::AppState;
use crate::error::AppError;
use crate::registry::Session;
use crate::sessions::require_ready;

/// Headers that describe one hop and must not be forwarded (RFC 9110, section 7.6.1).
const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "proxy-connection"];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// On every preview answer. No `allow-same-origin`: the document's origin is opaque, never
/// docklab's. No `allow-top-navigation` (it is the top anyway when opened from the lab page) and
/// no `allow-popups-to-escape-sandbox`: a window it opens is sandboxed too.
pub const SANDBOX_CSP: &str = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/// What the browser sends that is docklab's, not the app's: credentials of docklab (the session
/// token, instructor and learner cookies, the CSRF token), where the user came from, and what a
/// reverse proxy in front of docklab says about the user.
pub const DROPPED_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "x-csrf-token",
    "referer",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "host",
];

/// Answer headers that would act on docklab's whole origin (its cookies, storage, service-worker
/// scope, transport, error reporting, login state) rather than on the preview page.
pub const DROPPED_RESPONSE_HEADERS: &[&str] = &[
    "set-cookie",
    "set-cookie2",
    "clear-site-data",
    "service-worker-allowed",
    "refresh",
    "strict-transport-security",
    "alt-svc",
    "nel",
    "report-to",
    "reporting-endpoints",
    "set-login",
    "speculation-rules",
    "access-control-allow-credentials",
    "referrer-policy",
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions/{id}/preview", get(preview_base_handler))
        .route("/sessions/{id}/ports/{port}", any(handle))
        .route("/sessions/{id}/ports/{port}/", any(handle))
        .route("/sessions/{id}/ports/{port}/{*rest}", any(handle))
        .route("/preview/{id}/{key}/{port}", any(handle))
        .route("/preview/{id}/{key}/{port}/", any(handle))
        .route("/preview/{id}/{key}/{port}/{*rest}", any(handle))
}

/// The session's preview key: 128 bits derived one-way from its id and token, so it survives a
/// server restart with the session, grants the preview and nothing else (it does not reveal the
/// token), and differs per session.
pub fn preview_key(session: &Session) -> String {
    let mut hash = Sha256::new();
    hash.update(b"docklab port preview v1\0");
    hash.update(session.id.as_bytes());
    hash.update(b"\0");
    hash.update(session.token.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// Where the previews of `session` live: `/preview/{id}/{key}/`, followed by a port and `/`.
pub fn preview_base(session: &Session) -> String {
    format!("/preview/{}/{}/", session.id, preview_key(session))
}

/// `GET /api/sessions/{id}/preview` (session token) → `{"base": "/preview/{id}/{key}/"}`.
async fn preview_base_handler(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Result<Response, AppError> {
    let session = crate::sessions::authorize(&state, &id, &headers, None)?;
    let origin = state.config.preview_url.as_deref().unwrap_or("");
    Ok(axum::Json(serde_json::json!({ "base": format!("{origin}{}", preview_base(&session)) })).into_response())
}

/// `names` also answering to the host of `--preview-url`, if one is set.
pub fn with_preview_host(names: crate::origin::SiteNames, preview_url: Option<&str>) -> crate::origin::SiteNames {
    match preview_url.and_then(|u| authority(u)) {
        Some(authority) => {
            let host = authority.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(authority, |(h, _)| h);
            names.with_host(host)
        }
        None => names,
    }
}

/// `host[:port]` of an origin `scheme://host[:port]` as `parse_public_url` writes it.
fn authority(origin: &str) -> Option<&str> {
    origin.split_once("://").map(|(_, a)| a)
}

/// Whether a request was sent to the `--preview-url` name (always false without one).
pub fn on_preview_host(config: &crate::config::ServerConfig, headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(preview) = config.preview_url.as_deref() else { return false };
    let Some(host) = crate::origin::request_host(headers, uri) else { return false };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let default_port = if preview.starts_with("https://") { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    authority(preview).is_some_and(|a| a == host)
}

/// Is `path` a preview URL (whose answers carry the preview's own headers, not the pages')?
pub fn is_preview_path(path: &str) -> bool {
    PreviewPath::parse(path).is_some()
}

/// A preview URL taken apart, every part still percent-encoded as it came.
#[derive(Debug, PartialEq, Eq)]
struct PreviewPath<'a> {
    id: &'a str,
    /// `Some` on `/preview/{id}/{key}/…`, `None` on `/sessions/{id}/ports/…`.
    key: Option<&'a str>,
    port: &'a str,
    /// The preview's root as the browser sees it, without the trailing slash.
    prefix: &'a str,
    /// What follows `prefix`: empty, or `/` and the app's own path.
    rest: &'a str,
}

impl<'a> PreviewPath<'a> {
    fn parse(path: &'a str) -> Option<Self> {
        let segment = |s: &'a str| -> Option<(&'a str, &'a str)> {
            let (first, rest) = s.split_once('/').unwrap_or((s, ""));
            (!first.is_empty()).then_some((first, rest))
        };
        let (id, key, port, tail) = if let Some(after) = path.strip_prefix("/preview/") {
            let (id, after) = segment(after)?;
            let (key, after) = segment(after)?;
            let (port, _) = segment(after)?;
            (id, Some(key), port, after)
        } else {
            let after = path.strip_prefix("/sessions/")?;
            let (id, after) = segment(after)?;
            let after = after.strip_prefix("ports/")?;
            let (port, _) = segment(after)?;
            (id, None, port, after)
        };
        let prefix_len = path.len() - tail.len() + port.len();
        Some(PreviewPath { id, key, port, prefix: &path[..prefix_len], rest: &path[prefix_len..] })
    }
}

fn cookie_name(id: &str) -> String {
    format!("docklab_preview_{id}")
}

fn parse_port(port: &str) -> Result<u16, AppError> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(AppError::BadRequest(format!("{:?} is not a port: use a number from 1 to 65535", port.chars().take(16).collect::<String>()))),
    }
}

/// The token from `?token=` (first visit) or the preview cookie.
fn given_token<'a>(uri: &'a Uri, headers: &'a HeaderMap, id: &str) -> (Option<String>, bool) {
    if let Some(q) = uri.query() {
        for pair in q.split('&') {
            if let Some(v) = pair.strip_prefix("token=") {
                return (Some(v.to_string()), true);
            }
        }
    }
    (crate::extract::cookie_value(headers, &cookie_name(id)).map(str::to_string), false)
}

fn without_token(uri: &Uri) -> String {
    let query: Vec<&str> = uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty() && !p.starts_with("token=")).collect();
    if query.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), query.join("&"))
    }
}

/// The query string without `token=`, with its `?`, or empty.
fn query_without_token(uri: &Uri) -> String {
    let rest = without_token(uri);
    rest.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default()
}

/// Refuses a path whose decoded form holds a control character (`%0d%0a`, `%00`…): no app
/// needs one, and it is how header injection into a naive app starts.
fn check_path(rest: &str) -> Result<(), AppError> {
    let bytes = rest.as_bytes();
    let escaped = |i: usize| -> Option<u8> {
        let hex = bytes.get(i + 1..i + 3)?;
        hex.iter().all(u8::is_ascii_hexdigit).then(|| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())?
    };
    let mut i = 0;
    while i < bytes.len() {
        let byte = match (bytes[i], escaped(i)) {
            (b'%', Some(b)) => {
                i += 3;
                b
            }
            (b, _) => {
                i += 1;
                b
            }
        };
        if byte < 0x20 || byte == 0x7f {
            return Err(AppError::BadRequest(format!(
                "the preview path contains a control character (byte {byte:#04x}); no app path needs one"
            )));
        }
    }
    Ok(())
}

/// Every preview URL comes here; whatever the outcome, the answer gets the sandbox.
async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let mut resp = match PreviewPath::parse(&path) {
        Some(p) => preview(&state, &p, req).await.unwrap_or_else(IntoResponse::into_response),
        None => AppError::BadRequest("not a preview URL".into()).into_response(),
    };
    let headers = resp.headers_mut();
    headers.append(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(SANDBOX_CSP));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

async fn preview(state: &AppState, p: &PreviewPath<'_>, req: Request) -> Result<Response, AppError> {
    let port = parse_port(p.port)?;
    if p.rest.is_empty() {
        let q = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        return Ok(Redirect::permanent(&format!("{}/{q}", p.prefix)).into_response());
    }
    // With --preview-url, previews are served on that name only; here they are only redirected.
    let elsewhere = state.config.preview_url.as_deref().filter(|_| !on_preview_host(&state.config, req.headers(), req.uri()));
    if let (Some(origin), Some(_)) = (elsewhere, p.key) {
        check_path(p.rest)?;
        let path = req.uri().path_and_query().map_or(p.prefix, |pq| pq.as_str());
        return Ok(Redirect::permanent(&format!("{origin}{path}")).into_response());
    }
    let session = state.sessions.get(p.id).ok_or_else(|| AppError::UnknownSession { id: p.id.chars().take(64).collect() })?;
    let capability = format!("{}{}{port}", elsewhere.unwrap_or(""), preview_base(&session));
    match p.key {
        Some(key) => {
            if !crate::token::tokens_match(&preview_key(&session), key) {
                return Err(AppError::BadToken);
            }
        }
        None => {
            let (token, from_query) = given_token(req.uri(), req.headers(), p.id);
            let token = token.ok_or(AppError::MissingToken)?;
            if !session.token_matches(&token) {
                return Err(AppError::BadToken);
            }
            // A browser goes to the capability URL: there, the sandboxed page's own requests
            // need no cookie (an opaque origin would not send one).
            let navigating = req.headers().get("sec-fetch-mode").is_some_and(|v| v == "navigate");
            if from_query || navigating || elsewhere.is_some() {
                check_path(p.rest)?;
                let mut resp = Redirect::to(&format!("{capability}{}{}", p.rest, query_without_token(req.uri()))).into_response();
                if from_query && elsewhere.is_none() {
                    // Scripts (curl, tests) keep using this path: the cookie only this session's
                    // legacy preview path receives.
                    let cookie = format!("{}={token}; Path=/sessions/{}/; HttpOnly; SameSite=Lax", cookie_name(p.id), p.id);
                    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(AppError::internal)?);
                }
                return Ok(resp);
            }
        }
    }
    check_path(p.rest)?;
    if req.headers().contains_key("service-worker") {
        return Ok(problem(StatusCode::FORBIDDEN, "A preview cannot serve a service worker script.", "preview_service_worker_refused"));
    }
    let from_preview = req.headers().get(header::ORIGIN).is_some_and(|o| o == "null");
    if from_preview && req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return Ok(preflight(req.headers()));
    }
    require_ready(&session)?;
    let addr = state.backend.address(p.id).await.ok_or_else(|| AppError::internal(format!("session {} has no network address", p.id)))?;
    let span = info_span!("port_preview", session = %p.id, port);
    let mut resp = async move { forward(addr, port, p, req).await }.instrument(span).await?;
    if from_preview {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("null"));
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("*"));
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(resp)
}

/// The answer to a CORS preflight from the preview page itself (origin `null`): its own
/// `fetch("api", {method: "POST", headers: {"content-type": "application/json"}})` goes ahead.
fn preflight(headers: &HeaderMap) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("null"));
    for (asked, allow) in [
        (header::ACCESS_CONTROL_REQUEST_METHOD, header::ACCESS_CONTROL_ALLOW_METHODS),
        (header::ACCESS_CONTROL_REQUEST_HEADERS, header::ACCESS_CONTROL_ALLOW_HEADERS),
    ] {
        if let Some(v) = headers.get(asked) {
            h.insert(allow, v.clone());
        }
    }
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    resp
}

/// Sends the request to `addr:port` and streams the answer back; follows a WebSocket upgrade.
async fn forward(addr: Ipv4Addr, port: u16, p: &PreviewPath<'_>, mut req: Request) -> Result<Response, AppError> {
    let target = SocketAddr::from((addr, port));
    let unreachable = |why: String| {
        Ok(problem(
            StatusCode::BAD_GATEWAY,
            &format!("Nothing answered on port {port} in your machine ({why}). Is a container publishing it? Try `docker ps`."),
            "port_unreachable",
        ))
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return unreachable(e.to_string()),
        Err(_) => return unreachable("timed out".into()),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => return unreachable(e.to_string()),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "preview connection ended");
        }
    });

    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    let downstream_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    // The app's path exactly as the browser sent it (still percent-encoded).
    let path = format!("{}{}", p.rest, query_without_token(req.uri()));
    let mut builder = hyper::Request::builder().method(req.method().clone()).uri(path.as_str());
    for (k, v) in req.headers() {
        let name = k.as_str();
        let keep_for_upgrade = wants_upgrade && (name == "connection" || name == "upgrade");
        if (HOP_BY_HOP.contains(&name) && !keep_for_upgrade) || DROPPED_REQUEST_HEADERS.contains(&name) {
            continue;
        }
        builder = builder.header(k, v);
    }
    builder = builder.header(header::HOST, format!("{addr}:{port}"));
    let body = std::mem::replace(req.body_mut(), Body::empty());
    let upstream_req = builder
        .body(body)
        .map_err(|e| AppError::BadRequest(format!("the preview cannot forward this request: {e}")))?;
    let mut resp = match sender.send_request(upstream_req).await {
        Ok(r) => r,
        Err(e) => return unreachable(e.to_string()),
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        if let Some(down) = downstream_upgrade {
            tokio::spawn(async move {
                if let (Ok(up), Ok(down)) = (upstream_upgrade.await, down.await) {
                    let (mut up, mut down) = (TokioIo::new(up), TokioIo::new(down));
                    let _ = tokio::io::copy_bidirectional(&mut up, &mut down).await;
                }
            });
        }
    }
    let (mut parts, body) = resp.into_parts();
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    for h in HOP_BY_HOP {
        if !(switching && *h == "connection") {
            parts.headers.remove(*h);
        }
    }
    for h in DROPPED_RESPONSE_HEADERS {
        parts.headers.remove(*h);
    }
    if let Some(location) = parts.headers.get(header::LOCATION) {
        let app_hosts = [addr.to_string(), "localhost".to_string(), "127.0.0.1".to_string()];
        let kept = location.to_str().ok().and_then(|l| contain_location(l, p.prefix, p.rest, &app_hosts));
        match kept.and_then(|l| HeaderValue::from_str(&l).ok()) {
            Some(value) => {
                parts.headers.insert(header::LOCATION, value);
            }
            None => {
                let shown: String = String::from_utf8_lossy(location.as_bytes()).chars().take(200).collect();
                tracing::info!(location = %shown.escape_debug(), "preview redirect out of the preview refused");
                return Ok(problem(
                    StatusCode::BAD_GATEWAY,
                    &format!("The app on port {port} redirected to {shown:?}, outside its preview; docklab does not send browsers there."),
                    "preview_redirect_refused",
                ));
            }
        }
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// A `Location` the app sent, as the browser may follow it from `prefix` + `rest`: inside the
/// preview, or `None`. Paths of the app itself (`/login`, `http://<its address>/login`) are moved
/// under the preview; relative references are kept if they resolve inside it; anything else (another
/// host, `//host`, backslashes, control characters, `..` out of the preview) is refused.
fn contain_location(location: &str, prefix: &str, rest: &str, app_hosts: &[String]) -> Option<String> {
    if location.is_empty() || location.bytes().any(|b| b < 0x21 || b == 0x7f || b == b'\\') {
        return None;
    }
    let inside = |path: &str| -> bool {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let normal = remove_dot_segments(path);
        normal.starts_with(&format!("{prefix}/"))
    };
    let scheme_len = location.find(':').filter(|&i| {
        let s = &location[..i];
        !s.is_empty() && s.starts_with(|c: char| c.is_ascii_alphabetic()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let rewritten = if let Some(i) = scheme_len {
        let scheme = location[..i].to_ascii_lowercase();
        let after = location[i + 1..].strip_prefix("//")?;
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, path) = (&after[..end], &after[end..]);
        if authority.contains('@') {
            return None;
        }
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_ascii_lowercase();
        if !app_hosts.iter().any(|h| *h == host) {
            return None;
        }
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        format!("{prefix}{path}")
    } else if location.starts_with("//") {
        return None;
    } else if location.starts_with('/') {
        if inside(location) {
            location.to_string()
        } else {
            format!("{prefix}{location}")
        }
    } else {
        // Relative: resolved against the directory of the request's path.
        let dir = &rest[..rest.rfind('/').map_or(0, |i| i + 1)];
        let resolved = if location.starts_with(['?', '#']) { format!("{prefix}{rest}") } else { format!("{prefix}{dir}{location}") };
        return inside(&resolved).then(|| location.to_string());
    };
    inside(&rewritten).then_some(rewritten)
}

/// RFC 3986 section 5.2.4, with `%2e` taken as `.` (browsers do).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        let lower = seg.to_ascii_lowercase().replace("%2e", ".");
        match lower.as_str() {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            _ => out.push(seg),
        }
    }
    out.join("/")
}

fn problem(status: StatusCode, message: &str, code: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message, "code": code }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comes_from_query_first_then_cookie() {
        let uri: Uri = "/sessions/abc/ports/80/x?a=1&token=t1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("other=1; docklab_preview_abc=t2"));
        assert_eq!(given_token(&uri, &h, "abc"), (Some("t1".into()), true));
        let uri: Uri = "/sessions/abc/ports/80/x?a=1".parse().unwrap();
        assert_eq!(given_token(&uri, &h, "abc"), (Some("t2".into()), false));
        assert_eq!(given_token(&uri, &h, "zzz"), (None, false));
        assert_eq!(without_token(&"/p/?a=1&token=t&b=2".parse().unwrap()), "/p/?a=1&b=2");
        assert_eq!(without_token(&"/p/?token=t".parse().unwrap()), "/p/");
    }

    #[test]
    fn preview_paths_are_taken_apart_still_encoded() {
        let p = PreviewPath::parse("/preview/abc/k3y/8080/a%20b/c").unwrap();
        assert_eq!(p, PreviewPath { id: "abc", key: Some("k3y"), port: "8080", prefix: "/preview/abc/k3y/8080", rest: "/a%20b/c" });
        let p = PreviewPath::parse("/sessions/abc/ports/80/").unwrap();
        assert_eq!(p, PreviewPath { id: "abc", key: None, port: "80", prefix: "/sessions/abc/ports/80", rest: "/" });
        assert_eq!(PreviewPath::parse("/sessions/abc/ports/80").unwrap().rest, "");
        for not_preview in ["/sessions/abc", "/sessions/abc/exec", "/preview/abc/key", "/api/sessions/abc/preview", "/preview//k/80/", "/"] {
            assert!(PreviewPath::parse(not_preview).is_none(), "{not_preview}");
        }
    }

    #[test]
    fn control_characters_in_a_path_are_refused() {
        for bad in ["/a%0d%0ab", "/%00", "/%7F", "/x%0A", "/\t"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        for good in ["/", "/a%20b", "/%2F%25", "/%", "/%zz", "/%+1", "/caf%C3%A9"] {
            assert!(check_path(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn a_location_stays_inside_the_preview() {
        let prefix = "/preview/s/k/8080";
        let hosts = ["10.200.0.5".to_string(), "localhost".to_string(), "127.0.0.1".to_string()];
        let keep = |l: &str, rest: &str| contain_location(l, prefix, rest, &hosts);
        assert_eq!(keep("/login", "/"), Some(format!("{prefix}/login")));
        assert_eq!(keep(&format!("{prefix}/x"), "/"), Some(format!("{prefix}/x")));
        assert_eq!(keep("http://10.200.0.5:8080/a?b#c", "/"), Some(format!("{prefix}/a?b#c")));
        assert_eq!(keep("HTTPS://LOCALHOST", "/"), Some(format!("{prefix}/")));
        assert_eq!(keep("next", "/a/b"), Some("next".into()));
        assert_eq!(keep("../x", "/a/b"), Some("../x".into()));
        assert_eq!(keep("?page=2", "/a"), Some("?page=2".into()));
        for out in [
            "http://example.com/",
            "//example.com",
            "/\\example.com",
            "https://10.200.0.5.example.com/",
            "http://localhost@example.com/",
            "javascript:alert(1)",
            "data:text/html,x",
            "http:example.com",
            "../../../../x",
            "/../../../../x",
            "/%2E%2e/%2e%2E/%2e%2e/%2e%2e/x",
            "/a\tb",
            "",
        ] {
            assert_eq!(keep(out, "/a/b"), None, "{out:?}");
        }
    }

    /// A one-shot app on loopback: answers `answer` to the first request and hands back what it
    /// received.
    async fn one_shot_app(answer: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            sock.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (port, task)
    }

    #[tokio::test]
    async fn forwarding_keeps_docklab_credentials_from_the_app_and_the_app_headers_from_the_browser() {
        let (port, app) = one_shot_app(
            "HTTP/1.1 302 Found\r\nLocation: /next\r\nSet-Cookie: docklab_instructor=x; Path=/\r\nClear-Site-Data: \"*\"\r\n\
             Service-Worker-Allowed: /\r\nRefresh: 0; url=http://example.com/\r\nX-App: kept\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        let path = format!("/preview/s/k/{port}/a%20b");
        let p = PreviewPath::parse(&path).unwrap();
        let req = Request::builder()
            .uri(format!("{path}?x=1&token=t"))
            .header("authorization", "Bearer secret-token")
            .header("cookie", "docklab_instructor=secret-login")
            .header("x-csrf-token", "secret-csrf")
            .header("referer", "http://docklab/classes/secret")
            .header("x-mine", "kept")
            .body(Body::empty())
            .unwrap();
        let resp = forward(Ipv4Addr::LOCALHOST, port, &p, req).await.unwrap();
        let received = app.await.unwrap();
        assert!(received.starts_with("GET /a%20b?x=1 HTTP/1.1\r\n"), "{received}");
        assert!(!received.contains("secret"), "{received}");
        assert!(received.contains("x-mine: kept"), "{received}");
        assert_eq!(resp.status(), StatusCode::FOUND);
        assert_eq!(resp.headers()["location"], format!("/preview/s/k/{port}/next").as_str());
        assert_eq!(resp.headers()["x-app"], "kept");
        for gone in ["set-cookie", "clear-site-data", "service-worker-allowed", "refresh"] {
            assert!(!resp.headers().contains_key(gone), "{gone}");
        }
    }

    #[tokio::test]
    async fn a_redirect_out_of_the_preview_is_refused() {
        let (port, app) = one_shot_app("HTTP/1.1 302 Found\r\nLocation: https://example.com/login\r\nContent-Length: 0\r\n\r\n").await;
        let path = format!("/preview/s/k/{port}/");
        let req = Request::builder().uri(path.as_str()).body(Body::empty()).unwrap();
        let resp = forward(Ipv4Addr::LOCALHOST, port, &PreviewPath::parse(&path).unwrap(), req).await.unwrap();
        app.await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert!(!resp.headers().contains_key("location"));
    }

    #[test]
    fn dot_segments_are_removed_as_browsers_do() {
        assert_eq!(remove_dot_segments("/a/b/../c/./d"), "/a/c/d");
        assert_eq!(remove_dot_segments("/a/b/.."), "/a/");
        assert_eq!(remove_dot_segments("/../../x"), "/x");
        assert_eq!(remove_dot_segments("/a/%2e%2E/b"), "/b");
    }

    #[test]
    fn the_preview_name_is_recognised_with_or_without_its_default_port() {
        let mut config = crate::config::ServerConfig::default();
        let uri: Uri = "/".parse().unwrap();
        let on = |config: &crate::config::ServerConfig, host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            on_preview_host(config, &h, &uri)
        };
        assert!(!on(&config, "localhost:8080"), "no --preview-url: no preview name");
        config.preview_url = Some("http://localhost:8080".into());
        assert!(on(&config, "localhost:8080") && on(&config, "LOCALHOST:8080") && !on(&config, "127.0.0.1:8080") && !on(&config, "localhost"));
        config.preview_url = Some("https://preview.example.org".into());
        assert!(on(&config, "preview.example.org") && on(&config, "preview.example.org:443") && !on(&config, "lab.example.org"));
        let names = with_preview_host(crate::origin::SiteNames::default(), Some("https://preview.example.org:8443"));
        assert!(names.host_allowed("preview.example.org:8443") && !names.host_allowed("other.example.org"));
    }

    #[test]
    fn ports_are_validated() {
        assert_eq!(parse_port("8080").unwrap(), 8080);
        for bad in ["0", "65536", "-1", "http", "", "80 "] {
            assert!(parse_port(bad).is_err(), "{bad:?}");
        }
    }
}
