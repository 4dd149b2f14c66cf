//! Errors of the sandbox crate. Each variant names the session, path or command that failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("session machine {id} does not exist")]
    UnknownMachine { id: String },
    #[error("session id {id:?} is not valid: use 1 to 64 characters from a-z, 0-9 and '-'")]
    InvalidId { id: String },
    #[error("no free uid range is left for a new session machine")]
    NoUidRange,
    #[error("the node image is missing at {path}: run `docklab setup` first")]
    NodeImageMissing { path: PathBuf },
    #[error("{what} failed at {path}: {source}")]
    Io { what: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error("cgroup {path}: {source}")]
    Cgroup { path: PathBuf, #[source] source: std::io::Error },
    #[error("session machine {id} already exists")]
    MachineExists { id: String },
    #[error("session machine {id} failed to start: {reason}")]
    StartFailed { id: String, reason: String },
    #[error("session machine {id}: Docker did not answer within {secs} s ({detail})")]
    DockerNotReady { id: String, secs: u64, detail: String },
    #[error("session machine {id} is not running")]
    NotRunning { id: String },
    #[error("could not start {what} for session machine {id}: {source}")]
    Spawn { id: String, what: &'static str, #[source] source: std::io::Error },
    #[error("session machine {id}: {reason}")]
    Exec { id: String, reason: String },
    #[error("writing the machine spec {path}: {reason}")]
    Spec { path: PathBuf, reason: String },
    #[error("the host has only {free_mib} MiB of disk left (docklab keeps {reserve_mib} MiB free): no new session machine for now")]
    HostDiskFull { free_mib: u64, reserve_mib: u64 },
    #[error("the machines' disks may still grow by {unbacked_mib} MiB, more than {limit} times the host's {free_mib} MiB free: no new session machine for now")]
    DiskOvercommitted { unbacked_mib: u64, free_mib: u64, limit: f64 },
    #[error("machine network: {reason}")]
    Network { reason: String },
    #[error("could not remove session machine {id} completely: {reason}")]
    Teardown { id: String, reason: String },
}

impl SandboxError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SandboxError::Io { what, path: path.into(), source }
    }
}
