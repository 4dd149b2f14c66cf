//! Benchmark: pulling docklab's images into a fresh session machine. Prints, per round (a new
//! machine each), the wall time of `docker pull busybox` and `docker pull golang:1.19`, how the
//! golang pull splits into download and extraction (from dockerd's progress lines), the CPU time
//! the machine spent on it, and the same pull again after `docker rmi`. Asserts nothing about time.
//!
//! `cargo bench -p docklab-tests --bench pull` (as root, after `docklab setup`).
//! `DOCKLAB_BENCH_PULLS` sets the rounds (default 3).

use std::time::Instant;

use docklab_tests::{manager, sh, unique_id, Cleanup};
use sandbox::MachineBackend;

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");

/// Pulls `image` with every progress line stamped, and the machine's CPU time around it.
fn timed_pull(image: &str) -> String {
    format!(
        r#"c0=$(cat /sys/fs/cgroup/cpuacct/cpuacct.usage 2>/dev/null || echo 0)
docker pull {image} | while IFS= read -r l; do echo "$(date +%s.%N) $l"; done
c1=$(cat /sys/fs/cgroup/cpuacct/cpuacct.usage 2>/dev/null || echo 0)
echo "cpu $(( (c1 - c0) / 1000000 ))"
"#
    )
}

/// (download s, extraction s, cpu s) from a stamped pull.
fn split(out: &str) -> (f64, f64, f64) {
    let stamp = |l: &str| l.split_whitespace().next().and_then(|t| t.parse::<f64>().ok());
    let first = out.lines().find_map(stamp).unwrap_or(0.0);
    let downloaded = out.lines().filter(|l| l.contains("Download complete")).filter_map(stamp).fold(first, f64::max);
    let done = out.lines().filter(|l| l.contains("Pull complete")).filter_map(stamp).fold(downloaded, f64::max);
    let cpu = out.lines().find_map(|l| l.strip_prefix("cpu ")).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0) / 1000.0;
    (downloaded - first, done - downloaded, cpu)
}

fn main() {
    let rounds: usize = std::env::var("DOCKLAB_BENCH_PULLS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let m = manager(HELPER);
        let mut golang = Vec::new();
        for round in 1..=rounds {
            let id = unique_id("pullbench");
            m.create(&id).await.expect("create machine");
            let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
            let started = Instant::now();
            let out = sh(&*m, &id, "docker pull -q busybox").await;
            assert_eq!(out.exit_code, 0, "{out:?}");
            let busybox = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let out = sh(&*m, &id, &timed_pull("golang:1.19")).await;
            assert_eq!(out.exit_code, 0, "{out:?}");
            let wall = started.elapsed().as_secs_f64();
            let (download, extract, cpu) = split(&out.stdout);
            let started = Instant::now();
            let miss = sh(&*m, &id, "docker pull nosuchimage").await;
            assert_ne!(miss.exit_code, 0);
            let miss_s = started.elapsed().as_secs_f64();
            sh(&*m, &id, "docker rmi -f golang:1.19 >/dev/null; sync").await;
            let started = Instant::now();
            let again = sh(&*m, &id, &timed_pull("golang:1.19")).await;
            assert_eq!(again.exit_code, 0, "{again:?}");
            let again_wall = started.elapsed().as_secs_f64();
            let (_, again_extract, again_cpu) = split(&again.stdout);
            println!(
                "round {round}: busybox {busybox:.2} s; golang:1.19 {wall:.2} s (download {download:.2} s, extraction {extract:.2} s, machine CPU {cpu:.1} s); \
                 a missing image answered in {miss_s:.2} s; golang again after rmi {again_wall:.2} s (extraction {again_extract:.2} s, CPU {again_cpu:.1} s)"
            );
            golang.push(wall);
        }
        golang.sort_by(|a, b| a.total_cmp(b));
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "golang:1.19 into a fresh session over {rounds} rounds: min {:.2} s, median {:.2} s, max {:.2} s (target < 5 s); load average {}",
            golang[0],
            golang[golang.len() / 2],
            golang[golang.len() - 1],
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
    });
}
