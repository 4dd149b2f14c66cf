//! Session machines for docklab.
//!
//! A session machine is a user-namespaced sandbox (user, mount, pid, net, uts, ipc and cgroup
//! namespaces) with a delegated cgroup, an overlay root filesystem over the shared node image and
//! its own `dockerd`. See `ARCHITECTURE.md` in the project's design notes for the recipe.

pub mod backend;
pub mod config;
pub mod error;

pub use backend::{ExecOutput, ExecRequest, MachineBackend, MachineInfo, MachineState, Terminal};
pub use config::SandboxConfig;
pub use error::SandboxError;
pub mod manager;
pub mod setup;

pub use manager::SessionManager;
