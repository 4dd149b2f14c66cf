//! Test doubles: a fake PTY built from in-memory pipes, and a fake `MachineBackend` whose
//! terminals echo what is typed. Compiled only for unit tests.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sandbox::protocol::DockerHealth;
use sandbox::{ExecOutput, ExecRequest, MachineBackend, MachineInfo, MachineState, SandboxError, Terminal};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

use crate::app::AppState;
use crate::config::ServerConfig;

/// The shell's side of a fake terminal: what it prints, what was typed, how it was resized.
pub struct FakePty {
    /// Writes here appear as the terminal's output.
    screen: DuplexStream,
    /// Keystrokes sent to the terminal arrive here.
    keyboard: DuplexStream,
    sizes: Arc<Mutex<Vec<(u16, u16)>>>,
    exit: oneshot::Sender<String>,
}

impl FakePty {
    pub fn new() -> (Terminal, FakePty) {
        let (screen, output) = tokio::io::duplex(64 * 1024);
        let (input, keyboard) = tokio::io::duplex(64 * 1024);
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (exit, exited) = oneshot::channel();
        let recorded = sizes.clone();
        let terminal = Terminal {
            output: Box::pin(output),
            input: Box::pin(input),
            resize: Box::new(move |cols, rows| {
                recorded.lock().unwrap().push((cols, rows));
                Ok(())
            }),
            exited,
        };
        (terminal, FakePty { screen, keyboard, sizes, exit })
    }

    pub async fn print(&mut self, bytes: &[u8]) {
        self.screen.write_all(bytes).await.unwrap();
    }

    /// The next `n` bytes typed into the terminal.
    pub async fn typed(&mut self, n: usize) -> Bytes {
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), self.keyboard.read_exact(&mut buf))
            .await
            .expect("nothing was typed")
            .unwrap();
        Bytes::from(buf)
    }

    pub fn sizes(&self) -> Vec<(u16, u16)> {
        self.sizes.lock().unwrap().clone()
    }

    /// The shell exits with `reason`, closing the PTY.
    pub fn exit(self, reason: &str) {
        let _ = self.exit.send(reason.to_owned());
    }

    /// Runs an echo shell: prints back whatever is typed, and exits on `exit\r`.
    pub fn spawn_echo(mut self) {
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = self.keyboard.read(&mut buf).await {
                if self.screen.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                if buf[..n].windows(5).any(|w| w == b"exit\r") {
                    self.exit("the shell exited with status 0");
                    return;
                }
            }
        });
    }
}

/// A `MachineBackend` that keeps machines as ids in a set.
#[derive(Default)]
pub struct FakeBackend {
    pub unhealthy: Mutex<Option<String>>,
    pub fail_create: AtomicBool,
    pub machines: Mutex<HashSet<String>>,
    pub destroyed: Mutex<Vec<String>>,
    pub terminals_opened: AtomicUsize,
    pub last_exec: Mutex<Option<ExecRequest>>,
    /// The settings each machine was created with.
    pub created_with: Mutex<Vec<(String, sandbox::MachineOptions)>>,
    /// What `docker_status` reports for each machine (none until a test sets it).
    pub docker: Mutex<std::collections::HashMap<String, DockerHealth>>,
}

#[async_trait::async_trait]
impl MachineBackend for FakeBackend {
    async fn health(&self) -> Result<(), String> {
        self.unhealthy.lock().unwrap().clone().map_or(Ok(()), Err)
    }

    async fn create(&self, id: &str) -> Result<MachineInfo, SandboxError> {
        if self.fail_create.load(Ordering::SeqCst) {
            return Err(SandboxError::StartFailed { id: id.into(), reason: "dockerd crashed".into() });
        }
        self.machines.lock().unwrap().insert(id.to_owned());
        Ok(MachineInfo {
            id: id.to_owned(),
            uid_base: 200_000,
            init_pid: 4242,
            docker_socket: format!("/tmp/{id}/docker.sock").into(),
            address: None,
            start_duration: Duration::from_millis(400),
        })
    }

    async fn create_with(&self, id: &str, options: &sandbox::MachineOptions) -> Result<MachineInfo, SandboxError> {
        self.created_with.lock().unwrap().push((id.to_owned(), *options));
        self.create(id).await
    }

    async fn state(&self, id: &str) -> MachineState {
        if self.machines.lock().unwrap().contains(id) {
            MachineState::Ready
        } else {
            MachineState::Stopped
        }
    }

    async fn exec(&self, id: &str, req: ExecRequest) -> Result<ExecOutput, SandboxError> {
        if !self.machines.lock().unwrap().contains(id) {
            return Err(SandboxError::NotRunning { id: id.into() });
        }
        let stdout = format!("{}\n", req.cmd.join(" "));
        *self.last_exec.lock().unwrap() = Some(req);
        Ok(ExecOutput { exit_code: 0, stdout, stderr: String::new(), timed_out: false })
    }

    async fn open_terminal(&self, id: &str, _cols: u16, _rows: u16) -> Result<Terminal, SandboxError> {
        if !self.machines.lock().unwrap().contains(id) {
            return Err(SandboxError::NotRunning { id: id.into() });
        }
        self.terminals_opened.fetch_add(1, Ordering::SeqCst);
        let (terminal, pty) = FakePty::new();
        pty.spawn_echo();
        Ok(terminal)
    }

    async fn destroy(&self, id: &str) -> Result<(), SandboxError> {
        self.machines.lock().unwrap().remove(id);
        self.destroyed.lock().unwrap().push(id.to_owned());
        Ok(())
    }

    async fn leftovers(&self) -> Vec<String> {
        Vec::new()
    }

    async fn docker_status(&self, id: &str) -> Option<DockerHealth> {
        self.docker.lock().unwrap().get(id).cloned()
    }
}

/// An exercise id that exists in the built-in catalog.
pub fn some_exercise(state: &AppState) -> String {
    state.catalog.lessons().iter().flat_map(|l| &l.exercises).next().expect("the catalog has exercises").id.clone()
}

/// App state over a fresh fake backend and the repository's lessons (read from disk, so these
/// tests do not depend on how the content gets embedded).
pub fn fake_state(config: ServerConfig) -> (AppState, Arc<FakeBackend>) {
    let backend = Arc::new(FakeBackend::default());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../lessons");
    let catalog = lessons::Catalog::load(&dir).expect("the repository's lessons load");
    (AppState::new(backend.clone(), Arc::new(catalog), config), backend)
}

/// A session whose machine is up, registered the way `POST /api/sessions` does it: (id, token).
pub async fn ready_session(state: &AppState, backend: &FakeBackend) -> (String, String) {
    let session = state.sessions.insert_new(&some_exercise(state)).unwrap();
    backend.create(&session.id).await.unwrap();
    session.set_phase(crate::registry::SessionPhase::Ready);
    (session.id.clone(), session.token.clone())
}
