//! A read-only implementation of the distribution (Docker Registry HTTP API v2) over docklab's
//! OCI image layouts, for session machines.
//!
//! Every session's dockerd uses it as its Docker Hub mirror (`registry-mirrors`, plain HTTP), and
//! reaches it under Docker Hub's own names and `gcr.io` too: the machine's `/etc/hosts` points
//! them here and the server answers them over TLS with a certificate only that dockerd trusts
//! ([`tls`]), so dockerd's fallback from the mirror to Docker Hub ends here as well. As Docker
//! Hub it hands out anonymous tokens and refuses logins. With an upstream it is a pull-through
//! cache ([`upstream`]). So one repository answers to several names:
//!
//! * `library/busybox` (how dockerd asks a mirror for Docker Hub's `busybox`) and `busybox`;
//! * `distroless/static-debian12` asked of host `gcr.io`, and `gcr.io/distroless/static-debian12`.
//!
//! Pulls only: `GET`/`HEAD` of `/v2/`, manifests (by tag or digest), blobs, tag lists and the
//! catalog. Anything that would write is refused with `DENIED` and a message that tells the
//! learner to run their own `registry:2`. A manifest that is not here is `MANIFEST_UNKNOWN`, and
//! the message lists what is.
//!
//! Manifests are served exactly as stored (OCI image manifests, gzip layers), which Docker 20.10
//! pulls. Why this and not Debian's `docker-registry`: the images already are OCI layouts (no
//! push step, no second copy of every blob), one process serves several names for the same
//! repository (`library/x`, `x`, `gcr.io/...`), errors can list what is available, and the
//! read-only rule is a property of the code rather than of a configuration file.

pub mod tls;
pub mod upstream;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tower::ServiceExt;

use crate::images::{layout, ImageStore, StoredImage};

/// Docker clients check this header to know they talk to a v2 registry.
const API_VERSION: (HeaderName, &str) = (HeaderName::from_static("docker-distribution-api-version"), "registry/2.0");
const DIGEST_HEADER: &str = "docker-content-digest";

/// How learners push instead, said whenever a push reaches this registry.
pub const PUSH_REFUSED: &str = "docklab's image registry is read-only: it serves the base images to every session. \
To practise pushing, run your own registry in your machine: `docker run -d -p 5000:5000 --name registry registry:2`, \
then `docker tag IMAGE localhost:5000/IMAGE` and `docker push localhost:5000/IMAGE`";

/// What the registry serves: docklab's own images, and optionally an upstream it caches.
struct Registry {
    store: ImageStore,
    upstream: Option<upstream::Upstream>,
}

/// The registry's routes over a store of OCI layouts (`<state-dir>/images/oci`).
pub fn router(store: ImageStore) -> Router {
    router_with_upstream(store, None)
}

/// The registry's routes; with an upstream, names and tags docklab does not have are pulled
/// through from it (see [`upstream`]).
pub fn router_with_upstream(store: ImageStore, upstream: Option<upstream::Upstream>) -> Router {
    Router::new()
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/token", any(token))
        .route("/v2/{*rest}", any(dispatch))
        .fallback(|| async { RegistryError::new(StatusCode::NOT_FOUND, "UNSUPPORTED", "this is a registry: its API is under /v2/".into()) })
        .with_state(Arc::new(Registry { store, upstream }))
}

/// A distribution API error: `{"errors":[{"code":…,"message":…}]}`.
#[derive(Debug)]
pub struct RegistryError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl RegistryError {
    fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        RegistryError { status, code, message }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "errors": [{ "code": self.code, "message": self.message, "detail": null }] });
        let mut r = (self.status, [(header::CONTENT_TYPE, "application/json"), API_VERSION], body.to_string()).into_response();
        if self.code == "DENIED" || self.status == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        r
    }
}

/// Names under which machines reach the registry as Docker Hub's (over TLS, see [`tls`]).
const DOCKER_HUB_HOSTS: &[&str] = &["registry-1.docker.io", "index.docker.io", "docker.io"];
/// Where Docker Hub sends clients for tokens; in machines, that is this registry too.
const TOKEN_REALM: &str = "https://auth.docker.io/token";

