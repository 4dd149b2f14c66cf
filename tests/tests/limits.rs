//! Resource limits, for real (SECURITY-TESTS.md cases 7 to 9): a machine's disk, processes and
//! memory stop at its own caps, with clear errors, and the host and other machines carry on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use docklab_tests::{sh, state_dir, traces_after_removal, unique_id, Cleanup};
use sandbox::{MachineBackend, SandboxConfig, SessionManager};

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");

fn manager_with(f: impl FnOnce(&mut SandboxConfig)) -> Arc<SessionManager> {
    let mut cfg = SandboxConfig::new(state_dir(), HELPER);
    f(&mut cfg);
    let m = SessionManager::new(cfg).unwrap();
    // Machines pull busybox from docklab's registry.
    docklab_tests::ensure_session_services(&m);
    Arc::new(m)
}

fn host_free_mib() -> u64 {
    let s = nix::sys::statvfs::statvfs(&state_dir()).unwrap();
    s.blocks_available() as u64 * s.fragment_size() as u64 >> 20
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_fill_stops_at_the_machines_cap() {
    let m = manager_with(|c| c.disk_bytes = 512 << 20);
    let id = unique_id("disk");
    let info = m.create(&id).await.expect("create");
    let _c = Cleanup { manager: m.clone(), id: id.clone() };
    // The image first, while there is room (a pull into a full disk fails too, differently).
    let out = sh(&*m, &id, "docker pull -q busybox").await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let before = host_free_mib();
    // Write far more than the cap, in the root filesystem and through Docker.
    let out = sh(&*m, &id, "dd if=/dev/zero of=/root/fill bs=1M count=2048 2>&1; df -m / | tail -1").await;
    assert!(out.stdout.contains("No space left on device"), "the learner should see a clear error: {out:?}");
    assert!(out.stdout.contains("100% /"), "{out:?}");
    let out = sh(&*m, &id, "docker run --rm busybox dd if=/dev/zero of=/big bs=1M count=100 2>&1; echo rc=$?").await;
    assert!(out.stdout.contains("No space left on device") && !out.stdout.contains("rc=0"), "{out:?}");
    // Freeing space inside makes the machine usable again.
    let out = sh(&*m, &id, "rm /root/fill && docker run --rm busybox echo recovered").await;
    assert_eq!(out.stdout.trim(), "recovered", "{out:?}");
    let after = host_free_mib();
    assert!(before.saturating_sub(after) < 700, "the host lost {} MiB to a 512 MiB machine", before - after);
    m.destroy(&id).await.unwrap();
    assert!(traces_after_removal(&id, info.uid_base).is_empty());
    assert!(!state_dir().join("sessions").join(&id).exists(), "the disk image is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bomb_stops_at_the_pids_limit_while_another_machine_answers() {
    let m = manager_with(|c| c.pids_max = 300);
    let (bomb, calm) = (unique_id("bomb"), unique_id("calm"));
    let ib = m.create(&bomb).await.expect("create");
    let _c1 = Cleanup { manager: m.clone(), id: bomb.clone() };
    m.create(&calm).await.expect("create");
    let _c2 = Cleanup { manager: m.clone(), id: calm.clone() };

    let m2 = m.clone();
    let b2 = bomb.clone();
    let bomb_task = tokio::spawn(async move {
        sh(&*m2, &b2, "timeout 8 sh -c 'b() { b | b & }; b' >/dev/null 2>&1; echo done").await
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The pids cgroup of the bombing machine is full...
    let cur = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/docklab/{bomb}/pids.current"))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/{bomb}/pids.current")))
        .unwrap_or_default();
    if let Ok(n) = cur.trim().parse::<u64>() {
        assert!(n <= 300, "pids.current {n} is over the limit");
    }
    // ...while the other machine answers promptly.
    for _ in 0..5 {
        let t = Instant::now();
        let out = sh(&*m, &calm, "echo pong").await;
        assert_eq!(out.stdout.trim(), "pong");
        assert!(t.elapsed() < Duration::from_secs(3), "calm machine took {:?}", t.elapsed());
    }
    let out = bomb_task.await.unwrap();
    assert!(out.stdout.contains("done") || out.exit_code != 0, "{out:?}");
    // The bomb's processes outlive `timeout`; the learner's machine stays full until they are
    // killed, and removing the machine removes every one of them.
    let t = Instant::now();
    m.destroy(&bomb).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(15), "teardown of a fork-bombed machine took {:?}", t.elapsed());
    m.destroy(&calm).await.unwrap();
    assert!(traces_after_removal(&bomb, ib.uid_base).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_oom_killed_inside_its_machine() {
    let m = manager_with(|c| c.memory_bytes = 256 << 20);
    let id = unique_id("oom");
    m.create(&id).await.expect("create");
    let _c = Cleanup { manager: m.clone(), id: id.clone() };
    // A hog that also makes itself the least likely victim; the machine's limit still holds.
    let out = sh(&*m, &id, "echo -1000 > /proc/self/oom_score_adj 2>/dev/null; docker run --rm busybox sh -c 'echo 1000 > /proc/self/oom_score_adj; x=a; while true; do x=$x$x; done' >/dev/null 2>&1; echo rc=$?").await;
    assert!(out.stdout.contains("rc=137") || out.stdout.contains("rc=1"), "{out:?}");
    // The machine itself lives on.
    let out = sh(&*m, &id, "docker run --rm busybox echo still-up").await;
    assert_eq!(out.stdout.trim(), "still-up", "{out:?}");
    m.destroy(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_hog_on_every_core_leaves_another_machines_terminal_responsive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let m = manager_with(|_| {});
    let (hog, calm) = (unique_id("hog"), unique_id("snappy"));
    m.create(&hog).await.expect("create");
    let _c1 = Cleanup { manager: m.clone(), id: hog.clone() };
    m.create(&calm).await.expect("create");
    let _c2 = Cleanup { manager: m.clone(), id: calm.clone() };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) * 2;
    sh(&*m, &hog, &format!("for i in $(seq 1 {cores}); do (while :; do :; done) >/dev/null 2>&1 & done; echo started")).await;

    let mut t = m.open_terminal(&calm, 80, 24).await.unwrap();
    t.input.write_all(b"stty -echo; echo go-$((1+1))\r").await.unwrap();
    let mut seen = String::new();
    while !seen.contains("go-2") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), t.output.read(&mut buf)).await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let marker = format!("k{i}z");
        let started = Instant::now();
        t.input.write_all(format!("echo {marker}\r").as_bytes()).await.unwrap();
        let mut seen = String::new();
        while !seen.contains(&marker) {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), t.output.read(&mut buf)).await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        worst = worst.max(started.elapsed());
    }
    // Generous for a shared 2-core CI machine; typical is a few milliseconds.
    assert!(worst < Duration::from_millis(500), "keystroke echo took {worst:?} next to a CPU hog");
    drop(t);
    m.destroy(&hog).await.unwrap();
    m.destroy(&calm).await.unwrap();
}
