//! The real server with real machines: images pulled from docklab's registry through the session
//! bridge, and a published port reached from the browser's side through the port preview.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use docklab_tests::server::{create_session, curl, exec, free_port, start_server, start_server_with};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

/// `yes` into a terminal whose reader is slow: the server's memory stays flat, and Ctrl-C stops
/// it within seconds (SECURITY-TESTS.md case 11).
async fn flood_with_a_slow_reader(port: u16, id: &str, token: &str, server_pid: u32) {
    let url = format!("ws://127.0.0.1:{port}/api/sessions/{id}/terminal?token={token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("terminal websocket");
    ws.send(Message::Binary(b"yes docklab-flood-line\r".to_vec().into())).await.unwrap();
    let before = rss_kib(server_pid);
    // Read slowly: a few frames a second for ten seconds, while `yes` writes as fast as it can.
    let mut peak = before;
    for _ in 0..20 {
        let _ = tokio::time::timeout(Duration::from_millis(5), ws.next()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(rss_kib(server_pid));
    }
    assert!(peak < before + 64 * 1024, "server memory grew from {before} KiB to {peak} KiB under a flood");
    // Ctrl-C, then the shell answers again within seconds.
    ws.send(Message::Binary(b"\x03".to_vec().into())).await.unwrap();
    ws.send(Message::Binary(b"echo stopped-$((5*5))\r".to_vec().into())).await.unwrap();
    let started = Instant::now();
    let mut tail = String::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                tail.push_str(&String::from_utf8_lossy(&b));
                if tail.contains("stopped-25") {
                    break;
                }
                if tail.len() > 8192 {
                    tail.drain(..tail.len() - 4096);
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("terminal ended: {other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10), "Ctrl-C took {:?} to take effect", started.elapsed());
}

/// A tiny WebSocket echo server in plain Node.js (no packages: the machine is offline), as a
/// learner would write one, published with `-p 8081:8080`.
const WS_ECHO_SERVER: &str = r#"
const http = require('http'), crypto = require('crypto');
const server = http.createServer((req, res) => res.end('websocket echo\n'));
server.on('upgrade', (req, sock) => {
  const accept = crypto.createHash('sha1')
    .update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
             'Sec-WebSocket-Accept: ' + accept + '\r\n\r\n');
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 6) {
      const op = buf[0] & 15; let len = buf[1] & 127, off = 2;
      if (len === 126) { len = buf.readUInt16BE(2); off = 4; }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4), text = Buffer.alloc(len);
      for (let i = 0; i < len; i++) text[i] = buf[off + 4 + i] ^ mask[i % 4];
      buf = buf.subarray(off + 4 + len);
      if (op === 8) { sock.end(); return; }
      const out = Buffer.from('echo from ' + req.url + ': ' + text.toString());
      sock.write(Buffer.concat([Buffer.from([0x81, out.length]), out]));
    }
  });
});
server.listen(8080);
"#;

/// The preview carries WebSockets too: an app in the machine that speaks WebSocket answers a
/// client that holds the preview cookie, on the path it asked for, and refuses one without it.
async fn websocket_through_the_port_preview(port: u16, id: &str, token: &str) {
    let script = format!(
        "mkdir -p /root/ws && cat > /root/ws/server.js <<'JS'\n{WS_ECHO_SERVER}\nJS\n\
         docker run -d --name ws -p 8081:8080 -v /root/ws:/app node:18 node /app/server.js >/dev/null && \
         for i in $(seq 50); do curl -fs http://127.0.0.1:8081/ | grep -q echo && break; sleep 0.2; done; \
         curl -fs http://127.0.0.1:8081/"
    );
    let out = exec(port, id, token, &script);
    assert_eq!(out["stdout"], "websocket echo\n", "{out}");

    let url = format!("ws://127.0.0.1:{port}/sessions/{id}/ports/8081/chat?room=1");
    // Without the preview cookie: refused before anything reaches the machine.
    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    assert!(refused.is_err(), "a WebSocket without the preview cookie was let through");

    // The cookie a browser gets on its first visit to the preview.
    let headers = curl(port, &["-s", "-o", "/dev/null", "-D", "-", &format!("/sessions/{id}/ports/8081/?token={token}")]);
    let cookie = headers
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no preview cookie in {headers}"))
        .to_string();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.expect("websocket through the preview");
    assert_eq!(response.status(), 101);
    for text in ["hello", "second message"] {
        ws.send(Message::Text(text.into())).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("an echo within 10 s");
        match answer {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), format!("echo from /chat?room=1: {text}")),
            other => panic!("expected an echo, got {other:?}"),
        }
    }
    let _ = ws.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_pulls_nginx_sees_it_through_the_port_preview_and_floods_the_terminal() {
    let port = free_port();
    let server = start_server(port);
    let (id, token) = create_session(port, None);

    let out = exec(port, &id, &token, "docker pull -q nginx >/dev/null && docker run -d --name web -p 8080:80 nginx >/dev/null && echo up");
    assert_eq!(out["stdout"], "up\n", "{out}");
    std::thread::sleep(Duration::from_secs(1));

    // The page learns about the published port over the terminal WebSocket, to show it as a link.
    let url = format!("ws://127.0.0.1:{port}/api/sessions/{id}/terminal?token={token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("terminal websocket");
    let mut ports_msg = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "ports" && !v["ports"].as_array().unwrap().is_empty() {
                ports_msg = Some(v);
                break;
            }
        }
    }
    let ports_msg = ports_msg.expect("a ports message");
    assert_eq!(ports_msg["ports"][0], serde_json::json!({"port": 8080, "target": 80, "container": "web"}), "{ports_msg}");
    drop(ws);

    // Without the token: refused. With it: a cookie, then the page itself.
    let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", &format!("/sessions/{id}/ports/8080/")]);
    assert_eq!(code, "401");
    // Relative: the curl helper turns arguments that start with '/' into URLs.
    let jar = format!("docklab-cookies-{id}.txt");
    struct RemoveOnDrop(String);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _jar_file = RemoveOnDrop(jar.clone());
    let page = curl(port, &["-L", "-c", &jar, "-b", &jar, &format!("/sessions/{id}/ports/8080/?token={token}")]);
    assert!(page.contains("Welcome to nginx"), "{page}");
    // A port nobody listens on gets a clear answer, not a hang.
    let gone = curl(port, &["-b", &jar, &format!("/sessions/{id}/ports/9999/")]);
    assert!(gone.contains("port_unreachable"), "{gone}");

    websocket_through_the_port_preview(port, &id, &token).await;

    // A push to docklab's registry is refused with advice.
    let out = exec(port, &id, &token, "docker tag nginx 10.200.0.1/mine && docker push 10.200.0.1/mine 2>&1 | tail -1");
    assert!(out["stdout"].as_str().unwrap().contains("read-only") || out["stdout"].as_str().unwrap().contains("denied"), "{out}");

    flood_with_a_slow_reader(port, &id, &token, server.0.id()).await;

    let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H", &format!("Authorization: Bearer {token}"), &format!("/api/sessions/{id}")]);
    assert_eq!(code, "204");
}