/// Said when someone logs in to "Docker Hub" from a machine.
pub const LOGIN_REFUSED: &str = "docklab's sessions are offline and have no Docker Hub account: `docker login` and `docker push` \
to Docker Hub cannot work here. To practise both, run your own registry in your machine: \
`docker run -d -p 5000:5000 --name registry registry:2`, then `docker push localhost:5000/IMAGE`";

async fn base(method: Method, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    if !matches!(method, Method::GET | Method::HEAD) {
        return denied();
    }
    // As Docker Hub, ask for a token the way Docker Hub does: pulls get an anonymous one from
    // `token` below, and a `docker login` (which sends its credentials there) is told why not.
    // Asked as the mirror (10.200.0.1), no token is needed.
    if DOCKER_HUB_HOSTS.contains(&request_host(&headers, &uri).as_str()) && !headers.contains_key(header::AUTHORIZATION) {
        let challenge = format!("Bearer realm=\"{TOKEN_REALM}\",service=\"registry.docker.io\"");
        let mut r = RegistryError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required".into()).into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).expect("a valid header"));
        return r;
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json"), API_VERSION], "{}").into_response()
}

/// The token service (`auth.docker.io/token` in machines): anonymous tokens for anyone; a
/// request with credentials is a `docker login`, refused with the way to practise instead.
async fn token(headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let query = uri.query().unwrap_or("");
    let with_credentials = headers.contains_key(header::AUTHORIZATION) || query.split('&').any(|kv| kv.starts_with("account="));
    if with_credentials {
        tracing::info!("docker login refused: sessions have no Docker Hub account");
        return (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "application/json")], serde_json::json!({ "details": LOGIN_REFUSED }).to_string()).into_response();
    }
    let issued = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let body = serde_json::json!({ "token": "docklab-anonymous", "access_token": "docklab-anonymous", "expires_in": 3600, "issued_at": issued });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn denied() -> Response {
    RegistryError::new(StatusCode::FORBIDDEN, "DENIED", PUSH_REFUSED.into()).into_response()
}

/// What a `/v2/...` path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Upload(&'a str),
}

fn parse(rest: &str) -> Option<Target<'_>> {
    if rest == "_catalog" {
        return Some(Target::Catalog);
    }
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        return Some(Target::Tags(repo));
    }
    if let Some((repo, _)) = rest.split_once("/blobs/uploads") {
        return Some(Target::Upload(repo));
    }
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        return Some(Target::Manifest(repo, reference));
    }
    if let Some((repo, digest)) = rest.rsplit_once("/blobs/") {
        return Some(Target::Blob(repo, digest));
    }
    None
}

/// Whether a repository name is well formed (lowercase path components, no `..`).
fn valid_repo(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|c| {
            !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)) && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        })
}

/// The host a request was sent to, without its port.
fn request_host(headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let raw = uri.host().map(str::to_string).or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string)).unwrap_or_default();
    let host = if raw.starts_with('[') { raw.split(']').next().unwrap_or("").trim_start_matches('[').to_string() } else { raw.split(':').next().unwrap_or("").to_string() };
    host.to_ascii_lowercase()
}

/// The names a requested repository may mean, most specific first.
fn candidates(repo: &str, host: &str) -> Vec<String> {
    let mut out = Vec::new();
    if host == "gcr.io" && !repo.starts_with("gcr.io/") {
        out.push(format!("gcr.io/{repo}"));
    }
    out.push(repo.to_string());
    if let Some(short) = repo.strip_prefix("library/").or_else(|| repo.strip_prefix("docker.io/library/")) {
        out.push(short.to_string());
    }
    if repo.starts_with("distroless/") {
        out.push(format!("gcr.io/{repo}"));
    }
    out
}

fn resolve(images: &[StoredImage], repo: &str, host: &str) -> Option<String> {
    candidates(repo, host).into_iter().find(|c| images.iter().any(|i| &i.name == c))
}

