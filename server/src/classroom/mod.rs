//! Instructor-run classes: instructor logins ([`auth`]), classes with join codes, learners joining
//! with a display name, the live progress grid (pushed over SSE from the sessions' `checks`
//! messages), read-only shadowing, ending a class, and results as CSV.

pub mod auth;
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

use crate::app::AppState;
use crate::grading::TaskStatus;
use crate::registry::{RegistryError, Session};
use crate::store::classroom::{ClassRow, ClassStore, Login, MemberRow};
use crate::store::CurrentLearner;
use crate::terminal::protocol::ServerControl;
use auth::now;

/// Idle this long (no keystroke, no exec) and a learner is marked stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(10 * 60);
/// Characters of join codes: no 0/O, 1/I/L.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 6;
const MAX_NAME: usize = 60;
const MAX_SEATS: u32 = 500;

/// Classes of this server: the database and the live grid channels.
pub struct Classroom {
    pub store: ClassStore,
    channels: Mutex<HashMap<String, broadcast::Sender<GridEvent>>>,
    joining: Mutex<HashSet<(String, String)>>,
}

/// What the grid page is pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GridEvent {
    Pass { member: i64, task: String },
    Join { member: i64 },
    Ended,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Classroom {
    pub fn new(store: ClassStore) -> Self {
        Classroom { store, channels: Mutex::new(HashMap::new()), joining: Mutex::new(HashSet::new()) }
    }

    fn channel(&self, class: &str) -> broadcast::Sender<GridEvent> {
        lock(&self.channels).entry(class.to_owned()).or_insert_with(|| broadcast::channel(256).0).clone()
    }

    fn publish(&self, class: &str, event: GridEvent) {
        let _ = self.channel(class).send(event);
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
        (self.0, Json(serde_json::json!({"error": self.2, "code": self.1}))).into_response()
    }
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

fn class_state(class: &ClassRow, now: i64) -> &'static str {
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
    let free = state.config.max_sessions.saturating_sub(state.sessions.len());
    if body.seats as usize > free {
        return Err(ClassError(
            StatusCode::SERVICE_UNAVAILABLE,
            "out_of_capacity",
            format!(
                "this server cannot hold {} learners now: {free} of its {} session machines are free",
                body.seats, state.config.max_sessions
            ),
        ));
    }
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

#[derive(Debug, Serialize)]
pub struct LearnerRow {
    pub member: i64,
    pub name: String,
    /// The live session (for read-only viewing), if any.
    pub session: Option<String>,
    pub time_on_task_s: i64,
    pub idle_s: Option<u64>,
    pub stuck: bool,
    /// Keys of the passed tasks.
    pub passed: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Grid {
    pub class: ClassView,
    pub tasks: Vec<TaskColumn>,
    pub learners: Vec<LearnerRow>,
}

fn task_key(exercise: &str, task: &str) -> String {
    format!("{exercise}:{task}")
}

pub fn grid(state: &AppState, class: ClassRow) -> Result<Grid, ClassError> {
    let tasks = class
        .exercises
        .iter()
        .filter_map(|e| state.catalog.exercise(e))
        .flat_map(|e| e.tasks.iter().map(|t| TaskColumn { key: task_key(&e.id, &t.id), title: t.title.clone() }))
        .collect();
    let results = state.classroom.store.results(&class.id).map_err(internal)?;
    let ended = class_state(&class, now()) == "ended";
    let learners = state
        .classroom
        .store
        .members(&class.id)
        .map_err(internal)?
        .into_iter()
        .map(|m| {
            let live = m.session.as_deref().and_then(|s| state.sessions.get(s)).filter(|_| !ended);
            let idle = live.as_ref().map(|s| s.terminal.idle_for());
            let passed = results.iter().filter(|r| r.0 == m.id).map(|r| task_key(&r.1, &r.2)).collect();
            LearnerRow {
                member: m.id,
                name: m.display_name,
                session: live.map(|s| s.id.clone()),
                time_on_task_s: (now().min(class.ended_at.unwrap_or(i64::MAX)) - m.joined_at).max(0),
                idle_s: idle.map(|d| d.as_secs()),
                stuck: idle.is_some_and(|d| d >= STUCK_AFTER),
                passed,
            }
        })
        .collect();
    Ok(Grid { class: view(class), tasks, learners })
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
        if let Some(session) = state.sessions.remove(id) {
            state.grading.forget(id);
            crate::lifecycle::destroy_session(state, &session, "the instructor ended the class").await;
            destroyed += 1;
        }
    }
    state.classroom.publish(&class.id, GridEvent::Ended);
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

/// `learner,<exercise:task>…,passed,joined_at`: each task cell is when it first passed.
pub fn results_csv_text(state: &AppState, class: &ClassRow) -> Result<String, ClassError> {
    let grid = grid(state, class.clone())?;
    let results = state.classroom.store.results(&class.id).map_err(internal)?;
    let members = state.classroom.store.members(&class.id).map_err(internal)?;
    let mut out = String::from("learner");
    for t in &grid.tasks {
        out.push(',');
        out.push_str(&csv_field(&t.key));
    }
    out.push_str(",passed,joined_at\n");
    for m in &members {
        out.push_str(&csv_field(&m.display_name));
        let mut passed = 0;
        for t in &grid.tasks {
            out.push(',');
            if let Some(r) = results.iter().find(|r| r.0 == m.id && task_key(&r.1, &r.2) == t.key) {
                passed += 1;
                out.push_str(&rfc3339(r.3));
            }
        }
        out.push_str(&format!(",{passed},{}\n", rfc3339(m.joined_at)));
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
    pub lesson_path: String,
    pub id: String,
    pub token: String,
    pub terminal: String,
}

/// Joins (or returns to) a class: the learner's live session, or a new one for the first exercise.
pub async fn join(state: &AppState, learner: &str, code: &str, display_name: &str) -> Result<Joined, ClassError> {
    let code = code.trim().to_ascii_uppercase();
    let class = state
        .classroom
        .store
        .class_by_code(&code)
        .map_err(internal)?
        .ok_or_else(|| ClassError(StatusCode::NOT_FOUND, "unknown_code", format!("no class has the join code {code:?}")))?;
    match class_state(&class, now()) {
        "ended" => {
            return Err(ClassError(
                StatusCode::GONE,
                "class_ended",
                format!("the class \"{}\" has ended: its join code no longer works", class.name),
            ))
        }
        "not_started" => {
            return Err(ClassError(
                StatusCode::FORBIDDEN,
                "class_not_started",
                format!("the class \"{}\" starts at {}: join then", class.name, rfc3339(class.starts_at)),
            ))
        }
        _ => {}
    }
    let exercise = class.exercises.first().cloned().unwrap_or_default();
    let lesson_path = state.catalog.exercise(&exercise).map(|e| format!("/lessons/{}", e.lesson)).unwrap_or_else(|| "/".into());
    let joined = |session: &Session| Joined {
        class: class.id.clone(),
        exercise: session.exercise.clone(),
        lesson_path: lesson_path.clone(),
        id: session.id.clone(),
        token: session.token.clone(),
        terminal: format!("/api/sessions/{}/terminal", session.id),
    };
    let existing = state.classroom.store.member(&class.id, learner).map_err(internal)?;
    if let Some(live) = existing.as_ref().and_then(|m| m.session.as_deref()).and_then(|s| state.sessions.get(s)) {
        return Ok(joined(&live));
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
    let key = (class.id.clone(), learner.to_owned());
    if !lock(&state.classroom.joining).insert(key.clone()) {
        return Err(ClassError(StatusCode::CONFLICT, "already_joining", "your machine is being started: try again in a moment".into()));
    }
    let result = start_member(state, &class, learner, display_name, existing, &exercise).await;
    lock(&state.classroom.joining).remove(&key);
    result.map(|s| joined(&s))
}

async fn start_member(
    state: &AppState,
    class: &ClassRow,
    learner: &str,
    display_name: &str,
    existing: Option<MemberRow>,
    exercise: &str,
) -> Result<Arc<Session>, ClassError> {
    let member = match existing {
        Some(m) => m,
        None => state.classroom.store.join(&class.id, learner, display_name, now()).map_err(internal)?,
    };
    let session = state.sessions.insert_new(exercise).map_err(|RegistryError::Full { max }| {
        ClassError(StatusCode::SERVICE_UNAVAILABLE, "out_of_capacity", format!("all {max} session machines of this server are in use"))
    })?;
    state.grading.set_learner(&session.id, learner);
    state.classroom.store.set_member_session(member.id, Some((&session.id, &session.token))).map_err(internal)?;
    follow(state.clone(), class.id.clone(), member.id, session.clone());
    tokio::spawn(crate::sessions::start_machine(state.clone(), session.clone()))
        .await
        .map_err(internal)?
        .map_err(|e| ClassError(e.status(), e.code(), e.to_string()))?;
    state.classroom.publish(&class.id, GridEvent::Join { member: member.id });
    Ok(session)
}

/// Follows a class session's `checks` messages (the same ones its terminal viewers get) and
/// records and pushes every newly passed task, until the session is gone.
fn follow(state: AppState, class: String, member: i64, session: Arc<Session>) {
    tokio::spawn(async move {
        let (mut rx, latest) = session.terminal.subscribe_controls();
        if let Some(checks) = latest {
            note_checks(&state, &class, member, &session.exercise, &checks);
        }
        let mut alive = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Ok(control) => note_checks(&state, &class, member, &session.exercise, &control),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = alive.tick() => {
                    if !state.sessions.get(&session.id).is_some_and(|s| Arc::ptr_eq(&s, &session)) {
                        return;
                    }
                }
            }
        }
    });
}

pub(crate) fn note_checks(state: &AppState, class: &str, member: i64, exercise: &str, control: &ServerControl) {
    let ServerControl::Checks { tasks } = control else { return };
    for task in tasks.iter().filter(|t| t.status == TaskStatus::Passed) {
        match state.classroom.store.record_pass(member, exercise, &task.id, now()) {
            Ok(true) => state.classroom.publish(class, GridEvent::Pass { member, task: task_key(exercise, &task.id) }),
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "could not record a class result"),
        }
    }
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
