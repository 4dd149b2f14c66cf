//! The server's only way to a machine's Docker engine: a relay with caps.
//!
//! A machine's engine is the machine's: its root can stop `dockerd` and answer on the socket
//! itself, with anything, as slowly or as much as it likes, or put a link to another socket in
//! its place. So the server never connects to a path inside the machine. Each machine gets a
//! private socket in `<state>/engines/` (a directory only host root can enter, 0700), where
//! this relay, in the server's own process, listens; the grader's client (bollard) connects
//! there. For each request the relay opens a fresh connection to the machine's engine through
//! the machine's init ([`crate::hostile::MachineRoot::connect`]: no link followed, a socket owned
//! by the machine's root, in the machine's own mount namespace), forwards the request, and
//! streams the answer back under caps:
//!
//! - size: an answer may carry at most [`ANSWER_CAP`] bytes ([`EXPORT_CAP`] for `docker save`,
//!   [`EVENTS_CAP`] per events stream); an announced larger one is refused with a 502 naming
//!   the cap, a chunked one is cut there (the client sees the answer end in an error);
//! - time: headers within [`HEADER_TIMEOUT`], then the body within [`ANSWER_TIMEOUT`] with no
//!   gap longer than [`IDLE_TIMEOUT`] (the events stream, idle by nature, has neither);
//! - connections: at most [`ENGINE_CONNECTIONS`] open to one engine at a time (a request that
//!   cannot get one within [`HEADER_TIMEOUT`] gets a 503), and at most [`CLIENT_CONNECTIONS`]
//!   clients on the relay's socket.
//!
//! What one misbehaving engine costs the server is then bounded: the client buffers at most the
//! answer cap per connection (so about 7 x 4 MiB + 16 MiB for the events stream per machine;
//! `docker save` is read by the grader only for a check that looks inside an image, and it
//! stops at 512 MiB itself), the relay only hyper's read buffer (256 KiB) per connection.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tracing::{debug, warn, Instrument};

use crate::hostile::MachineRoot;

/// Where the machine's engine listens, inside the machine.
pub const ENGINE_SOCKET_INSIDE: &str = "/run/docklab/docker.sock";
/// Most bytes in one ordinary answer (lists, inspects, logs, archives). A thousand containers
/// list in about 1.5 MiB; the grader reads at most 256 KiB of a log or a file.
pub const ANSWER_CAP: u64 = 4 << 20;
/// Most bytes of one `docker save` (the grader looks through an image's layers for a shell and
/// stops at 512 MiB itself).
pub const EXPORT_CAP: u64 = 512 << 20;
/// Most bytes of one events stream; past it the stream ends and the client follows it again.
pub const EVENTS_CAP: u64 = 16 << 20;
/// Time for the engine to send an answer's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a whole ordinary answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Time for a whole `docker save`.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest silence within an answer (not the events stream).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections open to one machine's engine at a time.
pub const ENGINE_CONNECTIONS: usize = 8;
/// Clients on one relay socket at a time.
pub const CLIENT_CONNECTIONS: usize = 32;

/// The caps a relay applies (the constants above, unless a test shortens them).
#[derive(Debug, Clone)]
pub struct RelayLimits {
    pub answer_cap: u64,
    pub export_cap: u64,
    pub events_cap: u64,
    pub header_timeout: Duration,
    pub answer_timeout: Duration,
    pub export_timeout: Duration,
    pub idle_timeout: Duration,
    pub engine_connections: usize,
    pub client_connections: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            answer_cap: ANSWER_CAP,
            export_cap: EXPORT_CAP,
            events_cap: EVENTS_CAP,
            header_timeout: HEADER_TIMEOUT,
            answer_timeout: ANSWER_TIMEOUT,
            export_timeout: EXPORT_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            engine_connections: ENGINE_CONNECTIONS,
            client_connections: CLIENT_CONNECTIONS,
        }
    }
}

/// Errors starting a relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("{step} {path}: {source}")]
    Io { step: &'static str, path: PathBuf, #[source] source: std::io::Error },
}

