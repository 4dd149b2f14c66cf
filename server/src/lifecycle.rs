//! Ending sessions: [`end`] is the one way a session ends (DELETE, expiry, idleness, a class
//! ended or left, a failed start or reset, shutdown with `--end-sessions-on-exit`).

use std::time::Instant;

use tokio::task::JoinHandle;
use tracing::Instrument;

use sandbox::SandboxError;

use crate::app::AppState;
use crate::config::ServerConfig;
use crate::registry::Session;

/// Why a session ended: what its terminal's viewers are told, and the `reason` label of
/// `docklab_sessions_ended_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// `DELETE /api/sessions/{id}`.
    Deleted,
    /// It reached its time limit.
    Expired,
    /// Nothing happened in it for `idle_timeout`.
    Idle,
    /// Its class's instructor ended the class.
    ClassEnded,
    /// Its learner moved on to the class's next exercise (a fresh session replaces it).
    NextExercise,
    /// The machine started, but the exercise could not be set up in it.
    SetupFailed,
    /// The machine could not be created.
    StartFailed,
    /// A reset could not remove the old machine.
    ResetFailed,
    /// The server stopped with `--end-sessions-on-exit`.
    ServerShutdown,
}

impl EndReason {
    /// A short name for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Deleted => "deleted",
            EndReason::Expired => "expired",
            EndReason::Idle => "idle",
            EndReason::ClassEnded => "class_ended",
            EndReason::NextExercise => "next_exercise",
            EndReason::SetupFailed => "setup_failed",
            EndReason::StartFailed => "start_failed",
            EndReason::ResetFailed => "reset_failed",
            EndReason::ServerShutdown => "server_shutdown",
        }
    }

    /// The sentence the terminal's viewers get as the shell hangs up.
    pub fn message(self, config: &ServerConfig) -> String {
        match self {
            EndReason::Deleted => "the session was deleted".into(),
            EndReason::Expired => "the session reached its time limit".into(),
            EndReason::Idle => format!("nothing happened in the lab for {} minutes", minutes(config.idle_timeout)),
            EndReason::ClassEnded => "the instructor ended the class".into(),
            EndReason::NextExercise => "you moved on to the class's next exercise".into(),
            EndReason::SetupFailed => "the exercise could not be set up".into(),
            EndReason::StartFailed => "the session's machine could not be started".into(),
            EndReason::ResetFailed => "the lab could not be reset: its old machine could not be removed".into(),
            EndReason::ServerShutdown => "the server is shutting down".into(),
        }
    }
}

/// What became of an ended session's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Destroyed.
    Removed,
    /// There was none (never created, or already removed).
    NoMachine,
    /// Destroying it failed (logged): something may be left on the host.
    MachineLeft,
}

/// Ends a session; the only way one ends. It leaves the registry first, so of several callers
/// only one gets `Some`. Then its grading and learner are forgotten, an instructor's take-over
/// ends, the terminal hangs up telling viewers why, and the machine is destroyed. That part
/// cannot fail: a machine that could not be destroyed is logged and shows as
/// [`Ended::MachineLeft`]. `None` when the session was already gone.
pub async fn end(state: &AppState, id: &str, reason: EndReason) -> Option<Ended> {
    let session = state.sessions.remove(id)?;
    state.grading.forget(id);
    session.end_takeover();
    session.terminal.shutdown(&reason.message(&state.config)).await;
    let ended = destroy_machine(state, id).await;
    state.metrics.session_ended(reason.label());
    tracing::info!(reason = reason.label(), ?ended, "session ended");
    Some(ended)
}

/// Destroys a session's machine only (not the registry entry, terminal or grading): for [`end`],
/// a reset, and a machine that came up after its session had ended.
pub(crate) async fn destroy_machine(state: &AppState, id: &str) -> Ended {
    match state.backend.destroy(id).await {
        Ok(()) => Ended::Removed,
        // Never created, or already removed (a DELETE racing the creation): nothing is left.
        Err(SandboxError::UnknownMachine { .. }) => Ended::NoMachine,
        Err(err) => {
            tracing::error!(error = %err, "destroying the session machine failed");
            Ended::MachineLeft
        }
    }
}

/// Whole minutes, rounded up, at least one (for sentences).
fn minutes(d: std::time::Duration) -> u64 {
    d.as_secs().div_ceil(60).max(1)
}