fn available(images: &[StoredImage]) -> String {
    let mut refs: Vec<String> = images.iter().flat_map(|i| i.tags.iter().map(move |t| format!("{}:{}", i.name, t.tag))).collect();
    refs.sort();
    refs.dedup();
    if refs.is_empty() {
        return "none yet (the operator runs `docklab images build`)".into();
    }
    let mut names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
    names.dedup();
    let stand_ins: Vec<String> =
        names.into_iter().filter_map(|n| crate::images::recipes::is_stand_in(n).map(|of| format!("{n} is docklab's Debian-based stand-in for {of}, not {of} itself"))).collect();
    if stand_ins.is_empty() {
        refs.join(", ")
    } else {
        format!("{} ({})", refs.join(", "), stand_ins.join("; "))
    }
}

/// A repository as the learner typed it (Docker Hub's official images without `library/`).
fn familiar(repo: &str) -> &str {
    repo.strip_prefix("library/").unwrap_or(repo)
}

fn name_unknown(images: &[StoredImage], repo: &str, host: &str) -> RegistryError {
    let shown = if host == "gcr.io" && !repo.starts_with("gcr.io/") { format!("gcr.io/{repo}") } else { familiar(repo).to_string() };
    RegistryError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("docklab has no image called {shown}. Images you can pull here: {}", available(images)))
}

/// The upstream, if the registry has one and `repo` may come from it (Docker Hub names only).
fn upstream_for<'a>(reg: &'a Registry, repo: &str, host: &str) -> Option<&'a upstream::Upstream> {
    reg.upstream.as_ref().filter(|_| host != "gcr.io" && !repo.starts_with("gcr.io/") && valid_repo(repo))
}

async fn dispatch(State(reg): State<Arc<Registry>>, UrlPath(rest): UrlPath<String>, req: Request) -> Response {
    let method = req.method().clone();
    let Some(target) = parse(&rest) else {
        return RegistryError::new(StatusCode::NOT_FOUND, "UNSUPPORTED", format!("/v2/{rest} is not part of the registry API")).into_response();
    };
    if matches!(target, Target::Upload(_)) || !matches!(method, Method::GET | Method::HEAD) {
        tracing::info!(%method, path = %rest, "push refused: the registry is read-only");
        return denied();
    }
    let host = request_host(req.headers(), req.uri());
    let images = {
        let reg = reg.clone();
        tokio::task::spawn_blocking(move || reg.store.images()).await.unwrap_or_default()
    };
    match target {
        Target::Catalog => {
            let mut names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
            names.dedup();
            json_ok(serde_json::json!({ "repositories": names }))
        }
        Target::Tags(repo) => {
            let Some(name) = resolve(&images, repo, &host) else { return name_unknown(&images, repo, &host).into_response() };
            let tags: Vec<&str> = images.iter().filter(|i| i.name == name).flat_map(|i| i.tags.iter().map(|t| t.tag.as_str())).collect();
            json_ok(serde_json::json!({ "name": repo, "tags": tags }))
        }
        Target::Manifest(repo, reference) => {
            // docklab's stand-ins (the Debian-based `ubuntu`) yield to the real image when there is
            // an upstream; docklab's own image is served when the upstream cannot give it.
            if let Some(up) = upstream_for(&reg, repo, &host).filter(|_| resolve(&images, repo, &host).is_some_and(|n| crate::images::recipes::is_stand_in(&n).is_some())) {
                match up.manifest(repo, reference).await {
                    Ok(m) => return cached_manifest_response(m, &method),
                    Err(e) => tracing::info!(repo, reference, error = %e, "the upstream did not give the real image: serving docklab's stand-in"),
                }
            }
            match manifest(&images, repo, reference, &host, &method).await {
                Ok(r) => r,
                Err(local) => match upstream_for(&reg, repo, &host) {
                    Some(up) if local.status == StatusCode::NOT_FOUND => match up.manifest(repo, reference).await {
                        Ok(m) => cached_manifest_response(m, &method),
                        Err(e) => {
                            tracing::info!(repo, reference, error = %e, "not in docklab's images, not from the upstream either");
                            let why = if e.is_not_found() { "has none either".to_string() } else { format!("could not be asked: {e}") };
                            RegistryError::new(
                                StatusCode::NOT_FOUND,
                                local.code,
                                format!("{} (its upstream registry {} {why})", local.message, up.url()),
                            )
                            .into_response()
                        }
                    },
                    _ => local.into_response(),
                },
            }
        }
        Target::Blob(repo, digest) => {
            let (method, headers) = (req.method().clone(), req.headers().clone());
            match blob(&images, repo, digest, &host, req).await {
                Ok(r) => r,
                Err(local) => match upstream_for(&reg, repo, &host) {
                    Some(up) if local.status == StatusCode::NOT_FOUND => match up.cached_blob(digest) {
                        Some(path) => {
                            let mut again = Request::builder().method(method).body(Body::empty()).expect("a request");
                            *again.headers_mut() = headers;
                            serve_blob_file(&path, digest, again).await.unwrap_or_else(IntoResponse::into_response)
                        }
                        None => up.blob(repo, digest, &method).await.unwrap_or_else(|e| {
                            tracing::info!(repo, digest, error = %e, "blob not available from the upstream");
                            RegistryError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", format!("{} has no blob {digest}: {e}", familiar(repo))).into_response()
                        }),
                    },
                    _ => local.into_response(),
                },
            }
        }
        Target::Upload(_) => denied(),
    }
}

