//! Accepting HTTP connections without letting one client hold the server's descriptors: every
//! listener of docklab (the API, and the registry and package proxy on the machines' bridge) is
//! served through [`serve`], which
//!
//! - caps the connections open at once from one client address ([`Limits::per_client`]; on the
//!   bridge an address is one machine). A connection over the cap is closed as soon as it is
//!   accepted, before anything is read from it;
//! - gives a client [`Limits::header_timeout`] to send a request's head. hyper runs that timer
//!   whenever it waits for a head, so it is also how long a kept-alive connection may sit idle
//!   between requests. While a request is being answered (a long `exec`, an SSE stream, a
//!   `docker pull`) no head is awaited, so nothing is cut;
//! - gives a request's body [`Limits::body_stall`] between two chunks;
//! - closes a connection whose peer stops reading what it is sent for [`Limits::write_stall`].
//!
//! An upgraded connection (the terminal WebSocket, a port preview's WebSocket) keeps its slot
//! until it closes; its liveness is the WebSocket's own business (the terminal pings, and drops a
//! viewer silent for three intervals).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tower::ServiceExt;

/// How much one client may hold, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once from one address (0: no cap).
    pub per_client: usize,
    /// Time to send a request's head; also the idle time allowed between requests.
    pub header_timeout: Duration,
    /// Longest wait for the next chunk of a request's body.
    pub body_stall: Duration,
    /// Longest time a write may wait for the peer to read.
    pub write_stall: Duration,
    /// Time for a TLS handshake (TLS listeners only).
    pub handshake_timeout: Duration,
}

impl Limits {
    /// The session-facing services on the bridge: one machine runs a few `docker pull`s (three
    /// layers at a time each) and apt (one connection per host) at once.
    pub const BRIDGE: Limits = Limits {
        per_client: 64,
        header_timeout: Duration::from_secs(15),
        body_stall: Duration::from_secs(30),
        write_stall: Duration::from_secs(120),
        handshake_timeout: Duration::from_secs(10),
    };

    /// The web API and pages: a browser holds about six connections and one WebSocket per tab.
    pub const API: Limits = Limits {
        per_client: 256,
        header_timeout: Duration::from_secs(20),
        body_stall: Duration::from_secs(30),
        write_stall: Duration::from_secs(120),
        handshake_timeout: Duration::from_secs(10),
    };
}

/// Connections open per client address.
#[derive(Debug, Default)]
pub struct ClientSlots {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection's place in [`ClientSlots`]; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

impl ClientSlots {
    /// A slot for a new connection from `ip`, unless it already has `cap` open (0: no cap).
    pub fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if cap != 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot { slots: self.clone(), ip })
    }

    /// Connections open from `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A connection's stream, holding its slot (through an upgrade too) and failing a write the peer
/// has not drained for `write_stall`.
struct Guarded<IO> {
    io: IO,
    _slot: Slot,
    write_stall: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> Guarded<IO> {
    /// Called when a write could not proceed: fails once it has waited `write_stall`.
    fn stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let write_stall = self.write_stall;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(write_stall)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.stall(cx).map(|r| r.map(|()| 0)),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.stall(cx).map(|r| r.map(|()| 0)),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.stall(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request body that fails when its next chunk takes longer than `stall` to arrive.
struct StallBody {
    inner: Incoming,
    stall: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl HttpBody for StallBody {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let stall = self.stall;
                let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(format!("the request body stalled for {stall:?}").into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` (over TLS with `tls`) on every connection `listener` accepts, within `limits`,
/// until `shutdown` resolves; then stops accepting, lets requests in flight finish and returns.
/// Requests carry `ConnectInfo<SocketAddr>` of their peer.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(ClientSlots::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Every connection task holds a clone; when all are gone, every connection has ended.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    let local = listener.local_addr().ok();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, most likely: wait a little rather than spin.
                    tracing::warn!(listener = ?local, error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = slots.take(peer.ip(), limits.per_client) else {
            // Dropped unread: the client has `per_client` connections open already.
            tracing::debug!(listener = ?local, %peer, cap = limits.per_client, "connection refused: too many from this address");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let io = Guarded { io: tcp, _slot: slot, write_stall: limits.write_stall, stalled: None };
        let (router, tls, mut stop, alive) = (router.clone(), tls.clone(), stop_rx.clone(), alive_tx.clone());
        tokio::spawn(async move {
            let _alive = alive;
            match tls {
                Some(acceptor) => match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(io)).await {
                    Ok(Ok(stream)) => serve_connection(stream, peer, router, limits, &mut stop).await,
                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
                None => serve_connection(io, peer, router, limits, &mut stop).await,
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

async fn serve_connection<IO>(io: IO, peer: SocketAddr, router: axum::Router, limits: Limits, stop: &mut tokio::sync::watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |req: hyper::Request<Incoming>| {
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ConnectInfo(peer));
        hyper::Request::from_parts(parts, axum::body::Body::new(StallBody { inner: body, stall: limits.body_stall, timer: None }))
    });
    let service = hyper_util::service::TowerToHyperService::new(service);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/", axum::routing::get(|| async { "hello" }))
            .route("/echo", axum::routing::post(|body: String| async move { body }))
            .route("/slow", axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "slow"
            }));
        tokio::spawn(serve(listener, router, limits, None, std::future::pending()));
        addr
    }

    async fn get(addr: SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
        out
    }

    /// Whether the server closed `s` (EOF or reset) within `within`.
    async fn closed(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(within, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    fn limits(per_client: usize) -> Limits {
        Limits { per_client, header_timeout: Duration::from_millis(500), body_stall: Duration::from_millis(500), ..Limits::API }
    }

    #[test]
    fn slots_are_counted_per_address_and_given_back() {
        let slots = Arc::new(ClientSlots::default());
        let a: IpAddr = "10.200.0.2".parse().unwrap();
        let b: IpAddr = "10.200.0.3".parse().unwrap();
        let first = slots.take(a, 2).unwrap();
        let _second = slots.take(a, 2).unwrap();
        assert!(slots.take(a, 2).is_none());
        assert!(slots.take(b, 2).is_some(), "another address has its own slots");
        drop(first);
        assert_eq!(slots.open(a), 1);
        assert!(slots.take(a, 2).is_some());
        assert!(slots.take(a, 0).is_some(), "0 is no cap");
    }

    #[tokio::test]
    async fn a_half_sent_head_is_closed_and_the_cap_holds_per_address() {
        let addr = start(limits(4)).await;
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
            held.push(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed(&mut over, Duration::from_millis(300)).await, "a fifth connection is closed at once");
        for s in &mut held {
            assert!(closed(s, Duration::from_secs(3)).await, "a head that never ends is cut after the header timeout");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(get(addr).await.contains("hello"), "the slots came back");
    }

    #[tokio::test]
    async fn an_idle_kept_alive_connection_is_closed_but_a_slow_answer_is_not() {
        let addr = start(limits(4)).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("hello"));
        s.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("slow"), "an answer taking longer than the header timeout still comes");
        assert!(closed(&mut s, Duration::from_secs(3)).await, "idle between requests past the header timeout");
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut() {
        let addr = start(limits(4)).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc").await.unwrap();
        assert!(closed(&mut s, Duration::from_secs(3)).await, "a body that stops arriving ends the connection");
    }
}
