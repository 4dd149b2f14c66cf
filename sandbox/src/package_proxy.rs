//! A caching HTTP proxy for Debian packages, for session machines and the builds inside them.
//!
//! Images docklab builds carry `Acquire::http::Proxy "http://10.200.0.1:3142";`, so apt in a
//! learner's `RUN apt-get update && apt-get install -y golang-go` sends it requests such as
//! `GET http://deb.debian.org/debian/dists/bookworm/InRelease`. It also answers as a plain mirror
//! (`deb http://10.200.0.1:3142/debian bookworm main`).
//!
//! Only package traffic passes: `GET`/`HEAD` of paths under `/debian/` or `/debian-security/`,
//! addressed to a Debian mirror host (or to the proxy itself). Everything is fetched from one
//! upstream mirror (`http://deb.debian.org` by default). Package files (`.deb`, immutable in
//! the pool) are cached by path under `<state-dir>/apt-cache`; indexes pass through, with the
//! client's conditional and range headers, so apt's own caching works.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;

/// Hosts apt may address through the proxy. All of them are served from the upstream mirror.
pub const DEBIAN_HOSTS: &[&str] = &["deb.debian.org", "security.debian.org", "ftp.debian.org", "httpredir.debian.org", "cdn-fastly.deb.debian.org"];
const PATH_PREFIXES: &[&str] = &["/debian/", "/debian-security/"];
/// Request headers passed upstream; the rest (cookies, proxy credentials, ...) stay here.
const FORWARD_REQUEST: &[HeaderName] = &[header::IF_MODIFIED_SINCE, header::IF_NONE_MATCH, header::RANGE, header::IF_RANGE, header::CACHE_CONTROL, header::USER_AGENT];
const FORWARD_RESPONSE: &[HeaderName] = &[header::CONTENT_TYPE, header::CONTENT_LENGTH, header::LAST_MODIFIED, header::ETAG, header::CONTENT_RANGE, header::ACCEPT_RANGES, header::CACHE_CONTROL, header::EXPIRES];

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where package files are kept (`<state-dir>/apt-cache`).
    pub cache_dir: PathBuf,
    /// The mirror requests go to, without a trailing slash: scheme `http`, e.g. `http://deb.debian.org`.
    pub upstream: String,
    /// Longest wait for the mirror's response headers.
    pub timeout: Duration,
}

impl ProxyConfig {
    pub fn new(state_dir: &Path) -> Self {
        ProxyConfig { cache_dir: state_dir.join("apt-cache"), upstream: "http://deb.debian.org".into(), timeout: Duration::from_secs(60) }
    }
}

struct Proxy {
    config: ProxyConfig,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// The proxy's routes; bind it where sessions reach it (10.200.0.1:3142).
pub fn router(config: ProxyConfig) -> Router {
    let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build_http();
    Router::new().fallback(handle).with_state(Arc::new(Proxy { config, client }))
}

fn refuse(status: StatusCode, why: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("docklab package proxy: {why}\n")).into_response()
}

/// The mirror path a request asks for, if the proxy serves it.
#[allow(clippy::result_large_err)] // the error is the response to send
fn allowed_path(method: &Method, uri: &Uri, host_header: Option<&str>) -> Result<String, Response> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed: only GET and HEAD of Debian packages pass")));
    }
    if let Some(host) = uri.host() {
        // Absolute-form: apt using us as its HTTP proxy. Only Debian's mirrors, only plain HTTP.
        if uri.scheme_str() != Some("http") || !DEBIAN_HOSTS.contains(&host.to_ascii_lowercase().as_str()) {
            return Err(refuse(StatusCode::FORBIDDEN, format!("{host} is not a Debian package mirror; only {} are proxied", DEBIAN_HOSTS.join(", "))));
        }
    } else if method == Method::CONNECT || host_header.is_none() {
        return Err(refuse(StatusCode::FORBIDDEN, "only Debian package requests pass".into()));
    }
    let path = uri.path();
    let clean = Path::new(path).components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))) && !path.contains('%') && !path.contains("//");
    if !PATH_PREFIXES.iter().any(|p| path.starts_with(p)) || !clean || uri.query().is_some() {
        return Err(refuse(StatusCode::FORBIDDEN, format!("{path} is not a Debian archive path; only /debian/ and /debian-security/ are proxied")));
    }
    Ok(path.to_string())
}