fn cached_manifest_response(m: upstream::CachedManifest, method: &Method) -> Response {
    let len = m.bytes.len();
    let body = if *method == Method::HEAD { Body::empty() } else { Body::from(m.bytes) };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, upstream::media_header(&m.media_type))
        .header(header::CONTENT_LENGTH, len)
        .header(DIGEST_HEADER, &m.digest)
        .header(header::ETAG, format!("\"{}\"", m.digest))
        .header(API_VERSION.0, API_VERSION.1)
        .body(body)
        .expect("valid response parts")
}

fn json_ok(v: serde_json::Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json"), API_VERSION], v.to_string()).into_response()
}

async fn manifest(images: &[StoredImage], repo: &str, reference: &str, host: &str, method: &Method) -> Result<Response, RegistryError> {
    if !valid_repo(repo) {
        return Err(RegistryError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", format!("{repo:?} is not a valid repository name")));
    }
    let Some(name) = resolve(images, repo, host) else { return Err(name_unknown(images, repo, host)) };
    let mine: Vec<&StoredImage> = images.iter().filter(|i| i.name == name).collect();
    let found = if reference.starts_with("sha256:") {
        mine.iter().find_map(|i| {
            let p = layout::blob_path(&i.layout, reference)?;
            let media = i.tags.iter().find(|t| t.digest == reference).map(|t| t.media_type.clone())?;
            Some((p, reference.to_string(), media))
        })
    } else {
        mine.iter().find_map(|i| {
            let t = i.tags.iter().find(|t| t.tag == reference)?;
            Some((layout::blob_path(&i.layout, &t.digest)?, t.digest.clone(), t.media_type.clone()))
        })
    };
    let Some((path, digest, media)) = found else {
        let tags: Vec<String> = mine.iter().flat_map(|i| i.tags.iter().map(|t| t.tag.clone())).collect();
        return Err(RegistryError::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("docklab has no image {}:{reference}; {name} has the tags {}. Images you can pull here: {}", familiar(repo), tags.join(", "), available(images)),
        ));
    };
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        tracing::error!(path = %path.display(), %e, "reading a manifest");
        RegistryError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "the manifest could not be read".into())
    })?;
    let len = bytes.len();
    let body = if *method == Method::HEAD { Body::empty() } else { Body::from(bytes) };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, media)
        .header(header::CONTENT_LENGTH, len)
        .header(DIGEST_HEADER, &digest)
        .header(header::ETAG, format!("\"{digest}\""))
        .header(API_VERSION.0, API_VERSION.1)
        .body(body)
        .expect("valid response parts"))
}

