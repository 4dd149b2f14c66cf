//! The classroom's HTML pages (askama templates `web/templates/classroom_*.html`): instructor
//! login, dashboard, live grid, a learner's terminal for the instructor, and joining a class.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::{auth, ClassError, ClassView, CsrfOnly, NewClass};
use crate::app::AppState;
use crate::store::CurrentLearner;

use crate::pages::render;

/// A page with a title and a sentence: refusals, "wrong password", "joining".
#[derive(Template, Default)]
#[template(path = "classroom_page.html")]
struct MessagePage<'a> {
    title: &'a str,
    refusal: Option<&'a str>,
    message: Option<&'a str>,
    link_href: Option<&'a str>,
    link_text: &'a str,
    /// Already safe for a `<script>` element.
    script: Option<String>,
}

#[derive(Template)]
#[template(path = "classroom_login.html")]
struct LoginPage {
    wrong: bool,
}

#[derive(Template)]
#[template(path = "classroom_dashboard.html")]
struct DashboardPage<'a> {
    name: &'a str,
    csrf: &'a str,
    classes: Vec<ClassView>,
    exercises: Vec<(&'a str, &'a str)>,
    capacity: String,
}

#[derive(Template)]
#[template(path = "classroom_grid.html")]
struct GridPage<'a> {
    name: &'a str,
    id: &'a str,
    code: &'a str,
    join_url: String,
    limits: String,
    csrf: &'a str,
}

#[derive(Template)]
#[template(path = "classroom_watch.html")]
struct WatchPage<'a> {
    name: &'a str,
    session: &'a str,
    class: &'a str,
    member: i64,
    csrf: &'a str,
    taken_over: bool,
}

#[derive(Template)]
#[template(path = "classroom_join.html")]
struct JoinPage<'a> {
    code: &'a str,
}

fn error_page(err: ClassError) -> Response {
    render(&MessagePage { title: "Sorry", refusal: Some(&err.2), ..MessagePage::default() }, err.0)
}

fn to_login() -> Response {
    Redirect::to("/instructor/login").into_response()
}