fn cacheable(path: &str) -> bool {
    path.contains("/pool/") && (path.ends_with(".deb") || path.ends_with(".udeb"))
}

async fn handle(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    let host_header = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string);
    let path = match allowed_path(req.method(), req.uri(), host_header.as_deref()) {
        Ok(p) => p,
        Err(r) => {
            tracing::info!(method = %req.method(), uri = %req.uri(), "package proxy refused a request");
            return r;
        }
    };
    if cacheable(&path) {
        let file = proxy.config.cache_dir.join(path.trim_start_matches('/'));
        if !file.is_file() && req.method() == Method::GET {
            if let Err(r) = fetch_into_cache(&proxy, &path, &file).await {
                return r;
            }
        }
        if file.is_file() {
            tracing::debug!(%path, "package served from the cache");
            return serve_file(&file, req).await;
        }
    }
    forward(&proxy, &path, req).await
}

async fn serve_file(file: &Path, req: Request) -> Response {
    let mime = "application/vnd.debian.binary-package".parse().expect("a valid mime type");
    match tower_http::services::ServeFile::new_with_mime(file, &mime).oneshot(req).await {
        Ok(r) => r.into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the cache failed: {e}")),
    }
}

#[allow(clippy::result_large_err)] // the error is the response to send
async fn upstream_get(proxy: &Proxy, method: Method, path: &str, headers: &axum::http::HeaderMap) -> Result<hyper::Response<hyper::body::Incoming>, Response> {
    let url = format!("{}{}", proxy.config.upstream, path);
    let mut builder = hyper::Request::builder().method(method).uri(&url);
    for name in FORWARD_REQUEST {
        if let Some(v) = headers.get(name) {
            builder = builder.header(name, v);
        }
    }
    let upstream_req = builder.body(Empty::new()).map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    match tokio::time::timeout(proxy.config.timeout, proxy.client.request(upstream_req)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => {
            tracing::warn!(%url, %e, "package mirror unreachable");
            Err(refuse(StatusCode::BAD_GATEWAY, format!("the Debian mirror {} did not answer: {e}", proxy.config.upstream)))
        }
        Err(_) => Err(refuse(StatusCode::GATEWAY_TIMEOUT, format!("the Debian mirror {} did not answer in time", proxy.config.upstream))),
    }
}

/// Downloads a package into the cache (a temporary file, renamed when complete).
#[allow(clippy::result_large_err)] // the error is the response to send
async fn fetch_into_cache(proxy: &Proxy, path: &str, file: &Path) -> Result<(), Response> {
    let resp = upstream_get(proxy, Method::GET, path, &Default::default()).await?;
    if resp.status() != StatusCode::OK {
        // Not cached: pass the mirror's answer (404 and the like) through.
        return Err(relay(resp));
    }
    let fail = |e: String| {
        tracing::error!(file = %file.display(), %e, "caching a package");
        refuse(StatusCode::BAD_GATEWAY, format!("fetching {path} failed: {e}"))
    };
    let dir = file.parent().expect("cache files have a parent");
    tokio::fs::create_dir_all(dir).await.map_err(|e| fail(e.to_string()))?;
    let tmp = dir.join(format!(".{}.{}.{}.part", file.file_name().and_then(|n| n.to_str()).unwrap_or("pkg"), std::process::id(), rand::random::<u32>()));
    let result: Result<(), String> = async {
        let mut out = tokio::fs::File::create(&tmp).await.map_err(|e| e.to_string())?;
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data).await.map_err(|e| e.to_string())?;
            }
        }
        out.flush().await.map_err(|e| e.to_string())?;
        tokio::fs::rename(&tmp, file).await.map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(fail(e));
    }
    tracing::info!(%path, "package cached");
    Ok(())
}

