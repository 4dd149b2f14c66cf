//! The terminal WebSocket through a real server on 127.0.0.1:0, with tokio-tungstenite as client.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::check_origin;
use super::protocol::{ServerControl, TerminalStatus};
use crate::app::{app, AppState};
use crate::config::ServerConfig;
use crate::testing::{fake_state, ready_session, FakeBackend};
use std::sync::Arc;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server on a free port, stopped when dropped.
struct TestServer {
    addr: SocketAddr,
    state: AppState,
    backend: Arc<FakeBackend>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    async fn start() -> TestServer {
        let (state, backend) = fake_state(ServerConfig::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app(state.clone());
        let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        TestServer { addr, state, backend, task }
    }

    /// A ready session, registered the way `POST /api/sessions` does it.
    async fn session(&self) -> (String, String) {
        ready_session(&self.state, &self.backend).await
    }

    async fn connect(&self, path_and_query: &str, origin: Option<&str>) -> Result<Socket, WsError> {
        let mut request = format!("ws://{}{path_and_query}", self.addr).into_client_request().unwrap();
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse().unwrap());
        }
        tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn next(socket: &mut Socket) -> Message {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("no frame came")
            .expect("the socket closed")
            .unwrap();
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// Skips the optional "starting a shell" status and expects "ready".
async fn expect_ready(socket: &mut Socket) {
    let mut message = next(socket).await;
    let control = |m: &Message| serde_json::from_str::<ServerControl>(m.to_text().unwrap()).unwrap();
    if control(&message) == ServerControl::status(TerminalStatus::Reconnecting, Some("starting a shell".into())) {
        message = next(socket).await;
    }
    assert_eq!(control(&message), ServerControl::status(TerminalStatus::Ready, None));
}

/// Reads binary frames until `expected` has been seen in the output.
async fn expect_output(socket: &mut Socket, expected: &str) {
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(expected) {
        match next(socket).await {
            Message::Binary(bytes) => seen.extend_from_slice(&bytes),
            other => panic!("expected output, got {other:?}"),
        }
    }
}

fn status_of(error: WsError) -> u16 {
    match error {
        WsError::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn a_foreign_origin_is_refused_before_the_upgrade() {
    let server = TestServer::start().await;
    let (id, token) = server.session().await;
    let path = format!("/api/sessions/{id}/terminal?token={token}");
    let refused = server.connect(&path, Some("http://evil.example")).await.unwrap_err();
    assert_eq!(status_of(refused), 403);
    assert_eq!(server.backend.terminals_opened.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused_before_the_upgrade() {
    let server = TestServer::start().await;
    let (id, _token) = server.session().await;
    let origin = server.origin();
    let refused = server.connect(&format!("/api/sessions/{id}/terminal"), Some(&origin)).await.unwrap_err();
    assert_eq!(status_of(refused), 401);
    let wrong = "0".repeat(64);
    let refused = server.connect(&format!("/api/sessions/{id}/terminal?token={wrong}"), Some(&origin)).await;
    assert_eq!(status_of(refused.unwrap_err()), 401);
    let refused = server.connect("/api/sessions/0000000000000000/terminal?token=x", None).await;
    assert_eq!(status_of(refused.unwrap_err()), 404);
}

#[tokio::test]
async fn the_right_origin_and_token_upgrade_and_the_shell_echoes() {
    let server = TestServer::start().await;
    let (id, token) = server.session().await;
    let path = format!("/api/sessions/{id}/terminal?token={token}");
    let mut socket = server.connect(&path, Some(&server.origin())).await.unwrap();
    expect_ready(&mut socket).await;
    socket.send(Message::Binary("docker ps\r".into())).await.unwrap();
    expect_output(&mut socket, "docker ps\r").await;
    assert!(server.state.metrics.render(1).contains("docklab_ws_connections 1"));

    // A viewer that reconnects gets the shell it left, with its recent output replayed.
    drop(socket);
    let mut again = server.connect(&path, None).await.unwrap();
    expect_ready(&mut again).await;
    expect_output(&mut again, "docker ps\r").await;
    assert_eq!(server.backend.terminals_opened.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_read_only_viewer_sees_output_but_cannot_type() {
    let server = TestServer::start().await;
    let (id, token) = server.session().await;
    let origin = server.origin();
    let mut typist = server.connect(&format!("/api/sessions/{id}/terminal?token={token}"), Some(&origin)).await.unwrap();
    expect_ready(&mut typist).await;
    let mut watcher =
        server.connect(&format!("/api/sessions/{id}/terminal?token={token}&mode=view"), Some(&origin)).await.unwrap();
    expect_ready(&mut watcher).await;

    watcher.send(Message::Binary("sneaky\r".into())).await.unwrap();
    typist.send(Message::Binary("hello\r".into())).await.unwrap();
    expect_output(&mut watcher, "hello\r").await;
    typist.send(Message::Binary("exit\r".into())).await.unwrap();
    let mut seen = Vec::new();
    loop {
        match next(&mut typist).await {
            Message::Binary(bytes) => seen.extend_from_slice(&bytes),
            Message::Text(text) => {
                let control: ServerControl = serde_json::from_str(text.as_str()).unwrap();
                assert!(matches!(control, ServerControl::Status { state: TerminalStatus::Ended, .. }));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(!String::from_utf8_lossy(&seen).contains("sneaky"), "the read-only viewer's keys never reached the shell");
}

#[test]
fn origin_rules() {
    let check = |site: &crate::origin::SiteNames, origin: Option<&str>, host: Option<&str>| {
        let mut headers = axum::http::HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert("origin", origin.parse().unwrap());
        }
        check_origin(site, &headers, host).is_ok()
    };
    let default = crate::origin::SiteNames::default();
    assert!(check(&default, None, Some("lab.example")), "non-browser clients send no Origin");
    assert!(check(&default, Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")));
    // DNS rebinding: Origin and Host agree, but nobody said docklab is called that.
    assert!(!check(&default, Some("http://lab.example"), Some("lab.example")));
    let site = crate::origin::SiteNames::new(&["http://lab.example".into(), "https://lab.example:8443".into()]);
    assert!(check(&site, Some("http://lab.example"), Some("lab.example")));
    assert!(check(&site, Some("https://LAB.example:8443"), Some("lab.example:8443")));
    assert!(!check(&site, Some("http://lab.example:8080"), Some("lab.example")));
    assert!(!check(&site, Some("http://evil.example"), Some("lab.example")));
    assert!(!check(&site, Some("http://lab.example.evil.example"), Some("lab.example")));
    assert!(!check(&site, Some("null"), Some("lab.example")));
    assert!(!check(&default, Some("http://127.0.0.1:8080"), None));
}

/// Opens the terminal over raw TCP, waits for `ready`, writes `frames`, and returns the close code
/// the server answers with (`None`: the connection ended without a close frame).
async fn close_code_for(server: &TestServer, path: &str, frames: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let handshake = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    tcp.write_all(handshake.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut sent = false;
    loop {
        // Frames from the server after the 101 head: text, binary, ping, close.
        let start = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
        if let Some(mut at) = start {
            while at + 2 <= buf.len() {
                let (opcode, len) = (buf[at] & 0x0f, (buf[at + 1] & 0x7f) as usize);
                let (len, head) = match len {
                    126 if at + 4 <= buf.len() => (u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize, 4),
                    126 | 127 => break,
                    n => (n, 2),
                };
                if at + head + len > buf.len() {
                    break;
                }
                let payload = &buf[at + head..at + head + len];
                if opcode == 0x8 {
                    return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                }
                if opcode == 0x1 && !sent && String::from_utf8_lossy(payload).contains("\"ready\"") {
                    tcp.write_all(frames).await.unwrap();
                    sent = true;
                }
                at += head + len;
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await.expect("the server went silent") {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A client frame: `first` is the FIN/RSV/opcode byte.
fn client_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    if payload.len() < 126 {
        out.push(mask_bit | payload.len() as u8);
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    if masked {
        let key = [9u8, 8, 7, 6];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

#[tokio::test]
async fn protocol_violations_are_answered_with_their_close_codes() {
    let server = TestServer::start().await;
    let (id, token) = server.session().await;
    let path = format!("/api/sessions/{id}/terminal?token={token}");
    let close = |code: u16, reason: &[u8]| [&code.to_be_bytes()[..], reason].concat();
    let rows: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", client_frame(0x82, b"ls", false), 1002),
        ("reserved bit", client_frame(0xc2, b"ls", true), 1002),
        ("reserved data opcode", client_frame(0x83, b"", true), 1002),
        ("reserved control opcode", client_frame(0x8b, b"", true), 1002),
        ("not UTF-8", client_frame(0x81, &[0xff], true), 1007),
        ("oversized", client_frame(0x82, &vec![0; 64 * 1024 + 1], true), 1009),
        ("fragmented ping", client_frame(0x09, b"", true), 1002),
        ("orphan continuation", client_frame(0x80, b"x", true), 1002),
        ("interleaved", [client_frame(0x01, b"{", true), client_frame(0x82, b"x", true)].concat(), 1002),
        ("close code 1005", client_frame(0x88, &close(1005, b""), true), 1002),
        ("close code 5000", client_frame(0x88, &close(5000, b""), true), 1002),
        ("1-byte close", client_frame(0x88, &[3], true), 1002),
        ("ping over 125 bytes", client_frame(0x89, &[0; 126], true), 1002),
        ("proper close", client_frame(0x88, &close(1000, b"bye"), true), 1000),
    ];
    for (what, frames, code) in rows {
        assert_eq!(close_code_for(&server, &path, &frames).await, Some(code), "{what}");
    }
}