/// Ends every expired or idle session now, and warns the learners whose session ends soon.
pub async fn reap_expired(state: &AppState) {
    use std::sync::atomic::Ordering::Relaxed;
    let now = Instant::now();
    for id in state.sessions.expired_ids(now) {
        let span = tracing::info_span!("session", %id);
        end(state, &id, EndReason::Expired).instrument(span).await;
    }
    let (idle_limit, warn) = (state.config.idle_timeout, state.config.end_warning);
    for session in state.sessions.all() {
        let span = tracing::info_span!("session", id = %session.id);
        let idle = session.terminal.idle_for();
        if idle >= idle_limit {
            end(state, &session.id, EndReason::Idle).instrument(span).await;
            continue;
        }
        if idle + warn >= idle_limit {
            if !session.terminal.warned_idle.swap(true, Relaxed) {
                let text = format!(
                    "Nothing has happened here for a while: this lab ends in {} minutes unless you type something.",
                    minutes(idle_limit - idle)
                );
                session.terminal.notice(&text).await;
            }
        } else {
            session.terminal.warned_idle.store(false, Relaxed);
        }
        let left = session.deadline().saturating_duration_since(now);
        if left <= warn && !session.terminal.warned_expiry.swap(true, Relaxed) {
            let text = format!("This lab reaches its time limit in {} minutes; then its machine is removed.", minutes(left));
            session.terminal.notice(&text).await;
        }
    }
}

/// Tells learners, in their terminal, when the Docker engine in their machine crashes and when
/// it is back (the machine's init restarts it). Runs until aborted.
pub fn spawn_docker_watch(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: std::collections::HashMap<String, sandbox::protocol::DockerHealth> = std::collections::HashMap::new();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let sessions = state.sessions.all();
            last.retain(|id, _| sessions.iter().any(|s| &s.id == id));
            for session in sessions {
                let Some(health) = state.backend.docker_status(&session.id).await else { continue };
                let before = last.insert(session.id.clone(), health.clone());
                let Some(before) = before else { continue };
                if before == health {
                    continue;
                }
                tracing::info!(session = %session.id, %health, "docker engine status changed");
                if let Some(why) = health.crashed_since(&before) {
                    let text = format!("Docker in your machine stopped ({why}). docklab is restarting it; containers with a restart policy come back with it.");
                    session.terminal.notice(&text).await;
                }
                if health.recovered_since(&before) {
                    session.terminal.notice("Docker in your machine is running again.").await;
                }
            }
        }
    })
}

/// Runs [`reap_expired`] every `reap_interval` until the task is aborted.
pub fn spawn_reaper(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.reap_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            reap_expired(&state).await;
        }
    })
}

/// Leaves every session running for the next server to adopt; viewers are told to reconnect.
pub async fn detach_sessions_on_shutdown(state: &AppState) {
    for session in state.sessions.take_all() {
        session.terminal.restart("the server is restarting").await;
        state.grading.stop(&session.id);
    }
}

/// Ends every session this server holds, for shutdown with `--end-sessions-on-exit`.
pub async fn destroy_all_sessions_on_shutdown(state: &AppState) {
    let ids = state.sessions.ids();
    if !ids.is_empty() {
        tracing::info!(count = ids.len(), "destroying sessions before exit");
    }
    let ends = ids.iter().map(|id| {
        let span = tracing::info_span!("session", %id);
        end(state, id, EndReason::ServerShutdown).instrument(span)
    });
    futures::future::join_all(ends).await;
}

/// What the server keeps with each machine so that its next run can adopt the session.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct SessionMeta {
    pub token: String,
    pub exercise: String,
    pub created_unix: i64,
    pub expires_unix: i64,
    #[serde(default)]
    pub learner: Option<String>,
    /// The machine's own memory limit (a class's per-learner limit), kept for resets.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
}

/// Saves a ready session's facts next to its machine.
pub async fn save_meta(state: &AppState, session: &Session) {
    let meta = SessionMeta {
        token: session.token.clone(),
        exercise: session.exercise.clone(),
        created_unix: session.created_at.unix_timestamp(),
        expires_unix: session.expires_at().unix_timestamp(),
        learner: state.grading.learner(&session.id),
        memory_bytes: session.machine.memory_bytes,
    };
    let json = serde_json::to_vec(&meta).unwrap_or_default();
    if let Err(err) = state.backend.save_meta(&session.id, &json).await {
        tracing::warn!(error = %err, "could not save the session for a later server to adopt");
    }
}

