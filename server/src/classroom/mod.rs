//! Instructor-run classes: instructor logins ([`auth`]), classes with join codes and per-learner
//! limits, learners joining with a display name and moving through the class's exercises, the live
//! progress grid (pushed over SSE from the sessions' `checks` messages, with stuck markers from
//! [`live`]), the instructor's actions ([`actions`]: watch, take over, reset, broadcast, extend,
//! QR code), ending a class, and results as CSV.

pub mod actions;
pub mod auth;
pub mod capacity;
pub mod live;
mod pages;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::app::AppState;
use crate::lifecycle::{end, EndReason};
use crate::registry::{RegistryError, Session, SessionOptions};
use crate::store::classroom::{ClassRow, ClassStore, Login, MemberRow};
use crate::store::CurrentLearner;
use auth::now;
pub use live::{LearnerRow, StuckRules};
/// Characters of join codes: no 0/O, 1/I/L.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 6;
const MAX_NAME: usize = 60;
const MAX_SEATS: u32 = 500;
/// Per-learner memory limits a class may set, in MiB.
pub const MEMORY_MIB_RANGE: std::ops::RangeInclusive<u32> = 256..=16384;

/// Classes of this server: the database, the live channels and what the grid tracks in memory.
pub struct Classroom {
    pub store: ClassStore,
    pub rules: StuckRules,
    channels: Mutex<HashMap<String, broadcast::Sender<GridEvent>>>,
    learner_channels: Mutex<HashMap<String, broadcast::Sender<ToLearners>>>,
    joining: Mutex<HashSet<(String, String)>>,
    /// Per member: the task they are on, from their checks.
    watches: Mutex<HashMap<i64, Option<live::TaskWatch>>>,
    /// Per member: the row last pushed to the grid.
    sent: Mutex<HashMap<i64, LearnerRow>>,
    /// Sessions whose checks are followed, and classes whose ticker runs.
    followed: Mutex<HashSet<String>>,
    tickers: Mutex<HashSet<String>>,
    /// Login attempt limits and the bound on password hashing at once.
    pub logins: auth::LoginGuard,
}

/// What the grid page is pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GridEvent {
    Pass { member: i64, task: String },
    /// A learner joined, or their row changed (stuck marker, hints, exercise, machine, take-over).
    Learner { learner: Box<LearnerRow> },
    Message { text: String, at: i64 },
    Extended { ends_at: i64 },
    Ended,
}

/// An event for one learner's page (`Some(member)`) or every learner page of a class (`None`).
type ToLearners = (Option<i64>, LearnerEvent);

/// What a learner's page is pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LearnerEvent {
    /// A message from the instructor to the whole class.
    Message { text: String, at: i64 },
    /// The instructor started (or stopped) typing in this learner's terminal.
    Takeover { active: bool },
    /// Every task of `exercise` passed; `next` when the class has another exercise.
    Done { exercise: String, next: bool },
    Extended { ends_at: i64 },
    Ended,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Classroom {
    pub fn new(store: ClassStore) -> Self {
        Self::with_rules(store, StuckRules::default())
    }

    pub fn with_rules(store: ClassStore, rules: StuckRules) -> Self {
        Classroom {
            store,
            rules,
            channels: Mutex::default(),
            learner_channels: Mutex::default(),
            joining: Mutex::default(),
            watches: Mutex::default(),
            sent: Mutex::default(),
            followed: Mutex::default(),
            tickers: Mutex::default(),
            logins: auth::LoginGuard::default(),
        }
    }

    fn channel(&self, class: &str) -> broadcast::Sender<GridEvent> {
        // Room for a burst of 200 learners' rows and passes before a slow page must reload.
        lock(&self.channels).entry(class.to_owned()).or_insert_with(|| broadcast::channel(1024).0).clone()
    }

    fn publish(&self, class: &str, event: GridEvent) {
        let _ = self.channel(class).send(event);
    }

    fn learner_channel(&self, class: &str) -> broadcast::Sender<ToLearners> {
        lock(&self.learner_channels).entry(class.to_owned()).or_insert_with(|| broadcast::channel(64).0).clone()
    }

    /// Tells one learner's page (`Some(member)`) or every learner page of the class (`None`).
    fn tell(&self, class: &str, member: Option<i64>, event: LearnerEvent) {
        let _ = self.learner_channel(class).send((member, event));
    }
}