/// Which machine a relay leads to.
#[derive(Debug, Clone)]
pub struct EngineTarget {
    pub id: String,
    pub root: TargetRoot,
}

/// How the relay reaches the machine's root.
#[derive(Debug, Clone)]
pub enum TargetRoot {
    /// Through the machine's init (host pid) whose root is host uid `uid`.
    Init { pid: i32, uid: u32 },
    /// A directory standing for the machine's root (tests).
    Dir { path: PathBuf, uid: u32 },
}

impl TargetRoot {
    fn open(&self) -> Result<MachineRoot, crate::hostile::HostileError> {
        match self {
            TargetRoot::Init { pid, uid } => MachineRoot::of_init(*pid, *uid),
            TargetRoot::Dir { path, uid } => MachineRoot::from_dir(path, *uid),
        }
    }
}

/// A running relay; dropping it stops it (its clients' connections too) and removes its socket.
#[derive(Debug)]
pub struct EngineRelay {
    socket: PathBuf,
    task: tokio::task::AbortHandle,
}

impl EngineRelay {
    /// Listens on `socket` (its directory is made root-only) and relays to `target`'s engine.
    /// Must be called within a tokio runtime.
    pub fn start(socket: &Path, target: EngineTarget) -> Result<EngineRelay, RelayError> {
        EngineRelay::start_with(socket, target, RelayLimits::default())
    }

