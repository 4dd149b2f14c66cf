//! The real server with real machines: images pulled from docklab's registry through the session
//! bridge, and a published port reached from the browser's side through the port preview.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use docklab_tests::server::{create_session, curl, exec, free_port, start_server};

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

    // A push to docklab's registry is refused with advice.
    let out = exec(port, &id, &token, "docker tag nginx 10.200.0.1/mine && docker push 10.200.0.1/mine 2>&1 | tail -1");
    assert!(out["stdout"].as_str().unwrap().contains("read-only") || out["stdout"].as_str().unwrap().contains("denied"), "{out}");

    flood_with_a_slow_reader(port, &id, &token, server.0.id()).await;

    let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H", &format!("Authorization: Bearer {token}"), &format!("/api/sessions/{id}")]);
    assert_eq!(code, "204");
}
