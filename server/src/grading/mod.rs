//! Grading: an exercise's typed checks evaluated against a session's real Docker engine.
//!
//! A [`Grader`] belongs to one session machine. It talks to the machine's Docker Engine API
//! through the host side of its unix socket (bollard, pinned to API 1.41 since the machines run
//! Docker 20.10) and runs probes inside the machine through [`MachineShell`] (pings between
//! containers, an HTTP GET on a published port, the learner's files, `script` checks).
//!
//! Every failure says what was expected and what was found, in the learner's words. A check that
//! cannot be evaluated because something is missing (the learner deleted a container) fails with
//! a sentence; only an engine that does not answer at all leaves a task `pending`.
//!
//! Tasks are sticky within a session: once done, a task stays done even when a later step undoes
//! what it checked (removing the container the first task created is often the next task).
//! [`live`] keeps a grader per ready session, re-evaluates on engine events and on a short tick,
//! and pushes changes to the terminal's viewers.

pub mod dockerfile;
mod evaluate;
pub mod live;
pub mod routes;
mod session;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bollard::{ClientVersion, Docker};
use lessons::checks::Trigger;
use lessons::Exercise;
use sandbox::{ExecOutput, ExecRequest, MachineBackend, SandboxError};
use serde::{Deserialize, Serialize};

pub use session::{prepare_machine, PrepareError};

/// The engine API version the session machines speak (Docker 20.10).
pub const ENGINE_API: &ClientVersion = &ClientVersion { major_version: 1, minor_version: 41 };
/// Timeout for one engine request, in seconds.
const ENGINE_TIMEOUT_S: u64 = 10;

/// A task's state as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Passed,
    Failed,
    /// Not evaluated yet, or the engine is not answering.
    Pending,
}

/// One task's grade, as sent to the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    pub id: String,
    pub title: String,
    pub status: TaskStatus,
    /// Why it failed (expected vs found), or what a passing script printed.
    pub detail: String,
}

/// `GET /api/sessions/{id}/checks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksReport {
    pub exercise: String,
    pub tasks: Vec<TaskReport>,
}

/// Why the grader could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GradingError {
    #[error("cannot connect to the Docker engine of session {session} at {socket}: {source}")]
    Connect {
        session: String,
        socket: PathBuf,
        #[source]
        source: bollard::errors::Error,
    },
}

/// Runs shell scripts inside a session machine, as the learner's shell would.
#[async_trait::async_trait]
pub trait MachineShell: Send + Sync {
    async fn sh(&self, script: &str, timeout: Duration) -> Result<ExecOutput, SandboxError>;
}

/// A [`MachineShell`] over the server's machine backend.
pub struct BackendShell {
    pub backend: Arc<dyn MachineBackend>,
    pub id: String,
}

#[async_trait::async_trait]
impl MachineShell for BackendShell {
    async fn sh(&self, script: &str, timeout: Duration) -> Result<ExecOutput, SandboxError> {
        let cmd = vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        self.backend.exec(&self.id, ExecRequest { cmd, timeout, stdin: None }).await
    }
}

/// Which checks to evaluate now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything (on demand, and after engine events).
    All,
    /// Only checks whose answer can change without an engine event (files, scripts, HTTP);
    /// the others keep their last answer.
    Tick,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    /// The engine did not answer: nothing can be said.
    Unknown(String),
}

/// An event the engine reported, reduced to what `event_seen` asks about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeenEvent {
    pub object: String,
    pub action: String,
    pub name: String,
    pub image: Option<String>,
}

/// Grades one session's exercise. Cheap to share behind an `Arc`.
pub struct Grader {
    session: String,
    docker: Docker,
    shell: Arc<dyn MachineShell>,
    /// Unix time (s) from which events count: when the learner got the machine.
    since: i64,
    state: Mutex<GradeState>,
}

