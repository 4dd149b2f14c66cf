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
//! Two kinds of task (`lessons/README.md` has the rule for authors):
//! - a **state task** is true of the machine now: it is shown done only while all its checks
//!   hold, and goes back to not done when the learner undoes it;
//! - a **history task** is something that happened: once done, it stays done for the session. Its
//!   event checks are decided from the engine's event sequence, per container instance (id) and in
//!   the order written; its other checks count only once they held while the engine stayed quiet
//!   for [`SETTLE`]: seen by an evaluation made after the engine's last event, with no further
//!   event for [`SETTLE`] after that one. Never between the events of one command (`docker run
//!   -d` creates, then starts: "created, not started" is only a moment there).
//!
//! An exercise is complete when one evaluation reports every task done: all its state tasks hold
//! together, and all its history tasks happened. While the engine does not answer, every task not
//! already done says so ([`ENGINE_DOWN`]), whatever else its checks would have said.
//! [`live`] keeps a grader per ready session, re-evaluates on engine events and on a short tick,
//! and pushes changes to the terminal's viewers.

pub mod dockerfile;
mod evaluate;
mod history;
pub(crate) mod identity;
pub mod live;
mod logscan;
mod probe;
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
/// How long the engine must have been quiet (no event a check cares about) before a history task
/// may be marked done.
pub const SETTLE: Duration = Duration::from_secs(2);
/// What every task not done yet says while the session's engine does not answer.
pub const ENGINE_DOWN: &str = "the Docker engine is not running (is the session machine still up?)";
/// Most events remembered per session (the oldest go first).
const MAX_EVENTS: usize = 20_000;
/// Shown on a history task whose checks hold, until the engine has been quiet for [`SETTLE`].
const SETTLING: &str = "this holds now; it counts once Docker has been idle for a moment";

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
    /// The container's, network's or image's name (a volume's is its id).
    pub name: String,
    /// The object's id: which container *instance* it was.
    pub id: String,
    pub image: Option<String>,
    /// When the engine says it happened, in nanoseconds since the epoch.
    pub time_nano: i64,
}

/// Grades one session's exercise. Cheap to share behind an `Arc`.
pub struct Grader {
    session: String,
    docker: Docker,
    shell: Arc<dyn MachineShell>,
    /// Unix time (s) from which events count: when the learner got the machine.
    since: i64,
    state: Mutex<GradeState>,
    /// The grader's own network probes into the machine's containers.
    probe: probe::Prober,
    /// What containers have printed, while they cannot print more.
    logs: logscan::LogMemory,
}

#[derive(Default)]
struct GradeState {
    /// Events seen since `since` (from the live stream and from history queries), in the order
    /// the engine reported them.
    events: Vec<SeenEvent>,
    /// History tasks done in this session (state tasks are never remembered: they are re-asked).
    history_done: HashSet<String>,
    /// Last outcome per (task, check index), reused by `Scope::Tick`.
    last: HashMap<(String, usize), Outcome>,
    /// When the live stream last brought an event that may change a grade.
    last_change: Option<Instant>,
    /// When the last `Scope::All` evaluation began (the answers `Scope::Tick` reuses are that old).
    last_all: Option<Instant>,
    /// History tasks whose checks held at an evaluation made after the change recorded here (the
    /// engine's last event then, `None` for none); done once no event follows for [`SETTLE`].
    settling: HashMap<String, Option<Instant>>,
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
        let probe = probe::Prober::new(socket);
        Ok(Grader { session: session.to_owned(), docker, shell, since, state: Mutex::new(GradeState::default()), probe, logs: logscan::LogMemory::default() })
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

    /// Remembers an event from the live stream; says whether to grade again for it. Quiet
    /// actions (the grader's own probes among them) change nothing. Events of containers labelled
    /// `docklab.grader=1` (the ones check scripts run) do not set off a grading pass, which would
    /// run the script again, in a loop; but since a learner's image can carry that label too,
    /// they still count as changes for history tasks, which wait for a quiet engine.
    pub fn note_event(&self, event: &bollard::models::EventMessage) -> bool {
        let Some(seen) = history::seen_event(event) else { return false };
        let changes = !history::QUIET_ACTIONS.contains(&seen.action.as_str());
        self.record_event(seen, changes);
        changes && !history::from_grader(event)
    }

    /// Remembers an event from the live stream; `changes` says whether it may change a grade
    /// (history tasks wait until such events have stopped for [`SETTLE`]).
    pub fn record_event(&self, event: SeenEvent, changes: bool) {
        let mut state = lock(&self.state);
        if changes {
            let now = Instant::now();
            state.settle(now);
            // What was settling before this event either held long enough or did not count.
            state.settling.clear();
            state.last_change = Some(now);
        }
        state.remember(std::iter::once(event));
    }

