//! Real session machines, as root: namespaces, uid maps, Docker inside, and nothing left behind.

use std::time::Duration;

use docklab_tests::{manager, sh, traces_after_removal as traces, unique_id, Cleanup};
use sandbox::{ExecRequest, MachineBackend, MachineState};

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");

fn ns_inode(pid: &str, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap().display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_runs_docker_in_its_own_namespaces_and_leaves_nothing() {
    let m = manager(HELPER);
    m.health().await.expect("host ready for machines (run `make setup` or `docklab setup` first)");
    let id = unique_id("life");
    let info = m.create(&id).await.expect("create machine");
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    assert_eq!(m.state(&id).await, MachineState::Ready);

    // The learner can run a container, offline, with the busybox image docklab ships.
    let out = sh(&*m, &id, "docker run --rm busybox echo hi").await;
    assert_eq!(out.exit_code, 0, "docker run failed: {out:?}");
    assert_eq!(out.stdout.trim(), "hi");

    // Root inside is the machine's own uid range outside, and nobody else's.
    let out = sh(&*m, &id, "id -u; hostname; cat /proc/self/uid_map").await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1], "lab");
    let map: Vec<u32> = lines[2].split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(map, vec![0, info.uid_base, 65536]);
    assert!(info.uid_base >= 200_000);

    // Every namespace of the machine's init differs from the host's.
    let init = info.init_pid.to_string();
    for ns in ["user", "mnt", "pid", "net", "uts", "ipc", "cgroup"] {
        assert_ne!(ns_inode(&init, ns), ns_inode("self", ns), "{ns} namespace is shared with the host");
    }
    // Inside, the machine sees itself as pid 1 and the host's processes not at all.
    let out = sh(&*m, &id, "cat /proc/1/comm; ls /proc | grep -c '^[0-9]'").await;
    let count: usize = out.stdout.lines().nth(1).unwrap().parse().unwrap();
    assert!(count < 40, "machine sees {count} processes: the host's are leaking in");

    // The machine's Docker socket answers on the host side, for grading.
    assert!(info.docker_socket.exists());

    m.destroy(&id).await.expect("destroy");
    assert_eq!(m.state(&id).await, MachineState::Stopped);
    let left = traces(&id, info.uid_base);
    assert!(left.is_empty(), "machine left traces behind: {left:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reports_exit_codes_timeouts_and_missing_commands() {
    let m = manager(HELPER);
    let id = unique_id("exec");
    let info = m.create(&id).await.expect("create machine");
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    let out = sh(&*m, &id, "echo out; echo err >&2; exit 3").await;
    assert_eq!((out.exit_code, out.stdout.as_str(), out.stderr.as_str()), (3, "out\n", "err\n"));

    let out = m.exec(&id, ExecRequest { cmd: vec!["no-such-command".into()], timeout: Duration::from_secs(10), stdin: None }).await.unwrap();
    assert_eq!(out.exit_code, 127);

    let started = std::time::Instant::now();
    let out = m.exec(&id, ExecRequest { cmd: vec!["sleep".into(), "30".into()], timeout: Duration::from_secs(1), stdin: None }).await.unwrap();
    assert!(out.timed_out && started.elapsed() < Duration::from_secs(5), "{out:?}");
    // The timed-out command is really gone.
    let out = sh(&*m, &id, "pgrep -x sleep || echo none").await;
    assert_eq!(out.stdout.trim(), "none");

    let out = m.exec(&id, ExecRequest { cmd: vec!["cat".into()], timeout: Duration::from_secs(10), stdin: Some(b"typed".to_vec()) }).await.unwrap();
    assert_eq!(out.stdout, "typed");

    m.destroy(&id).await.unwrap();
    assert!(traces(&id, info.uid_base).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_has_its_cgroup_limits_and_survives_its_learner() {
    let m = manager(HELPER);
    let id = unique_id("limits");
    let info = m.create(&id).await.expect("create machine");
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    // The limits are the machine's own and visible from inside, as a learner would look for them.
    let out = sh(&*m, &id, "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes").await;
    let v: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(v, vec!["2048", &(1536u64 * 1024 * 1024).to_string()]);
    // Writing the host's knobs from inside fails.
    let out = sh(&*m, &id, "echo 1 > /proc/sys/kernel/sysrq; echo $?; echo 99999 > /sys/fs/cgroup/pids/pids.max; echo $?").await;
    assert!(!out.stdout.lines().any(|l| l == "0"), "a host-wide write succeeded: {out:?}");

    // Killing dockerd inside is noticed by the machine's init, which restarts it.
    let out = sh(&*m, &id, "kill -9 $(pidof dockerd); for i in $(seq 1 100); do sleep 0.1; docker info >/dev/null 2>&1 && break; done; docker run --rm busybox echo back").await;
    assert_eq!(out.stdout.trim(), "back", "{out:?}");

    m.destroy(&id).await.unwrap();
    assert!(traces(&id, info.uid_base).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_runs_a_login_shell_with_the_greeting() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let m = manager(HELPER);
    let id = unique_id("tty");
    let info = m.create(&id).await.expect("create machine");
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    let mut t = m.open_terminal(&id, 100, 30).await.expect("terminal");
    t.input.write_all(b"stty size; docker run --rm busybox echo from-busybox\r").await.unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(seen.contains("from-busybox\r\n") && seen.contains("30 100")) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, t.output.read(&mut buf)).await.expect("output in time").unwrap();
        assert!(n > 0, "terminal closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("Welcome to your docklab session machine"), "{seen}");
    (t.resize)(120, 40).unwrap();
    t.input.write_all(b"exit\r").await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), t.exited).await.unwrap().unwrap();
    assert_eq!(reason, "the shell exited");
    m.destroy(&id).await.unwrap();
    assert!(traces(&id, info.uid_base).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_outlives_its_viewer_and_replays_recent_output() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let m = manager(HELPER);
    let id = unique_id("relay");
    let info = m.create(&id).await.expect("create machine");
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };

    async fn read_until(t: &mut sandbox::Terminal, needle: &str) -> String {
        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !seen.contains(needle) {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, t.output.read(&mut buf)).await.expect("output in time").unwrap();
            assert!(n > 0, "terminal closed early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen
    }

    let mut t = m.open_terminal(&id, 80, 24).await.unwrap();
    t.input.write_all(b"export KEPT=still-here; echo marker-$((40+2))\r").await.unwrap();
    read_until(&mut t, "marker-42").await;
    drop(t); // the browser went away (or the server restarted)

    let mut t = m.open_terminal(&id, 80, 24).await.unwrap();
    // What the shell printed before is replayed, and the shell is the same one.
    let replay = read_until(&mut t, "marker-42").await;
    assert!(replay.contains("marker-42"));
    t.input.write_all(b"echo value=$KEPT\r").await.unwrap();
    read_until(&mut t, "value=still-here").await;
    m.destroy(&id).await.unwrap();
    assert!(traces(&id, info.uid_base).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_host_file_descriptor_leaks_into_a_machine() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let m = manager(HELPER);
    let id = unique_id("fds");
    let info = m.create(&id).await.expect("create machine");
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    // A shell and a container running, so every kind of process the learner has is there.
    let mut t = m.open_terminal(&id, 80, 24).await.unwrap();
    t.input.write_all(b"docker run -d --name idle busybox sleep 600 >/dev/null; echo ok-$((2*21))\r").await.unwrap();
    let mut seen = String::new();
    while !seen.contains("ok-42") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), t.output.read(&mut buf)).await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Every open file of every process in the machine, as the machine sees it.
    let out = sh(&*m, &id, "for f in /proc/[0-9]*/fd/*; do readlink \"$f\"; done 2>/dev/null | sort -u").await;
    let state = docklab_tests::state_dir().display().to_string();
    for link in out.stdout.lines() {
        assert!(!link.contains(&state) && !link.contains("docklab/sessions"), "a host path is open inside the machine: {link}\n{}", out.stdout);
        assert!(!link.starts_with("/work") && !link.starts_with("/home"), "a host path is open inside the machine: {link}");
    }
    // The machine's own terminal is on its own devpts, not the host's.
    let out = sh(&*m, &id, "ls /dev/pts | grep -c '^[0-9]'").await;
    assert!(out.stdout.trim().parse::<u32>().unwrap() >= 1, "the shell's terminal lives in the machine's devpts");
    drop(t);
    m.destroy(&id).await.unwrap();
    assert!(traces(&id, info.uid_base).is_empty());
}
