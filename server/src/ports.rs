//! Port preview: `/sessions/{id}/ports/{port}/…` reaches a port published inside the learner's
//! machine (`docker run -p 8080:80 nginx`) from the browser, HTTP and WebSocket alike.
//!
//! The lesson page links here with `?token=…`; the first request trades the token for a cookie
//! scoped to this session's preview path and redirects to the same URL without it, so the page
//! under preview (and its own links and assets) never sees the token.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::any;
use axum::Router;
use hyper_util::rt::TokioIo;
use tracing::{debug, info_span, Instrument};

use crate::app::AppState;
use crate::error::AppError;
use crate::sessions::require_ready;

/// Headers that describe one hop and must not be forwarded (RFC 9110, section 7.6.1).
const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "proxy-connection"];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions/{id}/ports/{port}", any(redirect_to_slash))
        .route("/sessions/{id}/ports/{port}/", any(proxy_root))
        .route("/sessions/{id}/ports/{port}/{*rest}", any(proxy_path))
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

async fn redirect_to_slash(Path((id, port)): Path<(String, String)>, uri: Uri) -> Response {
    let q = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Redirect::permanent(&format!("/sessions/{id}/ports/{port}/{q}")).into_response()
}

async fn proxy_root(State(state): State<AppState>, Path((id, port)): Path<(String, String)>, req: Request) -> Result<Response, AppError> {
    proxy(state, id, port, String::new(), req).await
}

async fn proxy_path(State(state): State<AppState>, Path((id, port, rest)): Path<(String, String, String)>, req: Request) -> Result<Response, AppError> {
    proxy(state, id, port, rest, req).await
}

async fn proxy(state: AppState, id: String, port: String, rest: String, mut req: Request) -> Result<Response, AppError> {
    let port = parse_port(&port)?;
    let session = state.sessions.get(&id).ok_or_else(|| AppError::UnknownSession { id: id.chars().take(64).collect() })?;
    let (token, from_query) = given_token(req.uri(), req.headers(), &id);
    let token = token.ok_or(AppError::MissingToken)?;
    if !session.token_matches(&token) {
        return Err(AppError::BadToken);
    }
    if from_query {
        // Trade the token for a cookie that only this session's previews receive.
        let cookie = format!("{}={token}; Path=/sessions/{id}/; HttpOnly; SameSite=Lax", cookie_name(&id));
        let mut resp = Redirect::to(&without_token(req.uri())).into_response();
        resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(AppError::internal)?);
        return Ok(resp);
    }
    require_ready(&session)?;
    let addr = state.backend.address(&id).await.ok_or_else(|| AppError::internal(format!("session {id} has no network address")))?;
    let span = info_span!("port_preview", session = %id, port);
    async move { forward(addr, port, &rest, &mut req).await }.instrument(span).await
}

/// Sends the request to `addr:port` and streams the answer back; follows a WebSocket upgrade.
async fn forward(addr: Ipv4Addr, port: u16, rest: &str, req: &mut Request) -> Result<Response, AppError> {
    let target = SocketAddr::from((addr, port));
    let unreachable = |why: String| {
        Ok(problem(
            StatusCode::BAD_GATEWAY,
            &format!("Nothing answered on port {port} in your machine ({why}). Is a container publishing it? Try `docker ps`."),
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
    let downstream_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut *req));
    let query = without_token(req.uri());
    let query = query.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    let path = format!("/{rest}{query}");
    let mut builder = hyper::Request::builder().method(req.method().clone()).uri(path);
    for (k, v) in req.headers() {
        let name = k.as_str();
        let keep_for_upgrade = wants_upgrade && (name == "connection" || name == "upgrade");
        if (HOP_BY_HOP.contains(&name) && !keep_for_upgrade) || name == "cookie" || name == "host" {
            continue;
        }
        builder = builder.header(k, v);
    }
    builder = builder.header(header::HOST, format!("{addr}:{port}"));
    let body = std::mem::replace(req.body_mut(), Body::empty());
    let upstream_req = builder.body(body).map_err(AppError::internal)?;
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
    Ok(Response::from_parts(parts, Body::new(body)))
}

fn problem(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message, "code": "port_unreachable" }))).into_response()
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
    fn ports_are_validated() {
        assert_eq!(parse_port("8080").unwrap(), 8080);
        for bad in ["0", "65536", "-1", "http", "", "80 "] {
            assert!(parse_port(bad).is_err(), "{bad:?}");
        }
    }
}
