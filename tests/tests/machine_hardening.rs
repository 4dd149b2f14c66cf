//! What a machine inherits from the host: no descriptor (finding 7 of the hardening issue), and a
//! seccomp filter that refuses io_uring and the other high-risk calls while Docker keeps working
//! (SECURITY-TESTS.md case 33).

use std::os::fd::AsFd;
use std::time::Duration;

use docklab_tests::{manager, sh, unique_id, Cleanup};
use sandbox::{ExecRequest, MachineBackend};

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");

/// Host pids of every process in machine `id`'s cgroup (launcher, init, dockerd, `__enter`...).
fn machine_pids(id: &str) -> Vec<u32> {
    let tag = format!("/docklab/{id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.lines().any(|l| l.contains(&tag))))
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_host_descriptor_reaches_a_machine() {
    // A file the test process holds open without close-on-exec, as a server started by a careless
    // supervisor would: every helper the manager starts inherits it unless it closes it.
    let name = format!("docklab-fd-marker-{}", std::process::id());
    let marker = std::env::temp_dir().join(&name);
    std::fs::write(&marker, "a host secret\n").unwrap();
    let f = std::fs::File::open(&marker).unwrap();
    nix::fcntl::fcntl(f.as_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).expect("clearing FD_CLOEXEC");

    let m = manager(HELPER);
    let id = unique_id("fds");
    m.create(&id).await.expect("create");
    let _c = Cleanup { manager: m.clone(), id: id.clone() };
    // A command running meanwhile, so its `__enter` helper is looked at too.
    let (m2, id2) = (m.clone(), id.clone());
    let running = tokio::spawn(async move {
        m2.exec(&id2, ExecRequest { cmd: vec!["sleep".into(), "4".into()], timeout: Duration::from_secs(30), stdin: None }).await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let pids = machine_pids(&id);
    let names: Vec<String> = pids.iter().map(|p| comm(*p)).collect();
    for want in ["dockerd", "containerd", "sleep"] {
        assert!(names.iter().any(|n| n == want), "no {want} among the machine's processes: {names:?}");
    }
    let mut leaks = Vec::new();
    for pid in &pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t == marker) {
                leaks.push(format!("{} ({}) fd {}", pid, comm(*pid), fd.file_name().to_string_lossy()));
            }
        }
    }
    assert!(leaks.is_empty(), "the host's descriptor reached the machine: {leaks:?}");
    // And as the machine's root sees it.
    let out = sh(&*m, &id, &format!("ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -c {name} || true")).await;
    assert_eq!(out.stdout.trim(), "0", "{out:?}");
    let _ = running.await;
    drop(f);
    let _ = std::fs::remove_file(&marker);
}

/// io_uring_setup, called directly: prints the result and errno.
const URING_PROBE: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    char params[120] = {0};
    long r = syscall(425 /* io_uring_setup */, 1, params);
    printf("io_uring_setup=%ld errno=%d\n", r, r < 0 ? errno : 0);
    return 0;
}
"#;

/// A static binary of URING_PROBE, built with the host's gcc.
fn uring_probe() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("docklab-uring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("probe.c"), URING_PROBE).unwrap();
    let out = std::process::Command::new("gcc").args(["-static", "-O1", "-o"]).arg(dir.join("probe")).arg(dir.join("probe.c")).output().expect("gcc");
    assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
    let bin = std::fs::read(dir.join("probe")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_run_under_a_seccomp_filter_and_docker_still_works() {
    let m = manager(HELPER);
    let id = unique_id("seccomp");
    m.create(&id).await.expect("create");
    let _c = Cleanup { manager: m.clone(), id: id.clone() };

    // init, dockerd and a shell all carry a filter.
    let out = sh(&*m, &id, "for p in 1 $(pidof dockerd) self; do grep '^Seccomp:' /proc/$p/status; done").await;
    assert_eq!(out.stdout.lines().filter(|l| l.split_whitespace().nth(1) == Some("2")).count(), 3, "{out:?}");

    // io_uring from the machine's root: not there (ENOSYS). keyctl likewise (ENOSYS, which runc
    // accepts), perf_event_open refused (EPERM). The node image has perl, whose syscall() calls the
    // kernel directly.
    let out = sh(
        &*m,
        &id,
        r#"perl -e '$p = "\0" x 120; sub r { my ($n, $r) = @_; print "$n=$r/", ($r < 0 ? $!+0 : 0), "\n" } r(425, syscall(425, 1, $p)); r(250, syscall(250, 1, 0)); r(298, syscall(298, $p, 0, -1, -1, 0))'"#,
    )
    .await;
    assert_eq!(out.stdout.trim(), "425=-1/38\n250=-1/38\n298=-1/1", "{out:?}");

    // A privileged container has Docker's own filter off; ours still holds.
    let probe = uring_probe();
    let out = m
        .exec(
            &id,
            ExecRequest {
                cmd: vec!["sh".into(), "-c".into(), "cat > /usr/local/bin/uring-probe && chmod +x /usr/local/bin/uring-probe && /usr/local/bin/uring-probe".into()],
                timeout: Duration::from_secs(60),
                stdin: Some(probe),
            },
        )
        .await
        .expect("copy the probe in");
    assert_eq!(out.stdout.trim(), "io_uring_setup=-1 errno=38", "{out:?}");
    let out = sh(&*m, &id, "docker run --rm --privileged -v /usr/local/bin/uring-probe:/probe busybox /probe").await;
    assert_eq!(out.stdout.trim(), "io_uring_setup=-1 errno=38", "{out:?}");

    // Docker works: a container, and a build with a RUN step.
    let out = sh(&*m, &id, "docker run --rm busybox echo ok").await;
    assert_eq!(out.stdout.trim(), "ok", "{out:?}");
    let out = sh(
        &*m,
        &id,
        "mkdir -p /tmp/b && printf 'FROM busybox\\nRUN echo built > /built\\n' > /tmp/b/Dockerfile && docker build -q -t hardening-build /tmp/b >/dev/null && docker run --rm hardening-build cat /built",
    )
    .await;
    assert_eq!(out.stdout.trim(), "built", "{out:?}");
}

/// Sparse disks promise more than the host has; past the operator's bound, no machine is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_overcommit_past_the_operators_bound_refuses_a_machine() {
    let _services = manager(HELPER);
    let mut cfg = sandbox::SandboxConfig::new(docklab_tests::state_dir(), HELPER);
    // Any 8 GiB disk is more than a millionth of the host's free space.
    cfg.disk_overcommit = 1e-6;
    let m = std::sync::Arc::new(sandbox::SessionManager::new(cfg).expect("manager"));
    let c = m.disk_commitment().await.expect("figures");
    assert!(c.free_bytes > 0 && c.limit == 1e-6, "{c:?}");
    let id = unique_id("overcommit");
    let err = m.create(&id).await.expect_err("a machine past the overcommit bound");
    assert!(matches!(err, sandbox::SandboxError::DiskOvercommitted { .. }), "{err}");
    assert!(err.to_string().contains("no new session machine"), "{err}");
    assert!(!docklab_tests::state_dir().join("sessions").join(&id).exists(), "the refused machine left its directory");
}