#[derive(Default)]
struct GradeState {
    /// Events seen since `since` (from the live stream and from history queries).
    events: HashSet<SeenEvent>,
    /// Tasks that passed once in this session.
    passed: HashSet<String>,
    /// Last outcome per (task, check index), reused by `Scope::Tick`.
    last: HashMap<(String, usize), Outcome>,
    /// Image id → whether it holds a shell (image contents never change).
    shells: HashMap<String, Option<String>>,
    /// Image id → its layers.
    layers: HashMap<String, Vec<String>>,
}

impl Grader {
    /// Connects to the engine socket of session `session`. Does not talk to it yet.
    pub fn connect(
        session: &str,
        socket: &Path,
        shell: Arc<dyn MachineShell>,
        since: i64,
    ) -> Result<Grader, GradingError> {
        let connect_err = |source| GradingError::Connect {
            session: session.to_owned(),
            socket: socket.to_owned(),
            source,
        };
        let path = socket.to_str().ok_or_else(|| {
            connect_err(bollard::errors::Error::SocketNotFoundError(socket.display().to_string()))
        })?;
        let docker = Docker::connect_with_unix(path, ENGINE_TIMEOUT_S, ENGINE_API).map_err(connect_err)?;
        Ok(Grader { session: session.to_owned(), docker, shell, since, state: Mutex::new(GradeState::default()) })
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    /// The engine client (the live watcher follows its events).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn since(&self) -> i64 {
        self.since
    }

    /// Remembers an event from the live stream.
    pub fn record_event(&self, event: SeenEvent) {
        lock(&self.state).events.insert(event);
    }

    /// Evaluates every task of `exercise` (checks run concurrently) and returns the reports.
    #[tracing::instrument(name = "grade", skip_all, fields(session = %self.session, exercise = %exercise.id, ?scope))]
    pub async fn grade(&self, exercise: &Exercise, scope: Scope) -> Vec<TaskReport> {
        let started = Instant::now();
        let passed = lock(&self.state).passed.clone();
        let tasks = exercise.tasks.iter().map(|task| {
            let done = passed.contains(&task.id);
            async move {
                if done {
                    return TaskReport { id: task.id.clone(), title: task.title.clone(), status: TaskStatus::Passed, detail: String::new() };
                }
                let checks = task.checks.iter().enumerate().map(|(i, check)| async move {
                    let key = (task.id.clone(), i);
                    if scope == Scope::Tick && check.trigger() == Trigger::Events {
                        if let Some(last) = lock(&self.state).last.get(&key).cloned() {
                            return last;
                        }
                    }
                    let outcome = evaluate::check(self, check).await;
                    lock(&self.state).last.insert(key, outcome.clone());
                    outcome
                });
                let outcomes = futures::future::join_all(checks).await;
                let report = |status, detail: String| TaskReport { id: task.id.clone(), title: task.title.clone(), status, detail };
                if let Some(Outcome::Fail(detail)) = outcomes.iter().find(|o| matches!(o, Outcome::Fail(_))) {
                    return report(TaskStatus::Failed, detail.clone());
                }
                if let Some(Outcome::Unknown(detail)) = outcomes.iter().find(|o| matches!(o, Outcome::Unknown(_))) {
                    return report(TaskStatus::Pending, detail.clone());
                }
                let detail = outcomes
                    .iter()
                    .filter_map(|o| match o {
                        Outcome::Pass(d) if !d.is_empty() => Some(d.as_str()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                report(TaskStatus::Passed, detail)
            }
        });
        let reports = futures::future::join_all(tasks).await;
        {
            let mut state = lock(&self.state);
            for r in reports.iter().filter(|r| r.status == TaskStatus::Passed) {
                state.passed.insert(r.id.clone());
            }
        }
        tracing::debug!(elapsed = ?started.elapsed(), "graded");
        reports
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Quotes a string for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `~/x` → `/root/x` (the learner's home in the machine).
pub fn machine_path(path: &str) -> String {
    match path.strip_prefix("~/") {
        Some(rest) => format!("/root/{rest}"),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod tests;
