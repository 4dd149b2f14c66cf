//! A read-only implementation of the distribution (Docker Registry HTTP API v2) over docklab's
//! OCI image layouts, for session machines.
//!
//! Every session's dockerd uses it as its Docker Hub mirror (`registry-mirrors`) and reaches it as
//! `gcr.io` too (its `/etc/hosts` points `gcr.io` here and `insecure-registries` lets dockerd use
//! plain HTTP). So one repository answers to several names:
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

/// The registry's routes over a store of OCI layouts (`<state-dir>/images/oci`).
pub fn router(store: ImageStore) -> Router {
    Router::new()
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/v2/{*rest}", any(dispatch))
        .fallback(|| async { RegistryError::new(StatusCode::NOT_FOUND, "UNSUPPORTED", "this is a registry: its API is under /v2/".into()) })
        .with_state(Arc::new(store))
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

async fn base(method: Method) -> Response {
    if !matches!(method, Method::GET | Method::HEAD) {
        return denied();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json"), API_VERSION], "{}").into_response()
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
        "none yet (the operator runs `docklab images build`)".into()
    } else {
        refs.join(", ")
    }
}

fn name_unknown(images: &[StoredImage], repo: &str) -> RegistryError {
    RegistryError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("docklab has no image called {repo}. Images you can pull here: {}", available(images)))
}

async fn dispatch(State(store): State<Arc<ImageStore>>, UrlPath(rest): UrlPath<String>, req: Request) -> Response {
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
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.images()).await.unwrap_or_default()
    };
    match target {
        Target::Catalog => {
            let mut names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
            names.dedup();
            json_ok(serde_json::json!({ "repositories": names }))
        }
        Target::Tags(repo) => {
            let Some(name) = resolve(&images, repo, &host) else { return name_unknown(&images, repo).into_response() };
            let tags: Vec<&str> = images.iter().filter(|i| i.name == name).flat_map(|i| i.tags.iter().map(|t| t.tag.as_str())).collect();
            json_ok(serde_json::json!({ "name": repo, "tags": tags }))
        }
        Target::Manifest(repo, reference) => manifest(&images, repo, reference, &host, &method).await.unwrap_or_else(IntoResponse::into_response),
        Target::Blob(repo, digest) => blob(&images, repo, digest, &host, req).await.unwrap_or_else(IntoResponse::into_response),
        Target::Upload(_) => denied(),
    }
}

fn json_ok(v: serde_json::Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json"), API_VERSION], v.to_string()).into_response()
}

async fn manifest(images: &[StoredImage], repo: &str, reference: &str, host: &str, method: &Method) -> Result<Response, RegistryError> {
    if !valid_repo(repo) {
        return Err(RegistryError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", format!("{repo:?} is not a valid repository name")));
    }
    let Some(name) = resolve(images, repo, host) else { return Err(name_unknown(images, repo)) };
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
            format!("docklab has no image {name}:{reference}; {name} has the tags {}. Images you can pull here: {}", tags.join(", "), available(images)),
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
    let Some(name) = resolve(images, repo, host) else { return Err(name_unknown(images, repo)) };
    let path = images.iter().filter(|i| i.name == name).filter_map(|i| layout::blob_path(&i.layout, digest)).find(|p| p.is_file());
    let Some(path) = path else {
        return Err(RegistryError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", format!("{name} has no blob {digest}")));
    };
    // ServeFile answers HEAD and Range requests (dockerd resumes interrupted layer downloads).
    let mut resp = tower_http::services::ServeFile::new_with_mime(&path, &"application/octet-stream".parse().expect("a valid mime type"))
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
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/hello"), b"hi").unwrap();
        let store = ImageStore::at(tmp.path().join("oci"));
        let mut digests = Vec::new();
        for (name, tags) in [("busybox", &["latest", "1.35"][..]), ("gcr.io/distroless/static-debian12", &["latest"][..])] {
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