async fn blob(images: &[StoredImage], repo: &str, digest: &str, host: &str, req: Request) -> Result<Response, RegistryError> {
    if !valid_repo(repo) {
        return Err(RegistryError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", format!("{repo:?} is not a valid repository name")));
    }
    let Some(name) = resolve(images, repo, host) else { return Err(name_unknown(images, repo, host)) };
    let path = images.iter().filter(|i| i.name == name).filter_map(|i| layout::blob_path(&i.layout, digest)).find(|p| p.is_file());
    let Some(path) = path else {
        return Err(RegistryError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", format!("{name} has no blob {digest}")));
    };
    serve_blob_file(&path, digest, req).await
}

async fn serve_blob_file(path: &std::path::Path, digest: &str, req: Request) -> Result<Response, RegistryError> {
    // ServeFile answers HEAD and Range requests (dockerd resumes interrupted layer downloads).
    let mut resp = tower_http::services::ServeFile::new_with_mime(path, &"application/octet-stream".parse().expect("a valid mime type"))
        .oneshot(req)
        .await
        .map(IntoResponse::into_response)
        .map_err(|e| {
            tracing::error!(path = %path.display(), %e, "serving a blob");
            RegistryError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "the blob could not be read".into())
        })?;
    let h = resp.headers_mut();
    h.insert(DIGEST_HEADER, HeaderValue::from_str(digest).expect("a checked digest is a valid header"));
    h.insert(API_VERSION.0, HeaderValue::from_static("registry/2.0"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A store with one small image, `busybox` (tags latest and 1.35), and
    /// `gcr.io/distroless/static-debian12:latest`, built from a tiny tree.
    fn store() -> (tempfile::TempDir, ImageStore, String, String) {
        store_of(&[("busybox", &["latest", "1.35"][..]), ("gcr.io/distroless/static-debian12", &["latest"][..])])
    }

    /// A store of the named images; the first one's manifest and layer digests.
    fn store_of(wanted: &[(&str, &[&str])]) -> (tempfile::TempDir, ImageStore, String, String) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/hello"), format!("hi from {}", wanted[0].0)).unwrap();
        let store = ImageStore::at(tmp.path().join("oci"));
        let mut digests = Vec::new();
        for &(name, tags) in wanted {
            let dir = store.layout_dir(name, tags[0]);
            let layer = layout::write_layer(&root, &dir, &layout::TreeOptions::new(1)).unwrap();
            let config = oci_spec::image::ImageConfigurationBuilder::default()
                .architecture(oci_spec::image::Arch::Amd64)
                .os(oci_spec::image::Os::Linux)
                .rootfs(oci_spec::image::RootFsBuilder::default().diff_ids(vec![layer.diff_id.clone()]).build().unwrap())
                .build()
                .unwrap();
            let (m, _) = layout::write_image(&dir, &layer, &config, tags).unwrap();
            digests.push((m, layer.digest));
        }
        let (m, l) = digests.remove(0);
        (tmp, store, m, l)
    }

    async fn call(app: &Router, method: &str, uri: &str, host: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let req = Request::builder().method(method).uri(uri).header("host", host).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
    }

    #[tokio::test]
    async fn serves_manifests_by_tag_and_digest_under_every_name() {
        let (_tmp, store, manifest_digest, _) = store();
        let app = router(store);
        let (s, h, _) = call(&app, "GET", "/v2/", "10.200.0.1").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["docker-distribution-api-version"], "registry/2.0");
        for path in ["/v2/library/busybox/manifests/latest", "/v2/busybox/manifests/1.35", &format!("/v2/library/busybox/manifests/{manifest_digest}")] {
            let (s, h, body) = call(&app, "GET", path, "10.200.0.1").await;
            assert_eq!(s, StatusCode::OK, "{path}");
            assert_eq!(h["content-type"], "application/vnd.oci.image.manifest.v1+json");
            assert_eq!(h["docker-content-digest"], manifest_digest.as_str());
            assert_eq!(layout::sha256_digest(&body), manifest_digest, "the body is what the digest says");
        }
        let (s, h, body) = call(&app, "HEAD", "/v2/library/busybox/manifests/latest", "10.200.0.1").await;
        assert_eq!((s, body.len()), (StatusCode::OK, 0));
        assert_eq!(h["docker-content-digest"], manifest_digest.as_str());
        assert_ne!(h["content-length"], "0");
        // gcr.io names: asked of host gcr.io without the prefix, or with it anywhere.
        assert_eq!(call(&app, "GET", "/v2/distroless/static-debian12/manifests/latest", "gcr.io").await.0, StatusCode::OK);
        assert_eq!(call(&app, "GET", "/v2/gcr.io/distroless/static-debian12/manifests/latest", "127.0.0.1:5000").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn serves_blobs_with_head_and_ranges() {
        let (_tmp, store, _, layer_digest) = store();
        let app = router(store);
        let (s, h, body) = call(&app, "GET", &format!("/v2/library/busybox/blobs/{layer_digest}"), "x").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["docker-content-digest"], layer_digest.as_str());
        assert_eq!(layout::sha256_digest(&body), layer_digest);
        let (s, h, body) = call(&app, "HEAD", &format!("/v2/busybox/blobs/{layer_digest}"), "x").await;
        assert_eq!((s, body.len()), (StatusCode::OK, 0));
        assert!(h["content-length"].to_str().unwrap().parse::<u64>().unwrap() > 0);
        let req = Request::builder().uri(format!("/v2/busybox/blobs/{layer_digest}")).header("range", "bytes=0-9").body(Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::PARTIAL_CONTENT);
        let (s, _, body) = call(&app, "GET", &format!("/v2/busybox/blobs/sha256:{}", "0".repeat(64)), "x").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(String::from_utf8(body).unwrap().contains("BLOB_UNKNOWN"));
    }

    #[tokio::test]
    async fn unknown_images_say_what_is_available() {
        let (_tmp, store, _, _) = store();
        let app = router(store);
        let (s, h, body) = call(&app, "GET", "/v2/library/busybox/manifests/1.36", "x").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(h["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], "MANIFEST_UNKNOWN");
        let msg = v["errors"][0]["message"].as_str().unwrap();
        assert!(msg.contains("busybox:1.36") && msg.contains("busybox:latest") && msg.contains("gcr.io/distroless/static-debian12:latest"), "{msg}");
        let (s, _, body) = call(&app, "GET", "/v2/library/alpine/manifests/latest", "x").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], "NAME_UNKNOWN");
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("busybox:1.35"));
        // Named as the learner typed it: no `library/`, and gcr.io names in full.
        assert!(v["errors"][0]["message"].as_str().unwrap().starts_with("docklab has no image called alpine."));
        let (_, _, body) = call(&app, "GET", "/v2/distroless/nosuch/manifests/latest", "gcr.io").await;
        assert!(String::from_utf8_lossy(&body).contains("no image called gcr.io/distroless/nosuch."));
        let (s, _, body) = call(&app, "GET", "/v2/library/busybox/tags/list", "x").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["tags"], serde_json::json!(["latest", "1.35"]));
        let (_, _, body) = call(&app, "GET", "/v2/_catalog", "x").await;
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["repositories"], serde_json::json!(["busybox", "gcr.io/distroless/static-debian12"]));
    }

    #[tokio::test]
    async fn pushes_are_refused_with_a_way_forward() {
        let (_tmp, store, _, _) = store();
        let app = router(store);
        for (method, path) in [
            ("POST", "/v2/library/busybox/blobs/uploads/"),
            ("PATCH", "/v2/busybox/blobs/uploads/1234"),
            ("PUT", "/v2/busybox/blobs/uploads/1234?digest=sha256:00"),
            ("PUT", "/v2/busybox/manifests/latest"),
            ("DELETE", "/v2/busybox/manifests/latest"),
        ] {
            let (s, _, body) = call(&app, method, path, "10.200.0.1").await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}");
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["errors"][0]["code"], "DENIED");
            assert!(v["errors"][0]["message"].as_str().unwrap().contains("registry:2"));
        }
    }

    /// Serves `app` on a loopback port; the task's handle stops it.
    async fn serve(app: Router) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (format!("http://{addr}"), tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
    }

    #[tokio::test]
    async fn a_pull_through_cache_fetches_misses_keeps_them_and_serves_them_with_the_upstream_gone() {
        // The upstream is a registry too: another docklab registry with an image docklab lacks.
        let (_up_tmp, up_store, demo_manifest, demo_layer) = store_of(&[("cachedemo", &["1"][..])]);
        let (url, upstream_task) = serve(router(up_store)).await;
        let (tmp, store, _, _) = store();
        let app = router_with_upstream(store, Some(upstream::Upstream::new(&url, tmp.path()).unwrap()));

        // docklab's own images are still served from its layouts.
        assert_eq!(call(&app, "GET", "/v2/library/busybox/manifests/latest", "10.200.0.1").await.0, StatusCode::OK);
        // A miss comes from the upstream, byte for byte.
        let (s, h, body) = call(&app, "GET", "/v2/library/cachedemo/manifests/1", "registry-1.docker.io").await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(h["docker-content-digest"], demo_manifest.as_str());
        assert_eq!(h["content-type"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(layout::sha256_digest(&body), demo_manifest);
        let (s, h, body) = call(&app, "GET", &format!("/v2/library/cachedemo/blobs/{demo_layer}"), "10.200.0.1").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["docker-content-digest"], demo_layer.as_str());
        assert_eq!(layout::sha256_digest(&body), demo_layer, "the streamed blob is the upstream's");
        assert!(tmp.path().join("registry-cache/blobs/sha256").join(demo_layer.trim_start_matches("sha256:")).is_file(), "the blob is kept");
        // An image neither has: the message lists docklab's images and says the upstream has none.
        let (s, _, body) = call(&app, "GET", "/v2/library/nosuch/manifests/1", "10.200.0.1").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let msg = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["errors"][0]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("docklab has no image called nosuch") && msg.contains("busybox:latest") && msg.contains("has none either"), "{msg}");
        // gcr.io names never go upstream.
        assert_eq!(call(&app, "GET", "/v2/distroless/cachedemo/manifests/1", "gcr.io").await.0, StatusCode::NOT_FOUND);

        // The upstream goes away: what was pulled is still served, by tag, digest and blob.
        upstream_task.abort();
        let _ = upstream_task.await;
        let (s, h, _) = call(&app, "GET", "/v2/library/cachedemo/manifests/1", "10.200.0.1").await;
        assert_eq!((s, h["docker-content-digest"].to_str().unwrap()), (StatusCode::OK, demo_manifest.as_str()));
        assert_eq!(call(&app, "GET", &format!("/v2/cachedemo/manifests/{demo_manifest}"), "10.200.0.1").await.0, StatusCode::OK);
        let (s, _, body) = call(&app, "GET", &format!("/v2/library/cachedemo/blobs/{demo_layer}"), "10.200.0.1").await;
        assert_eq!((s, layout::sha256_digest(&body)), (StatusCode::OK, demo_layer.clone()));
        let (s, _, body) = call(&app, "GET", "/v2/library/nosuch/manifests/1", "10.200.0.1").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(String::from_utf8_lossy(&body).contains("could not be asked"), "{}", String::from_utf8_lossy(&body));
    }

    #[tokio::test]
    async fn a_stand_in_yields_to_the_real_image_of_the_upstream_and_is_served_when_the_upstream_has_none() {
        // docklab's `ubuntu` is a stand-in; this upstream has a "real" one, with other contents.
        let (_up_tmp, up_store, real_manifest, _) = store_of(&[("ubuntu", &["latest"][..])]);
        let (url, _up_task) = serve(router(up_store)).await;
        let (tmp, store, _, _) = store_of(&[("busybox", &["latest"][..]), ("ubuntu", &["latest", "22.04"][..])]);
        let stand_in = store.images().into_iter().find(|i| i.name == "ubuntu").unwrap().tags[0].digest.clone();
        assert_ne!(stand_in, real_manifest);
        // Without an upstream: the stand-in, and the listing of images says what it is.
        let (s, h, _) = call(&router(store.clone()), "GET", "/v2/library/ubuntu/manifests/latest", "10.200.0.1").await;
        assert_eq!((s, h["docker-content-digest"].to_str().unwrap()), (StatusCode::OK, stand_in.as_str()));
        let (_, _, body) = call(&router(store.clone()), "GET", "/v2/library/nosuch/manifests/1", "10.200.0.1").await;
        assert!(String::from_utf8_lossy(&body).contains("ubuntu is docklab's Debian-based stand-in for ubuntu"), "{}", String::from_utf8_lossy(&body));
        // With an upstream that has it: the real one, whichever name the learner used.
        let app = router_with_upstream(store.clone(), Some(upstream::Upstream::new(&url, tmp.path()).unwrap()));
        for (path, host) in [("/v2/library/ubuntu/manifests/latest", "10.200.0.1"), ("/v2/library/ubuntu/manifests/latest", "registry-1.docker.io")] {
            let (s, h, body) = call(&app, "GET", path, host).await;
            assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            assert_eq!(h["docker-content-digest"], real_manifest.as_str());
        }
        // A tag the upstream lacks falls back to the stand-in, and busybox is docklab's as ever.
        let (s, h, _) = call(&app, "GET", "/v2/library/ubuntu/manifests/22.04", "10.200.0.1").await;
        assert_eq!((s, h["docker-content-digest"].to_str().unwrap()), (StatusCode::OK, stand_in.as_str()));
        assert_eq!(call(&app, "GET", "/v2/library/busybox/manifests/latest", "10.200.0.1").await.0, StatusCode::OK);
        // An upstream that cannot be reached: the stand-in.
        let dead = tempfile::tempdir().unwrap();
        let app = router_with_upstream(store, Some(upstream::Upstream::new("http://127.0.0.1:9", dead.path()).unwrap()));
        let (s, h, _) = call(&app, "GET", "/v2/library/ubuntu/manifests/latest", "10.200.0.1").await;
        assert_eq!((s, h["docker-content-digest"].to_str().unwrap()), (StatusCode::OK, stand_in.as_str()));
    }

    #[tokio::test]
    async fn a_blob_that_does_not_match_its_digest_is_not_cached() {
        // An "upstream" that answers every blob with the same wrong bytes.
        let liar = Router::new().route(
            "/v2/{*rest}",
            any(|| async { (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], "not what you asked for") }),
        );
        let (url, _task) = serve(liar).await;
        let (tmp, store, _, _) = store();
        let app = router_with_upstream(store, Some(upstream::Upstream::new(&url, tmp.path()).unwrap()));
        let digest = format!("sha256:{}", "ab".repeat(32));
        let req = Request::builder().uri(format!("/v2/library/x/blobs/{digest}")).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert!(resp.into_body().collect().await.is_err(), "the client sees the transfer fail");
        assert!(!tmp.path().join("registry-cache/blobs/sha256").join("ab".repeat(32)).exists());
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("registry-cache/blobs/sha256")).unwrap().flatten().collect();
        assert!(leftovers.is_empty(), "no partial file is left: {leftovers:?}");
    }

    #[tokio::test]
    async fn as_docker_hub_pulls_get_anonymous_tokens_and_logins_are_refused() {
        let (_tmp, store, _, _) = store();
        let app = router(store);
        // As the mirror: no token needed.
        assert_eq!(call(&app, "GET", "/v2/", "10.200.0.1").await.0, StatusCode::OK);
        // As Docker Hub: the same challenge Docker Hub sends.
        let (s, h, _) = call(&app, "GET", "/v2/", "registry-1.docker.io").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(h["www-authenticate"], r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#);
        let (s, _, body) = call(&app, "GET", "/token?scope=repository:library/busybox:pull&service=registry.docker.io", "auth.docker.io").await;
        assert_eq!(s, StatusCode::OK);
        let token = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["token"].as_str().unwrap().to_string();
        let req = Request::builder().uri("/v2/").header("host", "registry-1.docker.io").header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
        // A login sends credentials for its token: refused, with the way to practise.
        let req = Request::builder()
            .uri("/token?account=me&client_id=docker&offline_token=true&service=registry.docker.io")
            .header("host", "auth.docker.io")
            .header("authorization", "Basic bWU6c2VjcmV0")
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["details"].as_str().unwrap().contains("registry:2"));
    }

    #[test]
    fn paths_and_names_parse() {
        assert_eq!(parse("library/busybox/manifests/latest"), Some(Target::Manifest("library/busybox", "latest")));
        assert_eq!(parse("a/b/c/blobs/sha256:ab"), Some(Target::Blob("a/b/c", "sha256:ab")));
        assert_eq!(parse("x/blobs/uploads/"), Some(Target::Upload("x")));
        assert_eq!(parse("x/tags/list"), Some(Target::Tags("x")));
        assert!(valid_repo("gcr.io/distroless/static-debian12"));
        assert!(!valid_repo("../etc") && !valid_repo("a//b") && !valid_repo("A"));
        assert_eq!(candidates("distroless/base-debian12", "gcr.io")[0], "gcr.io/distroless/base-debian12");
        assert_eq!(candidates("library/golang", "10.200.0.1"), ["library/golang", "golang"]);
    }
}
