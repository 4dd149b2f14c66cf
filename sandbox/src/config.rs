//! Operator settings for session machines.

use std::path::PathBuf;
use std::time::Duration;

/// Environment variable with the operator's disk overcommit bound ([`SandboxConfig::disk_overcommit`]).
pub const DISK_OVERCOMMIT_ENV: &str = "DOCKLAB_DISK_OVERCOMMIT";

/// Settings shared by every session machine on this host.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where docklab keeps images and per-session state (`/var/lib/docklab` by default).
    pub state_dir: PathBuf,
    /// The `docklab` executable, re-run as the machine launcher and the `enter` helper.
    pub helper_exe: PathBuf,
    /// Memory limit per machine, in bytes.
    pub memory_bytes: u64,
    /// Maximum number of processes per machine.
    pub pids_max: u64,
    /// CPU weight relative to other machines (cgroup v1 `cpu.shares` scale, 1024 = one share).
    pub cpu_shares: u64,
    /// How long to wait for a new machine's Docker engine to answer.
    pub docker_ready_timeout: Duration,
    /// Cap on what one machine may write to disk, in bytes (0: no cap).
    pub disk_bytes: u64,
    /// Free space the host keeps: no machine is created when less is left.
    pub host_reserve_bytes: u64,
    /// Bound on disk overcommit: no machine is created when the space all machines' disks may
    /// still claim (caps minus what they use) would exceed the host's free space this many times
    /// (`$DOCKLAB_DISK_OVERCOMMIT`, default 10; 0 turns the check off).
    pub disk_overcommit: f64,
    /// The machines' host bridge, addresses and firewall.
    pub network: crate::network::NetworkConfig,
}

impl SandboxConfig {
    pub fn new(state_dir: impl Into<PathBuf>, helper_exe: impl Into<PathBuf>) -> Self {
        SandboxConfig {
            state_dir: state_dir.into(),
            helper_exe: helper_exe.into(),
            memory_bytes: 1536 * 1024 * 1024,
            pids_max: 2048,
            cpu_shares: 1024,
            docker_ready_timeout: Duration::from_secs(30),
            disk_bytes: 8 << 30,
            host_reserve_bytes: 2 << 30,
            disk_overcommit: std::env::var(DISK_OVERCOMMIT_ENV).ok().and_then(|v| v.parse().ok()).filter(|v: &f64| v.is_finite() && *v >= 0.0).unwrap_or(10.0),
            network: crate::network::NetworkConfig::default(),
        }
    }

    /// The shared node image every machine's root filesystem is layered over.
    pub fn node_image_dir(&self) -> PathBuf {
        self.state_dir.join("images/node")
    }

    /// Per-session state directories live here, one per session id.
    pub fn sessions_dir(&self) -> PathBuf {
        self.state_dir.join("sessions")
    }
}