    /// Evaluates every task of `exercise` (checks run concurrently) and returns the reports.
    #[tracing::instrument(name = "grade", skip_all, fields(session = %self.session, exercise = %exercise.id, ?scope))]
    pub async fn grade(&self, exercise: &Exercise, scope: Scope) -> Vec<TaskReport> {
        let started = Instant::now();
        let (done, change_before) = {
            let mut state = lock(&self.state);
            state.settle(started);
            if scope == Scope::All {
                state.last_all = Some(started);
            }
            (state.history_done.clone(), (state.last_change, state.last_all))
        };
        let report = |task: &lessons::Task, status, detail: String| TaskReport { id: task.id.clone(), title: task.title.clone(), status, detail };
        // A dead engine outranks every other detail: a script's "there is no container named x"
        // would only be the engine not answering.
        if let Err(err) = self.docker.ping().await {
            tracing::debug!(error = %err, "the engine does not answer its ping");
            return exercise
                .tasks
                .iter()
                .map(|task| match done.contains(&task.id) {
                    true => report(task, TaskStatus::Passed, String::new()),
                    false => report(task, TaskStatus::Pending, ENGINE_DOWN.to_owned()),
                })
                .collect();
        }
        let tasks = exercise.tasks.iter().map(|task| {
            let done = done.contains(&task.id);
            async move {
                if done {
                    return (report(task, TaskStatus::Passed, String::new()), false);
                }
                let outcomes = self.task_outcomes(task, scope).await;
                if let Some(Outcome::Unknown(detail)) = outcomes.iter().find(|o| matches!(o, Outcome::Unknown(_))) {
                    return (report(task, TaskStatus::Pending, detail.clone()), false);
                }
                if let Some(Outcome::Fail(detail)) = outcomes.iter().find(|o| matches!(o, Outcome::Fail(_))) {
                    return (report(task, TaskStatus::Failed, detail.clone()), false);
                }
                let detail = outcomes
                    .iter()
                    .filter_map(|o| match o {
                        Outcome::Pass(d) if !d.is_empty() => Some(d.as_str()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                (report(task, TaskStatus::Passed, detail), task.history)
            }
        });
        let mut graded: Vec<(TaskReport, bool)> = futures::future::join_all(tasks).await;
        let mut engine_down = graded.iter().any(|(r, _)| r.status == TaskStatus::Pending && r.detail == ENGINE_DOWN);
        if engine_down && self.docker.ping().await.is_ok() {
            engine_down = false;
        }
        {
            let mut state = lock(&self.state);
            // What this evaluation saw is the engine's state after its last change if no change
            // came while grading and the answers reused by a tick were asked after that change.
            let (change, all) = change_before;
            let fresh = scope == Scope::All || change.is_none_or(|t| all.is_some_and(|a| a > t));
            let current = fresh && state.last_change == change;
            let now = Instant::now();
            for (r, history) in graded.iter_mut() {
                if engine_down && r.status != TaskStatus::Passed {
                    r.status = TaskStatus::Pending;
                    r.detail = ENGINE_DOWN.to_owned();
                }
                if !*history || state.history_done.contains(&r.id) {
                    continue;
                }
                if r.status != TaskStatus::Passed {
                    state.settling.remove(&r.id);
                    continue;
                }
                if current {
                    state.settling.entry(r.id.clone()).or_insert(change);
                }
                state.settle(now);
                if !state.history_done.contains(&r.id) {
                    r.status = TaskStatus::Pending;
                    r.detail = SETTLING.to_owned();
                }
            }
        }
        tracing::debug!(elapsed = ?started.elapsed(), "graded");
        graded.into_iter().map(|(r, _)| r).collect()
    }

    /// One task's check outcomes, in order. Container event checks naming the same container
    /// are decided together: one instance of it must have done them all, in the order written,
    /// and it must be the instance that exists now when the task also inspects that container.
    async fn task_outcomes(&self, task: &lessons::Task, scope: Scope) -> Vec<Outcome> {
        let groups = history::event_groups(task);
        let checks = task.checks.iter().enumerate().map(|(i, check)| {
            let groups = &groups;
            async move {
                let key = (task.id.clone(), i);
                let group = groups.iter().find(|g| g.checks.contains(&i));
                if group.is_some_and(|g| g.checks[0] != i) {
                    // Decided with the first check of its group.
                    return Outcome::Pass(String::new());
                }
                if scope == Scope::Tick && check.trigger() == Trigger::Events {
                    if let Some(last) = lock(&self.state).last.get(&key).cloned() {
                        return last;
                    }
                }
                let outcome = match group {
                    Some(group) => history::container_history(self, group).await,
                    None => evaluate::check(self, check).await,
                };
                lock(&self.state).last.insert(key, outcome.clone());
                outcome
            }
        });
        futures::future::join_all(checks).await
    }
}

impl GradeState {
    /// Marks done the settling history tasks that held for [`SETTLE`] after the engine's last
    /// change, with no change since.
    fn settle(&mut self, now: Instant) {
        let last = self.last_change;
        let held: Vec<String> = self
            .settling
            .iter()
            .filter(|(_, change)| **change == last && change.is_none_or(|c| now.duration_since(c) >= SETTLE))
            .map(|(task, _)| task.clone())
            .collect();
        for task in held {
            self.settling.remove(&task);
            self.history_done.insert(task);
        }
    }

    /// Adds events not seen yet, keeping them in the engine's order.
    fn remember(&mut self, events: impl IntoIterator<Item = SeenEvent>) {
        let mut added = false;
        for e in events {
            let known = self.events.iter().rev().any(|k| k.time_nano == e.time_nano && k.id == e.id && k.action == e.action && k.object == e.object);
            if !known {
                self.events.push(e);
                added = true;
            }
        }
        if added {
            self.events.sort_by_key(|e| e.time_nano);
            let over = self.events.len().saturating_sub(MAX_EVENTS);
            self.events.drain(..over);
        }
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
