//! A session machine turned against the server (SECURITY-TESTS.md cases 25 to 28), through a real
//! server and real machines: the learner is root in the machine and plants things where the
//! server reads (links to a host canary, a FIFO, /dev/zero, huge files), points the engine socket
//! at another session's engine, replaces dockerd with a fake engine answering 100 MB, and fills
//! the control directory. Each test asserts what a user would notice (terminal, API, log) and the
//! server's memory, descriptors and the host's disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use docklab_tests::server::{create_session, curl, exec, free_port, start_server, Server};

/// Runs a script in the session's machine through the API; returns (exit code, stdout + stderr).
fn run(port: u16, id: &str, token: &str, script: &str) -> (i64, String) {
    let out = tokio::task::block_in_place(|| exec(port, id, token, script));
    let text = format!("{}{}", out["stdout"].as_str().unwrap_or_default(), out["stderr"].as_str().unwrap_or_default());
    (out["exit_code"].as_i64().unwrap_or(-1), text)
}

fn run_ok(port: u16, id: &str, token: &str, script: &str) -> String {
    let (code, text) = run(port, id, token, script);
    assert_eq!(code, 0, "{script}\n{text}");
    text
}

/// Everything the session's terminal shows from now on, as it arrives.
async fn follow_terminal(port: u16, id: &str, token: &str) -> mpsc::UnboundedReceiver<String> {
    let url = format!("ws://127.0.0.1:{port}/api/sessions/{id}/terminal?token={token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("terminal websocket");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            let text = match m {
                Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                Message::Text(t) => t.as_str().to_owned(),
                _ => continue,
            };
            if tx.send(text).is_err() {
                return;
            }
        }
    });
    rx
}

/// Collects what arrived on the terminal for `wait`, or until `want` shows.
async fn terminal_until(rx: &mut mpsc::UnboundedReceiver<String>, seen: &mut String, want: &str, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    while !seen.contains(want) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(t)) => seen.push_str(&t),
            _ => return false,
        }
    }
    true
}

fn server_pid(server: &Server) -> u32 {
    server.0.id()
}

/// (resident KiB, open descriptors, threads) of the server.
fn server_usage(pid: u32) -> (u64, usize, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    (field("VmRSS:"), fds, field("Threads:"))
}