pub async fn login_page() -> Response {
    render(&LoginPage { wrong: false }, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
}

pub async fn login_form(
    State(state): State<AppState>,
    client: crate::ratelimit::ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !auth::same_origin(&headers) {
        return error_page(super::csrf_refused());
    }
    let secure = auth::is_https(&headers);
    match auth::attempt(state.classroom.clone(), client.0, form.name, form.password, secure).await {
        Ok(Some(cookie)) => ([(header::SET_COOKIE, cookie)], Redirect::to("/instructor")).into_response(),
        Ok(None) => render(&LoginPage { wrong: true }, StatusCode::UNAUTHORIZED),
        Err(err) => {
            let retry = err.retry_after_s();
            let mut page = error_page(err);
            if let Some(s) = retry {
                page.headers_mut().insert(header::RETRY_AFTER, s.into());
            }
            page
        }
    }
}

pub async fn logout_form(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfOnly>) -> Response {
    if let Err(err) = super::instructor_posting(&state, &headers, form.csrf.as_deref()) {
        return error_page(err);
    }
    let cookie = auth::log_out(&state.classroom, &headers);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/instructor/login")).into_response()
}

pub async fn dashboard(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(login) = auth::current(&state.classroom, &headers) else { return to_login() };
    let classes = state.classroom.store.classes_of(login.instructor).unwrap_or_default().into_iter().map(super::view).collect();
    let exercises = state.catalog.lessons().iter().flat_map(|l| l.exercises.iter()).map(|e| (e.id.as_str(), e.title.as_str())).collect();
    let capacity = super::capacity::HostCapacity::now(state.config.max_sessions, state.sessions.len()).sentence();
    render(&DashboardPage { name: &login.name, csrf: &login.csrf, classes, exercises, capacity }, StatusCode::OK)
}

pub async fn create_form(State(state): State<AppState>, headers: HeaderMap, Form(pairs): Form<Vec<(String, String)>>) -> Response {
    // `exercises` repeats, which a struct cannot collect: read the pairs.
    let field = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let login = match super::instructor_posting(&state, &headers, field("csrf").as_deref()) {
        Ok(login) => login,
        Err(err) => return error_page(err),
    };
    let new = NewClass {
        name: field("name").unwrap_or_default(),
        exercises: pairs.iter().filter(|(n, _)| n == "exercises").map(|(_, v)| v.clone()).collect(),
        seats: field("seats").and_then(|s| s.parse().ok()).unwrap_or(0),
        starts_at: None,
        ends_at: None,
        duration_minutes: field("duration_minutes").and_then(|s| s.parse().ok()),
        session_minutes: field("session_minutes").and_then(|s| s.parse().ok()),
        memory_mib: field("memory_mib").and_then(|s| s.parse().ok()),
    };
    match super::create_class(&state, &login, new) {
        Ok(class) => Redirect::to(&format!("/classes/{}", class.id)).into_response(),
        Err(err) => error_page(err),
    }
}

pub async fn grid_page(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(login) = auth::current(&state.classroom, &headers) else { return to_login() };
    let class = match super::own_class(&state, &login, &id) {
        Ok(c) => c,
        Err(err) => return error_page(err),
    };
    let limits = format!(
        "Each learner gets a machine {} with {}.",
        class.session_minutes.map_or("until the class ends".to_owned(), |m| format!("for {m} minutes")),
        class.memory_mib.map_or("the server's default memory".to_owned(), |m| format!("{m} MiB of memory"))
    );
    let page = GridPage {
        name: &class.name,
        id: &class.id,
        code: &class.code,
        join_url: super::actions::join_url(&headers, &class.code),
        limits,
        csrf: &login.csrf,
    };
    render(&page, StatusCode::OK)
}

pub async fn end_form(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>, Form(form): Form<CsrfOnly>) -> Response {
    let result = async {
        let login = super::instructor_posting(&state, &headers, form.csrf.as_deref())?;
        let class = super::own_class(&state, &login, &id)?;
        super::end_class(&state, &class).await
    }
    .await;
    match result {
        Ok(_) => Redirect::to(&format!("/classes/{id}")).into_response(),
        Err(err) => error_page(err),
    }
}

pub async fn watch_page(State(state): State<AppState>, headers: HeaderMap, Path((id, member)): Path<(String, i64)>) -> Response {
    let Some(login) = auth::current(&state.classroom, &headers) else { return to_login() };
    if let Err(err) = super::own_class(&state, &login, &id) {
        return error_page(err);
    }
    let members = state.classroom.store.members(&id).unwrap_or_default();
    let Some(m) = members.into_iter().find(|m| m.id == member) else { return error_page(super::no_class()) };
    let Some(session) = m.session else { return error_page(super::no_class()) };
    let page = WatchPage {
        name: &m.display_name,
        taken_over: state.sessions.get(&session).is_some_and(|s| s.is_taken_over()),
        session: &session,
        class: &id,
        member,
        csrf: &login.csrf,
    };
    render(&page, StatusCode::OK)
}

pub async fn join_page(Path(code): Path<String>) -> Response {
    render(&JoinPage { code: &code }, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct JoinForm {
    display_name: String,
}

pub async fn join_form(
    State(state): State<AppState>,
    Extension(learner): Extension<CurrentLearner>,
    headers: HeaderMap,
    Path(code): Path<String>,
    Form(form): Form<JoinForm>,
) -> Response {
    if !auth::same_origin(&headers) {
        return error_page(super::csrf_refused());
    }
    match super::join(&state, &learner.id, &code, &form.display_name).await {
        // The lesson page's lab picks the session up from sessionStorage, as after a reload.
        Ok(joined) => {
            let key = serde_json::to_string(&format!("docklab.session.{}", joined.exercise)).unwrap_or_default();
            let value = serde_json::json!({"id": joined.id, "token": joined.token, "terminal": joined.terminal}).to_string();
            let value = serde_json::to_string(&value).unwrap_or_default();
            let target = serde_json::to_string(&joined.lesson_path).unwrap_or_default();
            let class = serde_json::to_string(&joined.class).unwrap_or_default();
            let script = format!("sessionStorage.setItem({key}, {value}); sessionStorage.setItem(\"docklab.class\", {class}); location.replace({target});")
                .replace("</", "<\\/");
            let page = MessagePage { title: "Joining", message: Some("Your machine is ready…"), script: Some(script), ..MessagePage::default() };
            render(&page, StatusCode::OK)
        }
        Err(err) => error_page(err),
    }
}
