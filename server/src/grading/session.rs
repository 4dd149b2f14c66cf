//! Getting a fresh machine ready for its exercise: starting files, then `setup.sh`.

use std::time::Duration;

use lessons::Exercise;
use sandbox::{ExecRequest, MachineBackend, SandboxError};

/// How long an exercise's `setup.sh` may run.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
const COPY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("session {session}: could not place {path} in the machine: {reason}")]
    CopyFile { session: String, path: String, reason: String },
    #[error("session {session}: setup.sh of {exercise} failed with code {exit_code}: {output}")]
    Setup { session: String, exercise: String, exit_code: i32, output: String },
    #[error("session {session}: {source}")]
    Machine {
        session: String,
        #[source]
        source: SandboxError,
    },
}

/// Copies the exercise's starting files into `/root` and runs its `setup.sh`, in the machine.
#[tracing::instrument(skip_all, fields(session = %id, exercise = %exercise.id))]
pub async fn prepare_machine(backend: &dyn MachineBackend, id: &str, exercise: &Exercise) -> Result<(), PrepareError> {
    let machine_err = |source| PrepareError::Machine { session: id.to_owned(), source };
    for file in &exercise.files {
        let target = format!("/root/{}", file.path);
        let executable = file.contents.starts_with(b"#!") || file.path.ends_with(".sh");
        let script = format!(
            "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"{}",
            if executable { " && chmod +x \"$1\"" } else { "" }
        );
        let cmd = vec!["sh".into(), "-c".into(), script, "sh".into(), target.clone()];
        let out = backend
            .exec(id, ExecRequest { cmd, timeout: COPY_TIMEOUT, stdin: Some(file.contents.clone()) })
            .await
            .map_err(machine_err)?;
        if out.exit_code != 0 {
            return Err(PrepareError::CopyFile { session: id.to_owned(), path: target, reason: out.stderr.trim().to_owned() });
        }
    }
    if let Some(setup) = &exercise.setup {
        let cmd = vec!["sh".into(), "-c".into(), format!("cd /root && {setup}")];
        let out = backend.exec(id, ExecRequest { cmd, timeout: SETUP_TIMEOUT, stdin: None }).await.map_err(machine_err)?;
        if out.exit_code != 0 {
            let output = format!("{}{}", out.stdout, out.stderr);
            let tail: String = output.chars().rev().take(500).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(PrepareError::Setup {
                session: id.to_owned(),
                exercise: exercise.id.clone(),
                exit_code: out.exit_code,
                output: tail.trim().to_owned(),
            });
        }
    }
    tracing::info!(files = exercise.files.len(), setup = exercise.setup.is_some(), "machine prepared for its exercise");
    Ok(())
}
