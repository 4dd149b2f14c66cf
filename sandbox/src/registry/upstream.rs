//! The registry as a pull-through cache of an upstream registry (`docklab serve
//! --registry-upstream https://registry-1.docker.io`, for hosts that reach the internet).
//!
//! What docklab builds is always served first. A name or tag it does not have is asked of the
//! upstream: manifests (by tag or digest) and blobs are fetched, checked against their digests,
//! kept under `<state-dir>/registry-cache`, and served from there afterwards. A blob is streamed
//! to the machine while it is written to the cache, so a large layer starts arriving at once.
//! Tags are asked of the upstream again after [`TAG_TTL`]; when the upstream cannot be reached,
//! a cached tag is served however old it is. Docker Hub's token authentication (anonymous pulls)
//! and its redirects to a CDN for blobs are followed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// How long a cached tag is served without asking the upstream whether it moved.
pub const TAG_TTL: Duration = Duration::from_secs(3600);
/// Longest wait for the upstream's response headers.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Manifests bigger than this are refused (Docker Hub's limit is 4 MiB too).
const MAX_MANIFEST: usize = 4 << 20;
/// Every manifest kind Docker 20.10 pulls, so the upstream answers with what it has.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0:?} is not an upstream registry URL: give its scheme and host, e.g. https://registry-1.docker.io")]
    BadUrl(String),
    #[error("loading the system's CA certificates for the upstream registry: {0}")]
    Roots(#[source] std::io::Error),
    #[error("{url} could not be reached: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{url} answered {status}{}", if .message.is_empty() { String::new() } else { format!(": {}", .message) })]
    Status { url: String, status: StatusCode, message: String },
    #[error("{url} sent content whose digest is {actual}, not {expected}")]
    Digest { url: String, expected: String, actual: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, #[source] source: std::io::Error },
}

impl UpstreamError {
    /// Whether the upstream said the thing does not exist (rather than failing to answer).
    pub fn is_not_found(&self) -> bool {
        matches!(self, UpstreamError::Status { status, .. } if *status == StatusCode::NOT_FOUND || *status == StatusCode::UNAUTHORIZED)
    }
}

/// A manifest kept in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedManifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// An upstream registry and the cache of what was pulled from it.
pub struct Upstream {
    base: String,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    dir: PathBuf,
    /// Bearer tokens by scope, with when they stop being used.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> UpstreamError + 'a {
    move |source| UpstreamError::Io { what, path: path.to_path_buf(), source }
}

fn hex_of(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())).then_some(hex)
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.len() <= 128 && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) && !tag.starts_with(['.', '-'])
}

/// The `"errors"[0].message` of a distribution API error body, if it is one.
fn registry_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string())
}

