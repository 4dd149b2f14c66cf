//! Limits on what costs the host most, through a real server (SECURITY-TESTS.md cases 31 and 33):
//! instructor password guessing (argon2, 19 MiB and a blocking thread per attempt) and machine
//! starts (new sessions, resets, class joins). Clients are told apart by their loopback source
//! address (curl --interface 127.0.0.N: the whole of 127/8 is this host).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docklab_tests::server::{curl, docklab_bin, free_port, start_server_with, EndClass};
use serde_json::{json, Value};

/// curl from the loopback address `from`: (status, Retry-After header if any, body).
fn curl_from(port: u16, from: &str, args: &[&str]) -> (String, Option<String>, String) {
    let mut a: Vec<String> = vec!["-s".into(), "-m".into(), "120".into(), "--interface".into(), from.into(), "-D".into(), "-".into()];
    for x in args {
        a.push(if x.starts_with('/') { format!("http://127.0.0.1:{port}{x}") } else { x.to_string() });
    }
    let out = String::from_utf8_lossy(&Command::new("curl").args(&a).output().unwrap().stdout).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("000").to_owned();
    let retry = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("retry-after").then(|| v.trim().to_owned())
    });
    (status, retry, body.to_owned())
}

fn add_instructor(name: &str, password: &str) {
    let mut add = Command::new(docklab_bin())
        .args(["instructor", "add", name, "--state-dir"])
        .arg(docklab_tests::state_dir())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    assert!(add.wait().unwrap().success());
}

