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

use std::path::{Path, PathBuf};
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
    /// Most bytes of packages kept: past it, the least recently used packages are deleted.
    pub max_cache_bytes: u64,
}

/// The cache's size cap unless the operator sets [`CACHE_MAX_ENV`]: 2 GiB holds every package
/// the course's Dockerfiles install (Go, Python, Java and their dependencies) several times over.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;
/// Environment variable that sets the cache's cap (`500M`, `4G`, `2GiB` or bytes).
pub const CACHE_MAX_ENV: &str = "DOCKLAB_APT_CACHE_MAX";

impl ProxyConfig {
    /// The proxy as docklab serves it: cache under `<state-dir>/apt-cache`, capped at
    /// `$DOCKLAB_APT_CACHE_MAX` or [`DEFAULT_CACHE_MAX_BYTES`].
    pub fn new(state_dir: &Path) -> Self {
        let max_cache_bytes = match std::env::var(CACHE_MAX_ENV) {
            Ok(v) => parse_size(&v).unwrap_or_else(|| {
                tracing::warn!(value = %v, "{CACHE_MAX_ENV} is not a size (like 500M or 4G): the package cache keeps the default cap");
                DEFAULT_CACHE_MAX_BYTES
            }),
            Err(_) => DEFAULT_CACHE_MAX_BYTES,
        };
        ProxyConfig { cache_dir: state_dir.join("apt-cache"), upstream: "http://deb.debian.org".into(), timeout: Duration::from_secs(60), max_cache_bytes }
    }
}

/// `500M`, `4G`, `2GiB`, `1048576`: bytes (K, M, G, T are powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let shift = match s[digits..].trim().to_ascii_lowercase().trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

struct Proxy {
    config: ProxyConfig,
    client: Client<HttpConnector, Empty<Bytes>>,
    cache: std::sync::Mutex<CacheIndex>,
}

/// The proxy's routes; bind it where sessions reach it (10.200.0.1:3142).
pub fn router(config: ProxyConfig) -> Router {
    let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build_http();
    let mut cache = CacheIndex::scan(&config.cache_dir, config.max_cache_bytes);
    tracing::info!(dir = %config.cache_dir.display(), files = cache.files.len(), bytes = cache.total, max_bytes = cache.max_bytes, "package cache");
    remove_evicted(&config.cache_dir, &cache.evict_for(None));
    let proxy = Proxy { config, client, cache: std::sync::Mutex::new(cache) };
    Router::new().fallback(handle).with_state(Arc::new(proxy))
}

/// What the package cache holds, by path relative to the cache directory, with when each file
/// was last served. That time is also the file's modification time on disk (set at every use),
/// so the order survives a restart.
#[derive(Debug)]
struct CacheIndex {
    max_bytes: u64,
    total: u64,
    files: std::collections::HashMap<PathBuf, CacheEntry>,
}

#[derive(Debug, Clone, Copy)]
struct CacheEntry {
    size: u64,
    /// Nanoseconds since 1970 of the last use.
    used: u128,
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

impl CacheIndex {
    fn new(max_bytes: u64) -> Self {
        CacheIndex { max_bytes, total: 0, files: Default::default() }
    }

    /// Reads what a cache directory holds; half-written downloads left by a crash are deleted.
    fn scan(dir: &Path, max_bytes: u64) -> Self {
        let mut index = CacheIndex::new(max_bytes);
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                let Ok(meta) = e.metadata() else { continue };
                if meta.is_dir() {
                    todo.push(p);
                } else if meta.is_file() {
                    if e.file_name().to_string_lossy().ends_with(".part") {
                        let _ = std::fs::remove_file(&p);
                        continue;
                    }
                    let used = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
                    if let Ok(rel) = p.strip_prefix(dir) {
                        index.add(rel.to_path_buf(), meta.len(), used);
                    }
                }
            }
        }
        index
    }

    fn add(&mut self, rel: PathBuf, size: u64, used: u128) {
        if let Some(old) = self.files.insert(rel, CacheEntry { size, used }) {
            self.total -= old.size;
        }
        self.total += size;
    }

    /// Marks a file used now; returns the time to record on disk.
    fn touch(&mut self, rel: &Path) -> Option<u128> {
        let e = self.files.get_mut(rel)?;
        e.used = now_nanos().max(e.used + 1);
        Some(e.used)
    }

    /// Once the total passes the cap: the least recently used files to delete (forgotten here),
    /// down to nine tenths of the cap, so that eviction is not paid on every download. `keep`
    /// (the file being served) is never chosen.
    fn evict_for(&mut self, keep: Option<&Path>) -> Vec<PathBuf> {
        if self.total <= self.max_bytes {
            return Vec::new();
        }
        let target = self.max_bytes / 10 * 9;
        let mut by_age: Vec<(u128, PathBuf)> = self.files.iter().filter(|(p, _)| Some(p.as_path()) != keep).map(|(p, e)| (e.used, p.clone())).collect();
        by_age.sort();
        let mut out = Vec::new();
        for (_, p) in by_age {
            if self.total <= target {
                break;
            }
            if let Some(e) = self.files.remove(&p) {
                self.total -= e.size;
                out.push(p);
            }
        }
        out
    }
}