/// The value of a gauge on `/metrics`.
fn gauge(port: u16, name: &str) -> Option<i64> {
    let text = curl(port, &["/metrics"]);
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn wait_for_gauge(port: u16, name: &str, want: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while gauge(port, name) != Some(want) {
        assert!(Instant::now() < deadline, "{name} did not reach {want} (now {:?})", gauge(port, name));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Machines on disk whose owner is the process `pid` and that belong to no session (no
/// `session.json`): the server's warm machines.
fn warm_machines_of(pid: u32) -> Vec<String> {
    let dir = docklab_tests::state_dir().join("sessions");
    let Ok(rd) = std::fs::read_dir(&dir) else { return Vec::new() };
    rd.flatten()
        .filter(|e| {
            let record = std::fs::read_to_string(e.path().join("machine.json")).unwrap_or_default();
            let record: serde_json::Value = serde_json::from_str(&record).unwrap_or_default();
            record["owner"]["pid"].as_u64() == Some(pid as u64) && !e.path().join("session.json").exists()
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// With a warm pool, a learner's session is a machine that was already running before they
/// asked; the pool refills; and a server that stops takes its unused machines with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_start_on_warm_machines_and_a_stopped_server_leaves_no_warm_machine() {
    let port = free_port();
    let mut server = start_server_with(port, &["--warm-machines", "2", "--end-sessions-on-exit"]);
    let pid = server.0.id();
    wait_for_gauge(port, "docklab_warm_machines", 2, Duration::from_secs(120));
    let mut warm = warm_machines_of(pid);
    assert_eq!(warm.len(), 2, "{warm:?}");
    // Oldest first, the order the pool hands them out.
    let dir = |m: &String| docklab_tests::state_dir().join("sessions").join(m);
    warm.sort_by_key(|m| std::fs::metadata(dir(m).join("launcher.pid")).and_then(|md| md.modified()).unwrap());
    // The next one to be handed out dies while it waits: no learner gets a dead machine.
    let dead = &warm[0];
    let init = std::fs::read_to_string(docklab_tests::state_dir().join("sessions").join(dead).join("init.pid")).unwrap();
    std::process::Command::new("kill").args(["-9", init.trim()]).status().unwrap();
    std::thread::sleep(Duration::from_secs(1));

    let (id, token) = create_session(port, None);
    assert!(warm.contains(&id), "session {id} did not get one of the warm machines {warm:?}");
    assert_eq!(id, warm[1], "the session was not given the live warm machine");
    assert!(!dir(dead).exists(), "the dead warm machine was not removed");
    let out = exec(port, &id, &token, "docker run --rm busybox echo warm-$((20+1))");
    assert!(out["stdout"].as_str().unwrap().contains("warm-21"), "{out}");

    // The pool starts a replacement.
    wait_for_gauge(port, "docklab_warm_machines", 2, Duration::from_secs(120));
    let now = warm_machines_of(pid);
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(!now.contains(&id), "the session's machine is still counted as warm");

    let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H", &format!("Authorization: Bearer {token}"), &format!("/api/sessions/{id}")]);
    assert_eq!(code, "204");
    server.stop(Duration::from_secs(60));
    assert_eq!(warm_machines_of(pid), Vec::<String>::new(), "warm machines outlived their server");
}
