//! Benchmark: many idle machines on one host. Prints memory per idle machine, keystroke echo
//! latency across all of them (p50/p99), and terminal throughput. Asserts nothing about time.
//!
//! `cargo bench -p docklab-tests --bench density` (root, after `docklab setup`);
//! `DOCKLAB_BENCH_SESSIONS` sets how many machines (default 50).

use std::time::{Duration, Instant};

use docklab_tests::{manager, unique_id};
use sandbox::MachineBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemAvailable:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .unwrap_or(0)
        / 1024
}

async fn read_until(t: &mut sandbox::Terminal, needle: &[u8], limit: Duration) -> bool {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 8192];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        match tokio::time::timeout_at(deadline, t.output.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return false,
        }
        // Keep only a tail long enough to hold the needle across two reads.
        if seen.len() > 2 * buf.len() {
            seen.drain(..seen.len() - buf.len());
        }
    }
    true
}

fn main() {
    let helper = env!("CARGO_BIN_EXE_docklab-test-helper");
    let n: usize = std::env::var("DOCKLAB_BENCH_SESSIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let m = manager(helper);
        m.health().await.expect("host ready");
        let mem_before = available_mib();
        let mut ids = Vec::new();
        let t0 = Instant::now();
        for i in 0..n {
            let id = unique_id(&format!("dense{i}"));
            m.create(&id).await.expect("create");
            ids.push(id);
        }
        println!("created {n} machines in {:.1} s", t0.elapsed().as_secs_f64());
        let mut terms = Vec::new();
        for id in &ids {
            let mut t = m.open_terminal(id, 120, 40).await.expect("terminal");
            t.input.write_all(b"stty -echo 2>/dev/null; PS1=; echo ready-$((1+1))\r").await.unwrap();
            assert!(read_until(&mut t, b"ready-2", Duration::from_secs(30)).await, "shell in {id} did not start");
            terms.push(t);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let used = mem_before.saturating_sub(available_mib());
        println!("{n} idle machines with a shell each: {used} MiB of host memory, {} MiB per machine", used / n as u64);
        println!("  at that rate, {} GiB of memory holds about {} idle machines", 24, (24 * 1024 - 2048) / (used / n as u64).max(1));

        // Keystroke echo: a character goes in, the shell's answer comes back, across all machines.
        let mut lat = Vec::new();
        for round in 0..10 {
            for t in terms.iter_mut() {
                let marker = format!("e{round}x");
                let started = Instant::now();
                t.input.write_all(format!("echo {marker}\r").as_bytes()).await.unwrap();
                assert!(read_until(t, marker.as_bytes(), Duration::from_secs(10)).await);
                lat.push(started.elapsed());
            }
        }
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0;
        println!("command echo with {n} idle machines: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({} samples)", pct(0.5), pct(0.99), pct(1.0), lat.len());

        // Throughput: 64 MiB of output through one terminal (PTY → relay → server).
        let t = &mut terms[0];
        t.input.write_all(b"head -c 67108864 /dev/zero | tr '\\0' 'a'; echo; echo done-$((3+4))\r").await.unwrap();
        let started = Instant::now();
        assert!(read_until(t, b"done-7", Duration::from_secs(120)).await);
        println!("terminal throughput: {:.0} MB/s (64 MiB of output)", 67.108864 / started.elapsed().as_secs_f64());

        drop(terms);
        let t0 = Instant::now();
        for id in &ids {
            m.destroy(id).await.expect("destroy");
        }
        println!("removed {n} machines in {:.1} s", t0.elapsed().as_secs_f64());
    });
}
