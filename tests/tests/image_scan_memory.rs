//! A learner's big image must not cost the server memory in proportion to its size: the
//! `image_no_shell` check reads `docker save` from the machine as a stream. Made for real: a
//! 400 MiB executable built in a session machine, graded in this process, whose peak memory is
//! measured around the check.

use std::sync::Arc;
use std::time::Instant;

use docklab_server::grading::{BackendShell, Grader, Scope, TaskStatus};
use docklab_tests::{manager, sh, unique_id, Cleanup};
use lessons::{Catalog, Exercise};
use sandbox::MachineBackend;

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");

/// A one-task exercise holding `check`, written as in `exercise.toml`.
fn exercise(check: &str) -> Exercise {
    let dir = std::env::temp_dir().join(unique_id("scan-content"));
    std::fs::create_dir_all(dir.join("day-26-a/exercises/e")).unwrap();
    std::fs::write(dir.join("day-26-a/lesson.md"), "+++\nday = 26\ntitle = \"t\"\nsummary = \"s\"\n+++\n").unwrap();
    let text = format!("title = \"E\"\nbrief = \"B\"\n[[tasks]]\nid = \"t\"\ntitle = \"T\"\nchecks = [\n{check}\n]\n");
    std::fs::write(dir.join("day-26-a/exercises/e/exercise.toml"), text).unwrap();
    let catalog = Catalog::load(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    catalog.exercise("day-26/e").unwrap().clone()
}

/// This process's peak resident memory so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_400_mib_image_is_looked_through_in_bounded_memory() {
    let m = manager(HELPER);
    m.health().await.expect("host ready for machines (run `docklab setup` first)");
    let id = unique_id("scanmem");
    let info = m.create(&id).await.expect("create machine");
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };

    // An executable of 400 MiB (ELF magic, then zeros), and BusyBox renamed after it.
    let script = "mkdir -p /root/big && cd /root/big \
        && printf 'FROM busybox AS src\\nRUN printf \"\\\\177ELF\" > /big && head -c 419430400 /dev/zero >> /big && chmod 755 /big\\n\
FROM scratch\\nCOPY --from=src /big /usr/lib/big.bin\\nCOPY --from=src /bin/busybox /usr/local/bin/tool\\n' > Dockerfile \
        && docker build -q -t big:1 . && docker image inspect -f '{{.Size}}' big:1";
    let out = sh(&*m, &id, script).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    println!("image size: {}", out.stdout.trim());

    let backend: Arc<dyn MachineBackend> = m.clone();
    let shell = Arc::new(BackendShell { backend, id: id.clone() });
    let g = Grader::connect(&id, &info.docker_socket, shell, 0).expect("connect to the machine's engine");
    let exercise = exercise(r#"{ kind = "image_no_shell", image = "big:1" }"#);
    let before = peak_rss_kib();
    let started = Instant::now();
    let report = g.grade(&exercise, Scope::All).await.remove(0);
    let grown = peak_rss_kib().saturating_sub(before);
    println!("{} ms, peak memory +{} KiB: {:?}: {}", started.elapsed().as_millis(), grown, report.status, report.detail);
    assert_eq!(report.status, TaskStatus::Failed, "{}", report.detail);
    assert!(report.detail.starts_with("big:1 has a shell at /usr/local/bin/tool (BusyBox);"), "{}", report.detail);
    // The whole export held (as before) is over 400 MiB, twice over with the layer copied out.
    assert!(grown < 64 << 10, "peak memory grew by {grown} KiB looking through a 400 MiB image");
}
