//! What an instructor does from the grid (reset one learner's machine, extend the class,
//! broadcast a message, take over a learner's terminal, show the join link as a QR code), and
//! what a learner's page asks of their class (its state, its events, the next exercise).
//!
//! Every instructor action needs the login cookie, the CSRF token and a class of their own;
//! learner routes need the learner cookie of a member of the class. Another's class, member or
//! session is "not found".

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::{
    class_state, instructor, instructor_posting, internal, now, own_class, ClassError, GridEvent, Joined, LearnerEvent,
};
use crate::app::AppState;
use crate::registry::Session;
use crate::store::classroom::{ClassRow, Login, MemberRow};
use crate::store::CurrentLearner;

/// Longest broadcast message, in characters.
pub const MAX_MESSAGE: usize = 500;
/// Most minutes one extension adds.
pub const MAX_EXTEND_MINUTES: u32 = 8 * 60;

fn bad(message: impl Into<String>) -> ClassError {
    ClassError(StatusCode::BAD_REQUEST, "bad_request", message.into())
}

fn no_learner() -> ClassError {
    ClassError(StatusCode::NOT_FOUND, "unknown_learner", "no such learner in this class".into())
}

fn no_machine(name: &str) -> ClassError {
    ClassError(StatusCode::CONFLICT, "no_machine", format!("{name} has no running machine now"))
}

fn json_body<T>(body: Result<Json<T>, axum::extract::rejection::JsonRejection>) -> Result<T, ClassError> {
    body.map(|Json(b)| b).map_err(|r| bad(r.body_text()))
}

/// A member of one of the instructor's classes, and their live session if any.
fn own_member(state: &AppState, class: &ClassRow, member: i64) -> Result<(MemberRow, Option<Arc<Session>>), ClassError> {
    let m = state.classroom.store.member_by_id(member).map_err(internal)?.filter(|m| m.class == class.id).ok_or_else(no_learner)?;
    let live = m.session.as_deref().and_then(|s| state.sessions.get(s));
    Ok((m, live))
}

/// For an instructor's action on one learner of a running class (CSRF and ownership checked):
/// the instructor, the class, and the learner with their live session.
fn running_learner(state: &AppState, headers: &HeaderMap, id: &str, member: i64) -> Result<(Login, ClassRow, Arc<Session>), ClassError> {
    let login = instructor_posting(state, headers, None)?;
    let class = own_class(state, &login, id)?;
    require_running(&class)?;
    let (m, live) = own_member(state, &class, member)?;
    let session = live.ok_or_else(|| no_machine(&m.display_name))?;
    Ok((login, class, session))
}

fn require_running(class: &ClassRow) -> Result<(), ClassError> {
    if class_state(class, now()) == "ended" {
        return Err(ClassError(StatusCode::GONE, "class_ended", format!("the class \"{}\" has ended", class.name)));
    }
    Ok(())
}

