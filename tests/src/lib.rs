//! Shared helpers for docklab's end-to-end tests (real root, real session machines, real dockerd).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sandbox::{ExecOutput, ExecRequest, MachineBackend, SandboxConfig, SessionManager};

/// The state directory the tests use: `DOCKLAB_STATE_DIR`, or `/var/lib/docklab` where
/// `docklab setup` put the node image.
pub fn state_dir() -> PathBuf {
    std::env::var_os("DOCKLAB_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/lib/docklab"))
}

/// A real session manager whose helper is this package's `docklab-test-helper` binary, with the
/// session network up and docklab's registry and package proxy serving machines (as the server
/// does), so machines pull images exactly as a learner's do.
pub fn manager(helper: &str) -> Arc<SessionManager> {
    let cfg = SandboxConfig::new(state_dir(), helper);
    let m = Arc::new(SessionManager::new(cfg).expect("session manager"));
    ensure_session_services(&m);
    m
}

static SERVICES: std::sync::OnceLock<()> = std::sync::OnceLock::new();

/// Starts the registry and package proxy on the bridge once per test process, on a runtime of
/// their own, so they outlive any single test's runtime. When something else already serves them
/// (a `docklab serve` started by a test, another test process), that one is used until it stops.
pub fn ensure_session_services(m: &SessionManager) {
    m.ensure_network().expect("the session network (bridge and firewall table)");
    SERVICES.get_or_init(|| {
        let net = m.config().network.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(async move {
                // While another process serves them, keep trying: when it ends, this process
                // takes over within a second instead of leaving its machines without a registry.
                let mut told = false;
                loop {
                    match sandbox::services::spawn(&state_dir(), &net).await {
                        Ok(handles) => {
                            let _ = tx.send(());
                            for h in handles {
                                let _ = h.await;
                            }
                            return;
                        }
                        Err(e) => {
                            if !told {
                                eprintln!("docklab tests: another process serves the registry ({e}); taking over when it stops");
                                let _ = tx.send(());
                                told = true;
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            });
        });
        let _ = rx.recv();
    });
}

/// A unique machine id for one test.
pub fn unique_id(prefix: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("t-{prefix}-{:x}-{n:x}", std::process::id())
}

/// Runs `sh -c script` in the machine and returns its output.
pub async fn sh(m: &dyn MachineBackend, id: &str, script: &str) -> ExecOutput {
    m.exec(id, ExecRequest { cmd: vec!["sh".into(), "-c".into(), script.into()], timeout: Duration::from_secs(120), stdin: None })
        .await
        .unwrap_or_else(|e| panic!("exec {script:?} in {id}: {e}"))
}

/// Host-side traces of a machine: its processes, mounts and cgroup directories.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Traces {
    pub processes: Vec<String>,
    pub mounts: Vec<String>,
    pub cgroups: Vec<String>,
    pub dirs: Vec<String>,
}

impl Traces {
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty() && self.mounts.is_empty() && self.cgroups.is_empty() && self.dirs.is_empty()
    }
}

/// Looks everywhere on the host for what machine `id` (with uid range from `uid_base`) left.
pub fn traces(id: &str, uid_base: u32) -> Traces {
    use std::os::unix::fs::MetadataExt;
    let mut t = Traces::default();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let uid = meta.uid();
        let cmdline = std::fs::read_to_string(e.path().join("cmdline")).unwrap_or_default().replace('\0', " ");
        if (uid >= uid_base && uid < uid_base + 65536) || cmdline.contains(&format!("sessions/{id}")) {
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            let field = |k: &str| status.lines().find(|l| l.starts_with(k)).unwrap_or("").replace('\t', " ");
            t.processes.push(format!("{} {} [{} {} {}]", e.file_name().to_string_lossy(), cmdline, field("Name:"), field("State:"), field("PPid:")));
        }
    }
    for l in std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
        if l.contains(id) {
            t.mounts.push(l.to_string());
        }
    }
    walk(std::path::Path::new("/sys/fs/cgroup"), id, 0, &mut t.cgroups);
    let dir = state_dir().join("sessions").join(id);
    if dir.exists() {
        t.dirs.push(dir.display().to_string());
    }
    t
}

fn walk(p: &std::path::Path, id: &str, depth: usize, out: &mut Vec<String>) {
    if depth > 6 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(p) else { return };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            if e.file_name().to_string_lossy() == id {
                out.push(e.path().display().to_string());
            } else {
                walk(&e.path(), id, depth + 1, out);
            }
        }
    }
}

/// Waits up to a few seconds for a removed machine's traces to go (a killed process can take a
/// moment to be reaped) and returns what is left.
pub fn traces_after_removal(id: &str, uid_base: u32) -> Traces {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let t = traces(id, uid_base);
        if t.is_empty() || std::time::Instant::now() > deadline {
            return t;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes a test's machine even when the test panics half-way.
pub struct Cleanup {
    pub manager: Arc<SessionManager>,
    pub id: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (m, id) = (self.manager.clone(), self.id.clone());
        // Drop may run inside a runtime, where blocking on another is not allowed: use a thread.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(m.destroy(&id));
            }
        })
        .join();
    }
}