/// Parses `Bearer realm="…",service="…",scope="…"` into the token URL's parts.
fn parse_bearer(challenge: &str) -> Option<(String, Vec<(String, String)>)> {
    let rest = challenge.trim().strip_prefix("Bearer ").or_else(|| challenge.trim().strip_prefix("bearer "))?;
    let mut realm = None;
    let mut params = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        if key == "realm" {
            realm = Some(value);
        } else {
            params.push((key, value));
        }
        s = after.trim_start_matches(',').trim();
    }
    Some((realm?, params))
}

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Upstream {
    /// An upstream at `url` (scheme and host, e.g. `https://registry-1.docker.io`), caching under
    /// `<state-dir>/registry-cache`.
    pub fn new(url: &str, state_dir: &Path) -> Result<Self, UpstreamError> {
        let uri: Uri = url.trim_end_matches('/').parse().map_err(|_| UpstreamError::BadUrl(url.into()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() || !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(UpstreamError::BadUrl(url.into()));
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(UpstreamError::Roots)?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https);
        Ok(Upstream { base: url.trim_end_matches('/').to_string(), client, dir: state_dir.join("registry-cache"), tokens: Mutex::new(HashMap::new()) })
    }

    /// The upstream's URL, for messages.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The repository as the upstream names it: Docker Hub keeps official images under `library/`.
    fn upstream_repo(repo: &str) -> String {
        if repo.contains('/') {
            repo.to_string()
        } else {
            format!("library/{repo}")
        }
    }

    fn manifest_path(&self, hex: &str) -> PathBuf {
        self.dir.join("manifests/sha256").join(hex)
    }

    fn tag_path(&self, repo: &str, tag: &str) -> PathBuf {
        self.dir.join("tags").join(Self::upstream_repo(repo)).join(tag)
    }

    /// A blob already in the cache.
    pub fn cached_blob(&self, digest: &str) -> Option<PathBuf> {
        let p = self.dir.join("blobs/sha256").join(hex_of(digest)?);
        p.is_file().then_some(p)
    }

    fn read_manifest(&self, digest: &str) -> Option<CachedManifest> {
        let p = self.manifest_path(hex_of(digest)?);
        let bytes = std::fs::read(&p).ok()?;
        let media_type = std::fs::read_to_string(p.with_extension("type")).ok()?.trim().to_string();
        Some(CachedManifest { digest: digest.to_string(), media_type, bytes })
    }

    /// A cached manifest by digest, or by tag when the tag was fetched within `max_age`.
    pub fn cached_manifest(&self, repo: &str, reference: &str, max_age: Option<Duration>) -> Option<CachedManifest> {
        if reference.starts_with("sha256:") {
            return self.read_manifest(reference);
        }
        let tag = self.tag_path(repo, reference);
        if let Some(max) = max_age {
            let age = std::fs::metadata(&tag).and_then(|m| m.modified()).ok().and_then(|t| SystemTime::now().duration_since(t).ok())?;
            if age > max {
                return None;
            }
        }
        self.read_manifest(std::fs::read_to_string(tag).ok()?.trim())
    }

    async fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), UpstreamError> {
        let dir = path.parent().expect("cache paths have a parent");
        tokio::fs::create_dir_all(dir).await.map_err(io("creating", dir))?;
        let tmp = dir.join(format!(".{}.{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("f"), rand::random::<u64>()));
        tokio::fs::write(&tmp, data).await.map_err(io("writing", &tmp))?;
        tokio::fs::rename(&tmp, path).await.map_err(io("installing", path))
    }

    /// Sends a request to the upstream, with a bearer token when it asks for one, following
    /// redirects (without the token when they lead to another host).
    async fn send(&self, method: Method, repo: &str, path: &str, accept: Option<&str>) -> Result<hyper::Response<hyper::body::Incoming>, UpstreamError> {
        let scope = format!("repository:{}:pull", Self::upstream_repo(repo));
        let mut url = format!("{}{path}", self.base);
        let mut token = self.tokens.lock().expect("token lock").get(&scope).filter(|(_, until)| Instant::now() < *until).map(|(t, _)| t.clone());
        let mut authenticated = false;
        let origin = url.parse::<Uri>().ok().and_then(|u| u.authority().cloned());
        for _ in 0..6 {
            let uri: Uri = url.parse().map_err(|_| UpstreamError::BadUrl(url.clone()))?;
            let same_host = uri.authority() == origin.as_ref();
            let mut req = hyper::Request::builder().method(method.clone()).uri(&uri).header(header::USER_AGENT, "docklab-registry-cache");
            if let Some(a) = accept {
                req = req.header(header::ACCEPT, a);
            }
            if let (Some(t), true) = (&token, same_host) {
                req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let req = req.body(Empty::new()).map_err(|e| UpstreamError::Unreachable { url: url.clone(), detail: e.to_string() })?;
            let resp = match tokio::time::timeout(TIMEOUT, self.client.request(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(UpstreamError::Unreachable { url, detail: format!("{e} ({})", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()) }),
                Err(_) => return Err(UpstreamError::Unreachable { url, detail: format!("no answer within {} s", TIMEOUT.as_secs()) }),
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && same_host && !authenticated {
                let challenge = resp.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_bearer);
                if let Some((realm, params)) = challenge {
                    token = Some(self.fetch_token(&realm, &params, &scope).await?);
                    authenticated = true;
                    continue;
                }
            }
            if status.is_redirection() {
                if let Some(loc) = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()) {
                    url = if loc.starts_with("http://") || loc.starts_with("https://") {
                        loc.to_string()
                    } else {
                        format!("{}://{}{loc}", uri.scheme_str().unwrap_or("https"), uri.authority().map(|a| a.as_str()).unwrap_or(""))
                    };
                    continue;
                }
            }
            return Ok(resp);
        }
        Err(UpstreamError::Unreachable { url, detail: "too many redirects".into() })
    }

    async fn fetch_token(&self, realm: &str, params: &[(String, String)], scope: &str) -> Result<String, UpstreamError> {
        let mut url = format!("{realm}?");
        let mut has_scope = false;
        for (k, v) in params {
            has_scope |= k == "scope";
            url.push_str(&format!("{k}={}&", query_escape(v)));
        }
        if !has_scope {
            url.push_str(&format!("scope={}&", query_escape(scope)));
        }
        url.pop();
        let uri: Uri = url.parse().map_err(|_| UpstreamError::BadUrl(url.clone()))?;
        let req = hyper::Request::get(uri).body(Empty::new()).map_err(|e| UpstreamError::Unreachable { url: url.clone(), detail: e.to_string() })?;
        let resp = match tokio::time::timeout(TIMEOUT, self.client.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(UpstreamError::Unreachable { url, detail: e.to_string() }),
            Err(_) => return Err(UpstreamError::Unreachable { url, detail: "no answer".into() }),
        };
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| UpstreamError::Unreachable { url: url.clone(), detail: e.to_string() })?.to_bytes();
        if !status.is_success() {
            return Err(UpstreamError::Status { url, status, message: registry_message(&body) });
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let token = v["token"].as_str().or(v["access_token"].as_str()).unwrap_or_default().to_string();
        if token.is_empty() {
            return Err(UpstreamError::Status { url, status, message: "no token in the answer".into() });
        }
        let life = v["expires_in"].as_u64().unwrap_or(60).clamp(10, 3600);
        self.tokens.lock().expect("token lock").insert(scope.to_string(), (token.clone(), Instant::now() + Duration::from_secs(life - 5)));
        Ok(token)
    }

    /// Fetches a manifest from the upstream, keeps it, and returns it. A tag that the upstream
    /// cannot be asked about is served from the cache if it was ever fetched.
    pub async fn manifest(&self, repo: &str, reference: &str) -> Result<CachedManifest, UpstreamError> {
        let by_digest = reference.starts_with("sha256:");
        if (by_digest && hex_of(reference).is_none()) || (!by_digest && !valid_tag(reference)) {
            return Err(UpstreamError::Status { url: self.base.clone(), status: StatusCode::BAD_REQUEST, message: format!("{reference:?} is not a tag or digest") });
        }
        if let Some(m) = self.cached_manifest(repo, reference, Some(TAG_TTL)) {
            tracing::debug!(repo, reference, "manifest served from the registry cache");
            return Ok(m);
        }
        let path = format!("/v2/{}/manifests/{reference}", Self::upstream_repo(repo));
        let url = format!("{}{path}", self.base);
        let fetched = async {
            let resp = self.send(Method::GET, repo, &path, Some(MANIFEST_ACCEPT)).await?;
            let status = resp.status();
            let media_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_MANIFEST)
                .collect()
                .await
                .map_err(|e| UpstreamError::Unreachable { url: url.clone(), detail: e.to_string() })?
                .to_bytes();
            if !status.is_success() {
                return Err(UpstreamError::Status { url: url.clone(), status, message: registry_message(&body) });
            }
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
            if by_digest && digest != reference {
                return Err(UpstreamError::Digest { url: url.clone(), expected: reference.into(), actual: digest });
            }
            let media_type = if media_type.is_empty() {
                serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["mediaType"].as_str().map(str::to_string)).unwrap_or_default()
            } else {
                media_type
            };
            Ok(CachedManifest { digest, media_type, bytes: body.to_vec() })
        }
        .await;
        match fetched {
            Ok(m) => {
                let hex = hex_of(&m.digest).expect("a digest we computed");
                let p = self.manifest_path(hex);
                self.write_atomic(&p.with_extension("type"), m.media_type.as_bytes()).await?;
                self.write_atomic(&p, &m.bytes).await?;
                if !by_digest {
                    self.write_atomic(&self.tag_path(repo, reference), format!("{}\n", m.digest).as_bytes()).await?;
                }
                tracing::info!(repo, reference, digest = %m.digest, upstream = %self.base, "manifest fetched into the registry cache");
                Ok(m)
            }
            Err(e) if !e.is_not_found() => match self.cached_manifest(repo, reference, None) {
                Some(m) => {
                    tracing::warn!(repo, reference, error = %e, "upstream unavailable: serving the cached manifest");
                    Ok(m)
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Answers a blob request from the upstream: HEAD is passed on; GET streams the blob to the
    /// client while writing it to the cache, where it is installed once its digest checks out.
    pub async fn blob(&self, repo: &str, digest: &str, method: &Method) -> Result<Response, UpstreamError> {
        let Some(hex) = hex_of(digest) else {
            return Err(UpstreamError::Status { url: self.base.clone(), status: StatusCode::BAD_REQUEST, message: format!("{digest:?} is not a sha256 digest") });
        };
        let path = format!("/v2/{}/blobs/{digest}", Self::upstream_repo(repo));
        let url = format!("{}{path}", self.base);
        let resp = self.send(method.clone(), repo, &path, None).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(UpstreamError::Status { url, status, message: registry_message(&body) });
        }
        let length = resp.headers().get(header::CONTENT_LENGTH).cloned();
        let mut builder = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header("docker-content-digest", digest)
            .header("docker-distribution-api-version", "registry/2.0");
        if let Some(l) = length {
            builder = builder.header(header::CONTENT_LENGTH, l);
        }
        if *method == Method::HEAD {
            return Ok(builder.body(Body::empty()).expect("valid response parts"));
        }
        let dir = self.dir.join("blobs/sha256");
        tokio::fs::create_dir_all(&dir).await.map_err(io("creating", &dir))?;
        let part = dir.join(format!(".{hex}.{}.part", rand::random::<u64>()));
        let mut file = tokio::fs::File::create(&part).await.map_err(io("creating", &part))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        let (final_path, digest_owned) = (dir.join(hex), digest.to_string());
        let mut body = resp.into_body();
        tokio::spawn(async move {
            let mut hasher = Sha256::new();
            let mut client_gone = false;
            let mut failed = None;
            while let Some(frame) = body.frame().await {
                let chunk = match frame {
                    Ok(f) => match f.into_data() {
                        Ok(d) => d,
                        Err(_) => continue,
                    },
                    Err(e) => {
                        failed = Some(format!("the download broke off: {e}"));
                        break;
                    }
                };
                hasher.update(&chunk);
                if let Err(e) = file.write_all(&chunk).await {
                    failed = Some(format!("writing {}: {e}", part.display()));
                    break;
                }
                // The cache is filled even when the client went away.
                if !client_gone && tx.send(Ok(chunk)).await.is_err() {
                    client_gone = true;
                }
            }
            let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
            if failed.is_none() && actual != digest_owned {
                failed = Some(format!("the blob's digest is {actual}, not {digest_owned}"));
            }
            let installed = match failed {
                None => match file.sync_all().await {
                    Err(e) => Err(format!("writing {}: {e}", part.display())),
                    Ok(()) => tokio::fs::rename(&part, &final_path).await.map_err(|e| format!("installing {}: {e}", final_path.display())),
                },
                Some(f) => Err(f),
            };
            match installed {
                Ok(()) => tracing::info!(digest = %digest_owned, "blob fetched into the registry cache"),
                Err(why) => {
                    tracing::warn!(digest = %digest_owned, %why, "blob not cached");
                    let _ = tokio::fs::remove_file(&part).await;
                    let _ = tx.send(Err(std::io::Error::other(why))).await;
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        Ok(builder.body(Body::from_stream(stream)).expect("valid response parts"))
    }
}

/// A response header value from a media type we stored (falls back to Docker's v2 manifest).
pub fn media_header(media_type: &str) -> HeaderValue {
    HeaderValue::from_str(media_type).unwrap_or(HeaderValue::from_static("application/vnd.docker.distribution.manifest.v2+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry that wants a bearer token (from its own token endpoint) for manifests, and
    /// redirects blobs to a "CDN" on another address that must not see the token.
    async fn token_registry() -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        use axum::extract::Request;
        use axum::routing::get;
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let cdn_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cdn = format!("http://{}", cdn_listener.local_addr().unwrap());
        let s2 = seen.clone();
        let cdn_app = axum::Router::new().fallback(move |req: Request| {
            let s2 = s2.clone();
            async move {
                s2.lock().unwrap().push(format!("cdn auth={}", req.headers().contains_key(header::AUTHORIZATION)));
                "layer bytes"
            }
        });
        tokio::spawn(async move { axum::serve(cdn_listener, cdn_app).await.unwrap() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let realm = format!("{base}/token");
        let s1 = seen.clone();
        let app = axum::Router::new()
            .route(
                "/token",
                get(|req: Request| async move {
                    assert!(req.uri().query().unwrap().contains("scope=repository:library/alpine:pull"), "{}", req.uri());
                    axum::Json(serde_json::json!({ "token": "good", "expires_in": 300 }))
                }),
            )
            .fallback(move |req: Request| {
                let (s1, realm, cdn) = (s1.clone(), realm.clone(), cdn.clone());
                async move {
                    let authed = req.headers().get(header::AUTHORIZATION).is_some_and(|v| v == "Bearer good");
                    s1.lock().unwrap().push(format!("{} auth={authed}", req.uri().path()));
                    if !authed {
                        let challenge = format!(r#"Bearer realm="{realm}",service="test""#);
                        return Response::builder().status(StatusCode::UNAUTHORIZED).header(header::WWW_AUTHENTICATE, challenge).body(Body::empty()).unwrap();
                    }
                    if req.uri().path().contains("/blobs/") {
                        return Response::builder().status(StatusCode::TEMPORARY_REDIRECT).header(header::LOCATION, format!("{cdn}/signed/blob")).body(Body::empty()).unwrap();
                    }
                    Response::builder()
                        .header(header::CONTENT_TYPE, "application/vnd.docker.distribution.manifest.v2+json")
                        .body(Body::from(r#"{"schemaVersion":2}"#))
                        .unwrap()
                }
            });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, seen)
    }

    #[tokio::test]
    async fn tokens_are_fetched_once_and_redirects_to_another_host_go_without_them() {
        let (base, seen) = token_registry().await;
        let tmp = tempfile::tempdir().unwrap();
        let up = Upstream::new(&base, tmp.path()).unwrap();
        let m = up.manifest("alpine", "3.19").await.unwrap();
        assert_eq!(m.media_type, "application/vnd.docker.distribution.manifest.v2+json");
        assert_eq!(m.digest, format!("sha256:{}", hex::encode(Sha256::digest(br#"{"schemaVersion":2}"#))));
        // Cached: a second ask does not reach the upstream at all.
        assert_eq!(up.manifest("library/alpine", "3.19").await.unwrap(), m);
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(b"layer bytes")));
        let resp = up.blob("alpine", &digest, &Method::GET).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"layer bytes");
        assert!(up.cached_blob(&digest).is_some());
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "/v2/library/alpine/manifests/3.19 auth=false".to_string(),
                "/v2/library/alpine/manifests/3.19 auth=true".into(),
                format!("/v2/library/alpine/blobs/{digest} auth=true"),
                "cdn auth=false".into(),
            ],
            "one challenge, the token reused, and the CDN never sees it"
        );
    }

    #[test]
    fn bearer_challenges_parse() {
        let (realm, params) = parse_bearer(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#).unwrap();
        assert_eq!(realm, "https://auth.docker.io/token");
        assert_eq!(params, [("service".to_string(), "registry.docker.io".to_string()), ("scope".to_string(), "repository:library/alpine:pull".to_string())]);
        let (realm, params) = parse_bearer("Bearer realm=https://r.example/t, service=x").unwrap();
        assert_eq!((realm.as_str(), params.len()), ("https://r.example/t", 1));
        assert!(parse_bearer(r#"Basic realm="x""#).is_none());
        assert!(parse_bearer(r#"Bearer service="no realm""#).is_none());
    }

    #[test]
    fn urls_names_and_references_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["registry-1.docker.io", "ftp://x", "https://x/v2/", "https://x?a=b", ""] {
            assert!(matches!(Upstream::new(bad, tmp.path()), Err(UpstreamError::BadUrl(_))), "{bad}");
        }
        assert!(Upstream::new("https://registry-1.docker.io/", tmp.path()).is_ok());
        assert_eq!(Upstream::upstream_repo("alpine"), "library/alpine");
        assert_eq!(Upstream::upstream_repo("library/alpine"), "library/alpine");
        assert_eq!(Upstream::upstream_repo("grafana/grafana"), "grafana/grafana");
        assert!(valid_tag("1.19-bookworm") && !valid_tag("../x") && !valid_tag("") && !valid_tag(".x"));
        assert!(hex_of(&format!("sha256:{}", "a".repeat(64))).is_some() && hex_of("sha256:../../etc").is_none());
        assert_eq!(query_escape("repository:library/a b:pull"), "repository:library/a%20b:pull");
    }
}
