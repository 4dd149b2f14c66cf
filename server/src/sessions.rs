//! Session routes: create, inspect, exec in, and delete session machines (see API.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::Extension;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use sandbox::{ExecOutput, ExecRequest, MachineState, SandboxError};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::app::AppState;
use crate::error::AppError;
use crate::extract::Json;
use crate::store::CurrentLearner;
use crate::lifecycle::{EndReason, Ended};
use crate::{grading, lifecycle};
use crate::registry::{RegistryError, Session, SessionPhase};
use crate::token;

/// Most arguments in one exec command.
const MAX_EXEC_ARGS: usize = 256;
/// Most bytes in all arguments of one exec command together.
const MAX_EXEC_ARGV_BYTES: usize = 64 * 1024;
/// Most bytes of standard input for one exec command.
const MAX_EXEC_STDIN_BYTES: usize = 256 * 1024;
const DEFAULT_EXEC_TIMEOUT_S: u64 = 30;
pub use crate::registry::MAX_EXECS_IN_FLIGHT;
/// Longest exercise id accepted (real ones are like `day-27/volumes-lifecycle`).
const MAX_EXERCISE_ID: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", post(create_session))
        .route("/api/sessions/{id}", get(get_session).delete(delete_session))
        .route("/api/sessions/{id}/exec", post(exec))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub exercise: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedSession {
    pub id: String,
    pub token: String,
    pub terminal: String,
    pub expires_at: String,
}