impl Proxy {
    /// Records a use of a cached file, in the index and as the file's modification time.
    fn touch(&self, rel: &Path) {
        let used = self.cache.lock().expect("package cache lock").touch(rel);
        if let Some(used) = used {
            let when = std::time::UNIX_EPOCH + Duration::from_nanos(used.min(u64::MAX as u128) as u64);
            let p = self.config.cache_dir.join(rel);
            if let Err(e) = std::fs::File::open(&p).and_then(|f| f.set_modified(when)) {
                tracing::debug!(file = %p.display(), %e, "recording a package's use");
            }
        }
    }

    /// Adds a downloaded file to the index and evicts what the cap asks for.
    fn cached(&self, rel: &Path, size: u64) {
        let evicted = {
            let mut cache = self.cache.lock().expect("package cache lock");
            cache.add(rel.to_path_buf(), size, now_nanos());
            cache.evict_for(Some(rel))
        };
        remove_evicted(&self.config.cache_dir, &evicted);
    }
}

/// Deletes the files the index has let go of (paths relative to the cache directory).
fn remove_evicted(dir: &Path, rels: &[PathBuf]) {
    if rels.is_empty() {
        return;
    }
    let mut freed = 0;
    for rel in rels {
        let p = dir.join(rel);
        freed += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        if let Err(e) = std::fs::remove_file(&p) {
            tracing::warn!(file = %p.display(), %e, "evicting a package from the cache");
        }
    }
    tracing::info!(files = rels.len(), bytes = freed, "least recently used packages evicted from the package cache");
}

fn refuse(status: StatusCode, why: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("docklab package proxy: {why}\n")).into_response()
}

/// Why an archive path was refused (said to the client, after "docklab package proxy:").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{path} has a malformed percent escape")]
    BadEscape { path: String },
    #[error("{path} encodes a `/`, `\\` or `%` (an encoded separator or a double encoding)")]
    EncodedSeparator { path: String },
    #[error("{path} has a character no Debian archive path has")]
    BadCharacter { path: String },
    #[error("{path} has an empty, `.` or `..` segment")]
    Traversal { path: String },
    #[error("{path} is not a Debian archive path; only /debian/ and /debian-security/ are proxied")]
    NotArchive { path: String },
}

/// Bytes a Debian archive path may hold once decoded, besides letters, digits and `/`: what
/// package, version and index file names use (`python3-pip_23.0.1+dfsg-1_all.deb`, `1:2.3~rc1`).
const PATH_PUNCTUATION: &[u8] = b"-._+~:=@,";

/// Decodes a request path (`/debian/pool/main/p/python-pip/python3-pip_23.0.1%2bdfsg-1_all.deb`,
/// as apt sends it: it escapes `+`, `~` and `:`) into the archive path it names, refusing any
/// path that could leave the archive once decoded: escapes of `/`, `\`, `%` (double encoding)
/// or control bytes, malformed escapes, empty, `.` and `..` segments (escaped or not), and any
/// byte outside the small set Debian's file names use.
pub fn decode_archive_path(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (Some(hi), Some(lo)) = (bytes.get(i + 1).and_then(|c| hex(*c)), bytes.get(i + 2).and_then(|c| hex(*c))) else {
                return Err(PathError::BadEscape { path: raw.into() });
            };
            let d = (hi * 16 + lo) as u8;
            if matches!(d, b'/' | b'\\' | b'%') {
                return Err(PathError::EncodedSeparator { path: raw.into() });
            }
            if !(d.is_ascii_alphanumeric() || PATH_PUNCTUATION.contains(&d)) {
                return Err(PathError::BadCharacter { path: raw.into() });
            }
            out.push(d);
            i += 3;
        } else {
            if !(b.is_ascii_alphanumeric() || b == b'/' || PATH_PUNCTUATION.contains(&b)) {
                return Err(PathError::BadCharacter { path: raw.into() });
            }
            out.push(b);
            i += 1;
        }
    }
    // Only ASCII was pushed, so this cannot fail.
    let path = String::from_utf8(out).map_err(|_| PathError::BadCharacter { path: raw.into() })?;
    let Some(rest) = path.strip_prefix('/') else { return Err(PathError::NotArchive { path: raw.into() }) };
    if rest.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(PathError::Traversal { path: raw.into() });
    }
    if !PATH_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Err(PathError::NotArchive { path: raw.into() });
    }
    Ok(path)
}

