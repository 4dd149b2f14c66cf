//! Grading routes (token-authorised like the other session routes):
//! `GET /api/sessions/{id}/checks`, `POST /api/sessions/{id}/reset`,
//! `POST /api/sessions/{id}/hints/{task}`, `POST /api/sessions/{id}/solution`.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::live::current;
use super::{ChecksReport, TaskReport, TaskStatus};
use crate::app::AppState;
use crate::error::AppError;
use crate::extract::Json;
use crate::lifecycle::{EndReason, Ended};
use crate::registry::SessionPhase;
use crate::sessions::{authorize, require_ready, start_machine, CreatedSession};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions/{id}/checks", get(checks))
        .route("/api/sessions/{id}/reset", post(reset))
        .route("/api/sessions/{id}/hints/{task}", post(hint))
        .route("/api/sessions/{id}/solution", post(solution))
}

async fn checks(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Result<Json<ChecksReport>, AppError> {
    let asked = Instant::now();
    let session = authorize(&state, &id, &headers, None)?;
    require_ready(&session)?;
    let Some(live) = state.grading.get(&session.id) else {
        let exercise = state.catalog.exercise(&session.exercise).ok_or_else(|| AppError::internal("session exercise vanished"))?;
        let tasks = exercise
            .tasks
            .iter()
            .map(|t| TaskReport {
                id: t.id.clone(),
                title: t.title.clone(),
                status: TaskStatus::Pending,
                detail: "this session's Docker engine cannot be reached for grading".into(),
            })
            .collect();
        return Ok(Json(ChecksReport { exercise: exercise.id.clone(), tasks }));
    };
    let span = tracing::info_span!("session", id = %session.id);
    let tasks = current(&state, &session, &live, asked).instrument(span).await;
    Ok(Json(ChecksReport { exercise: live.exercise.id.clone(), tasks }))
}

/// Replaces the machine with a fresh one for the same exercise; the id and token stay.
async fn reset(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    client: crate::ratelimit::ClientAddr,
    learner: Option<axum::Extension<crate::store::CurrentLearner>>,
) -> Result<Json<CreatedSession>, AppError> {
    let session = authorize(&state, &id, &headers, None)?;
    // A reset starts a machine: charged like a new session.
    crate::sessions::charge_machine_start(&state, client, learner.as_ref().map(|l| l.id.as_str()))?;
    reset_machine(&state, &session, "the lab is being reset with a fresh machine").await?;
    Ok(Json(CreatedSession::of(&session)))
}

/// Replaces a ready session's machine with a fresh one (the terminal's viewers are told `reason`
/// and reconnect); also what a class's instructor does for one learner.
pub(crate) async fn reset_machine(state: &AppState, session: &std::sync::Arc<crate::registry::Session>, reason: &str) -> Result<(), AppError> {
    require_ready(session)?;
    session.set_phase(SessionPhase::Starting);
    let span = tracing::info_span!("session", id = %session.id);
    let started = Instant::now();
    let result = async {
        state.grading.stop(&session.id);
        session.terminal.restart(reason).await;
        // The take-over (if any) is kept: the instructor's terminal reconnects like the learner's.
        if crate::lifecycle::destroy_machine(state, &session.id).await == Ended::MachineLeft {
            crate::lifecycle::end(state, &session.id, EndReason::ResetFailed).await;
            return Err(AppError::internal(format!("resetting {}: its old machine could not be removed", session.id)));
        }
        // A task of its own, like creation: a client that hangs up cannot leave it half-made.
        tokio::spawn(start_machine(state.clone(), session.clone()).in_current_span()).await.map_err(AppError::internal)?
    }
    .instrument(span.clone())
    .await;
    span.in_scope(|| tracing::info!(ok = result.is_ok(), elapsed = ?started.elapsed(), "session reset"));
    result
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HintView {
    pub task: String,
    /// 0-based index of this hint.
    pub index: usize,
    /// The hint as written (Markdown) and rendered.
    pub hint: String,
    pub hint_html: String,
    /// How many hints of this task are still hidden.
    pub remaining: usize,
}

/// Reveals the next hint of a task and records it.
async fn hint(
    State(state): State<AppState>,
    Path((id, task_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<HintView>, AppError> {
    let session = authorize(&state, &id, &headers, None)?;
    let exercise = state.catalog.exercise(&session.exercise).ok_or_else(|| AppError::internal("session exercise vanished"))?;
    let task = exercise.task(&task_id).ok_or_else(|| AppError::UnknownTask { task: task_id.chars().take(64).collect() })?;
    let index = state
        .grading
        .next_hint(&session.id, &task.id, task.hints.len())
        .ok_or_else(|| AppError::NoMoreHints { task: task.id.clone() })?;
    if let Some(learner) = state.grading.learner(&session.id) {
        if let Err(err) = state.store.hint_used(&learner, &exercise.id, &task.id, index) {
            tracing::warn!(error = %err, "could not record a hint");
        }
    }
    Ok(Json(HintView {
        task: task.id.clone(),
        index,
        hint: task.hints[index].clone(),
        hint_html: task.hints_html[index].clone(),
        remaining: task.hints.len() - index - 1,
    }))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SolutionView {
    pub exercise: String,
    /// The reference solution, a shell script.
    pub solution: String,
}

/// Reveals the exercise's reference solution and records it.
async fn solution(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Result<Json<SolutionView>, AppError> {
    let session = authorize(&state, &id, &headers, None)?;
    let exercise = state.catalog.exercise(&session.exercise).ok_or_else(|| AppError::internal("session exercise vanished"))?;
    let solution = exercise.solution.clone().ok_or_else(|| AppError::NoSolution { exercise: exercise.id.clone() })?;
    if let Some(learner) = state.grading.learner(&session.id) {
        if let Err(err) = state.store.solution_revealed(&learner, &exercise.id) {
            tracing::warn!(error = %err, "could not record a revealed solution");
        }
    }
    Ok(Json(SolutionView { exercise: exercise.id.clone(), solution }))
}