impl CreatedSession {
    pub fn of(session: &Session) -> Self {
        CreatedSession {
            id: session.id.clone(),
            token: session.token.clone(),
            terminal: terminal_path(&session.id),
            expires_at: rfc3339(session.expires_at()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SessionView {
    pub id: String,
    pub exercise: String,
    pub state: MachineState,
    pub created_at: String,
    pub expires_at: String,
    pub terminal: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    pub cmd: Vec<String>,
    pub timeout_s: Option<u64>,
    /// Text written to the command's standard input, then closed.
    pub stdin: Option<String>,
}

async fn create_session(
    State(state): State<AppState>,
    learner: Option<Extension<CurrentLearner>>,
    client: crate::ratelimit::ClientAddr,
    Json(body): Json<CreateSession>,
) -> Result<(StatusCode, Json<CreatedSession>), AppError> {
    let learner_id = learner.as_ref().map(|Extension(l)| l.id.clone());
    charge_machine_start(&state, client, learner_id.as_deref())?;
    let exercise = body.exercise;
    if exercise.is_empty() || exercise.len() > MAX_EXERCISE_ID {
        return Err(AppError::BadRequest(format!(
            "`exercise` must be an exercise id like \"day-27/volumes\" (1 to {MAX_EXERCISE_ID} characters)"
        )));
    }
    if state.catalog.exercise(&exercise).is_none() {
        return Err(AppError::UnknownExercise { exercise });
    }
    // A machine from the warm pool when there is one: the session takes its id.
    let warm = crate::warm::claim_ready(&state).await;
    let inserted = match &warm {
        Some(machine) => state.sessions.insert_for_machine(&exercise, &machine.id),
        None => state.sessions.insert_new(&exercise),
    };
    let session = match inserted {
        Ok(session) => session,
        Err(RegistryError::Full { max }) => {
            if let Some(machine) = warm {
                state.warm.give_back(machine);
            }
            return Err(AppError::OutOfCapacity { max });
        }
    };
    if let Some(Extension(learner)) = &learner {
        state.grading.set_learner(&session.id, &learner.id);
    }
    let span = tracing::info_span!("session", id = %session.id);
    span.in_scope(|| tracing::info!(%exercise, "creating session"));
    // A task of its own, so a client that hangs up mid-creation cannot leave a half-made machine.
    tokio::spawn(start_machine_from(state.clone(), session.clone(), warm).instrument(span))
        .await
        .map_err(AppError::internal)??;
    Ok((StatusCode::CREATED, Json(CreatedSession::of(&session))))
}

/// Creates the machine for a registered session, prepares it for its exercise and starts
/// grading; on failure the session is unregistered.
pub(crate) async fn start_machine(state: AppState, session: Arc<Session>) -> Result<(), AppError> {
    start_machine_from(state, session, None).await
}

/// Like [`start_machine`], with a machine already running (from the warm pool) when given.
async fn start_machine_from(state: AppState, session: Arc<Session>, warm: Option<sandbox::MachineInfo>) -> Result<(), AppError> {
    let started = Instant::now();
    let created = match warm {
        Some(info) => {
            tracing::info!(machine_started_ms = info.start_duration.as_millis() as u64, "took a warm machine");
            Ok(info)
        }
        None => state.backend.create_with(&session.id, &session.machine).await,
    };
    match created {
        Ok(info) => {
            state.metrics.session_start.observe(started.elapsed());
            if let Err(reason) = grading::live::machine_ready(&state, &session, &info).await {
                if lifecycle::end(&state, &session.id, EndReason::SetupFailed).await.is_none() {
                    // Ended while it was starting, before this machine existed.
                    state.grading.forget(&session.id);
                    lifecycle::destroy_machine(&state, &session.id).await;
                }
                return Err(AppError::StartFailed { reason });
            }
            session.set_phase(SessionPhase::Ready);
            lifecycle::save_meta(&state, &session).await;
            tracing::info!(uid_base = info.uid_base, init_pid = info.init_pid, elapsed = ?started.elapsed(), "session machine ready");
            if state.sessions.get(&session.id).is_none() {
                // Ended while it was starting (`end` ran then): make sure nothing is left behind.
                state.grading.forget(&session.id);
                lifecycle::destroy_machine(&state, &session.id).await;
                return Err(AppError::UnknownSession { id: session.id.clone() });
            }
            Ok(())
        }
        Err(err) => {
            lifecycle::end(&state, &session.id, EndReason::StartFailed).await;
            match err {
                SandboxError::NoUidRange => Err(AppError::OutOfCapacity { max: state.config.max_sessions }),
                err => Err(AppError::StartFailed { reason: err.to_string() }),
            }
        }
    }
}

async fn get_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SessionView>, AppError> {
    let session = authorize(&state, &id, &headers, None)?;
    let machine_state = match session.phase() {
        SessionPhase::Starting => MachineState::Starting,
        SessionPhase::Ready => state.backend.state(&session.id).await,
    };
    Ok(Json(SessionView {
        id: session.id.clone(),
        exercise: session.exercise.clone(),
        state: machine_state,
        created_at: rfc3339(session.created_at),
        expires_at: rfc3339(session.expires_at()),
        terminal: terminal_path(&session.id),
    }))
}

async fn exec(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<ExecBody>,
) -> Result<Json<ExecOutput>, AppError> {
    let session = authorize(&state, &id, &headers, None)?;
    let request = validate_exec(body, state.config.exec_timeout_max)?;
    require_ready(&session)?;
    let slot = session
        .exec_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| AppError::TooManyExecs { id: session.id.clone(), max: MAX_EXECS_IN_FLIGHT })?;
    session.terminal.touch();
    let span = tracing::info_span!("session", id = %session.id);
    // A task of its own holds the slot until the command ends, even if the client hangs up first.
    let run = async move {
        let _slot = slot;
        let program = request.cmd[0].clone();
        let started = Instant::now();
        let output = state.backend.exec(&session.id, request).await.map_err(|err| exec_error(&session, err))?;
        // `?`: the program is the client's text, escaped so a newline in it cannot forge a log line.
        tracing::info!(?program, exit_code = output.exit_code, timed_out = output.timed_out, elapsed = ?started.elapsed(), "exec");
        Ok(Json(output))
    };
    tokio::spawn(run.instrument(span)).await.map_err(AppError::internal)?
}

async fn delete_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, AppError> {
    let session = authorize(&state, &id, &headers, None)?;
    let span = tracing::info_span!("session", id = %session.id);
    // `None`: a second DELETE (or the reaper) got there first.
    match lifecycle::end(&state, &session.id, EndReason::Deleted).instrument(span).await {
        None => Err(AppError::UnknownSession { id }),
        Some(Ended::MachineLeft) => Err(AppError::internal(format!("session {} was not removed completely", session.id))),
        Some(Ended::Removed | Ended::NoMachine) => Ok(StatusCode::NO_CONTENT),
    }
}

/// Charges a machine start (a new session, a reset) to the client's address and, when known, to
/// the learner's cookie: both buckets must have a token, so neither a fresh cookie nor a second
/// address gets past the limit alone.
pub fn charge_machine_start(state: &AppState, client: crate::ratelimit::ClientAddr, learner: Option<&str>) -> Result<(), AppError> {
    use crate::ratelimit::Client;
    let rate = state.create_limiter.rate();
    let mut keys = vec![(Client::Addr(client.0), rate)];
    if let Some(learner) = learner {
        keys.push((Client::Learner(learner.to_owned()), rate));
    }
    state
        .create_limiter
        .check_all(&keys, Instant::now())
        .map_err(|wait| AppError::RateLimited { retry_after_s: crate::ratelimit::retry_after_s(wait) })
}

/// Finds a session and checks the caller's token (`Authorization: Bearer`, else `query_token`).
pub fn authorize(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<Arc<Session>, AppError> {
    let session = state.sessions.get(id).ok_or_else(|| AppError::UnknownSession { id: id.chars().take(64).collect() })?;
    let given = token::bearer_token(headers).or(query_token).ok_or(AppError::MissingToken)?;
    if session.token_matches(given) {
        Ok(session)
    } else {
        Err(AppError::BadToken)
    }
}

/// Refuses work on a session whose machine is still being created.
pub fn require_ready(session: &Session) -> Result<(), AppError> {
    match session.phase() {
        SessionPhase::Ready => Ok(()),
        SessionPhase::Starting => Err(AppError::SessionNotReady { id: session.id.clone(), state: "starting" }),
    }
}

fn validate_exec(body: ExecBody, timeout_max: Duration) -> Result<ExecRequest, AppError> {
    let bad = |msg: String| Err(AppError::BadRequest(msg));
    if body.cmd.is_empty() || body.cmd[0].is_empty() {
        return bad("`cmd` must name a program: a non-empty list like [\"docker\", \"ps\"]".into());
    }
    if body.cmd.len() > MAX_EXEC_ARGS {
        return bad(format!("`cmd` has {} arguments; at most {MAX_EXEC_ARGS} are allowed", body.cmd.len()));
    }
    if let Some(i) = body.cmd.iter().position(|arg| arg.contains('\0')) {
        return bad(format!("`cmd[{i}]` contains a NUL byte, which no program argument can hold"));
    }
    let argv_bytes: usize = body.cmd.iter().map(String::len).sum();
    if argv_bytes > MAX_EXEC_ARGV_BYTES {
        return bad(format!("`cmd` is {argv_bytes} bytes long; at most {MAX_EXEC_ARGV_BYTES} are allowed"));
    }
    if body.stdin.as_ref().is_some_and(|s| s.len() > MAX_EXEC_STDIN_BYTES) {
        return bad(format!("`stdin` is longer than {MAX_EXEC_STDIN_BYTES} bytes"));
    }
    let max_s = timeout_max.as_secs().max(1);
    let timeout_s = body.timeout_s.unwrap_or(DEFAULT_EXEC_TIMEOUT_S.min(max_s));
    if !(1..=max_s).contains(&timeout_s) {
        return bad(format!("`timeout_s` must be between 1 and {max_s} seconds, not {timeout_s}"));
    }
    Ok(ExecRequest {
        cmd: body.cmd,
        timeout: Duration::from_secs(timeout_s),
        stdin: body.stdin.map(String::into_bytes),
    })
}

fn exec_error(session: &Session, err: SandboxError) -> AppError {
    match err {
        SandboxError::UnknownMachine { .. } | SandboxError::NotRunning { .. } => {
            AppError::SessionNotReady { id: session.id.clone(), state: "stopped" }
        }
        other => AppError::internal(other),
    }
}

fn terminal_path(id: &str) -> String {
    format!("/api/sessions/{id}/terminal")
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests;
