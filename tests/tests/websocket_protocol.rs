//! The terminal WebSocket of a real server, driven with hand-written frames over raw TCP (no
//! Autobahn fuzzer installs here): every protocol violation gets the close code RFC 6455 gives
//! it, not a dropped connection, and the learner's shell is fine afterwards. And the DNS-rebinding
//! request (a foreign name in Host and Origin alike) reaches nothing. Only 127.0.0.1 is contacted;
//! foreign names are written into headers by hand, never resolved. SECURITY-TESTS.md case 34.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use docklab_tests::server::{create_session, curl, free_port, start_server};

/// A WebSocket client that writes exactly the bytes it is given.
struct RawSocket {
    stream: TcpStream,
    /// Bytes read but not parsed yet.
    pending: Vec<u8>,
}

/// What the server sent, frame by frame, as far as these tests care.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame with its code (`None`: no code in it).
    Close(Option<u16>),
    /// The connection ended without a close frame (EOF or reset): what a violation used to get.
    Dropped(String),
}

/// The opening handshake's request, with a Host and an Origin of the caller's choosing.
fn handshake(port: u16, path: &str, host: &str, origin: Option<&str>) -> String {
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    let _ = port;
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    )
}

/// Sends a handshake to 127.0.0.1 and returns the response's status line and the socket.
fn connect_raw(port: u16, request: &str) -> (String, RawSocket) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.lines().next().unwrap_or("").to_owned();
    (status, RawSocket { stream, pending: Vec::new() })
}

/// One frame as a client writes it: `first` is the FIN/RSV/opcode byte; masked unless told not.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

impl RawSocket {
    fn send(&mut self, bytes: &[u8]) {
        // The server may already have hung up on an earlier part; what it said is read next.
        let _ = self.stream.write_all(bytes);
    }

    /// The next frame from the server (pings and pongs skipped).
    fn next(&mut self) -> Heard {
        loop {
            if let Some((heard, used)) = parse(&self.pending) {
                self.pending.drain(..used);
                match heard {
                    Some(heard) => return heard,
                    None => continue,
                }
            }
            let mut buf = [0u8; 16384];
            match self.stream.read(&mut buf) {
                Ok(0) => return Heard::Dropped("end of stream".into()),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(err) => return Heard::Dropped(err.to_string()),
            }
        }
    }

    /// Frames until the server's close frame (or the end of the connection).
    fn until_close(&mut self) -> (Heard, Vec<Heard>) {
        let mut before = Vec::new();
        loop {
            match self.next() {
                heard @ (Heard::Close(_) | Heard::Dropped(_)) => return (heard, before),
                other => before.push(other),
            }
        }
    }

    /// Reads until the `ready` status, so the viewer loop is running before a test frame goes.
    fn wait_ready(&mut self) {
        loop {
            match self.next() {
                Heard::Text(text) if text.contains(r#""state":"ready""#) => return,
                Heard::Close(_) | Heard::Dropped(_) => panic!("the terminal closed before it was ready"),
                _ => {}
            }
        }
    }
}

/// Parses one server frame: `Some((frame or None for ping/pong, bytes used))` when complete.
fn parse(buf: &[u8]) -> Option<(Option<Heard>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    assert_eq!(buf[1] & 0x80, 0, "a server never masks its frames");
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?;
    at += len;
    let heard = match opcode {
        0x1 => Some(Heard::Text(String::from_utf8_lossy(payload).into_owned())),
        0x2 | 0x0 => Some(Heard::Binary(payload.to_vec())),
        0x8 => Some(Heard::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])))),
        _ => None,
    };
    Some((heard, at))
}

/// One row of the table: what the client sends once the terminal is ready, and the close code
/// the server must answer with.
struct Violation {
    what: String,
    frames: Vec<u8>,
    code: u16,
}