fn server_log(port: u16) -> String {
    let path = std::env::temp_dir().join(format!("docklab-server-{port}-{}.log", std::process::id()));
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The server answers /healthz within a second.
fn answers_quickly(port: u16) -> bool {
    let started = Instant::now();
    let code = curl(port, &["-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "/healthz"]);
    code == "200" && started.elapsed() < Duration::from_secs(1)
}

/// A host file only root may read, holding a unique canary: (its path, the canary, its directory).
fn host_canary() -> (PathBuf, String, tempfile_dir::Dir) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile_dir::Dir::new("docklab-canary");
    let canary = format!("docklab-canary-{}-{}", std::process::id(), rand_u64());
    let path = dir.0.join("secret");
    // "7 <canary>": if the server ever reads it as the crash counter, it announces 7 crashes
    // with the canary as the reason, in the learner's terminal.
    std::fs::write(&path, format!("7 {canary}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, canary, dir)
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    u64::from_le_bytes(b)
}

mod tempfile_dir {
    use std::path::PathBuf;
    /// A directory removed when dropped.
    pub struct Dir(pub PathBuf);
    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), super::rand_u64()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Kills the machine's dockerd and waits for its terminal's notice that Docker stopped; the
/// Docker notices of every session come from one watcher in the server.
async fn docker_notice_arrives(port: u16, id: &str, token: &str, within: Duration) -> bool {
    let mut rx = follow_terminal(port, id, token).await;
    let mut seen = String::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    run_ok(port, id, token, "pkill -x dockerd; true");
    let arrived = terminal_until(&mut rx, &mut seen, "Docker in your machine stopped", within).await;
    // Let Docker come back before the next step uses it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while run(port, id, token, "docker info >/dev/null 2>&1").0 != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    arrived
}

/// Case 25: links, a FIFO, /dev/zero and huge files planted where the server reads the machine's
/// Docker state are never followed, and never hold up anyone else's notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_files_planted_in_the_machine_are_never_followed() {
    let port = free_port();
    let server = start_server(port);
    let pid = server_pid(&server);
    let (a, ta) = create_session(port, None);
    let (b, tb) = create_session(port, None);
    let (canary_path, canary, _dir) = host_canary();
    let mut term_a = follow_terminal(port, &a, &ta).await;
    let mut seen_a = String::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = server_usage(pid);

    // 1. Links to a host file only root may read, in place of both files the server reads.
    let c = canary_path.display();
    run_ok(port, &a, &ta, &format!("cd /run/docklab && ln -sf {c} crashes && ln -sf {c} state && ls -l"));
    let leaked = terminal_until(&mut term_a, &mut seen_a, &canary, Duration::from_secs(4)).await;
    assert!(!leaked, "the host canary reached the learner's terminal:\n{seen_a}");
    assert!(!server_log(port).contains(&canary), "the host canary reached the server's log");
    let api = curl(port, &["-H", &format!("Authorization: Bearer {ta}"), &format!("/api/sessions/{a}")]);
    assert!(!api.contains(&canary), "the host canary reached the API: {api}");

    // 2. A FIFO (opening it blocks until a writer comes) and /dev/zero (endless).
    run_ok(port, &a, &ta, "cd /run/docklab && rm -f state crashes && mkfifo state && touch crashes && mount --bind /dev/zero crashes");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(answers_quickly(port), "the server stopped answering with a FIFO planted");
    assert!(
        docker_notice_arrives(port, &b, &tb, Duration::from_secs(8)).await,
        "another session's Docker notice did not arrive while session A's control files were a FIFO and /dev/zero"
    );

    // 3. Files far larger than anything the server should read (sparse, so they cost nothing).
    run_ok(port, &a, &ta, "cd /run/docklab && umount crashes; rm -f state crashes && truncate -s 8G state crashes && ls -ls");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(answers_quickly(port));
    assert!(docker_notice_arrives(port, &b, &tb, Duration::from_secs(8)).await, "another session's Docker notice did not arrive with 8 GiB files planted");

    let after = server_usage(pid);
    eprintln!("server before: {} KiB, {} fds, {} threads; after: {} KiB, {} fds, {} threads", before.0, before.1, before.2, after.0, after.1, after.2);
    assert!(after.0 < before.0 + 64 * 1024, "the server grew from {} to {} KiB", before.0, after.0);
    assert!(after.1 < before.1 + 16, "the server's descriptors went from {} to {}", before.1, after.1);
    assert!(after.2 < before.2 + 16, "the server's threads went from {} to {} (stuck reads?)", before.2, after.2);

    // Session A's own notices still work once its files are sane again (init rewrites them).
    run_ok(port, &a, &ta, "cd /run/docklab && rm -f state crashes");
    assert!(docker_notice_arrives(port, &a, &ta, Duration::from_secs(10)).await, "session A's own Docker notices stopped for good");
    assert!(!server_log(port).contains(&canary), "the host canary reached the server's log");
}

/// Stops the machine's dockerd for good (init's restarts find no binary), so whatever the
/// learner puts at /run/docklab/docker.sock stays there.
fn disable_dockerd(port: u16, id: &str, token: &str) {
    run_ok(port, id, token, "mv /usr/sbin/dockerd /usr/sbin/dockerd.off && pkill -KILL -x dockerd; sleep 1; ! pgrep -x dockerd");
}

/// Case 26: the engine socket in the machine replaced by a link to another session's engine (or
/// the host's): the session's scene and checks never show the other session's containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_socket_link_never_reaches_another_sessions_engine() {
    let port = free_port();
    let _server = start_server(port);
    let (a, ta) = create_session(port, None);
    let (b, tb) = create_session(port, None);
    let secret = format!("secret-of-b-{}", rand_u64() % 1_000_000);
    run_ok(port, &b, &tb, &format!("docker run -d --name {secret} busybox sleep 600 >/dev/null"));
    let auth = format!("Authorization: Bearer {ta}");
    let scene = curl(port, &["-H", &auth, &format!("/api/sessions/{a}/scene")]);
    assert!(scene.contains("\"containers\""), "session A's scene before the attack: {scene}");

    disable_dockerd(port, &a, &ta);
    let state = docklab_tests::state_dir();
    let targets = [
        state.join(format!("sessions/{b}/control/docker.sock")),
        state.join(format!("engines/{b}.sock")),
        PathBuf::from("/var/run/docker.sock"),
        PathBuf::from("/run/containerd/containerd.sock"),
    ];
    for target in &targets {
        let t = target.display();
        run_ok(port, &a, &ta, &format!("rm -f /run/docklab/docker.sock && ln -s {t} /run/docklab/docker.sock"));
        let scene = curl(port, &["-H", &auth, &format!("/api/sessions/{a}/scene")]);
        assert!(!scene.contains(&secret), "session A's scene shows session B's container through a link to {t}: {scene}");
        let checks = curl(port, &["-H", &auth, &format!("/api/sessions/{a}/checks")]);
        assert!(!checks.contains(&secret), "session A's checks mention session B's container through a link to {t}: {checks}");
        eprintln!("link to {t}: scene answer {}", scene.chars().take(200).collect::<String>());
    }
    // Session B's own view is intact.
    let scene_b = curl(port, &["-H", &format!("Authorization: Bearer {tb}"), &format!("/api/sessions/{b}/scene")]);
    assert!(scene_b.contains(&secret), "{scene_b}");
}

/// A fake engine in the machine: perl (in the node image) on /run/docklab/docker.sock, answering
/// every request with 100 MB: announced (Content-Length) for most, chunked and unannounced for
/// container lists and for the events stream.
const FAKE_ENGINE: &str = r#"
use strict; use IO::Socket::UNIX; use POSIX;
$SIG{CHLD} = 'IGNORE';
unlink '/run/docklab/docker.sock';
my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => '/run/docklab/docker.sock', Listen => 64) or die "listen: $!";
open(my $ready, '>', '/tmp/fake-engine.ready'); close $ready;
while (1) {
    my $c = $s->accept or next;
    if (fork() == 0) {
        my $req = ''; while ($req !~ /\r\n\r\n/) { my $n = sysread($c, my $b, 65536) or exit 0; $req .= $b }
        my $mb = '[' x 1048576;
        if ($req =~ m{^GET \S*(containers/json|events)}) {
            print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            for (1..100) { print $c sprintf("%x\r\n", length $mb), $mb, "\r\n" or exit 0 }
            print $c "0\r\n\r\n";
        } else {
            print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n";
            for (1..100) { print $c $mb or exit 0 }
        }
        exit 0;
    }
    close $c;
}
"#;

/// A fake engine that accepts every connection and never says anything.
const SILENT_ENGINE: &str = r#"
use strict; use IO::Socket::UNIX;
unlink '/run/docklab/docker.sock';
my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => '/run/docklab/docker.sock', Listen => 64) or die "listen: $!";
open(my $ready, '>', '/tmp/fake-engine.ready'); close $ready;
my @held;
while (my $c = $s->accept) { push @held, $c }
"#;