    /// [`EngineRelay::start`] with other caps.
    pub fn start_with(socket: &Path, target: EngineTarget, limits: RelayLimits) -> Result<EngineRelay, RelayError> {
        let dir = socket.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).map_err(|source| RelayError::Io { step: "creating", path: dir.into(), source })?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|source| RelayError::Io { step: "making root-only", path: dir.into(), source })?;
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(RelayError::Io { step: "removing the old socket", path: socket.into(), source }),
        }
        let listener = UnixListener::bind(socket).map_err(|source| RelayError::Io { step: "listening on", path: socket.into(), source })?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|source| RelayError::Io { step: "making root-only", path: socket.into(), source })?;
        let span = tracing::info_span!("engine_relay", machine = %target.id);
        let engine = Arc::new(Semaphore::new(limits.engine_connections));
        let relay = Relay { target, engine, limits, warnings: Arc::new(Warnings::default()) };
        let task = tokio::spawn(serve(listener, Arc::new(relay)).instrument(span));
        Ok(EngineRelay { socket: socket.to_path_buf(), task: task.abort_handle() })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for EngineRelay {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

struct Relay {
    target: EngineTarget,
    engine: Arc<Semaphore>,
    limits: RelayLimits,
    warnings: Arc<Warnings>,
}

/// How often one relay may warn in the server's log: a hostile engine misbehaves on every
/// request, and the log is the host's disk.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// At most one warning per [`WARN_EVERY`] per relay; the others are counted and reported with
/// the next one.
#[derive(Default)]
struct Warnings {
    last: std::sync::Mutex<Option<std::time::Instant>>,
    suppressed: AtomicUsize,
}

impl Warnings {
    /// Whether to log now; if so, how many warnings were held back since the last one.
    fn admit(&self) -> Option<usize> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// `warn!` through the relay's [`Warnings`].
macro_rules! warn_limited {
    ($w:expr, $($arg:tt)+) => {
        if let Some(held_back) = $w.admit() {
            warn!(held_back, $($arg)+);
        }
    };
}

async fn serve(listener: UnixListener, relay: Arc<Relay>) {
    // Aborting this task drops the set, which aborts every client connection with it.
    let mut clients = tokio::task::JoinSet::new();
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        while clients.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let limit = relay.limits.client_connections;
        if open.load(Ordering::Relaxed) >= limit {
            warn_limited!(relay.warnings, limit, "too many clients on the engine relay; one refused");
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (relay, open) = (relay.clone(), open.clone());
        clients.spawn(
            async move {
                let service = hyper::service::service_fn(move |req| {
                    let relay = relay.clone();
                    async move { Ok::<_, Infallible>(relay.forward(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    debug!(error = %e, "engine relay client connection ended");
                }
                open.fetch_sub(1, Ordering::Relaxed);
            }
            .in_current_span(),
        );
    }
}

/// What kind of answer a request gets, by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Answer,
    Export,
    Events,
}

impl Kind {
    fn of(path: &str) -> Kind {
        // `/v1.41/events`, `/events`; `/v1.41/images/<name>/get`, `/images/get`.
        let versioned = path.strip_prefix("/v").and_then(|p| p.find('/').filter(|&i| i > 0 && p[..i].bytes().all(|b| b.is_ascii_digit() || b == b'.')).map(|i| &p[i..]));
        let path = versioned.unwrap_or(path);
        if path == "/events" {
            Kind::Events
        } else if path.starts_with("/images/") && path.ends_with("/get") {
            Kind::Export
        } else {
            Kind::Answer
        }
    }
    fn cap(self, l: &RelayLimits) -> u64 {
        match self {
            Kind::Answer => l.answer_cap,
            Kind::Export => l.export_cap,
            Kind::Events => l.events_cap,
        }
    }
    fn total(self, l: &RelayLimits) -> Option<Duration> {
        match self {
            Kind::Answer => Some(l.answer_timeout),
            Kind::Export => Some(l.export_timeout),
            Kind::Events => None,
        }
    }
    fn idle(self, l: &RelayLimits) -> Option<Duration> {
        (self != Kind::Events).then_some(l.idle_timeout)
    }
}

type RelayBody = BoxBody<Bytes, std::io::Error>;

/// An error answer in the Engine API's shape, so the client reports `message`.
fn refuse(status: StatusCode, message: String) -> Response<RelayBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut res = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *res.status_mut() = status;
    res.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    res
}

impl Relay {
    async fn forward(&self, req: Request<Incoming>) -> Response<RelayBody> {
        let id = &self.target.id;
        if req.headers().contains_key(hyper::header::UPGRADE) {
            return refuse(StatusCode::NOT_IMPLEMENTED, "docklab's engine relay does not pass connection upgrades".into());
        }
        let kind = Kind::of(req.uri().path());
        let l = &self.limits;
        let header_timeout = l.header_timeout;
        let Ok(Ok(permit)) = tokio::time::timeout(header_timeout, self.engine.clone().acquire_owned()).await else {
            let limit = l.engine_connections;
            warn_limited!(self.warnings, limit, "the machine's engine holds every connection docklab allows it");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, format!("the Docker engine of machine {id} is busy ({limit} requests open)"));
        };
        let root = self.target.root.clone();
        let connected = tokio::task::spawn_blocking(move || root.open()?.connect(Path::new(ENGINE_SOCKET_INSIDE)));
        let stream = match tokio::time::timeout(header_timeout, connected).await {
            Ok(Ok(Ok(s))) => s,
            Ok(Ok(Err(e))) => {
                debug!(error = %e, "no connection to the machine's engine");
                // The client's message reaches the learner: no host pid or uid in it.
                let why = match e {
                    crate::hostile::HostileError::NotInit { .. } => "the machine is not running".to_string(),
                    other => other.to_string(),
                };
                return refuse(StatusCode::BAD_GATEWAY, format!("cannot reach the Docker engine of machine {id}: {why}"));
            }
            _ => return refuse(StatusCode::BAD_GATEWAY, format!("cannot reach the Docker engine of machine {id}")),
        };
        let stream = match tokio::net::UnixStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => return refuse(StatusCode::BAD_GATEWAY, format!("cannot reach the Docker engine of machine {id}: {e}")),
        };
        let handshake = hyper::client::conn::http1::Builder::new().max_buf_size(256 * 1024).handshake::<_, Incoming>(TokioIo::new(stream));
        let (mut sender, conn) = match tokio::time::timeout(header_timeout, handshake).await {
            Ok(Ok(pair)) => pair,
            _ => return refuse(StatusCode::BAD_GATEWAY, format!("cannot speak HTTP with the Docker engine of machine {id}")),
        };
        // The connection lives until the answer is read or dropped (or its time is up).
        let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
        let total = kind.total(l);
        tokio::spawn(
            async move {
                let _permit: OwnedSemaphorePermit = permit;
                let limit = async {
                    match total {
                        Some(t) => tokio::time::sleep(t + header_timeout).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = conn => if let Err(e) = r { debug!(error = %e, "engine connection ended") },
                    _ = dropped_rx => {}
                    _ = limit => {}
                }
            }
            .in_current_span(),
        );

        let (mut parts, body) = req.into_parts();
        let path_and_query = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
        parts.uri = match path_and_query.parse() {
            Ok(u) => u,
            Err(_) => return refuse(StatusCode::BAD_REQUEST, "unusable request path".into()),
        };
        parts.headers.insert(hyper::header::HOST, hyper::header::HeaderValue::from_static("docker"));
        let upstream = Request::from_parts(parts, body);
        let res = match tokio::time::timeout(header_timeout, sender.send_request(upstream)).await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => return refuse(StatusCode::BAD_GATEWAY, format!("the Docker engine of machine {id} gave no usable answer: {e}")),
            Err(_) => {
                warn_limited!(self.warnings, ms = header_timeout.as_millis() as u64, "the machine's engine sent no answer in time");
                return refuse(StatusCode::GATEWAY_TIMEOUT, format!("the Docker engine of machine {id} did not answer within {} ms", header_timeout.as_millis()));
            }
        };
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            return refuse(StatusCode::BAD_GATEWAY, "the engine switched protocols; docklab's engine relay does not pass that".into());
        }
        let cap = kind.cap(l);
        if res.body().size_hint().lower() > cap {
            warn_limited!(self.warnings, announced = res.body().size_hint().lower(), cap, "the machine's engine announced an answer over the cap; refused");
            return refuse(StatusCode::BAD_GATEWAY, format!("the Docker engine of machine {id} sent an answer larger than {} MiB; docklab does not read it", cap >> 20));
        }
        let (mut parts, body) = res.into_parts();
        // hyper frames the answer again from the body; the engine's framing headers do not apply.
        for h in [hyper::header::CONTENT_LENGTH, hyper::header::TRANSFER_ENCODING, hyper::header::CONNECTION] {
            parts.headers.remove(h);
        }
        let capped = Capped {
            inner: body,
            left: cap,
            cap,
            total: kind.total(l).map(|t| Box::pin(tokio::time::sleep(t))),
            idle: kind.idle(l),
            idle_timer: kind.idle(l).map(|t| Box::pin(tokio::time::sleep(t))),
            _dropped: dropped_tx,
            id: id.clone(),
            warnings: self.warnings.clone(),
            failed: false,
        };
        Response::from_parts(parts, capped.boxed())
    }
}

/// An answer's body under the size and time caps.
struct Capped {
    inner: Incoming,
    left: u64,
    cap: u64,
    total: Option<Pin<Box<Sleep>>>,
    idle: Option<Duration>,
    idle_timer: Option<Pin<Box<Sleep>>>,
    /// Dropped with the body: ends the connection to the engine.
    _dropped: oneshot::Sender<()>,
    id: String,
    warnings: Arc<Warnings>,
    failed: bool,
}

impl Capped {
    fn fail(&mut self, what: String) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        warn_limited!(self.warnings, machine = %self.id, "{what}; the answer was cut");
        self.failed = true;
        Poll::Ready(Some(Err(std::io::Error::other(what))))
    }
}