/// Adopts the live sessions an earlier run of the server left (a restart, a crash, a kill -9):
/// same id, same token, same machine and shell, so browsers simply reconnect. Machines that
/// cannot be adopted (expired, broken, unknown) are destroyed.
pub async fn adopt_leftovers(state: &AppState) {
    for id in state.backend.leftovers().await {
        let span = tracing::info_span!("session", id = %id);
        async {
            let meta = state.backend.load_meta(&id).await.and_then(|b| serde_json::from_slice::<SessionMeta>(&b).ok());
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            if let Some(meta) = meta.filter(|m| m.expires_unix > now && state.catalog.exercise(&m.exercise).is_some()) {
                match state.backend.adopt(&id).await {
                    Ok(info) => {
                        let (created, expires) = (
                            time::OffsetDateTime::from_unix_timestamp(meta.created_unix).unwrap_or(time::OffsetDateTime::now_utc()),
                            time::OffsetDateTime::from_unix_timestamp(meta.expires_unix).unwrap_or(time::OffsetDateTime::now_utc()),
                        );
                        if let Some(session) = state.sessions.insert_adopted(&id, &meta.token, &meta.exercise, created, expires, sandbox::MachineOptions { memory_bytes: meta.memory_bytes }) {
                            if let Some(learner) = &meta.learner {
                                state.grading.set_learner(&id, learner);
                            }
                            crate::grading::live::resume(state, &session, &info).await;
                            tracing::info!("session adopted from an earlier server");
                            return;
                        }
                    }
                    Err(err) => tracing::info!(error = %err, "left-over session cannot be adopted"),
                }
            }
            match state.backend.destroy(&id).await {
                Ok(()) => tracing::info!("left-over session machine destroyed"),
                Err(SandboxError::UnknownMachine { .. }) => {
                    tracing::warn!("left-over session machine has no record to destroy it from")
                }
                Err(err) => tracing::error!(error = %err, "could not destroy a left-over session machine"),
            }
        }
        .instrument(span)
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::ServerConfig;
    use crate::testing::{fake_state, ready_session};

    #[tokio::test]
    async fn idle_sessions_are_warned_then_ended_and_activity_keeps_them() {
        let config = ServerConfig { idle_timeout: Duration::from_millis(300), end_warning: Duration::from_millis(250), ..ServerConfig::default() };
        let (state, backend) = fake_state(config);
        let (idle, _) = ready_session(&state, &backend).await;
        let (busy, _) = ready_session(&state, &backend).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        reap_expired(&state).await;
        assert!(state.sessions.get(&idle).unwrap().terminal.warned_idle.load(std::sync::atomic::Ordering::Relaxed));
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            state.sessions.get(&busy).unwrap().terminal.touch();
            reap_expired(&state).await;
        }
        assert!(state.sessions.get(&idle).is_none(), "the idle session ended");
        assert!(state.sessions.get(&busy).is_some(), "the busy session lives");
        assert_eq!(*backend.destroyed.lock().unwrap(), vec![idle]);
    }

    #[tokio::test]
    async fn docker_crashes_and_recoveries_reach_the_terminal_once_each() {
        use sandbox::protocol::DockerHealth;
        let (state, backend) = fake_state(ServerConfig::default());
        let (id, _) = ready_session(&state, &backend).await;
        // What the machine's init writes, through the same parser the real backend uses.
        let set = |st: &[u8], crashes: &[u8]| {
            backend.docker.lock().unwrap().insert(id.clone(), DockerHealth::parse(st, Some(crashes)).unwrap());
        };
        set(b"ready\n", b"0\n");
        let watch = spawn_docker_watch(state.clone());
        let tick = || tokio::time::sleep(Duration::from_millis(1100));
        tick().await;
        set(b"docker-crashed: dockerd was killed by SIGKILL\n", b"1 dockerd was killed by SIGKILL\n");
        tick().await;
        set(b"docker-restarting\n", b"1 dockerd was killed by SIGKILL\n");
        tick().await;
        set(b"ready\n", b"1 dockerd was killed by SIGKILL\n");
        tick().await;
        tick().await;
        watch.abort();
        let (terminal, _pty) = crate::testing::FakePty::new();
        let session = state.sessions.get(&id).unwrap();
        let viewer = session.terminal.attach(crate::terminal::hub::ViewerMode::Interactive, || async { Ok(terminal) }).await.unwrap();
        let shown = String::from_utf8_lossy(&viewer.replay).into_owned();
        assert_eq!(shown.matches("Docker in your machine stopped (dockerd was killed by SIGKILL)").count(), 1, "{shown}");
        assert_eq!(shown.matches("Docker in your machine is running again.").count(), 1, "{shown}");
    }
}
