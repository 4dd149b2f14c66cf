//! Ending sessions: on DELETE, on expiry (the reaper), and when the server stops.

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;
use tracing::Instrument;

use sandbox::SandboxError;

use crate::app::AppState;
use crate::registry::Session;

/// Hangs up a session's terminal and destroys its machine. The session must already be out of the
/// registry. Returns whether the machine is gone completely (failures are logged).
pub async fn destroy_session(state: &AppState, session: &Session, reason: &str) -> bool {
    session.terminal.shutdown(reason).await;
    match state.backend.destroy(&session.id).await {
        Ok(()) => {
            tracing::info!(%reason, "session destroyed");
            true
        }
        // Never created, or already removed (a DELETE racing the creation): nothing is left.
        Err(SandboxError::UnknownMachine { .. }) => {
            tracing::info!(%reason, "session destroyed (it had no machine)");
            true
        }
        Err(err) => {
            tracing::error!(error = %err, "destroying the session machine failed");
            false
        }
    }
}

/// Destroys every expired session now.
pub async fn reap_expired(state: &AppState) {
    for session in state.sessions.take_expired(Instant::now()) {
        let span = tracing::info_span!("session", id = %session.id);
        destroy_session(state, &session, "the session expired").instrument(span).await;
    }
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

/// Destroys every session this server holds, for shutdown. (Later the server will leave machines
/// running for its next run to adopt; until then nothing may outlive it.)
pub async fn destroy_all_sessions_on_shutdown(state: &AppState) {
    let sessions: Vec<Arc<Session>> = state.sessions.take_all();
    if !sessions.is_empty() {
        tracing::info!(count = sessions.len(), "destroying sessions before exit");
    }
    let destroys = sessions.iter().map(|session| {
        let span = tracing::info_span!("session", id = %session.id);
        destroy_session(state, session, "the server is shutting down").instrument(span)
    });
    futures::future::join_all(destroys).await;
}

/// Destroys machines an earlier run of the server left on disk (a crash, a kill -9), since
/// nothing can reach them any more: their tokens died with that process.
pub async fn destroy_leftovers(state: &AppState) {
    for id in state.backend.leftovers().await {
        let span = tracing::info_span!("session", id = %id);
        async {
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
