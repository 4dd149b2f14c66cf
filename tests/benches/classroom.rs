//! Benchmark: a class through a real server. How long starting machines for a class of 30 takes
//! (every learner joins at once, each join returns when their machine's Docker answers), and the
//! grid's update delay: from a learner's command that completes a task returning, to the `pass`
//! event arriving on the instructor's grid stream (SSE). Prints figures; asserts nothing about time.
//!
//! `DOCKLAB_BIN=target/debug/docklab cargo bench -p docklab-tests --bench classroom` (as root,
//! after `docklab setup`). `DOCKLAB_BENCH_CLASS` sets the class size (default 30).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use docklab_tests::server::{curl, docklab_bin, exec, free_port, start_server, EndClass};
use serde_json::{json, Value};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let size: usize = std::env::var("DOCKLAB_BENCH_CLASS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let name = docklab_tests::unique_id("bench-teacher");
    let mut add = Command::new(docklab_bin())
        .args(["instructor", "add", &name, "--state-dir"])
        .arg(docklab_tests::state_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"a long password\n").unwrap();
    assert!(add.wait().unwrap().success());

    let port = free_port();
    let _server = start_server(port);
    let jar = format!("./docklab-bench-classroom-{port}.jar");
    let jar = jar.as_str();
    curl(port, &["-c", jar, "-o", "/dev/null", "--data-urlencode", &format!("name={name}"), "--data-urlencode", "password=a long password", "/instructor/login"]);
    let me: Value = serde_json::from_str(&curl(port, &["-b", jar, "/api/instructor/me"])).unwrap();
    let csrf = format!("X-CSRF-Token: {}", me["csrf"].as_str().unwrap());
    let post = |path: &str, body: &str| -> Value {
        let out = curl(port, &["-b", jar, "-X", "POST", "-H", &csrf, "-H", "content-type: application/json", "-d", body, path]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{path}: {out:?}: {e}"))
    };
    let class = post("/api/classes", &json!({"name": "Bench class", "exercises": ["day-24/lifecycle"], "seats": size}).to_string());
    let (class_id, code) = (class["id"].as_str().unwrap_or_else(|| panic!("{class}")).to_owned(), class["code"].as_str().unwrap().to_owned());

    let _end = EndClass { port, jar, csrf: me["csrf"].as_str().unwrap().to_owned(), class: class_id.clone() };

    // The instructor's grid stream, each event stamped as it arrives.
    let (tx, events) = mpsc::channel::<(Instant, Value)>();
    let mut stream = Command::new("curl")
        .args(["-s", "-N", "-b", jar, &format!("http://127.0.0.1:{port}/api/classes/{class_id}/events")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = stream.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(data) = line.strip_prefix("data:") {
                if let Ok(v) = serde_json::from_str(data.trim()) {
                    let _ = tx.send((Instant::now(), v));
                }
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));

    // Everyone joins at once.
    let started = Instant::now();
    let joins: Vec<(Duration, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..size)
            .map(|i| {
                let code = code.clone();
                s.spawn(move || {
                    let t = Instant::now();
                    let cookie = format!("Cookie: docklab_learner={:032x}", 0xbe00 + i);
                    let body = json!({"display_name": format!("learner {i:02}")}).to_string();
                    let out = curl(port, &["-X", "POST", "-H", &cookie, "-H", "content-type: application/json", "-d", &body, &format!("/api/join/{code}")]);
                    (t.elapsed(), serde_json::from_str::<Value>(&out).unwrap_or(Value::String(out)))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all_started = started.elapsed();
    let failed: Vec<&Value> = joins.iter().map(|(_, j)| j).filter(|j| !j["id"].is_string()).collect();
    let mut each: Vec<Duration> = joins.iter().map(|(d, _)| *d).collect();
    each.sort();
    println!(
        "class of {size}, all joining at once: every machine ready after {} (one join: p50 {}, p95 {}, slowest {}); {} failed{}",
        secs(all_started),
        secs(percentile(&each, 0.5)),
        secs(percentile(&each, 0.95)),
        secs(*each.last().unwrap()),
        failed.len(),
        failed.first().map(|f| format!(" (first: {f})")).unwrap_or_default()
    );

    // Grid update delay: a third of the class (at most 10) completes the first task, one after
    // another, while the rest sit idle.
    let grid: Value = serde_json::from_str(&curl(port, &["-b", jar, &format!("/api/classes/{class_id}")])).unwrap();
    let member_of = |name: &str| grid["learners"].as_array().unwrap().iter().find(|l| l["name"] == name).map(|l| l["member"].clone());
    while events.try_recv().is_ok() {}
    let mut delays = Vec::new();
    let mut exec_times = Vec::new();
    for (i, (_, j)) in joins.iter().enumerate().filter(|(_, (_, j))| j["id"].is_string()).take((size / 3).clamp(1, 10)) {
        let member = member_of(&format!("learner {i:02}")).unwrap();
        let (id, token) = (j["id"].as_str().unwrap(), j["token"].as_str().unwrap());
        // Pull busybox first (from docklab's registry; retried, as a dockerd under load may
        // fall back from its mirror once), so the figure is the grid's delay, not a pull.
        let pull = "for i in 1 2 3; do docker pull -q busybox >/dev/null && exit 0; sleep 2; done; exit 1";
        if exec(port, id, token, pull)["exit_code"] != 0 {
            println!("learner {i:02}: busybox could not be pulled; skipped");
            continue;
        }
        while events.try_recv().is_ok() {}
        // From the moment the command is sent: the grid often has the pass before the exec
        // call has even returned (the engine's event beats the HTTP answer).
        let sent = Instant::now();
        let out = exec(port, id, token, "docker create --name box busybox sleep 3600");
        let done = Instant::now();
        exec_times.push(done - sent);
        if out["exit_code"] != 0 {
            println!("learner {i:02}: `docker create` failed, skipped: {out}");
            continue;
        }
        let deadline = done + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((at, event)) = events.recv_timeout(left) else {
                println!("learner {i:02}: no pass event within 60 s");
                break;
            };
            if event["type"] == "pass" && event["member"] == member && event["task"] == "day-24/lifecycle:create" {
                delays.push(at.saturating_duration_since(sent));
                break;
            }
        }
    }
    delays.sort();
    exec_times.sort();
    if !delays.is_empty() {
        println!(
            "grid update delay (the learner's `docker create` sent through the exec API -> the grid's SSE `pass` event), {} learners of {size}: p50 {}, slowest {} (the exec call alone: p50 {})",
            delays.len(),
            ms(percentile(&delays, 0.5)),
            ms(*delays.last().unwrap()),
            ms(percentile(&exec_times, 0.5))
        );
    }

    let started = Instant::now();
    let ended = post(&format!("/api/classes/{class_id}/end"), "");
    println!("ending the class removed {} machines in {}", ended["machines_destroyed"], secs(started.elapsed()));
    let _ = stream.kill();
    let _ = stream.wait();
    let _ = std::fs::remove_file(jar);
}

