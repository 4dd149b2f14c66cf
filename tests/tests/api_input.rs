//! What a client sends through the API, against a real server with real machines: a newline in a
//! field cannot forge a line in the server's log, execs in one session are capped (429 with
//! Retry-After), and notices that come while no terminal is open are shown when one opens.
//! SECURITY-TESTS.md case 34 and issue 12's item 11.

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use docklab_tests::server::{create_session, curl, exec, free_port, start_server};

/// A line as the server's log writes them, to be smuggled into a field.
const FORGED: &str = "2026-12-07T20:00:00.000000Z  INFO forged: instructor password reset by admin";

/// POST /api/sessions/{id}/exec with this JSON body: (status, headers and body as text).
fn exec_raw(port: u16, id: &str, token: &str, body: &serde_json::Value, max_s: u32) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "-m", &max_s.to_string(), "-X", "POST", "-H", &format!("Authorization: Bearer {token}")])
        .args(["-H", "content-type: application/json", "-d", &body.to_string()])
        .arg(format!("http://127.0.0.1:{port}/api/sessions/{id}/exec"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newline_in_an_api_field_cannot_forge_a_log_line() {
    let port = free_port();
    let server = start_server(port);
    let (id, token) = create_session(port, None);

    // The program name is logged with every exec; arguments and stdin travel along too.
    let attempts = [
        serde_json::json!({"cmd": [format!("true\n{FORGED}")]}),
        serde_json::json!({"cmd": [format!("sh\r\n{FORGED}"), "-c", "true"]}),
        serde_json::json!({"cmd": ["sh", "-c", "echo hi", format!("\n{FORGED}")], "stdin": format!("\n{FORGED}\n")}),
    ];
    for body in &attempts {
        let (status, answer) = exec_raw(port, &id, &token, body, 60);
        assert!(status != 0 && status != 500, "exec {body}: {answer}");
    }
    // And in the other fields a client names: the exercise of a new session, a session id.
    let create = serde_json::json!({"exercise": format!("day-24/x\n{FORGED}")}).to_string();
    curl(port, &["-X", "POST", "-H", "content-type: application/json", "-d", &create, "/api/sessions"]);
    curl(port, &["-H", &format!("Authorization: Bearer {token}"), &format!("/api/sessions/x%0a{}", FORGED.replace(' ', "%20"))]);
    // A normal exec after them, so the log has caught up when it is read.
    assert_eq!(exec(port, &id, &token, "echo after")["stdout"], "after\n");
    std::thread::sleep(Duration::from_millis(500));

    let log = std::fs::read_to_string(server.log_path()).unwrap();
    let forged: Vec<&str> = log.lines().filter(|line| line.trim_start().starts_with(FORGED)).collect();
    assert!(forged.is_empty(), "forged log lines:\n{}", forged.join("\n"));
    // Not vacuous: the program names were logged, escaped, inside the exec lines.
    let escaped = log.lines().filter(|line| line.contains("exec") && line.contains(&format!("\\n{FORGED}"))).count();
    assert!(escaped >= 1, "the exec lines with the program name escaped are in the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_execs_past_the_cap_get_429_with_retry_after() {
    let port = free_port();
    let _server = start_server(port);
    let (id, token) = create_session(port, None);

    // Twelve at once, each holding its slot for three seconds.
    let body = serde_json::json!({"cmd": ["sh", "-c", "sleep 3; echo done"], "timeout_s": 30});
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(12));
    let started = Instant::now();
    let answers: Vec<(u16, String)> = (0..12)
        .map(|_| {
            let (id, token, body, barrier) = (id.clone(), token.clone(), body.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                exec_raw(port, &id, &token, &body, 60)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let ok: Vec<_> = answers.iter().filter(|(s, _)| *s == 200).collect();
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!((ok.len(), refused.len()), (8, 4), "{answers:#?}");
    assert!(ok.iter().all(|(_, text)| text.contains(r#""stdout":"done\n""#)), "{ok:#?}");
    for (_, text) in &refused {
        assert!(text.to_ascii_lowercase().contains("\nretry-after: 1\r"), "{text}");
        assert!(text.contains("too_many_execs") && text.contains("already running 8 commands"), "{text}");
    }
    eprintln!("12 parallel execs: 8 ran, 4 refused, in {:?}", started.elapsed());

    // A client that hangs up does not free its slot while its command still runs.
    let long = serde_json::json!({"cmd": ["sh", "-c", "sleep 4"], "timeout_s": 30});
    let hung_up: Vec<_> = (0..8)
        .map(|_| {
            let (id, token, long) = (id.clone(), token.clone(), long.clone());
            std::thread::spawn(move || exec_raw(port, &id, &token, &long, 1))
        })
        .collect();
    for t in hung_up {
        assert_eq!(t.join().unwrap().0, 0, "curl gave up after a second");
    }
    let (status, text) = exec_raw(port, &id, &token, &serde_json::json!({"cmd": ["true"]}), 30);
    assert_eq!(status, 429, "the hung-up commands still run: {text}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(exec(port, &id, &token, "echo free")["stdout"], "free\n", "slots come back when commands end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_that_come_while_no_terminal_is_open_are_shown_when_one_opens() {
    let port = free_port();
    let _server = start_server(port);
    let (id, token) = create_session(port, None);

    // The server's Docker watch looks once a second; let it see the engine healthy first.
    std::thread::sleep(Duration::from_secs(3));
    // No terminal has been opened: the learner kills their Docker engine through the API, and
    // the server's notices about it (stopped, running again) find no viewer.
    let out = exec(port, &id, &token, "kill -9 $(pidof dockerd); sleep 2; for i in $(seq 1 100); do docker info >/dev/null 2>&1 && echo back && break; sleep 0.2; done");
    assert_eq!(out["stdout"], "back\n", "{out}");
    std::thread::sleep(Duration::from_secs(3));

    // The first terminal to open shows them.
    let url = format!("ws://127.0.0.1:{port}/api/sessions/{id}/terminal?token={token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("terminal websocket");
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(text.contains("Docker in your machine stopped") && text.contains("Docker in your machine is running again")) {
        assert!(Instant::now() < deadline, "the notices never showed; the terminal said:\n{text}");
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Some(Ok(_))) | Err(_) => {}
            other => panic!("terminal ended: {other:?}; it said:\n{text}"),
        }
    }
    assert!(text.contains("[docklab] Docker in your machine stopped"), "{text}");
}
