//! Benchmark: grade time for a six-check exercise, and the delay from a Docker event in the
//! session to the page's `checks` update on the terminal WebSocket; grade time with 300
//! containers in the machine, and for a networking exercise with six containers. Prints figures.
//!
//! `cargo bench -p docklab-tests --bench grading` (as root, after `docklab setup`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use docklab_server::app::{app, AppState};
use docklab_server::config::ServerConfig;
use docklab_tests::{manager, unique_id};
use futures::StreamExt;
use sandbox::MachineBackend;
use tokio_tungstenite::tungstenite::Message;

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");
/// Volumes created one by one to measure event → update.
const EVENT_ROUNDS: usize = 10;
const GRADE_ROUNDS: usize = 30;
/// Containers in the machine for the many-containers grade.
const MANY: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[(((sorted.len() as f64 - 1.0) * p).round() as usize).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// A catalog with one exercise: a six-check task, then one task per volume to create.
fn catalog() -> lessons::Catalog {
    let dir = std::env::temp_dir().join(unique_id("bench-content"));
    std::fs::create_dir_all(dir.join("day-24-bench/exercises/grading")).unwrap();
    std::fs::write(dir.join("day-24-bench/lesson.md"), "+++\nday = 24\ntitle = \"Bench\"\nsummary = \"s\"\n+++\n").unwrap();
    let mut text = String::from("title = \"Bench\"\nbrief = \"b\"\n");
    text.push_str(
        r#"[[tasks]]
id = "six"
title = "Six checks"
checks = [
  { kind = "container_state", container = "web", state = "running", memory_mb = 32 },
  { kind = "container_networks", container = "web", networks = ["front"] },
  { kind = "network_exists", network = "front", driver = "bridge" },
  { kind = "volume_mounted", container = "web", path = "/data", as = "volume", source = "data" },
  { kind = "image_config", image = "busybox", cmd = ["sh"] },
  { kind = "file_content", volume = "data", path = "note.txt", contains = "goodbye" },
]
"#,
    );
    for i in 0..EVENT_ROUNDS {
        text.push_str(&format!("[[tasks]]\nid = \"v{i}\"\ntitle = \"v{i}\"\nchecks = [{{ kind = \"volume_exists\", volume = \"bench-{i}\" }}]\n"));
    }
    std::fs::write(dir.join("day-24-bench/exercises/grading/exercise.toml"), text).unwrap();
    // A machine holding MANY containers: logs of every container of an image, and state checks.
    std::fs::create_dir_all(dir.join("day-24-bench/exercises/many")).unwrap();
    std::fs::write(
        dir.join("day-24-bench/exercises/many/exercise.toml"),
        r#"title = "Many"
brief = "b"
[[tasks]]
id = "logs"
title = "Nobody printed this"
checks = [
  { kind = "container_logs", image = "busybox", contains = "a line no container printed" },
  { kind = "container_state", container = "c-1", state = "exited", exit_code = 0, image = "busybox" },
  { kind = "container_logs", container = "c-2", contains = "hello 2" },
]
[[tasks]]
id = "absent"
title = "Never there"
checks = [{ kind = "volume_exists", volume = "never" }]
"#,
    )
    .unwrap();
    // A networking exercise with six containers (day 28's three tiers, and three on the bridge).
    std::fs::create_dir_all(dir.join("day-24-bench/exercises/net")).unwrap();
    std::fs::write(
        dir.join("day-24-bench/exercises/net/exercise.toml"),
        r#"title = "Net"
brief = "b"
[[tasks]]
id = "matrix"
title = "Who reaches whom"
checks = [
  { kind = "container_networks", container = "backend", networks = ["frontend-net", "backend-net"] },
  { kind = "reachable", from = "frontend", to = "backend", by = "name" },
  { kind = "reachable", from = "backend", to = "frontend", by = "name" },
  { kind = "reachable", from = "backend", to = "db", by = "name" },
  { kind = "reachable", from = "db", to = "backend", by = "name" },
  { kind = "not_reachable", from = "frontend", to = "db", by = "ip" },
  { kind = "not_reachable", from = "frontend", to = "db", by = "name" },
  { kind = "not_reachable", from = "db", to = "frontend", by = "ip" },
]
[[tasks]]
id = "bridge"
title = "The default bridge"
checks = [
  { kind = "reachable", from = "login", to = "logout", by = "ip" },
  { kind = "not_reachable", from = "login", to = "logout", by = "name" },
  { kind = "not_reachable", from = "login", to = "finance", by = "ip" },
  { kind = "reachable", from = "finance", to = "login", by = "ip" },
]
"#,
    )
    .unwrap();
    let catalog = lessons::Catalog::load(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    catalog
}

/// GET /checks `rounds` times, one after another; sorted durations.
async fn grade_rounds<F, Fut>(http: &F, id: &str, token: &str, rounds: usize) -> Vec<Duration>
where
    F: Fn(&str, &str, Option<&str>, &str) -> Fut,
    Fut: std::future::Future<Output = serde_json::Value>,
{
    let mut out = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let report = http("GET", &format!("/api/sessions/{id}/checks"), Some(token), "").await;
        out.push(started.elapsed());
        assert!(report["tasks"].is_array(), "{report}");
    }
    out.sort();
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let backend: Arc<dyn MachineBackend> = manager(HELPER);
    backend.health().await.expect("host ready for machines (run `docklab setup` first)");
    let state = AppState::new(backend, Arc::new(catalog()), ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Not `app::serve`: that would also reap other machines found in the state directory.
    let server = tokio::spawn(async move { axum::serve(listener, app(state)).await });
    let http = |method: &str, path: &str, token: Option<&str>, body: &str| {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
        if let Some(t) = token {
            request.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&body).unwrap_or(serde_json::Value::Null)
        }
    };

    let created = http("POST", "/api/sessions", None, r#"{"exercise":"day-24/grading"}"#).await;
    let (id, token) = (created["id"].as_str().unwrap().to_owned(), created["token"].as_str().unwrap().to_owned());
    let exec = |script: &str| {
        let body = serde_json::json!({"cmd": ["sh", "-c", script], "timeout_s": 60}).to_string();
        let (path, token) = (format!("/api/sessions/{id}/exec"), token.clone());
        let http = &http;
        async move { http("POST", &path, Some(&token), &body).await }
    };
    let out = exec("docker network create front && docker volume create data && docker run -d --name web --memory 32m --network front -v data:/data busybox sh -c 'echo hello > /data/note.txt; sleep 3600'").await;
    assert_eq!(out["exit_code"], 0, "{out}");

    // Event → update: create a volume, wait for the `checks` frame that marks its task passed.
    let url = format!("ws://{addr}/api/sessions/{id}/terminal?token={token}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut delays = Vec::new();
    for i in 0..EVENT_ROUNDS {
        let started = Instant::now();
        let out = exec(&format!("docker volume create bench-{i} >/dev/null")).await;
        assert_eq!(out["exit_code"], 0);
        let task = format!("v{i}");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("a checks frame in time");
            let Some(Ok(Message::Text(text))) = frame else { continue };
            let msg: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            if msg["type"] == "checks" && msg["tasks"].as_array().unwrap().iter().any(|t| t["id"] == task && t["status"] == "passed") {
                delays.push(started.elapsed());
                break;
            }
        }
    }
    delays.sort();
    // Grade time: GET /checks evaluates now. The volume tasks are done (and done tasks are not
    // evaluated again), so this is the six-check task, whose last check is made to fail so that
    // it never becomes done and all six checks run every round.
    let mut grades = Vec::new();
    for _ in 0..GRADE_ROUNDS {
        let started = Instant::now();
        let report = http("GET", &format!("/api/sessions/{id}/checks"), Some(&token), "").await;
        grades.push(started.elapsed());
        assert_eq!(report["tasks"][0]["status"], "failed", "{report}");
    }
    grades.sort();

    let _ = http("DELETE", &format!("/api/sessions/{id}"), Some(&token), "").await;

    // GET /checks in a machine with MANY containers (the issue's 300).
    let created = http("POST", "/api/sessions", None, r#"{"exercise":"day-24/many"}"#).await;
    let (id, token) = (created["id"].as_str().unwrap().to_owned(), created["token"].as_str().unwrap().to_owned());
    let exec = |script: String| {
        let body = serde_json::json!({"cmd": ["sh", "-c", script], "timeout_s": 600}).to_string();
        let (path, token) = (format!("/api/sessions/{id}/exec"), token.clone());
        let http = &http;
        async move { http("POST", &path, Some(&token), &body).await }
    };
    let started = Instant::now();
    let out = exec(format!("docker pull -q busybox >/dev/null && seq 1 {MANY} | xargs -P 6 -I N docker run -d --name c-N busybox echo hello N >/dev/null && docker ps -aq | wc -l")).await;
    assert_eq!(out["exit_code"], 0, "{out}");
    println!("({MANY} containers made in {:.0} s)", started.elapsed().as_secs_f64());
    // Let the burst of events settle, as a learner's page would be polled afterwards.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first = Instant::now();
    let _ = http("GET", &format!("/api/sessions/{id}/checks"), Some(&token), "").await;
    let first = first.elapsed();
    let many = grade_rounds(&http, &id, &token, GRADE_ROUNDS).await;
    let _ = http("DELETE", &format!("/api/sessions/{id}"), Some(&token), "").await;

    // GET /checks for a networking exercise with six containers.
    let created = http("POST", "/api/sessions", None, r#"{"exercise":"day-24/net"}"#).await;
    let (id, token) = (created["id"].as_str().unwrap().to_owned(), created["token"].as_str().unwrap().to_owned());
    let body = serde_json::json!({"cmd": ["sh", "-c", "docker network create frontend-net >/dev/null && docker network create backend-net >/dev/null \
        && docker run -d --name frontend --network frontend-net busybox sleep 3600 >/dev/null \
        && docker run -d --name db --network backend-net busybox sleep 3600 >/dev/null \
        && docker run -d --name backend --network frontend-net busybox sleep 3600 >/dev/null && docker network connect backend-net backend \
        && docker run -d --name login busybox sleep 3600 >/dev/null && docker run -d --name logout busybox sleep 3600 >/dev/null \
        && docker network create secure-net >/dev/null && docker run -d --name finance --network secure-net busybox sleep 3600 >/dev/null"], "timeout_s": 120}).to_string();
    let out = http("POST", &format!("/api/sessions/{id}/exec"), Some(&token), &body).await;
    assert_eq!(out["exit_code"], 0, "{out}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let net = grade_rounds(&http, &id, &token, GRADE_ROUNDS).await;
    let report = http("GET", &format!("/api/sessions/{id}/checks"), Some(&token), "").await;
    let _ = http("DELETE", &format!("/api/sessions/{id}"), Some(&token), "").await;
    server.abort();
    assert_eq!(report["tasks"][0]["status"], "passed", "{report}");
    assert_eq!(report["tasks"][1]["status"], "failed", "{report}");

    println!("grade, six checks (GET /checks, {GRADE_ROUNDS} rounds): p50 {}, p95 {}", ms(percentile(&grades, 0.5)), ms(percentile(&grades, 0.95)));
    println!("event -> checks frame ({EVENT_ROUNDS} volumes; includes the exec round trip): p50 {}, p95 {}", ms(percentile(&delays, 0.5)), ms(percentile(&delays, 0.95)));
    println!(
        "grade, {MANY} containers in the machine (GET /checks, {GRADE_ROUNDS} rounds): p50 {}, p95 {} (target p95 150 ms); the first, reading every container's logs: {}",
        ms(percentile(&many, 0.5)),
        ms(percentile(&many, 0.95)),
        ms(first)
    );
    println!("grade, networking exercise with six containers and eleven probes (GET /checks, {GRADE_ROUNDS} rounds): p50 {}, p95 {} (target p95 400 ms)", ms(percentile(&net, 0.5)), ms(percentile(&net, 0.95)));
}
