//! The interface the server uses to drive session machines.
//!
//! `SessionManager` (in `manager.rs`) is the real implementation: user namespaces, cgroups and a
//! real `dockerd` per machine. The server is written against [`MachineBackend`] so its routing and
//! WebSocket logic can be unit-tested with a fake; the real thing is tested as root in `tests/`.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::SandboxError;

/// Lifecycle state of a session machine, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineState {
    /// Namespaces are being set up or dockerd is not answering yet.
    Starting,
    /// dockerd answers and the learner can work.
    Ready,
    /// The machine is gone (deleted, expired or crashed).
    Stopped,
}

/// What the server learns about a machine once it is up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineInfo {
    pub id: String,
    /// First host uid of the machine's 65,536-id range (root inside = this uid outside).
    pub uid_base: u32,
    /// Host pid of the machine's init (pid 1 inside).
    pub init_pid: i32,
    /// Host path of the machine's Docker Engine API socket (for grading).
    pub docker_socket: PathBuf,
    /// The machine's address on the host bridge (port preview reaches published ports here).
    pub address: Option<std::net::Ipv4Addr>,
    /// How long creation took, from request to Docker answering.
    pub start_duration: Duration,
}

/// Settings of one machine that differ from the host's defaults (a class's per-learner limits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineOptions {
    /// Memory limit of this machine, in bytes, instead of [`crate::SandboxConfig::memory_bytes`].
    pub memory_bytes: Option<u64>,
}

/// Least memory a machine may be given: its init, `dockerd` and `containerd` need about 120 MiB.
pub const MIN_MACHINE_MEMORY: u64 = 256 << 20;

/// A command to run inside a machine, as the learner's shell would.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    pub timeout: Duration,
    /// Bytes written to the command's standard input, then closed.
    pub stdin: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code; 128 + signal number when killed by a signal (shell convention).
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// True when the command was stopped because it ran past its timeout.
    pub timed_out: bool,
}

/// Resize a terminal: (cols, rows).
pub type Resizer = Box<dyn Fn(u16, u16) -> std::io::Result<()> + Send + Sync>;

/// A login shell on a PTY inside a machine. Dropping it hangs the shell up.
pub struct Terminal {
    /// PTY output (what the shell prints).
    pub output: Pin<Box<dyn AsyncRead + Send>>,
    /// PTY input (keystrokes).
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    pub resize: Resizer,
    /// Resolves with a human sentence when the shell exits.
    pub exited: tokio::sync::oneshot::Receiver<String>,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal").finish_non_exhaustive()
    }
}

/// What the server needs from session machines.
#[async_trait::async_trait]
pub trait MachineBackend: Send + Sync + 'static {
    /// Whether machines can be created at all; `Err` says what is missing, in an operator's words.
    async fn health(&self) -> Result<(), String>;
    /// Creates a machine and returns once its Docker engine answers.
    async fn create(&self, id: &str) -> Result<MachineInfo, SandboxError>;
    /// Creates a machine with its own settings. A backend that cannot apply them refuses.
    async fn create_with(&self, id: &str, options: &MachineOptions) -> Result<MachineInfo, SandboxError> {
        if *options != MachineOptions::default() {
            return Err(SandboxError::StartFailed { id: id.into(), reason: "this backend cannot set a machine's own limits".into() });
        }
        self.create(id).await
    }
    /// Current state of a machine.
    async fn state(&self, id: &str) -> MachineState;
    /// Runs a command inside the machine and collects its output.
    async fn exec(&self, id: &str, req: ExecRequest) -> Result<ExecOutput, SandboxError>;
    /// Starts a login shell on a new PTY inside the machine.
    async fn open_terminal(&self, id: &str, cols: u16, rows: u16) -> Result<Terminal, SandboxError>;
    /// Removes everything the machine holds: processes, mounts, cgroups, disk.
    async fn destroy(&self, id: &str) -> Result<(), SandboxError>;
    /// Machines found on disk from an earlier run of the server (ids), for adoption or reaping.
    async fn leftovers(&self) -> Vec<String>;
    /// What the machine's init last said about its Docker engine: its state and crash record.
    /// `None` when unknown (no machine, or files that hold nothing init writes).
    async fn docker_status(&self, _id: &str) -> Option<crate::protocol::DockerHealth> {
        None
    }
    /// Takes over a running machine that an earlier server left (its owner is gone).
    async fn adopt(&self, id: &str) -> Result<MachineInfo, SandboxError> {
        Err(SandboxError::UnknownMachine { id: id.to_string() })
    }
    /// Keeps the server's own facts about a session (token, exercise, expiry) with its machine,
    /// so a restarted server can adopt it.
    async fn save_meta(&self, _id: &str, _meta: &[u8]) -> Result<(), SandboxError> {
        Ok(())
    }
    /// What [`MachineBackend::save_meta`] kept, if anything.
    async fn load_meta(&self, _id: &str) -> Option<Vec<u8>> {
        None
    }
    /// The machine's address on the host bridge, where its published ports answer.
    async fn address(&self, _id: &str) -> Option<std::net::Ipv4Addr> {
        None
    }
    /// What the machines' disks promise against what the host has (for `/metrics`).
    async fn disk_commitment(&self) -> Option<DiskCommitment> {
        None
    }
}

/// Machine disks are sparse: each may grow to its cap, and the host's free space backs only part
/// of those promises. Creation is refused once `promised - used` would pass `free * limit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskCommitment {
    /// Sum of the caps of every machine's disk.
    pub promised_bytes: u64,
    /// Bytes those disks take on the host now.
    pub used_bytes: u64,
    /// Free bytes on the state directory's filesystem.
    pub free_bytes: u64,
    /// The operator's bound on (promised - used) / free.
    pub limit: f64,
}

impl DiskCommitment {
    /// Space the disks may still claim, over the host's free space.
    pub fn ratio(&self) -> f64 {
        self.promised_bytes.saturating_sub(self.used_bytes) as f64 / self.free_bytes.max(1) as f64
    }
    /// Whether a new disk of `cap` bytes stays within the limit (a limit of 0 turns the check off).
    pub fn admits(&self, cap: u64) -> bool {
        self.limit <= 0.0 || (self.promised_bytes.saturating_sub(self.used_bytes) + cap) as f64 <= self.free_bytes as f64 * self.limit
    }
}

#[cfg(test)]
mod disk_commitment_tests {
    use super::DiskCommitment;

    #[test]
    fn overcommit_is_bounded_by_the_operators_factor() {
        const GIB: u64 = 1 << 30;
        // Ten 8 GiB disks using 1 GiB each, 20 GiB free: 70 GiB promised beyond use, ratio 3.5.
        let c = DiskCommitment { promised_bytes: 80 * GIB, used_bytes: 10 * GIB, free_bytes: 20 * GIB, limit: 4.0 };
        assert!((c.ratio() - 3.5).abs() < 1e-9);
        assert!(c.admits(8 * GIB)); // 78 <= 80
        assert!(!c.admits(16 * GIB)); // 86 > 80
        assert!(DiskCommitment { limit: 0.0, ..c }.admits(1 << 50), "0 turns the check off");
        assert!(!DiskCommitment { free_bytes: 0, ..c }.admits(1));
    }
}