impl Body for Capped {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > self.left {
                        let cap = self.cap;
                        return self.fail(format!("the machine's engine sent more than {} MiB in one answer", cap >> 20));
                    }
                    self.left -= n;
                }
                let idle = self.idle;
                if let (Some(t), Some(idle)) = (self.idle_timer.as_mut(), idle) {
                    t.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if let Some(t) = self.total.as_mut() {
                    if t.as_mut().poll(cx).is_ready() {
                        return self.fail("the machine's engine took too long over one answer".into());
                    }
                }
                if let Some(t) = self.idle_timer.as_mut() {
                    if t.as_mut().poll(cx).is_ready() {
                        return self.fail("the machine's engine went silent within an answer".into());
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

use std::future::Future;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A fake engine at `<root>/run/docklab/docker.sock` answering every request with `answer`.
    fn fake_engine(root: &Path, answer: fn() -> Vec<Vec<u8>>) -> tokio::task::JoinHandle<()> {
        let dir = root.join("run/docklab");
        std::fs::create_dir_all(&dir).unwrap();
        let listener = UnixListener::bind(dir.join("docker.sock")).unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut b = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = s.read(&mut b).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        req.extend_from_slice(&b[..n]);
                    }
                    for part in answer() {
                        if s.write_all(&part).await.is_err() {
                            return;
                        }
                    }
                });
            }
        })
    }

    /// Sends one GET to the relay; returns (status line, body bytes received before the end).
    async fn get(relay: &Path, path: &str) -> (String, usize, String) {
        let mut s = tokio::net::UnixStream::connect(relay).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut all = Vec::new();
        let mut b = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&b[..n]),
            }
        }
        let text = String::from_utf8_lossy(&all[..all.len().min(4096)]).into_owned();
        (text.lines().next().unwrap_or_default().to_string(), all.len(), text)
    }

    fn relay_for(root: &Path, socket: &Path) -> EngineRelay {
        let uid = std::fs::metadata(root).unwrap().uid();
        EngineRelay::start(socket, EngineTarget { id: "m1".into(), root: TargetRoot::Dir { path: root.into(), uid } }).unwrap()
    }

    #[tokio::test]
    async fn an_ordinary_answer_passes_and_an_announced_huge_one_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let _engine = fake_engine(root.path(), || {
            vec![b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}".to_vec()]
        });
        let relay = relay_for(root.path(), &host.path().join("engines/m1.sock"));
        let mode = std::fs::metadata(host.path().join("engines")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "the relay's directory is root's alone");
        let (status, _, text) = get(relay.socket(), "/v1.41/containers/json").await;
        assert!(status.contains("200"), "{text}");
        assert!(text.ends_with("{\"ok\":true}"), "{text}");

        let root2 = tempfile::tempdir().unwrap();
        let _huge = fake_engine(root2.path(), || vec![b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n".to_vec(), vec![b'x'; 1 << 20]]);
        let relay2 = relay_for(root2.path(), &host.path().join("engines/m2.sock"));
        let (status, _, text) = get(relay2.socket(), "/v1.41/containers/json").await;
        assert!(status.contains("502"), "{text}");
        assert!(text.contains("larger than 4 MiB"), "{text}");
        drop(relay);
        assert!(!host.path().join("engines/m1.sock").exists(), "a stopped relay leaves no socket");
    }

    #[tokio::test]
    async fn an_endless_chunked_answer_is_cut_at_the_cap() {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let _engine = fake_engine(root.path(), || {
            let mut parts = vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()];
            let mut chunk = format!("{:x}\r\n", 1 << 20).into_bytes();
            chunk.extend(vec![b'['; 1 << 20]);
            chunk.extend_from_slice(b"\r\n");
            parts.extend(std::iter::repeat_n(chunk, 40));
            parts
        });
        let relay = relay_for(root.path(), &host.path().join("engines/m1.sock"));
        let (status, got, _) = get(relay.socket(), "/v1.41/images/json").await;
        assert!(status.contains("200"));
        assert!(got < (5 << 20), "{got} bytes came through a 4 MiB cap");
        assert!(got >= (3 << 20), "only {got} bytes came through");
    }

    #[tokio::test]
    async fn a_silent_or_trickling_engine_is_given_up_on_in_time() {
        let host = tempfile::tempdir().unwrap();
        let limits = RelayLimits { header_timeout: Duration::from_millis(300), idle_timeout: Duration::from_millis(300), answer_timeout: Duration::from_secs(2), ..RelayLimits::default() };
        // Says nothing at all (and keeps the connection open).
        let silent = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(silent.path().join("run/docklab")).unwrap();
        let mute = UnixListener::bind(silent.path().join("run/docklab/docker.sock")).unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = mute.accept().await {
                held.push(s);
            }
        });
        let uid = std::fs::metadata(silent.path()).unwrap().uid();
        let target = EngineTarget { id: "m1".into(), root: TargetRoot::Dir { path: silent.path().into(), uid } };
        let relay = EngineRelay::start_with(&host.path().join("engines/m1.sock"), target, limits.clone()).unwrap();
        let started = std::time::Instant::now();
        let (status, _, text) = get(relay.socket(), "/v1.41/containers/json").await;
        assert!(status.contains("504"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        // Sends headers, then a byte now and then (each gap longer than the idle limit).
        let slow = tempfile::tempdir().unwrap();
        let dir = slow.path().join("run/docklab");
        std::fs::create_dir_all(&dir).unwrap();
        let listener = UnixListener::bind(dir.join("docker.sock")).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 4096];
            let _ = s.read(&mut b).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nx").await;
            for _ in 0..1000 {
                tokio::time::sleep(Duration::from_millis(600)).await;
                if s.write_all(b"x").await.is_err() {
                    return;
                }
            }
        });
        let uid = std::fs::metadata(slow.path()).unwrap().uid();
        let target = EngineTarget { id: "m2".into(), root: TargetRoot::Dir { path: slow.path().into(), uid } };
        let relay = EngineRelay::start_with(&host.path().join("engines/m2.sock"), target, limits).unwrap();
        let started = std::time::Instant::now();
        let (_, got, _) = get(relay.socket(), "/v1.41/containers/json").await;
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(got < 1000, "the whole trickled answer came through");
    }

    #[tokio::test]
    async fn a_socket_link_planted_in_the_machine_is_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        // Another engine (another machine's, or the host's), and a link to it in the machine.
        let _other = fake_engine(elsewhere.path(), || vec![b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nSECRETS".to_vec()]);
        std::fs::create_dir_all(root.path().join("run/docklab")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join("run/docklab/docker.sock"), root.path().join("run/docklab/docker.sock")).unwrap();
        let relay = relay_for(root.path(), &host.path().join("engines/m1.sock"));
        let (status, _, text) = get(relay.socket(), "/v1.41/containers/json").await;
        assert!(status.contains("502"), "{text}");
        assert!(!text.contains("SECRETS"), "{text}");
    }

    #[test]
    fn warnings_are_held_back_to_one_a_minute() {
        let w = Warnings::default();
        assert_eq!(w.admit(), Some(0));
        assert_eq!(w.admit(), None);
        assert_eq!(w.admit(), None);
        *w.last.lock().unwrap() = Some(std::time::Instant::now() - WARN_EVERY);
        assert_eq!(w.admit(), Some(2), "the next warning says how many were held back");
    }

    #[test]
    fn requests_are_classed_by_path() {
        assert_eq!(Kind::of("/v1.41/events"), Kind::Events);
        assert_eq!(Kind::of("/events"), Kind::Events);
        assert_eq!(Kind::of("/v1.41/images/sha256:abc/get"), Kind::Export);
        assert_eq!(Kind::of("/v1.41/containers/json"), Kind::Answer);
        assert_eq!(Kind::of("/v1.41/containers/events/json"), Kind::Answer);
        assert_eq!(Kind::of("/volumes/events"), Kind::Answer);
        let l = RelayLimits::default();
        assert_eq!(Kind::Answer.cap(&l), 4 << 20);
        assert!(Kind::Events.total(&l).is_none() && Kind::Events.idle(&l).is_none());
    }
}