fn violations() -> Vec<Violation> {
    let row = |what: &str, frames: Vec<u8>, code: u16| Violation { what: what.to_owned(), frames, code };
    let mut rows = vec![
        row("unmasked client frame", frame(FIN | BINARY, b"ls\r", false), 1002),
        row("RSV1 set (no extension was negotiated)", frame(FIN | 0x40 | BINARY, b"x", true), 1002),
        row("RSV2 and RSV3 set", frame(FIN | 0x30 | TEXT, b"{}", true), 1002),
        row("text frame that is not UTF-8", frame(FIN | TEXT, &[b'{', 0xff, 0xfe, b'}'], true), 1007),
        row("text frame cut inside a UTF-8 sequence", frame(FIN | TEXT, "é".as_bytes().get(..1).unwrap(), true), 1007),
        // The server's limit is 64 KiB per frame and per message (`max_message_bytes`).
        row("one frame past the size limit", frame(FIN | BINARY, &vec![b'a'; 64 * 1024 + 1], true), 1009),
        row(
            "a message past the size limit in fragments",
            [frame(BINARY, &vec![b'a'; 40 * 1024], true), frame(FIN, &vec![b'a'; 40 * 1024], true)].concat(),
            1009,
        ),
        row("fragmented ping (control frames may not be fragmented)", frame(PING, b"a", true), 1002),
        row("fragmented close", frame(CLOSE, &close_payload(1000, b""), true), 1002),
        row("continuation without a start", frame(FIN, b"orphan", true), 1002),
        row(
            "a new message while another is unfinished (interleaved fragments)",
            [frame(TEXT, b"{\"type\":", true), frame(FIN | BINARY, b"ls\r", true)].concat(),
            1002,
        ),
        row("ping larger than 125 bytes", frame(FIN | PING, &[b'p'; 126], true), 1002),
        row("close with a 1-byte payload", frame(FIN | CLOSE, &[0x03], true), 1002),
        row("close whose reason is not UTF-8", frame(FIN | CLOSE, &close_payload(1000, &[0xff]), true), 1007),
    ];
    for opcode in (3..=7).chain(0xb..=0xf) {
        rows.push(row(&format!("reserved opcode {opcode:#x}"), frame(FIN | opcode, b"", true), 1002));
    }
    // Codes that must never appear in a close frame, and unassigned ones.
    for code in [1005, 1006, 1015, 999, 0, 1004, 1016, 2999, 5000, 65535] {
        rows.push(row(&format!("close code {code}"), frame(FIN | CLOSE, &close_payload(code, b""), true), 1002));
    }
    // And the control row: a proper close is answered with the same code.
    rows.push(row("a proper close (1000)", frame(FIN | CLOSE, &close_payload(1000, b"bye"), true), 1000));
    rows.push(row("a proper close (4000, application code)", frame(FIN | CLOSE, &close_payload(4000, b""), true), 4000));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_get_their_close_codes_and_the_shell_survives() {
    let port = free_port();
    let _server = start_server(port);
    let (id, token) = create_session(port, None);
    let path = format!("/api/sessions/{id}/terminal?token={token}");
    let request = handshake(port, &path, &format!("127.0.0.1:{port}"), Some(&format!("http://127.0.0.1:{port}")));

    let mut wrong = Vec::new();
    let rows = violations();
    for row in &rows {
        let (status, mut socket) = connect_raw(port, &request);
        assert!(status.contains(" 101 "), "{}: handshake answered {status:?}", row.what);
        socket.wait_ready();
        socket.send(&row.frames);
        let started = Instant::now();
        let (heard, _) = socket.until_close();
        if heard != Heard::Close(Some(row.code)) {
            wrong.push(format!("{}: expected close {}, got {heard:?} after {:?}", row.what, row.code, started.elapsed()));
        }
    }
    assert!(wrong.is_empty(), "{} of {} rows wrong:\n{}", wrong.len(), rows.len(), wrong.join("\n"));

    // Well-formed frames that are not docklab messages: an error message, and the terminal stays.
    let (_, mut socket) = connect_raw(port, &request);
    socket.wait_ready();
    for text in [r#"{"type":"dance"}"#, "not json", r#"{"type":"resize","cols":0,"rows":0}"#] {
        socket.send(&frame(FIN | TEXT, text.as_bytes(), true));
        loop {
            match socket.next() {
                Heard::Text(reply) if reply.contains(r#""type":"error""#) => break,
                Heard::Text(_) | Heard::Binary(_) => {}
                other => panic!("{text:?} ended the terminal: {other:?}"),
            }
        }
    }
    socket.send(&frame(FIN | BINARY, b"echo still-$((40+2))\r", true));
    assert!(read_output_until(&mut socket, "still-42"), "the terminal kept working after bad control messages");
    socket.send(&frame(FIN | CLOSE, &close_payload(1000, b""), true));
    assert_eq!(socket.until_close().0, Heard::Close(Some(1000)));

    // After all that, the learner's shell still works from a fresh connection.
    let (status, mut socket) = connect_raw(port, &request);
    assert!(status.contains(" 101 "), "{status}");
    socket.wait_ready();
    socket.send(&frame(FIN | BINARY, b"echo ok-$((6*7))\r", true));
    assert!(read_output_until(&mut socket, "ok-42"), "the shell answers after the violations");
}

/// Reads terminal output until `want` shows up (within 20 s).
fn read_output_until(socket: &mut RawSocket, want: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while Instant::now() < deadline {
        match socket.next() {
            Heard::Binary(bytes) => {
                seen.push_str(&String::from_utf8_lossy(&bytes));
                if seen.contains(want) {
                    return true;
                }
            }
            Heard::Text(_) => {}
            other => panic!("terminal ended while waiting for {want:?}: {other:?}; output so far {seen:?}"),
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_name_reaches_neither_the_terminal_nor_the_api() {
    let port = free_port();
    let _server = start_server(port);
    let (id, token) = create_session(port, None);
    let path = format!("/api/sessions/{id}/terminal?token={token}");

    // The DNS-rebinding request: a page on attacker.example, whose name now resolves to
    // 127.0.0.1, opens the terminal. Host and Origin agree with each other; neither is docklab's.
    let rebound = format!("attacker.example:{port}");
    let (status, _) = connect_raw(port, &handshake(port, &path, &rebound, Some(&format!("http://{rebound}"))));
    assert!(status.contains(" 421 "), "terminal through a rebound name: {status}");
    let auth = format!("Authorization: Bearer {token}");
    for route in ["/", &format!("/api/sessions/{id}"), "/api/lessons"] {
        let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-H", &format!("Host: {rebound}"), "-H", &auth, route]);
        assert_eq!(code, "421", "{route} through a rebound name");
    }
    let body = curl(port, &["-H", &format!("Host: {rebound}"), "/api/lessons"]);
    assert!(body.contains("--public-url"), "the refusal says what to configure: {body}");
    // An exec through the rebound name does not run.
    let exec = serde_json::json!({"cmd": ["sh", "-c", "touch /tmp/rebound"]}).to_string();
    let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", &format!("Host: {rebound}"), "-H", &auth,
        "-H", "content-type: application/json", "-d", &exec, &format!("/api/sessions/{id}/exec")]);
    assert_eq!(code, "421");

    // A page elsewhere that names docklab's own address in Host is still another origin.
    let own = format!("127.0.0.1:{port}");
    let (status, _) = connect_raw(port, &handshake(port, &path, &own, Some(&format!("http://{rebound}"))));
    assert!(status.contains(" 403 "), "foreign Origin: {status}");
    let (status, _) = connect_raw(port, &handshake(port, &path, &own, Some("http://127.0.0.1:1")));
    assert!(status.contains(" 403 "), "another port is another origin: {status}");

    // docklab's own addresses keep working: 127.0.0.1 and localhost pages, and non-browser clients.
    for (host, origin) in [(own.clone(), Some(format!("http://{own}"))), (format!("localhost:{port}"), Some(format!("http://localhost:{port}"))), (own.clone(), None)] {
        let (status, mut socket) = connect_raw(port, &handshake(port, &path, &host, origin.as_deref()));
        assert!(status.contains(" 101 "), "Host {host}, Origin {origin:?}: {status}");
        socket.wait_ready();
    }
    let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-H", &auth, &format!("/api/sessions/{id}")]);
    assert_eq!(code, "200");
    let touched = docklab_tests::server::exec(port, &id, &token, "test -e /tmp/rebound && echo yes || echo no");
    assert_eq!(touched["stdout"], "no\n", "the rebound exec never ran");
}
