//! Session machines for docklab.
//!
//! A session machine is a user-namespaced sandbox (user, mount, pid, net, uts, ipc and cgroup
//! namespaces) with a delegated cgroup, an overlay root filesystem over the shared node image and
//! its own `dockerd`. See `ARCHITECTURE.md` in the project's design notes for the recipe.
//!
//! Process tree of one machine, all in the machine's cgroup:
//! `docklab __launch` (host side, private mount namespace) → init (pid 1 inside) → `dockerd`,
//! and, per shell or command, `docklab __enter` (joins the namespaces) → the command.

pub mod backend;
pub mod cgroup;
pub mod config;
pub mod enter;
pub mod error;
pub mod images;
pub mod init;
pub mod launch;
pub mod listen;
pub mod manager;
pub mod package_proxy;
pub mod protocol;
pub mod network;
pub mod pty;
pub mod registry;
pub mod relay;
pub mod engine_relay;
pub mod hostile;
pub mod seccomp;
pub mod services;
pub mod setup;
pub mod spec;
pub mod sys;

pub use backend::{DiskCommitment, ExecOutput, ExecRequest, MachineBackend, MachineInfo, MachineOptions, MachineState, Terminal};
pub use config::SandboxConfig;
pub use error::SandboxError;
pub use manager::SessionManager;
