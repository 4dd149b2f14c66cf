//! The real server, restarted under a learner's feet (SECURITY-TESTS.md cases 19, 20 and 23):
//! after `kill -9` and after a graceful stop, the next server adopts the session, its machine,
//! its containers and its very shell; a second server on the same state directory is refused;
//! and deleting the session afterwards leaves nothing behind.

use std::process::Command;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use docklab_tests::server::{curl, docklab_bin, exec, free_port, start_server_with, Server};

/// This test's servers keep their sessions when they stop, as `docklab serve` does by default.
fn start_server(port: u16) -> Server {
    start_server_with(port, &["--warm-machines", "1"])
}

/// Types `line` into the session's terminal and waits for `want` in its output.
async fn terminal_roundtrip(port: u16, id: &str, token: &str, line: &str, want: &str) {
    let url = format!("ws://127.0.0.1:{port}/api/sessions/{id}/terminal?token={token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("terminal websocket");
    ws.send(Message::Binary(format!("{line}\r").into_bytes().into())).await.unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains(want) {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(_))) => {}
            other => panic!("terminal ended before {want:?} appeared: {other:?}\n{seen}"),
        }
    }
    let _ = ws.close(None).await;
}

/// What a viewer attaching now sees first (the replayed recent output).
async fn terminal_text(port: u16, id: &str, token: &str) -> String {
    let url = format!("ws://127.0.0.1:{port}/api/sessions/{id}/terminal?token={token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("terminal websocket");
    let mut seen = String::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(700), ws.next()).await {
        if let Message::Binary(b) = m {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    seen
}

/// Host-wide counts of what machines use, to compare before and after.
fn host_counts() -> (usize, usize, usize, usize) {
    let sh = |c: &str| String::from_utf8_lossy(&Command::new("sh").args(["-c", c]).output().unwrap().stdout).trim().parse::<usize>().unwrap_or(0);
    (
        sh("grep -c docklab/sessions /proc/self/mountinfo"),
        sh("find /sys/fs/cgroup -path '*docklab/*' -maxdepth 6 -type d 2>/dev/null | wc -l"),
        sh("ip -o link | grep -c ' dlv[0-9]*@'"),
        sh("ls /var/lib/docklab/uids 2>/dev/null | wc -l"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_kill_9_and_graceful_restarts_and_a_second_server_is_refused() {
    let before = host_counts();
    let port = free_port();
    let mut server = start_server(port);

    let lessons: serde_json::Value = serde_json::from_str(&curl(port, &["/api/lessons"])).unwrap();
    let exercise = lessons[0]["exercises"][0]["id"].as_str().unwrap().to_string();
    let created: serde_json::Value = serde_json::from_str(&curl(
        port,
        &["-X", "POST", "-H", "content-type: application/json", "-d", &format!("{{\"exercise\":\"{exercise}\"}}"), "/api/sessions"],
    ))
    .unwrap();
    let (id, token) = (created["id"].as_str().unwrap().to_string(), created["token"].as_str().unwrap().to_string());
    let out = exec(port, &id, &token, "docker run -d --name keeper busybox sleep 1000 >/dev/null && echo started");
    assert_eq!(out["stdout"], "started\n", "{out}");
    terminal_roundtrip(port, &id, &token, "export MARK=kept-$((6*7)); echo ok-$((1000+23))", "ok-1023").await;

    // A second server on the same state directory is refused, with a clear message.
    let second = Command::new(docklab_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--state-dir"])
        .arg(docklab_tests::state_dir())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already serving"), "{}", String::from_utf8_lossy(&second.stderr));

    // kill -9: nothing gets a chance to clean up. The next server adopts the session.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let mut server = start_server(port);
    let state: serde_json::Value =
        serde_json::from_str(&curl(port, &["-H", &format!("Authorization: Bearer {token}"), &format!("/api/sessions/{id}")])).unwrap();
    assert_eq!(state["state"], "ready", "{state}");
    let out = exec(port, &id, &token, "docker ps --format '{{.Names}}'");
    assert_eq!(out["stdout"], "keeper\n", "the container survived: {out}");
    terminal_roundtrip(port, &id, &token, "echo mark=$MARK", "mark=kept-42").await;

    // A graceful stop leaves the session for the next server too.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    server.0.wait().unwrap();
    let mut server = start_server(port);
    terminal_roundtrip(port, &id, &token, "echo again=$MARK", "again=kept-42").await;

    // The learner kills their Docker engine: the page is told, and told again when it is back.
    let out = exec(port, &id, &token, "kill -9 $(pidof dockerd); sleep 2; for i in $(seq 1 100); do docker info >/dev/null 2>&1 && echo back && break; sleep 0.2; done");
    assert_eq!(out["stdout"], "back\n", "{out}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    terminal_roundtrip(port, &id, &token, "echo seen-$((2+2))", "seen-4").await;
    let replay = terminal_text(port, &id, &token).await;
    assert!(replay.contains("Docker in your machine stopped"), "{replay}");
    assert!(replay.contains("Docker in your machine is running again"), "{replay}");

    // Ending the session now leaves nothing behind.
    let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H", &format!("Authorization: Bearer {token}"), &format!("/api/sessions/{id}")]);
    assert_eq!(code, "204");
    // A graceful stop removes the server's warm machine (the ones the killed server left were
    // reaped by the next server as it started).
    server.stop(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(5);
    while host_counts() != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(host_counts(), before, "(mounts, cgroup dirs, veths, uid ranges) before and after");
}
