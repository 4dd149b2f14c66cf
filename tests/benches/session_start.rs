//! Benchmark: how long a session machine takes from "create" to Docker answering, and what an
//! idle machine costs in memory. Prints figures; asserts nothing about time.
//!
//! `cargo bench -p docklab-tests --bench session_start` (as root, after `docklab setup`).
//! `DOCKLAB_BENCH_SESSIONS` sets how many machines (default 10).

use std::path::Path;
use std::time::{Duration, Instant};

use docklab_tests::{manager, unique_id};
use sandbox::MachineBackend;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Memory charged to a machine's cgroup (v1 `memory.usage_in_bytes` or v2 `memory.current`).
fn cgroup_memory(id: &str) -> Option<u64> {
    let mut found = None;
    find(Path::new("/sys/fs/cgroup/memory"), id, 0, &mut found);
    if found.is_none() {
        find(Path::new("/sys/fs/cgroup"), id, 0, &mut found);
    }
    let dir = found?;
    for f in ["memory.usage_in_bytes", "memory.current"] {
        if let Ok(s) = std::fs::read_to_string(dir.join(f)) {
            return s.trim().parse().ok();
        }
    }
    None
}

fn find(p: &Path, id: &str, depth: usize, out: &mut Option<std::path::PathBuf>) {
    if depth > 5 || out.is_some() {
        return;
    }
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if e.file_name().to_string_lossy() == id {
                    *out = Some(e.path());
                    return;
                }
                find(&e.path(), id, depth + 1, out);
            }
        }
    }
}

/// Resident memory of every process in a machine (from the pids cgroup), in bytes.
fn machine_rss(id: &str) -> u64 {
    let mut dir = None;
    find(Path::new("/sys/fs/cgroup/pids"), id, 0, &mut dir);
    let Some(dir) = dir else { return 0 };
    let mut pids = Vec::new();
    collect(&dir, &mut pids);
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0)))
        .sum::<u64>()
        * 1024
}

fn collect(dir: &Path, out: &mut Vec<String>) {
    if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().map(str::to_string));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten().filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false)) {
            collect(&e.path(), out);
        }
    }
}

fn main() {
    let helper = env!("CARGO_BIN_EXE_docklab-test-helper");
    let n: usize = std::env::var("DOCKLAB_BENCH_SESSIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let m = manager(helper);
        if let Err(e) = m.health().await {
            eprintln!("session_start: host not ready: {e}");
            std::process::exit(1);
        }
        // One after another: the start time a learner sees on a quiet host.
        let mut ids = Vec::new();
        let mut times = Vec::new();
        for i in 0..n {
            let id = unique_id(&format!("bench{i}"));
            let t = Instant::now();
            m.create(&id).await.expect("create");
            times.push(t.elapsed());
            ids.push(id);
        }
        times.sort();
        println!("session start, sequential, {n} machines: p50 {}  p95 {}  max {}", ms(percentile(&times, 0.5)), ms(percentile(&times, 0.95)), ms(*times.last().unwrap()));

        // Let them settle, then measure what an idle machine costs.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mem: Vec<u64> = ids.iter().filter_map(|id| cgroup_memory(id)).collect();
        let rss: Vec<u64> = ids.iter().map(|id| machine_rss(id)).collect();
        let mib = |b: u64| b as f64 / 1048576.0;
        if !mem.is_empty() {
            println!("idle machine memory (cgroup charge incl. page cache): mean {:.0} MiB", mib(mem.iter().sum::<u64>() / mem.len() as u64));
        }
        println!("idle machine memory (RSS of its processes: dockerd, containerd, init): mean {:.0} MiB", mib(rss.iter().sum::<u64>() / rss.len().max(1) as u64));
        for id in &ids {
            m.destroy(id).await.expect("destroy");
        }

        // All at once: what a classroom's first minute looks like on this host.
        let t0 = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let m = m.clone();
                tokio::spawn(async move {
                    let id = unique_id(&format!("conc{i}"));
                    let t = Instant::now();
                    let r = m.create(&id).await;
                    (id, t.elapsed(), r.is_ok())
                })
            })
            .collect();
        let mut times = Vec::new();
        let mut ids = Vec::new();
        for h in handles {
            let (id, d, ok) = h.await.unwrap();
            assert!(ok, "concurrent create of {id} failed");
            times.push(d);
            ids.push(id);
        }
        times.sort();
        println!(
            "session start, {n} concurrent creations: p50 {}  p95 {}  all ready after {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.95)),
            ms(t0.elapsed())
        );
        for id in &ids {
            m.destroy(id).await.expect("destroy");
        }
    });

    // Through the server, as learners meet it: n people open an exercise at the same moment
    // (POST /api/sessions, which also prepares the exercise), without and with a warm pool.
    for warm in [0, n] {
        through_the_server(n, warm);
    }
}

fn through_the_server(n: usize, warm: usize) {
    use docklab_tests::server::{curl, free_port, start_server_with};
    let port = free_port();
    let (warm_s, max_s) = (warm.to_string(), (n + warm + 10).to_string());
    let mut server = start_server_with(port, &["--warm-machines", &warm_s, "--max-sessions", &max_s]);
    let deadline = Instant::now() + Duration::from_secs(300);
    let pooled = || curl(port, &["/metrics"]).lines().find_map(|l| l.strip_prefix("docklab_warm_machines ")?.trim().parse::<usize>().ok());
    while pooled() != Some(warm) {
        assert!(Instant::now() < deadline, "the warm pool did not fill to {warm}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let handles: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || {
                let t = Instant::now();
                let body = r#"{"exercise":"day-24/lifecycle"}"#;
                let out = curl(port, &["-X", "POST", "-H", "content-type: application/json", "-d", body, "/api/sessions"]);
                let created: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
                (t.elapsed(), created["id"].as_str().map(str::to_string), created["token"].as_str().map(str::to_string), out)
            })
        })
        .collect();
    let mut times = Vec::new();
    for h in handles {
        let (d, id, token, out) = h.join().unwrap();
        let (Some(id), Some(token)) = (id, token) else { panic!("creation failed: {out}") };
        times.push(d);
        let _ = curl(port, &["-X", "DELETE", "-H", &format!("Authorization: Bearer {token}"), &format!("/api/sessions/{id}")]);
    }
    times.sort();
    println!(
        "session start through the server (POST /api/sessions, exercise prepared), {n} at once, warm pool of {warm}: p50 {}  p95 {}  slowest {}",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.95)),
        ms(*times.last().unwrap())
    );
    server.stop(Duration::from_secs(120));
}