/// Case 27: a hostile engine answering 100 MB per request (in parallel) costs the server bounded
/// memory; the session's requests fail with a clear error; everyone else carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_engine_answering_100_mb_costs_the_server_bounded_memory() {
    let port = free_port();
    let server = start_server(port);
    let pid = server_pid(&server);
    let (a, ta) = create_session(port, None);
    let (b, tb) = create_session(port, None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = server_usage(pid);

    disable_dockerd(port, &a, &ta);
    let script = format!("cat > /tmp/fake-engine.pl <<'EOF'\n{FAKE_ENGINE}\nEOF\nsetsid nohup perl /tmp/fake-engine.pl >/tmp/fake-engine.log 2>&1 < /dev/null &\necho $! > /tmp/fake-engine.pid\nfor i in $(seq 50); do [ -e /tmp/fake-engine.ready ] && exit 0; sleep 0.1; done; cat /tmp/fake-engine.log; exit 1");
    run_ok(port, &a, &ta, &script);

    // Ten scene requests at once, each asking four 100 MB lists, while the grader and the port
    // watcher hit the same engine on their own.
    let auth = format!("Authorization: Bearer {ta}");
    let url = format!("/api/sessions/{a}/scene");
    let mut peak = before.0;
    let started = Instant::now();
    let answers: Vec<String> = {
        let handles: Vec<_> = (0..10)
            .map(|_| {
                let (auth, url) = (auth.clone(), url.clone());
                std::thread::spawn(move || curl(port, &["-w", "\n%{http_code}", "-H", &auth, &url]))
            })
            .collect();
        while !handles.iter().all(|h| h.is_finished()) {
            peak = peak.max(server_usage(pid).0);
            std::thread::sleep(Duration::from_millis(50));
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    };
    let took = started.elapsed();
    for _ in 0..40 {
        peak = peak.max(server_usage(pid).0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("ten scene requests took {took:?}; server RSS {} KiB before, peak {peak} KiB", before.0);
    for answer in &answers {
        let (body, code) = answer.rsplit_once('\n').unwrap();
        assert_eq!(code, "503", "{body}");
        assert!(body.contains("engine_unavailable") || body.contains("Docker engine"), "{body}");
        assert!(!body.contains("[[[["), "the fake engine's bytes reached the API");
    }
    assert!(
        answers.iter().any(|a| a.contains("larger than 4 MiB")),
        "no answer says the engine's answer was too large: {}",
        answers[0]
    );
    // Pre-fix, one such request took the server from 37 MB to 1.2 GB.
    assert!(peak < before.0 + 128 * 1024, "the server grew from {} KiB to {peak} KiB", before.0);
    assert!(took < Duration::from_secs(30), "the requests took {took:?}");

    // Everyone else carries on.
    assert!(answers_quickly(port));
    let scene_b = curl(port, &["-w", "\n%{http_code}", "-H", &format!("Authorization: Bearer {tb}"), &format!("/api/sessions/{b}/scene")]);
    assert!(scene_b.ends_with("\n200"), "{scene_b}");

    // An engine that accepts and never answers: the request ends in bounded time.
    let silent = format!("kill $(cat /tmp/fake-engine.pid); rm -f /tmp/fake-engine.ready; cat > /tmp/fake-engine.pl <<'EOF'\n{SILENT_ENGINE}\nEOF\nsetsid nohup perl /tmp/fake-engine.pl >/tmp/fake-engine.log 2>&1 < /dev/null &\necho $! > /tmp/fake-engine.pid\nfor i in $(seq 50); do [ -e /tmp/fake-engine.ready ] && exit 0; sleep 0.1; done; cat /tmp/fake-engine.log; exit 1");
    run_ok(port, &a, &ta, &silent);
    let started = Instant::now();
    let answer = curl(port, &["-w", "\n%{http_code}", "-H", &auth, &url]);
    let took = started.elapsed();
    eprintln!("a silent engine: the scene answered in {took:?}: {answer}");
    assert!(answer.ends_with("\n503"), "{answer}");
    assert!(took < Duration::from_secs(20), "a silent engine held the scene request for {took:?}");

    // The fake engine gone, the server's descriptors come back down.
    run(port, &a, &ta, "kill $(cat /tmp/fake-engine.pid); true");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server_usage(pid);
    eprintln!("server after: {} KiB, {} fds (before: {} fds)", after.0, after.1, before.1);
    assert!(after.1 < before.1 + 16, "the server's descriptors went from {} to {}", before.1, after.1);
}

fn host_used_bytes(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).unwrap();
    (st.blocks() - st.blocks_free()) as u64 * st.fragment_size() as u64
}

fn host_used_inodes(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).unwrap();
    (st.files() - st.files_free()) as u64
}

/// Case 28: what a machine writes in its control directory lands on its own capped tmpfs, never
/// on the host's filesystem: 200 MiB and thousands of files fail inside with "No space left".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filling_the_control_directory_costs_the_host_no_disk() {
    let port = free_port();
    let _server = start_server(port);
    let (a, ta) = create_session(port, None);
    let state = docklab_tests::state_dir();

    let used = host_used_bytes(&state);
    let (code, out) = run(port, &a, &ta, "dd if=/dev/zero of=/run/docklab/fill bs=1M count=200 2>&1; echo; du -k /run/docklab/fill");
    let grew = host_used_bytes(&state).saturating_sub(used);
    eprintln!("dd in /run/docklab: exit {code}: {out}\nhost used space grew by {} KiB", grew >> 10);
    assert!(out.contains("No space left on device"), "{out}");
    let kib: u64 = out.lines().last().and_then(|l| l.split_whitespace().next()).and_then(|k| k.parse().ok()).unwrap_or(u64::MAX);
    assert!(kib <= 1024, "{kib} KiB landed in /run/docklab");
    // Other tests may write on this host meanwhile: 200 MiB would show, a few MiB of noise not.
    assert!(grew < 100 << 20, "the host's used space grew by {} MiB", grew >> 20);
    assert!(!state.join(format!("sessions/{a}/control/fill")).exists(), "the write landed in the host's state directory");

    let inodes = host_used_inodes(&state);
    let (_, out) = run(port, &a, &ta, "rm -f /run/docklab/fill; for i in $(seq 2000); do touch /run/docklab/f$i 2>/dev/null || { echo stopped at $i; break; }; done");
    let grew = host_used_inodes(&state).saturating_sub(inodes);
    eprintln!("{out}; host inodes grew by {grew}");
    assert!(out.contains("stopped at"), "2000 files fitted in /run/docklab: {out}");
    assert!(grew < 1000, "the host's used inodes grew by {grew}");
    run_ok(port, &a, &ta, "rm -f /run/docklab/f*; docker info >/dev/null");
}

#[allow(dead_code)]
fn sh(c: &str) -> String {
    String::from_utf8_lossy(&Command::new("sh").args(["-c", c]).output().unwrap().stdout).into_owned()
}