/// A decoded archive path as the proxy sends it upstream: every byte but letters, digits,
/// `-._~` and `/` percent-encoded (as apt itself would send it).
fn encode_archive_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The decoded mirror path a request asks for, if the proxy serves it.
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
    if uri.query().is_some() {
        return Err(refuse(StatusCode::FORBIDDEN, format!("{} has a query; only Debian archive paths are proxied", uri.path())));
    }
    decode_archive_path(uri.path()).map_err(|e| refuse(StatusCode::FORBIDDEN, e.to_string()))
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
        let rel = Path::new(path.trim_start_matches('/'));
        let file = proxy.config.cache_dir.join(rel);
        if !file.is_file() && req.method() == Method::GET {
            match fetch_into_cache(&proxy, &path, &file).await {
                Ok(size) => proxy.cached(rel, size),
                Err(r) => return r,
            }
        } else if file.is_file() {
            proxy.touch(rel);
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
    let url = format!("{}{}", proxy.config.upstream, encode_archive_path(path));
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
async fn fetch_into_cache(proxy: &Proxy, path: &str, file: &Path) -> Result<u64, Response> {
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
    let result: Result<u64, String> = async {
        let mut out = tokio::fs::File::create(&tmp).await.map_err(|e| e.to_string())?;
        let mut body = resp.into_body();
        let mut size = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data).await.map_err(|e| e.to_string())?;
                size += data.len() as u64;
            }
        }
        out.flush().await.map_err(|e| e.to_string())?;
        tokio::fs::rename(&tmp, file).await.map_err(|e| e.to_string())?;
        Ok(size)
    }
    .await;
    let size = match result {
        Ok(size) => size,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(fail(e));
        }
    };
    tracing::info!(%path, size, "package cached");
    Ok(size)
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
                    // What the proxy sends for `python3-pip_23.0.1+dfsg-1_all.deb`.
                    "/debian/pool/main/p/python-pip/python3-pip_23.0.1%2Bdfsg-1_all.deb" => (StatusCode::OK, "PIP-BYTES").into_response(),
                    "/debian/pool/main/g/golang-1.19/golang-1.19-go_1.19.8-2_amd64.deb" => (StatusCode::OK, "GO-BYTES").into_response(),
                    p if p.starts_with("/debian/pool/main/s/") => (StatusCode::OK, vec![b'x'; 400]).into_response(),
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
        let app = router(ProxyConfig { cache_dir: tmp.path().join("apt-cache"), upstream, timeout: Duration::from_secs(5), max_cache_bytes: 1 << 20 });
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
        let app = router(ProxyConfig { cache_dir: tmp.path().join("apt-cache"), upstream, timeout: Duration::from_secs(5), max_cache_bytes: 1 << 20 });
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

    #[test]
    fn archive_paths_are_decoded_and_anything_that_could_leave_the_archive_is_refused() {
        use PathError::*;
        let ok = |raw: &str, want: &str| assert_eq!(decode_archive_path(raw).as_deref(), Ok(want), "{raw}");
        // What apt sends: `+`, `~` and `:` escaped, upper or lower case hex.
        ok("/debian/pool/main/p/python-pip/python3-pip_23.0.1%2bdfsg-1_all.deb", "/debian/pool/main/p/python-pip/python3-pip_23.0.1+dfsg-1_all.deb");
        ok("/debian/pool/main/g/gcc-12/libgcc-s1_12.2.0-14%2BDeb12u1_amd64.deb", "/debian/pool/main/g/gcc-12/libgcc-s1_12.2.0-14+Deb12u1_amd64.deb");
        ok("/debian/pool/main/x/x/x_1.0%7erc1-1_all.deb", "/debian/pool/main/x/x/x_1.0~rc1-1_all.deb");
        ok("/debian/pool/main/p/perl/perl_5.36.0-7%2bdeb12u1_amd64.deb", "/debian/pool/main/p/perl/perl_5.36.0-7+deb12u1_amd64.deb");
        ok("/debian/pool/main/e/e/e_1%3a2.0-1_all.deb", "/debian/pool/main/e/e/e_1:2.0-1_all.deb");
        ok("/debian-security/dists/bookworm-security/InRelease", "/debian-security/dists/bookworm-security/InRelease");
        ok("/debian/pool/main/h/hello/hello_2.10-3_amd64.deb", "/debian/pool/main/h/hello/hello_2.10-3_amd64.deb");
        ok("/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/0a1b", "/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/0a1b");
        let no = |raw: &str, want: fn(String) -> PathError| assert_eq!(decode_archive_path(raw), Err(want(raw.to_string())), "{raw}");
        for (raw, want) in [
            ("/debian/../etc/passwd", (|path| Traversal { path }) as fn(String) -> PathError),
            ("/debian/%2e%2e/%2e%2e/etc/passwd", |path| Traversal { path }),
            ("/debian/%2E%2E/x", |path| Traversal { path }),
            ("/debian/.%2e/x", |path| Traversal { path }),
            ("/debian/./pool/x.deb", |path| Traversal { path }),
            ("/debian//pool/x.deb", |path| Traversal { path }),
            ("/debian/", |path| Traversal { path }),
            ("/debian/pool%2f..%2f..%2fetc/passwd", |path| EncodedSeparator { path }),
            ("/debian/pool%2F..%2Fx", |path| EncodedSeparator { path }),
            ("/debian/pool%5c..%5cx", |path| EncodedSeparator { path }),
            ("/debian/%252e%252e/x", |path| EncodedSeparator { path }),
            ("/debian/pool/x%2500.deb", |path| EncodedSeparator { path }),
            ("/debian/pool/x%00.deb", |path| BadCharacter { path }),
            ("/debian/pool/x%0a.deb", |path| BadCharacter { path }),
            ("/debian/pool/x%20y.deb", |path| BadCharacter { path }),
            ("/debian/pool/x%c0%ae.deb", |path| BadCharacter { path }),
            ("/debian/pool/x\\..\\y.deb", |path| BadCharacter { path }),
            ("/debian/pool/x%2.deb", |path| BadEscape { path }),
            ("/debian/pool/x%zz.deb", |path| BadEscape { path }),
            ("/debian/pool/x%", |path| BadEscape { path }),
            ("/ubuntu/dists/jammy/InRelease", |path| NotArchive { path }),
            ("/%64ebian-x/y", |path| NotArchive { path }),
            ("/debianx/pool/y.deb", |path| NotArchive { path }),
            ("debian/pool/y.deb", |path| NotArchive { path }),
        ] {
            no(raw, want);
        }
        // Sent upstream encoded again, the way apt itself would.
        assert_eq!(encode_archive_path("/debian/pool/main/p/python-pip/python3-pip_23.0.1+dfsg-1_all.deb"), "/debian/pool/main/p/python-pip/python3-pip_23.0.1%2Bdfsg-1_all.deb");
        assert_eq!(encode_archive_path("/debian/pool/e_1:2.0~rc1_all.deb"), "/debian/pool/e_1%3A2.0~rc1_all.deb");
    }

    #[tokio::test]
    async fn percent_encoded_packages_pass_are_cached_by_their_real_name_and_traversal_still_fails() {
        let (upstream, hits) = fake_mirror().await;
        let tmp = tempfile::tempdir().unwrap();
        let app = router(ProxyConfig { cache_dir: tmp.path().join("apt-cache"), upstream, timeout: Duration::from_secs(5), max_cache_bytes: 1 << 20 });
        let pip = "http://deb.debian.org/debian/pool/main/p/python-pip/python3-pip_23.0.1%2bdfsg-1_all.deb";
        assert_eq!(call(&app, "GET", pip).await, (StatusCode::OK, "PIP-BYTES".into()));
        assert_eq!(call(&app, "GET", pip).await, (StatusCode::OK, "PIP-BYTES".into()));
        // The literal `+` names the same file.
        assert_eq!(call(&app, "GET", "/debian/pool/main/p/python-pip/python3-pip_23.0.1+dfsg-1_all.deb").await, (StatusCode::OK, "PIP-BYTES".into()));
        assert_eq!(hits.load(Ordering::SeqCst), 1, "one download, then the cache");
        assert!(tmp.path().join("apt-cache/debian/pool/main/p/python-pip/python3-pip_23.0.1+dfsg-1_all.deb").is_file());
        let before = hits.load(Ordering::SeqCst);
        for uri in [
            "http://deb.debian.org/debian/%2e%2e/%2e%2e/etc/passwd",
            "http://deb.debian.org/debian/pool%2f..%2f..%2fetc%2fpasswd",
            "http://deb.debian.org/debian/%252e%252e/etc/passwd",
            "http://deb.debian.org/debian/pool/main/x%00.deb",
            "http://example.com/debian/pool/main/p/python-pip/python3-pip_23.0.1%2bdfsg-1_all.deb",
        ] {
            let (status, body) = call(&app, "GET", uri).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {body}");
            assert!(body.starts_with("docklab package proxy:"), "{body}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), before, "nothing refused reached the mirror");
        assert!(!tmp.path().join("etc").exists());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("12 kb"), Some(12 << 10));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("2X"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }

    #[test]
    fn the_index_evicts_least_recently_used_files_down_to_nine_tenths_of_the_cap() {
        let mut ix = CacheIndex::new(1000);
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            ix.add(PathBuf::from(name), 240, i as u128);
        }
        assert_eq!(ix.total, 960);
        assert!(ix.evict_for(None).is_empty(), "under the cap nothing goes");
        ix.touch(Path::new("a")).unwrap();
        ix.add(PathBuf::from("e"), 240, now_nanos() + 1);
        // 1200 > 1000: down to 900 drops the two least recently used (b, c); a was just used.
        let gone = ix.evict_for(Some(Path::new("e")));
        assert_eq!(gone, [PathBuf::from("b"), PathBuf::from("c")]);
        assert_eq!(ix.total, 720);
        // The same file added twice counts once.
        ix.add(PathBuf::from("e"), 240, now_nanos() + 2);
        assert_eq!(ix.total, 720);
        // A file bigger than the cap stays while it is served; everything else goes.
        ix.add(PathBuf::from("big"), 5000, now_nanos() + 3);
        let mut gone = ix.evict_for(Some(Path::new("big")));
        gone.sort();
        assert_eq!(gone, [PathBuf::from("a"), PathBuf::from("d"), PathBuf::from("e")]);
        assert_eq!(ix.total, 5000);
    }

    #[tokio::test]
    async fn the_cache_stays_under_its_cap_keeping_what_was_used_last_across_restarts() {
        let (upstream, hits) = fake_mirror().await;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("apt-cache");
        let config = ProxyConfig { cache_dir: dir.clone(), upstream, timeout: Duration::from_secs(5), max_cache_bytes: 2000 };
        let app = router(config.clone());
        let deb = |i: usize| format!("http://deb.debian.org/debian/pool/main/s/s{i}/s{i}_1_amd64.deb");
        let file = |i: usize| dir.join(format!("debian/pool/main/s/s{i}/s{i}_1_amd64.deb"));
        // Four packages of 400 bytes: 1600, under the cap.
        for i in 0..4 {
            assert_eq!(call(&app, "GET", &deb(i)).await.0, StatusCode::OK);
            std::thread::sleep(Duration::from_millis(5));
        }
        // s0 is used again, so s1 is now the least recently used.
        assert_eq!(call(&app, "GET", &deb(0)).await.0, StatusCode::OK);
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        // The sixth package makes 2400 > 2000: down to 1800 evicts s1 and s2.
        for i in 4..6 {
            assert_eq!(call(&app, "GET", &deb(i)).await.0, StatusCode::OK);
            std::thread::sleep(Duration::from_millis(5));
        }
        let kept: Vec<usize> = (0..6).filter(|i| file(*i).is_file()).collect();
        assert_eq!(kept, [0, 3, 4, 5], "the least recently used went first");
        let on_disk: u64 = kept.iter().map(|i| std::fs::metadata(file(*i)).unwrap().len()).sum();
        assert!(on_disk <= 2000, "{on_disk} bytes kept");
        // An evicted package is fetched again when asked for.
        assert_eq!(call(&app, "GET", &deb(1)).await, (StatusCode::OK, "x".repeat(400)));
        assert_eq!(hits.load(Ordering::SeqCst), 7);
        // A restart with a smaller cap reads the order back from the files' times: the oldest go.
        std::fs::write(dir.join("debian/pool/main/s/s5/.s5_1_amd64.deb.1.2.part"), "half").unwrap();
        let _app = router(ProxyConfig { max_cache_bytes: 1000, ..config });
        let kept: Vec<usize> = (0..6).filter(|i| file(*i).is_file()).collect();
        assert_eq!(kept, [1, 5], "the two used last stay under 900 bytes");
        assert!(!dir.join("debian/pool/main/s/s5/.s5_1_amd64.deb.1.2.part").exists(), "a half download left by a crash is removed");
    }
}