fn login(port: u16, from: &str, name: &str, password: &str) -> (String, Option<String>) {
    let (status, retry, _) = curl_from(port, from, &["--data-urlencode", &format!("name={name}"), "--data-urlencode", &format!("password={password}"), "/instructor/login"]);
    (status, retry)
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

#[test]
fn password_guessing_is_limited_per_address_and_account_and_hashing_is_bounded() {
    let name = docklab_tests::unique_id("guessed");
    add_instructor(&name, "the right password");
    let port = free_port();
    let server = start_server_with(port, &["--warm-machines", "0", "--end-sessions-on-exit"]);
    let pid = server.0.id();

    // 30 wrong guesses from one address: the first ten are checked, then 429 with Retry-After.
    let mut codes = Vec::new();
    let mut retry_after = None;
    for _ in 0..30 {
        let (status, retry) = login(port, "127.0.0.2", &name, "a wrong guess");
        if status == "429" {
            retry_after = retry_after.or(retry.clone());
            assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|s| s >= 1)), "a 429 without a Retry-After in seconds");
        }
        codes.push(status);
    }
    println!("30 wrong passwords from one address: {codes:?}, Retry-After {retry_after:?}");
    assert!(codes[..10].iter().all(|c| c == "401"), "{codes:?}");
    assert!(codes[10..].iter().all(|c| c == "429"), "{codes:?}");
    // Even the right password is refused from that address now...
    assert_eq!(login(port, "127.0.0.2", &name, "the right password").0, "429");
    // ...but the instructor, elsewhere, logs in (the account has had 10 of its 30 attempts).
    assert_eq!(login(port, "127.0.0.1", &name, "the right password").0, "303");

    // 40 attempts at once from 40 addresses: argon2 runs two at a time, so the server's peak
    // memory grows by a few hashes' worth, not forty (19 MiB each).
    let before = peak_rss_kib(pid);
    let started = Instant::now();
    let statuses: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40)
            .map(|i| {
                let name = name.clone();
                s.spawn(move || login(port, &format!("127.0.1.{}", i + 1), &format!("{name}-{i}"), "wrong").0)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = peak_rss_kib(pid);
    println!("40 concurrent attempts: peak RSS {before} KiB -> {after} KiB in {:.1} s; {statuses:?}", started.elapsed().as_secs_f64());
    assert!(statuses.iter().all(|s| s == "401" || s == "503"), "{statuses:?}");
    assert!(after < before + 160 * 1024, "peak memory grew by {} MiB under 40 concurrent logins", (after - before) / 1024);
}

#[test]
fn machine_starts_are_limited_per_address_learner_and_class_with_retry_after() {
    let port = free_port();
    let _server = start_server_with(port, &["--warm-machines", "0", "--end-sessions-on-exit"]);
    let lessons: Value = serde_json::from_str(&curl(port, &["/api/lessons"])).unwrap();
    let exercise = lessons[0]["exercises"][0]["id"].as_str().unwrap().to_owned();
    let create = |from: &str, cookie: &str, exercise: &str| {
        let body = json!({"exercise": exercise}).to_string();
        curl_from(port, from, &["-H", &format!("Cookie: docklab_learner={cookie}"), "-H", "content-type: application/json", "-d", &body, "/api/sessions"])
    };
    let (ann, bo) = ("a".repeat(32), "b".repeat(32));

    // One real session for Ann, from 127.0.0.3.
    let (status, _, body) = create("127.0.0.3", &ann, &exercise);
    assert_eq!(status, "201", "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let (id, token) = (created["id"].as_str().unwrap().to_owned(), created["token"].as_str().unwrap().to_owned());

    // Ann uses up her allowance (burst 10) with requests that start nothing (no such exercise).
    let mut codes = vec![];
    for _ in 0..12 {
        codes.push(create("127.0.0.3", &ann, "day-99/nothing").0);
    }
    println!("Ann's requests: {codes:?}");
    assert!(codes.contains(&"429".to_owned()), "{codes:?}");
    let (status, retry, body) = create("127.0.0.3", &ann, &exercise);
    assert_eq!(status, "429", "{body}");
    assert!(retry.as_deref().and_then(|r| r.parse::<u64>().ok()).is_some_and(|s| (1..=60).contains(&s)), "Retry-After {retry:?}");
    // Another address does not help Ann (her cookie is limited)...
    let (status, retry, _) = create("127.0.0.4", &ann, &exercise);
    assert_eq!((status.as_str(), retry.is_some()), ("429", true), "the same learner from another address");
    // ...nor a fresh cookie from Ann's address (the address is limited).
    let (status, _, _) = create("127.0.0.3", &bo, &exercise);
    assert_eq!(status, "429", "a fresh cookie from the same address");
    // Resetting her machine starts a machine too: limited as well.
    let (status, retry, body) = curl_from(
        port,
        "127.0.0.3",
        &["-X", "POST", "-H", &format!("Authorization: Bearer {token}"), "-H", &format!("Cookie: docklab_learner={ann}"), &format!("/api/sessions/{id}/reset")],
    );
    assert_eq!(status, "429", "reset: {body}");
    assert!(retry.is_some(), "reset's 429 has a Retry-After");

    // Class joins: Ann, whose allowance is spent, cannot start a machine by joining a class.
    let name = docklab_tests::unique_id("limits");
    add_instructor(&name, "a long password");
    // Relative: the curl helper turns arguments starting with `/` into URLs.
    let jar = format!("./docklab-limits-{port}.jar");
    let jar = jar.as_str();
    let login = curl(port, &["-c", jar, "-o", "/dev/null", "-w", "%{http_code}", "--data-urlencode", &format!("name={name}"), "--data-urlencode", "password=a long password", "/instructor/login"]);
    assert_eq!(login, "303");
    let me: Value = serde_json::from_str(&curl(port, &["-b", jar, "/api/instructor/me"])).unwrap();
    let csrf = me["csrf"].as_str().unwrap().to_owned();
    let class: Value = serde_json::from_str(&curl(
        port,
        &["-b", jar, "-X", "POST", "-H", &format!("X-CSRF-Token: {csrf}"), "-H", "content-type: application/json", "-d", &json!({"name": "Limits", "exercises": [exercise], "seats": 3}).to_string(), "/api/classes"],
    ))
    .unwrap();
    let _end = EndClass { port, jar, csrf, class: class["id"].as_str().unwrap_or_else(|| panic!("{class}")).to_owned() };
    let code = class["code"].as_str().unwrap();
    let (status, retry, body) = curl_from(
        port,
        "127.0.0.5",
        &["-X", "POST", "-H", &format!("Cookie: docklab_learner={ann}"), "-H", "content-type: application/json", "-d", r#"{"display_name":"Ann"}"#, &format!("/api/join/{code}")],
    );
    assert_eq!(status, "429", "join: {body}");
    assert!(retry.is_some(), "join's 429 has a Retry-After");

    let auth = format!("Authorization: Bearer {token}");
    curl(port, &["-X", "DELETE", "-H", &auth, &format!("/api/sessions/{id}")]);
    let _ = std::fs::remove_file(jar);
    std::thread::sleep(Duration::from_millis(100));
}