fn relay(resp: hyper::Response<hyper::body::Incoming>) -> Response {
    let (parts, body) = resp.into_parts();
    let mut out = Response::builder().status(parts.status);
    for name in FORWARD_RESPONSE {
        if let Some(v) = parts.headers.get(name) {
            out = out.header(name, v);
        }
    }
    out.body(Body::new(body)).unwrap_or_else(|e| refuse(StatusCode::BAD_GATEWAY, e.to_string()))
}

async fn forward(proxy: &Proxy, path: &str, req: Request) -> Response {
    match upstream_get(proxy, req.method().clone(), path, req.headers()).await {
        Ok(resp) => relay(resp),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fake mirror on loopback that counts its requests.
    async fn fake_mirror() -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = Router::new().fallback(move |req: Request| {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                match req.uri().path() {
                    "/debian/pool/main/h/hello/hello_1_amd64.deb" => (StatusCode::OK, "DEB-BYTES").into_response(),
                    "/debian/dists/bookworm/InRelease" => (StatusCode::OK, [(header::LAST_MODIFIED, "Sat, 01 Jun 2024 00:00:00 GMT")], "RELEASE").into_response(),
                    _ => (StatusCode::NOT_FOUND, "nope").into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), hits)
    }

    async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, String) {
        let req = Request::builder().method(method).uri(uri).header("host", "deb.debian.org").body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        (status, String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
    }

    #[tokio::test]
    async fn caches_packages_and_passes_indexes_through() {
        let (upstream, hits) = fake_mirror().await;
        let tmp = tempfile::tempdir().unwrap();
        let app = router(ProxyConfig { cache_dir: tmp.path().join("apt-cache"), upstream, timeout: Duration::from_secs(5) });
        let deb = "http://deb.debian.org/debian/pool/main/h/hello/hello_1_amd64.deb";
        assert_eq!(call(&app, "GET", deb).await, (StatusCode::OK, "DEB-BYTES".into()));
        assert_eq!(call(&app, "GET", deb).await, (StatusCode::OK, "DEB-BYTES".into()));
        assert_eq!(hits.load(Ordering::SeqCst), 1, "the second download comes from the cache");
        assert!(tmp.path().join("apt-cache/debian/pool/main/h/hello/hello_1_amd64.deb").is_file());
        // Used as a mirror (origin-form) too.
        assert_eq!(call(&app, "GET", "/debian/pool/main/h/hello/hello_1_amd64.deb").await.0, StatusCode::OK);
        assert_eq!(call(&app, "GET", "http://deb.debian.org/debian/dists/bookworm/InRelease").await, (StatusCode::OK, "RELEASE".into()));
        assert_eq!(call(&app, "GET", "http://security.debian.org/debian-security/dists/bookworm/InRelease").await.0, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, "GET", "http://deb.debian.org/debian/pool/main/n/nope/nope_1_amd64.deb").await.0, StatusCode::NOT_FOUND);
        assert!(!tmp.path().join("apt-cache/debian/pool/main/n/nope/nope_1_amd64.deb").exists(), "a 404 is not cached");
    }

    #[tokio::test]
    async fn refuses_everything_but_debian_packages() {
        let (upstream, hits) = fake_mirror().await;
        let tmp = tempfile::tempdir().unwrap();
        let app = router(ProxyConfig { cache_dir: tmp.path().join("apt-cache"), upstream, timeout: Duration::from_secs(5) });
        for (method, uri) in [
            ("GET", "http://example.com/debian/dists/bookworm/InRelease"),
            ("GET", "http://registry-1.docker.io/v2/"),
            ("GET", "http://deb.debian.org/ubuntu/dists/jammy/InRelease"),
            ("GET", "http://deb.debian.org/debian/../etc/passwd"),
            ("GET", "http://deb.debian.org/debian/%2e%2e/x"),
            ("POST", "http://deb.debian.org/debian/dists/bookworm/InRelease"),
            ("GET", "https://deb.debian.org/debian/dists/bookworm/InRelease"),
        ] {
            let (status, body) = call(&app, method, uri).await;
            assert!(status == StatusCode::FORBIDDEN || status == StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}: {status}");
            assert!(body.starts_with("docklab package proxy:"), "{body}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing refused reached the mirror");
    }
}
