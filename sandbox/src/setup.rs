//! `docklab setup`: host checks, Debian packages, the node image. (Being written: scaffolding.)

use std::path::Path;

/// Runs every set-up step; `progress` receives one human line per step.
pub fn run(_state_dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), crate::error::SandboxError> {
    progress("setup is not implemented yet");
    Ok(())
}

/// Internal subcommands of the `docklab` binary that the sandbox re-executes
/// (`docklab __launch ...`, `docklab __enter ...`). `main` must call this first, before starting
/// any thread or runtime; it returns `None` when argv is not one of them.
pub fn dispatch_internal(_args: &[String]) -> Option<std::process::ExitCode> {
    None
}