/// `POST /api/classes/{id}/learners/{member}/reset`: a fresh machine for one learner.
pub async fn reset_learner(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, member)): Path<(String, i64)>,
) -> Result<Json<serde_json::Value>, ClassError> {
    let (_, class, session) = running_learner(&state, &headers, &id, member)?;
    tracing::info!(class = %class.id, member, session = %session.id, "instructor resets a learner's machine");
    crate::grading::routes::reset_machine(&state, &session, "your instructor is resetting your machine: a fresh one is starting")
        .await
        .map_err(|e| ClassError(e.status(), e.code(), e.to_string()))?;
    super::live::push_row(&state, &class, member);
    Ok(Json(serde_json::json!({"reset": true, "session": session.id})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extend {
    pub minutes: u32,
}

/// Moves the class's end `minutes` later, and every learner machine's end with it (a machine
/// with its own shorter length keeps it).
pub async fn extend_class(state: &AppState, class: &ClassRow, minutes: u32) -> Result<ClassRow, ClassError> {
    require_running(class)?;
    if !(1..=MAX_EXTEND_MINUTES).contains(&minutes) {
        return Err(bad(format!("`minutes` must be between 1 and {MAX_EXTEND_MINUTES}")));
    }
    let mut class = class.clone();
    class.ends_at += i64::from(minutes) * 60;
    state.classroom.store.set_ends_at(&class.id, class.ends_at).map_err(internal)?;
    let class_end = time::OffsetDateTime::from_unix_timestamp(class.ends_at).map_err(internal)?;
    for m in state.classroom.store.members(&class.id).map_err(internal)? {
        let Some(session) = m.session.as_deref().and_then(|s| state.sessions.get(s)) else { continue };
        let own_end = class.session_minutes.map(|limit| session.created_at + time::Duration::minutes(i64::from(limit)));
        let end = own_end.map_or(class_end, |own| own.min(class_end));
        if end != session.expires_at() {
            session.set_expires_at(end);
            // A later server adopting the machine keeps the new end too.
            crate::lifecycle::save_meta(state, &session).await;
        }
    }
    state.classroom.publish(&class.id, GridEvent::Extended { ends_at: class.ends_at });
    state.classroom.tell(&class.id, None, LearnerEvent::Extended { ends_at: class.ends_at });
    Ok(class)
}

/// `POST /api/classes/{id}/extend` body `{"minutes": 15}`.
pub async fn extend(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Extend>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<super::ClassView>, ClassError> {
    let login = instructor_posting(&state, &headers, None)?;
    let class = own_class(&state, &login, &id)?;
    let body = json_body(body)?;
    Ok(Json(super::view(extend_class(&state, &class, body.minutes).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Broadcast {
    pub text: String,
}

/// Checks a broadcast message: one line of plain text (it is written into terminals, so no
/// control characters, which could move the cursor or change colours).
pub fn message_text(text: &str) -> Result<String, ClassError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_MESSAGE {
        return Err(bad(format!("the message must be 1 to {MAX_MESSAGE} characters")));
    }
    if text.chars().any(char::is_control) {
        return Err(bad("the message must be one line of text, without control characters"));
    }
    Ok(text.to_owned())
}

/// Sends a message to every learner terminal and page of the class. Returns how many terminals.
pub async fn broadcast_message(state: &AppState, class: &ClassRow, text: &str) -> Result<usize, ClassError> {
    require_running(class)?;
    let text = message_text(text)?;
    let at = now();
    state.classroom.store.add_message(&class.id, &text, at).map_err(internal)?;
    let mut terminals = 0;
    for m in state.classroom.store.members(&class.id).map_err(internal)? {
        if let Some(session) = m.session.as_deref().and_then(|s| state.sessions.get(s)) {
            session.terminal.notice(&format!("Message from your instructor: {text}")).await;
            terminals += 1;
        }
    }
    state.classroom.tell(&class.id, None, LearnerEvent::Message { text: text.clone(), at });
    state.classroom.publish(&class.id, GridEvent::Message { text, at });
    Ok(terminals)
}

/// `POST /api/classes/{id}/broadcast` body `{"text": "…"}`.
pub async fn broadcast(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Broadcast>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ClassError> {
    let login = instructor_posting(&state, &headers, None)?;
    let class = own_class(&state, &login, &id)?;
    let body = json_body(body)?;
    let terminals = broadcast_message(&state, &class, &body.text).await?;
    Ok(Json(serde_json::json!({"sent": true, "terminals": terminals})))
}

/// `POST /api/classes/{id}/learners/{member}/takeover`: the instructor may type in the learner's
/// terminal (`…/terminal?mode=interactive` with the instructor cookie) until they hand it back;
/// the learner is told in their terminal and page.
pub async fn take_over(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, member)): Path<(String, i64)>,
) -> Result<Json<serde_json::Value>, ClassError> {
    let (login, class, session) = running_learner(&state, &headers, &id, member)?;
    if session.begin_takeover(login.instructor) {
        tracing::info!(class = %class.id, member, session = %session.id, "instructor takes over a terminal");
        session.terminal.notice("Your instructor is now typing in this terminal to help you. You can keep typing too.").await;
        state.classroom.tell(&class.id, Some(member), LearnerEvent::Takeover { active: true });
        super::live::push_row(&state, &class, member);
    }
    Ok(Json(serde_json::json!({"taken_over": true, "terminal": format!("/api/sessions/{}/terminal?mode=interactive", session.id)})))
}

/// `POST /api/classes/{id}/learners/{member}/handback`: ends a take-over; the instructor's
/// writable connection closes.
pub async fn hand_back(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, member)): Path<(String, i64)>,
) -> Result<Json<serde_json::Value>, ClassError> {
    let login = instructor_posting(&state, &headers, None)?;
    let class = own_class(&state, &login, &id)?;
    let (_, live) = own_member(&state, &class, member)?;
    let Some(session) = live else { return Ok(Json(serde_json::json!({"taken_over": false}))) };
    if session.end_takeover() {
        session.terminal.notice("Your instructor has left this terminal.").await;
        state.classroom.tell(&class.id, Some(member), LearnerEvent::Takeover { active: false });
        super::live::push_row(&state, &class, member);
    }
    Ok(Json(serde_json::json!({"taken_over": false})))
}

/// For the terminal route: the session, if the instructor logged in on this request took it over,
/// and a receiver that changes when they hand it back.
pub fn takeover_for(state: &AppState, headers: &HeaderMap, session: &str) -> Option<(Arc<Session>, watch::Receiver<bool>)> {
    let login = super::auth::current(&state.classroom, headers)?;
    let session = state.sessions.get(session)?;
    let active = session.takeover_for(login.instructor)?;
    Some((session, active))
}

/// Resolves when a take-over ends (handed back, or its class or session ended).
pub async fn handed_back(mut active: watch::Receiver<bool>) {
    let _ = active.wait_for(|on| !on).await;
}

/// The join link as an SVG QR code, for the room's screen.
pub fn join_qr_svg(url: &str) -> Result<String, ClassError> {
    let code = qrcode::QrCode::new(url.as_bytes()).map_err(internal)?;
    Ok(code.render::<qrcode::render::svg::Color>().min_dimensions(320, 320).quiet_zone(true).build())
}

/// The join link of a class, as seen from the instructor's browser.
pub fn join_url(headers: &HeaderMap, code: &str) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = if super::auth::is_https(headers) { "https" } else { "http" };
    format!("{scheme}://{host}/join/{code}")
}

/// `GET /classes/{id}/qr.svg`.
pub async fn qr(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ClassError> {
    let login = instructor(&state, &headers)?;
    let class = own_class(&state, &login, &id)?;
    let svg = join_qr_svg(&join_url(&headers, &class.code))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-store")], svg).into_response())
}

/// `GET /api/classes/capacity`: how many machines this host can start for a class now.
pub async fn capacity(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<serde_json::Value>, ClassError> {
    instructor(&state, &headers)?;
    let c = super::capacity::HostCapacity::now(state.config.max_sessions, state.sessions.len());
    Ok(Json(serde_json::json!({"sentence": c.sentence(), "capacity": c})))
}

// ---- the learner's side ----------------------------------------------------------------------

fn not_a_member() -> ClassError {
    ClassError(StatusCode::NOT_FOUND, "not_in_class", "you have not joined this class (use its join link)".into())
}

/// The class and the learner's membership behind a learner request.
fn own_membership(state: &AppState, learner: &CurrentLearner, id: &str) -> Result<(ClassRow, MemberRow), ClassError> {
    let class = state.classroom.store.class(id).map_err(internal)?.ok_or_else(not_a_member)?;
    let member = state.classroom.store.member(&class.id, &learner.id).map_err(internal)?.ok_or_else(not_a_member)?;
    Ok((class, member))
}

#[derive(Debug, Serialize)]
pub struct ExerciseLink {
    pub id: String,
    pub title: String,
    pub lesson_path: String,
}

/// What a learner's page shows of their class.
#[derive(Debug, Serialize)]
pub struct LearnerClass {
    pub class: String,
    pub name: String,
    pub state: &'static str,
    pub ends_at: i64,
    pub display_name: String,
    pub exercises: Vec<ExerciseLink>,
    pub exercise_index: u32,
    /// Every task of the current exercise passed.
    pub done: bool,
    pub finished: bool,
    /// Their live machine, to reattach.
    pub session: Option<Joined>,
    pub messages: Vec<(i64, String)>,
    pub taken_over: bool,
}

/// `GET /api/classes/{id}/me`.
pub async fn me(
    State(state): State<AppState>,
    Extension(learner): Extension<CurrentLearner>,
    Path(id): Path<String>,
) -> Result<Json<LearnerClass>, ClassError> {
    let (class, member) = own_membership(&state, &learner, &id)?;
    let live = member.session.as_deref().and_then(|s| state.sessions.get(s)).filter(|_| class_state(&class, now()) != "ended");
    let passed: std::collections::HashSet<(String, String)> =
        state.classroom.store.results_of(member.id).map_err(internal)?.into_iter().collect();
    let current = class.exercises.get(member.exercise_index as usize).and_then(|e| state.catalog.exercise(e));
    let done = current.is_some_and(|e| e.tasks.iter().all(|t| passed.contains(&(e.id.clone(), t.id.clone()))));
    Ok(Json(LearnerClass {
        class: class.id.clone(),
        name: class.name.clone(),
        state: class_state(&class, now()),
        ends_at: class.ends_at,
        display_name: member.display_name.clone(),
        exercises: class
            .exercises
            .iter()
            .filter_map(|e| state.catalog.exercise(e))
            .map(|e| ExerciseLink { id: e.id.clone(), title: e.title.clone(), lesson_path: super::lesson_path(&state, &e.id) })
            .collect(),
        exercise_index: member.exercise_index,
        done,
        finished: member.finished_at.is_some(),
        taken_over: live.as_ref().is_some_and(|s| s.is_taken_over()),
        session: live.map(|s| super::joined(&state, &class, member.exercise_index, &s)),
        messages: state.classroom.store.messages(&class.id, 5).map_err(internal)?,
    }))
}

/// `GET /api/classes/{id}/me/events`: messages, take-overs, a finished exercise, the class's end
/// (SSE, JSON `data`), for this learner only.
pub async fn my_events(
    State(state): State<AppState>,
    Extension(learner): Extension<CurrentLearner>,
    Path(id): Path<String>,
) -> Result<Response, ClassError> {
    let (class, member) = own_membership(&state, &learner, &id)?;
    let rx = state.classroom.learner_channel(&class.id).subscribe();
    let stream = futures::stream::unfold(rx, move |mut rx| async move {
        loop {
            let data = match rx.recv().await {
                Ok((target, event)) if target.is_none_or(|t| t == member.id) => serde_json::to_string(&event).unwrap_or_default(),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => "{\"type\":\"lagged\"}".to_owned(),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            return Some((Ok::<_, Infallible>(Event::default().data(data)), rx));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// `POST /api/classes/{id}/me/next`: a fresh machine for the class's next exercise.
pub async fn my_next(
    State(state): State<AppState>,
    Extension(learner): Extension<CurrentLearner>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Joined>, ClassError> {
    if !super::auth::same_origin(&headers) {
        return Err(super::csrf_refused());
    }
    let (class, member) = own_membership(&state, &learner, &id)?;
    Ok(Json(super::next_exercise(&state, &class, &member).await?))
}