/// `docklab instructor add NAME`: stores (or replaces) an instructor with an argon2id hash.
pub fn add_instructor(db: &std::path::Path, name: &str, password: &str) -> anyhow::Result<()> {
    anyhow::ensure!(valid_name(name), "the name must be 1 to {MAX_NAME} characters without control characters");
    anyhow::ensure!(password.chars().count() >= 8, "the password must be at least 8 characters");
    let hash = auth::hash_password(password).map_err(anyhow::Error::msg)?;
    ClassStore::open(db)?.set_instructor(name, &hash, now())?;
    Ok(())
}

fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=MAX_NAME).contains(&n) && !name.chars().any(char::is_control)
}

/// A refusal: status, machine word, sentence (JSON for the API, a page for forms).
#[derive(Debug)]
pub struct ClassError(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for ClassError {
    fn into_response(self) -> Response {
        let retry = self.retry_after_s();
        let mut response = (self.0, Json(serde_json::json!({"error": self.2, "code": self.1}))).into_response();
        if let Some(s) = retry {
            response.headers_mut().insert(header::RETRY_AFTER, s.into());
        }
        response
    }
}

impl ClassError {
    /// A 429: `wait` is said in the sentence and sent as `Retry-After`.
    pub fn rate_limited(what: &str, wait: Duration) -> ClassError {
        let s = crate::ratelimit::retry_after_s(wait);
        ClassError(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("{what}: try again in {s} s"))
    }

    /// The seconds of a [`ClassError::rate_limited`] (every 429 is made by it).
    pub fn retry_after_s(&self) -> Option<u64> {
        if self.0 != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let tail = self.2.rsplit_once("try again in ")?.1;
        Some(tail.strip_suffix(" s")?.parse().unwrap_or(60))
    }
}

/// Charges a machine start through a class (a join, the next exercise) to the learner and to
/// the class: a class may start one machine per seat at once (everyone joining at nine o'clock)
/// and that many again each minute; a learner, like any learner (`sessions::charge_machine_start`).
fn charge_class_start(state: &AppState, class: &ClassRow, learner: &str) -> Result<(), ClassError> {
    use crate::ratelimit::{Client, Rate};
    let rate = state.create_limiter.rate();
    let seats = f64::from(class.seats);
    let class_rate = Rate { per_second: rate.per_second.max(seats / 60.0), burst: rate.burst.max(seats) };
    state
        .create_limiter
        .check_all(&[(Client::Learner(learner.to_owned()), rate), (Client::Class(class.id.clone()), class_rate)], std::time::Instant::now())
        .map_err(|wait| ClassError::rate_limited("too many machine starts for you or this class", wait))
}

fn internal(err: impl std::fmt::Display) -> ClassError {
    tracing::error!(error = %err, "classroom request failed");
    ClassError(StatusCode::INTERNAL_SERVER_ERROR, "internal", "something went wrong on the server".into())
}

fn unauthenticated() -> ClassError {
    ClassError(StatusCode::UNAUTHORIZED, "not_logged_in", "log in as an instructor first (/instructor/login)".into())
}

fn csrf_refused() -> ClassError {
    ClassError(StatusCode::FORBIDDEN, "csrf", "missing or wrong CSRF token: reload the page and try again".into())
}

fn no_class() -> ClassError {
    ClassError(StatusCode::NOT_FOUND, "unknown_class", "no such class among yours".into())
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/instructor/login", get(pages::login_page).post(pages::login_form))
        .route("/instructor/logout", post(pages::logout_form))
        .route("/instructor", get(pages::dashboard))
        .route("/instructor/classes", post(pages::create_form))
        .route("/classes/{id}", get(pages::grid_page))
        .route("/classes/{id}/end", post(pages::end_form))
        .route("/classes/{id}/watch/{member}", get(pages::watch_page))
        .route("/join/{code}", get(pages::join_page).post(pages::join_form))
        .route("/api/instructor/me", get(me))
        .route("/api/classes", get(list_classes).post(create_class_api))
        .route("/api/classes/{id}", get(grid_api))
        .route("/api/classes/{id}/events", get(events))
        .route("/api/classes/{id}/end", post(end_class_api))
        .route("/api/classes/{id}/results.csv", get(results_csv))
        .route("/api/classes/{id}/extend", post(actions::extend))
        .route("/api/classes/{id}/broadcast", post(actions::broadcast))
        .route("/api/classes/{id}/learners/{member}/reset", post(actions::reset_learner))
        .route("/api/classes/{id}/learners/{member}/takeover", post(actions::take_over))
        .route("/api/classes/{id}/learners/{member}/handback", post(actions::hand_back))
        .route("/api/classes/capacity", get(actions::capacity))
        .route("/classes/{id}/qr.svg", get(actions::qr))
        .route("/api/classes/{id}/me", get(actions::me))
        .route("/api/classes/{id}/me/events", get(actions::my_events))
        .route("/api/classes/{id}/me/next", post(actions::my_next))
        .route("/api/join/{code}", post(join_api))
}

/// The logged-in instructor, or 401.
fn instructor(state: &AppState, headers: &HeaderMap) -> Result<Login, ClassError> {
    auth::current(&state.classroom, headers).ok_or_else(unauthenticated)
}

/// The logged-in instructor whose request carries their CSRF token, from another page of this site.
fn instructor_posting(state: &AppState, headers: &HeaderMap, csrf: Option<&str>) -> Result<Login, ClassError> {
    let login = instructor(state, headers)?;
    if !auth::same_origin(headers) || !auth::csrf_ok(&login, csrf.or(auth::csrf_header(headers))) {
        return Err(csrf_refused());
    }
    Ok(login)
}

/// One of the instructor's own classes (another's is "not found", not "forbidden").
fn own_class(state: &AppState, login: &Login, id: &str) -> Result<ClassRow, ClassError> {
    match state.classroom.store.class(id).map_err(internal)? {
        Some(class) if class.instructor == login.instructor => Ok(class),
        _ => Err(no_class()),
    }
}

/// Whether the instructor logged in on this request may watch (read-only) session `session`.
pub fn may_view_session(state: &AppState, headers: &HeaderMap, session: &str) -> bool {
    let Some(login) = auth::current(&state.classroom, headers) else { return false };
    let Ok(Some(member)) = state.classroom.store.member_by_session(session) else { return false };
    matches!(state.classroom.store.class(&member.class), Ok(Some(c)) if c.instructor == login.instructor)
}

#[derive(Serialize)]
struct Me {
    name: String,
    csrf: String,
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Me>, ClassError> {
    let login = instructor(&state, &headers)?;
    Ok(Json(Me { name: login.name, csrf: login.csrf }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClass {
    pub name: String,
    pub exercises: Vec<String>,
    pub seats: u32,
    /// RFC 3339; default now.
    pub starts_at: Option<String>,
    /// RFC 3339; default `starts_at` + `duration_minutes`.
    pub ends_at: Option<String>,
    /// Default 120.
    pub duration_minutes: Option<u32>,
    /// Per-learner limits: how long each machine lives (default: until the class ends) and
    /// its memory in MiB (default: the server's).
    pub session_minutes: Option<u32>,
    pub memory_mib: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ClassView {
    #[serde(flatten)]
    pub class: ClassRow,
    pub join_path: String,
    pub state: &'static str,
}

fn view(class: ClassRow) -> ClassView {
    let state = class_state(&class, now());
    ClassView { join_path: format!("/join/{}", class.code), class, state }
}

pub(crate) fn class_state(class: &ClassRow, now: i64) -> &'static str {
    if class.ended_at.is_some() || now >= class.ends_at {
        "ended"
    } else if now < class.starts_at {
        "not_started"
    } else {
        "open"
    }
}

fn parse_time(field: &str, text: &Option<String>) -> Result<Option<i64>, ClassError> {
    let Some(text) = text.as_deref().filter(|t| !t.is_empty()) else { return Ok(None) };
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| Some(t.unix_timestamp()))
        .map_err(|_| ClassError(StatusCode::BAD_REQUEST, "bad_request", format!("`{field}` must be an RFC 3339 time like 2026-11-23T14:00:00Z")))
}

fn new_code() -> String {
    (0..CODE_LEN).map(|_| CODE_ALPHABET[rand::random_range(0..CODE_ALPHABET.len())] as char).collect()
}

/// Validates and stores a class, after checking the server can hold its seats.
pub fn create_class(state: &AppState, login: &Login, body: NewClass) -> Result<ClassRow, ClassError> {
    let bad = |m: String| Err(ClassError(StatusCode::BAD_REQUEST, "bad_request", m));
    let name = body.name.trim();
    if !valid_name(name) {
        return bad(format!("`name` must be 1 to {MAX_NAME} characters"));
    }
    if body.exercises.is_empty() {
        return bad("`exercises` must list at least one exercise id, like \"day-24/lifecycle\"".into());
    }
    if let Some(unknown) = body.exercises.iter().find(|e| state.catalog.exercise(e).is_none()) {
        return bad(format!("no exercise is called {unknown:?}"));
    }
    if !(1..=MAX_SEATS).contains(&body.seats) {
        return bad(format!("`seats` must be between 1 and {MAX_SEATS}"));
    }
    let starts_at = parse_time("starts_at", &body.starts_at)?.unwrap_or_else(now);
    let ends_at = match parse_time("ends_at", &body.ends_at)? {
        Some(t) => t,
        None => starts_at + i64::from(body.duration_minutes.unwrap_or(120).clamp(1, 7 * 24 * 60)) * 60,
    };
    if ends_at <= starts_at || ends_at <= now() {
        return bad("the class must end after it starts, and in the future".into());
    }
    if let Some(minutes) = body.session_minutes.filter(|m| !(5..=7 * 24 * 60).contains(m)) {
        return bad(format!("`session_minutes` must be between 5 and {} (not {minutes})", 7 * 24 * 60));
    }
    if let Some(mib) = body.memory_mib.filter(|m| !MEMORY_MIB_RANGE.contains(m)) {
        return bad(format!(
            "`memory_mib` must be between {} and {} MiB (not {mib})",
            MEMORY_MIB_RANGE.start(),
            MEMORY_MIB_RANGE.end()
        ));
    }
    let capacity = capacity::HostCapacity::now(state.config.max_sessions, state.sessions.len());
    capacity.check(body.seats).map_err(|m| ClassError(StatusCode::SERVICE_UNAVAILABLE, "out_of_capacity", m))?;
    let mut class = ClassRow {
        id: hex::encode(rand::random::<[u8; 8]>()),
        instructor: login.instructor,
        name: name.to_owned(),
        exercises: body.exercises,
        seats: body.seats,
        code: new_code(),
        starts_at,
        ends_at,
        ended_at: None,
        session_minutes: body.session_minutes,
        memory_mib: body.memory_mib,
    };
    // A clash of codes (unique in the table) is retried with a new one.
    for _ in 0..10 {
        match state.classroom.store.add_class(&class, now()) {
            Ok(()) => return Ok(class),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                class.code = new_code();
            }
            Err(err) => return Err(internal(err)),
        }
    }
    Err(internal("no free join code"))
}

async fn create_class_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewClass>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<ClassView>), ClassError> {
    let login = instructor_posting(&state, &headers, None)?;
    let Json(body) = body.map_err(|r| ClassError(StatusCode::BAD_REQUEST, "bad_request", r.body_text()))?;
    Ok((StatusCode::CREATED, Json(view(create_class(&state, &login, body)?))))
}

async fn list_classes(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Vec<ClassView>>, ClassError> {
    let login = instructor(&state, &headers)?;
    let classes = state.classroom.store.classes_of(login.instructor).map_err(internal)?;
    Ok(Json(classes.into_iter().map(view).collect()))
}

#[derive(Debug, Serialize)]
pub struct TaskColumn {
    /// `exercise:task`.
    pub key: String,
    pub title: String,
}

/// One exercise of the class, with its tasks as the grid's columns.
#[derive(Debug, Serialize)]
pub struct ExerciseColumns {
    pub id: String,
    pub title: String,
    pub tasks: Vec<TaskColumn>,
}

#[derive(Debug, Serialize)]
pub struct Grid {
    pub class: ClassView,
    /// The class's exercises in order; their tasks are the columns, grouped.
    pub exercises: Vec<ExerciseColumns>,
    pub learners: Vec<LearnerRow>,
    /// The class's latest broadcast messages: (at, text).
    pub messages: Vec<(i64, String)>,
    /// When a learner counts as stuck, in seconds.
    pub stuck_idle_s: u64,
    pub stuck_failing_s: u64,
}

fn task_key(exercise: &str, task: &str) -> String {
    format!("{exercise}:{task}")
}

fn exercise_columns(state: &AppState, class: &ClassRow) -> Vec<ExerciseColumns> {
    class
        .exercises
        .iter()
        .filter_map(|e| state.catalog.exercise(e))
        .map(|e| ExerciseColumns {
            id: e.id.clone(),
            title: e.title.clone(),
            tasks: e.tasks.iter().map(|t| TaskColumn { key: task_key(&e.id, &t.id), title: t.title.clone() }).collect(),
        })
        .collect()
}

pub fn grid(state: &AppState, class: ClassRow) -> Result<Grid, ClassError> {
    let learners = live::learner_rows(state, &class)?;
    Ok(Grid {
        exercises: exercise_columns(state, &class),
        learners,
        messages: state.classroom.store.messages(&class.id, 20).map_err(internal)?,
        stuck_idle_s: state.classroom.rules.idle.as_secs(),
        stuck_failing_s: state.classroom.rules.failing.as_secs(),
        class: view(class),
    })
}

async fn grid_api(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Grid>, ClassError> {
    let login = instructor(&state, &headers)?;
    let class = own_class(&state, &login, &id)?;
    Ok(Json(grid(&state, class)?))
}

/// `GET /api/classes/{id}/events`: the grid's changes as server-sent events (JSON `data`).
async fn events(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ClassError> {
    let login = instructor(&state, &headers)?;
    let class = own_class(&state, &login, &id)?;
    let rx = state.classroom.channel(&class.id).subscribe();
    live::ensure_ticker(&state, &class.id);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let data = match rx.recv().await {
            Ok(event) => serde_json::to_string(&event).unwrap_or_default(),
            // The page reloads the whole grid on `lagged`.
            Err(broadcast::error::RecvError::Lagged(_)) => "{\"type\":\"lagged\"}".to_owned(),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(Event::default().data(data)), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// Ends a class: refuses new joins and tears down every machine of the class. Returns how many
/// machines were destroyed.
pub async fn end_class(state: &AppState, class: &ClassRow) -> Result<usize, ClassError> {
    state.classroom.store.end_class(&class.id, now()).map_err(internal)?;
    let mut destroyed = 0;
    for member in state.classroom.store.members(&class.id).map_err(internal)? {
        let Some(id) = member.session.as_deref() else { continue };
        let span = tracing::info_span!("session", %id);
        destroyed += end(state, id, EndReason::ClassEnded).instrument(span).await.is_some() as usize;
    }
    state.classroom.publish(&class.id, GridEvent::Ended);
    state.classroom.tell(&class.id, None, LearnerEvent::Ended);
    Ok(destroyed)
}

#[derive(Debug, Deserialize, Default)]
struct CsrfOnly {
    csrf: Option<String>,
}

async fn end_class_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ClassError> {
    let login = instructor_posting(&state, &headers, None)?;
    let class = own_class(&state, &login, &id)?;
    let destroyed = end_class(&state, &class).await?;
    Ok(Json(serde_json::json!({"ended": true, "machines_destroyed": destroyed})))
}

fn csv_field(text: &str) -> String {
    // A leading formula character is neutralised for spreadsheets.
    let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// `learner,<exercise:task>…,passed,joined_at,finished_at`: each task cell is when it first passed.
pub fn results_csv_text(state: &AppState, class: &ClassRow) -> Result<String, ClassError> {
    let tasks: Vec<TaskColumn> = exercise_columns(state, class).into_iter().flat_map(|e| e.tasks).collect();
    let results = state.classroom.store.results(&class.id).map_err(internal)?;
    let members = state.classroom.store.members(&class.id).map_err(internal)?;
    let mut out = String::from("learner");
    for t in &tasks {
        out.push(',');
        out.push_str(&csv_field(&t.key));
    }
    out.push_str(",passed,joined_at,finished_at\n");
    for m in &members {
        out.push_str(&csv_field(&m.display_name));
        let mut passed = 0;
        for t in &tasks {
            out.push(',');
            if let Some(r) = results.iter().find(|r| r.0 == m.id && task_key(&r.1, &r.2) == t.key) {
                passed += 1;
                out.push_str(&rfc3339(r.3));
            }
        }
        out.push_str(&format!(",{passed},{},{}\n", rfc3339(m.joined_at), m.finished_at.map(rfc3339).unwrap_or_default()));
    }
    Ok(out)
}

async fn results_csv(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ClassError> {
    let login = instructor(&state, &headers)?;
    let class = own_class(&state, &login, &id)?;
    let body = results_csv_text(&state, &class)?;
    let disposition = format!("attachment; filename=\"class-{}.csv\"", class.id);
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    display_name: String,
}

#[derive(Debug, Serialize)]
pub struct Joined {
    pub class: String,
    pub exercise: String,
    /// Which of the class's exercises this is (0-based), of how many.
    pub exercise_index: u32,
    pub exercises: usize,
    pub lesson_path: String,
    pub id: String,
    pub token: String,
    pub terminal: String,
}

fn lesson_path(state: &AppState, exercise: &str) -> String {
    state
        .catalog
        .exercise(exercise)
        .map(|e| format!("/lessons/{}?exercise={}", e.lesson, e.slug))
        .unwrap_or_else(|| "/".into())
}

fn joined(state: &AppState, class: &ClassRow, index: u32, session: &Session) -> Joined {
    Joined {
        class: class.id.clone(),
        exercise: session.exercise.clone(),
        exercise_index: index,
        exercises: class.exercises.len(),
        lesson_path: lesson_path(state, &session.exercise),
        id: session.id.clone(),
        token: session.token.clone(),
        terminal: format!("/api/sessions/{}/terminal", session.id),
    }
}

/// Refuses a class that has ended or not started, in the learner's words.
fn require_open(class: &ClassRow) -> Result<(), ClassError> {
    match class_state(class, now()) {
        "ended" => Err(ClassError(
            StatusCode::GONE,
            "class_ended",
            format!("the class \"{}\" has ended: its join code no longer works", class.name),
        )),
        "not_started" => Err(ClassError(
            StatusCode::FORBIDDEN,
            "class_not_started",
            format!("the class \"{}\" starts at {}: join then", class.name, rfc3339(class.starts_at)),
        )),
        _ => Ok(()),
    }
}

/// Joins (or returns to) a class: the learner's live session, or a new one for the exercise they
/// are on (the first, for a new learner).
pub async fn join(state: &AppState, learner: &str, code: &str, display_name: &str) -> Result<Joined, ClassError> {
    let code = code.trim().to_ascii_uppercase();
    let class = state
        .classroom
        .store
        .class_by_code(&code)
        .map_err(internal)?
        .ok_or_else(|| ClassError(StatusCode::NOT_FOUND, "unknown_code", format!("no class has the join code {code:?}")))?;
    require_open(&class)?;
    let existing = state.classroom.store.member(&class.id, learner).map_err(internal)?;
    if let Some(m) = &existing {
        if let Some(live) = m.session.as_deref().and_then(|s| state.sessions.get(s)) {
            follow(state, &class.id, m.id, live.clone());
            return Ok(joined(state, &class, m.exercise_index, &live));
        }
    }
    let display_name = display_name.trim();
    if existing.is_none() {
        if !valid_name(display_name) {
            return Err(ClassError(StatusCode::BAD_REQUEST, "bad_request", format!("your name must be 1 to {MAX_NAME} characters")));
        }
        if state.classroom.store.member_count(&class.id).map_err(internal)? >= class.seats {
            return Err(ClassError(StatusCode::CONFLICT, "class_full", format!("all {} seats of this class are taken", class.seats)));
        }
    }
    charge_class_start(state, &class, learner)?;
    let _joining = JoiningGuard::take(state, &class.id, learner)?;
    let member = match existing {
        Some(m) => m,
        None => {
            let m = state.classroom.store.join(&class.id, learner, display_name, now()).map_err(internal)?;
            live::push_row(state, &class, m.id);
            m
        }
    };
    let session = start_member_session(state, &class, &member).await?;
    Ok(joined(state, &class, member.exercise_index, &session))
}

/// One start at a time per learner and class.
struct JoiningGuard<'a>(&'a Classroom, (String, String));

impl<'a> JoiningGuard<'a> {
    fn take(state: &'a AppState, class: &str, learner: &str) -> Result<Self, ClassError> {
        let key = (class.to_owned(), learner.to_owned());
        if !lock(&state.classroom.joining).insert(key.clone()) {
            return Err(ClassError(StatusCode::CONFLICT, "already_joining", "your machine is being started: try again in a moment".into()));
        }
        Ok(JoiningGuard(&state.classroom, key))
    }
}

impl Drop for JoiningGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.joining).remove(&self.1);
    }
}

/// A class session's length: the per-learner limit, never past the class's end.
pub fn session_ttl(class: &ClassRow, now: i64) -> Duration {
    let until_end = (class.ends_at - now).max(60);
    let limit = class.session_minutes.map_or(until_end, |m| i64::from(m) * 60);
    Duration::from_secs(limit.min(until_end) as u64)
}

fn session_options(class: &ClassRow) -> SessionOptions {
    SessionOptions {
        ttl: Some(session_ttl(class, now())),
        machine: sandbox::MachineOptions { memory_bytes: class.memory_mib.map(|m| u64::from(m) << 20) },
    }
}

/// Starts a machine for the exercise the member is on, with the class's per-learner limits.
async fn start_member_session(state: &AppState, class: &ClassRow, member: &MemberRow) -> Result<Arc<Session>, ClassError> {
    let exercise = class
        .exercises
        .get(member.exercise_index as usize)
        .or(class.exercises.last())
        .cloned()
        .ok_or_else(|| internal(format!("class {} has no exercises", class.id)))?;
    let session = state.sessions.insert_new_with(&exercise, session_options(class)).map_err(|RegistryError::Full { max }| {
        ClassError(StatusCode::SERVICE_UNAVAILABLE, "out_of_capacity", format!("all {max} session machines of this server are in use"))
    })?;
    state.grading.set_learner(&session.id, &member.learner);
    state.classroom.store.set_member_session(member.id, Some((&session.id, &session.token))).map_err(internal)?;
    lock(&state.classroom.watches).insert(member.id, None);
    follow(state, &class.id, member.id, session.clone());
    tokio::spawn(crate::sessions::start_machine(state.clone(), session.clone()))
        .await
        .map_err(internal)?
        .map_err(|e| ClassError(e.status(), e.code(), e.to_string()))?;
    live::push_row(state, class, member.id);
    Ok(session)
}

/// Moves a learner to the class's next exercise: their machine is replaced by a fresh one for it.
pub async fn next_exercise(state: &AppState, class: &ClassRow, member: &MemberRow) -> Result<Joined, ClassError> {
    require_open(class)?;
    let next = member.exercise_index + 1;
    if next as usize >= class.exercises.len() {
        return Err(ClassError(StatusCode::CONFLICT, "last_exercise", "this is the class's last exercise".into()));
    }
    charge_class_start(state, class, &member.learner)?;
    let _joining = JoiningGuard::take(state, &class.id, &member.learner)?;
    if let Some(id) = member.session.as_deref() {
        let span = tracing::info_span!("session", %id);
        end(state, id, EndReason::NextExercise).instrument(span).await;
    }
    state.classroom.store.set_member_exercise(member.id, next, now()).map_err(internal)?;
    let member = state.classroom.store.member_by_id(member.id).map_err(internal)?.ok_or_else(|| internal("member vanished"))?;
    let session = start_member_session(state, class, &member).await?;
    Ok(joined(state, class, next, &session))
}

/// Follows a class session's `checks` messages (the same ones its terminal viewers get) and
/// records and pushes every newly passed task, until the session is gone. Once per session.
fn follow(state: &AppState, class: &str, member: i64, session: Arc<Session>) {
    if !lock(&state.classroom.followed).insert(session.id.clone()) {
        return;
    }
    let (state, class) = (state.clone(), class.to_owned());
    tokio::spawn(async move {
        let (mut rx, latest) = session.terminal.subscribe_controls();
        if let Some(checks) = latest {
            live::note_checks(&state, &class, member, &session.exercise, &checks);
        }
        let mut alive = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Ok(control) => live::note_checks(&state, &class, member, &session.exercise, &control),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = alive.tick() => {
                    if !state.sessions.get(&session.id).is_some_and(|s| Arc::ptr_eq(&s, &session)) {
                        break;
                    }
                }
            }
        }
        lock(&state.classroom.followed).remove(&session.id);
    });
}

async fn join_api(
    State(state): State<AppState>,
    Extension(learner): Extension<CurrentLearner>,
    Path(code): Path<String>,
    body: Result<Json<JoinBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Joined>, ClassError> {
    let Json(body) = body.map_err(|r| ClassError(StatusCode::BAD_REQUEST, "bad_request", r.body_text()))?;
    Ok(Json(join(&state, &learner.id, &code, &body.display_name).await?))
}

#[cfg(test)]
mod tests;