/// A real `docklab serve` for tests, driven with curl.
pub mod server {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub fn docklab_bin() -> PathBuf {
        let p = std::env::var_os("DOCKLAB_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/docklab"));
        assert!(p.exists(), "{} is missing: build it first (`cargo build -p docklab-server`)", p.display());
        p
    }

    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// A running `docklab serve`, killed if the test fails half-way (so the next run is not locked
    /// out), and the file its log goes to (kept only when the test fails).
    pub struct Server(pub Child, PathBuf);

    impl Server {
        /// The file the server logs to (what an operator would read).
        pub fn log_path(&self) -> &std::path::Path {
            &self.1
        }

        /// Stops the server as an operator would (SIGTERM), waiting up to `grace` before SIGKILL.
        pub fn stop(&mut self, grace: Duration) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            // Gracefully, so its warm machines go with it; SIGKILL if it hangs.
            if let Ok(None) = self.0.try_wait() {
                self.stop(Duration::from_secs(30));
            }
            if std::thread::panicking() {
                eprintln!("the server's log: {}", self.1.display());
            } else {
                let _ = std::fs::remove_file(&self.1);
            }
        }
    }

    /// Ends a class when dropped, as its instructor would (cookie jar and CSRF token), so a test
    /// or benchmark that stops half-way leaves no machine of its class (a no-op once it ended).
    pub struct EndClass<'a> {
        pub port: u16,
        pub jar: &'a str,
        pub csrf: String,
        pub class: String,
    }

    impl Drop for EndClass<'_> {
        fn drop(&mut self) {
            let header = format!("X-CSRF-Token: {}", self.csrf);
            curl(self.port, &["-b", self.jar, "-X", "POST", "-H", &header, &format!("/api/classes/{}/end", self.class)]);
        }
    }

    /// A server for one test: one warm machine, and everything it holds ends when it stops
    /// (sessions a stopped test server left would otherwise be adopted by the next).
    pub fn start_server(port: u16) -> Server {
        start_server_with(port, &["--warm-machines", "1", "--end-sessions-on-exit"])
    }

    /// `docklab serve` with these options added (they override the defaults below).
    pub fn start_server_with(port: u16, options: &[&str]) -> Server {
        let log_path = std::env::temp_dir().join(format!("docklab-server-{port}-{}.log", std::process::id()));
        let log = std::fs::File::options().create(true).append(true).open(&log_path).unwrap();
        let child = Command::new(docklab_bin())
            // --wait: test processes running side by side take turns with the state directory.
            .args(["serve", "--wait", "--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
            .arg(crate::state_dir())
            // One warm machine by default (start_server): every server test goes through the
            // pool, without the CPU cost of the default pool on a shared test host.
            .args(options)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        // Generous: the server may first wait for another test process's server to stop.
        let deadline = Instant::now() + Duration::from_secs(1200);
        while curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "/healthz"]) != "200" {
            assert!(Instant::now() < deadline, "server on {port} did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
        Server(child, log_path)
    }

    pub fn curl(port: u16, args: &[&str]) -> String {
        let mut a: Vec<String> = vec!["-s".into(), "-m".into(), "120".into()];
        for x in args {
            a.push(if x.starts_with('/') { format!("http://127.0.0.1:{port}{x}") } else { x.to_string() });
        }
        String::from_utf8_lossy(&Command::new("curl").args(&a).output().unwrap().stdout).into_owned()
    }

    pub fn exec(port: u16, id: &str, token: &str, script: &str) -> serde_json::Value {
        let body = serde_json::json!({"cmd": ["sh", "-c", script], "timeout_s": 60}).to_string();
        let auth = format!("Authorization: Bearer {token}");
        let out = curl(port, &["-X", "POST", "-H", &auth, "-H", "content-type: application/json", "-d", &body, &format!("/api/sessions/{id}/exec")]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("exec answer {out:?}: {e}"))
    }

    /// Creates a session for `exercise` (or the catalog's first exercise): (id, token).
    pub fn create_session(port: u16, exercise: Option<&str>) -> (String, String) {
        let exercise = match exercise {
            Some(e) => e.to_string(),
            None => {
                let lessons: serde_json::Value = serde_json::from_str(&curl(port, &["/api/lessons"])).unwrap();
                lessons[0]["exercises"][0]["id"].as_str().unwrap().to_string()
            }
        };
        let body = format!("{{\"exercise\":\"{exercise}\"}}");
        let created: serde_json::Value =
            serde_json::from_str(&curl(port, &["-X", "POST", "-H", "content-type: application/json", "-d", &body, "/api/sessions"])).unwrap();
        (created["id"].as_str().unwrap_or_else(|| panic!("{created}")).to_string(), created["token"].as_str().unwrap().to_string())
    }
}
