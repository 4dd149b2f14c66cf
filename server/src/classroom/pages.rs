//! The classroom's HTML pages: instructor login, dashboard, live grid, read-only watch, join.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::{auth, ClassError, CsrfOnly, NewClass};
use crate::app::AppState;
use crate::store::CurrentLearner;

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · docklab</title><link rel=\"stylesheet\" href=\"/static/docklab.css\"><link rel=\"stylesheet\" href=\"/static/classroom.css\"></head>\
         <body class=\"classroom\"><main>{body}</main></body></html>",
        esc(title)
    ))
}

fn error_page(err: ClassError) -> Response {
    (err.0, page("Refused", &format!("<h1>Sorry</h1><p class=\"refusal\">{}</p>", esc(&err.2)))).into_response()
}

fn to_login() -> Response {
    Redirect::to("/instructor/login").into_response()
}

pub async fn login_page() -> Html<String> {
    page(
        "Instructor login",
        "<h1>Instructor login</h1><form method=\"post\" action=\"/instructor/login\">\
         <label>Name <input name=\"name\" required autocomplete=\"username\"></label>\
         <label>Password <input name=\"password\" type=\"password\" required autocomplete=\"current-password\"></label>\
         <button>Log in</button></form>",
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
}

pub async fn login_form(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    if !auth::same_origin(&headers) {
        return error_page(super::csrf_refused());
    }
    let classroom = state.classroom.clone();
    let secure = auth::is_https(&headers);
    // argon2 is deliberately slow: off the async workers.
    let cookie = tokio::task::spawn_blocking(move || auth::log_in(&classroom, &form.name, &form.password, secure)).await.ok().flatten();
    match cookie {
        Some(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to("/instructor")).into_response(),
        None => (StatusCode::UNAUTHORIZED, page("Instructor login", "<h1>Instructor login</h1><p class=\"refusal\">Wrong name or password.</p><p><a href=\"/instructor/login\">Try again</a></p>")).into_response(),
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
    let classes = state.classroom.store.classes_of(login.instructor).unwrap_or_default();
    let mut rows = String::new();
    for c in classes {
        let v = super::view(c);
        rows.push_str(&format!(
            "<li><a href=\"/classes/{}\">{}</a> · code <code>{}</code> · {} seats · {}</li>",
            esc(&v.class.id), esc(&v.class.name), esc(&v.class.code), v.class.seats, v.state
        ));
    }
    let options: String = state
        .catalog
        .lessons()
        .iter()
        .flat_map(|l| l.exercises.iter())
        .map(|e| format!("<option value=\"{0}\">{0} · {1}</option>", esc(&e.id), esc(&e.title)))
        .collect();
    let capacity = super::capacity::HostCapacity::now(state.config.max_sessions, state.sessions.len());
    let capacity = esc(&capacity.sentence());
    let csrf = esc(&login.csrf);
    page(
        "Instructor",
        &format!(
            "<h1>Classes of {name}</h1><form method=\"post\" action=\"/instructor/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button>Log out</button></form>\
             <ul class=\"classes\">{rows}</ul><h2>New class</h2><p class=\"capacity\">Capacity: {capacity}.</p>\
             <form method=\"post\" action=\"/instructor/classes\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>Name <input name=\"name\" required maxlength=\"60\"></label>\
             <label>Exercises, in order <select name=\"exercises\" multiple required size=\"10\">{options}</select></label>\
             <label>Seats <input name=\"seats\" type=\"number\" min=\"1\" max=\"500\" value=\"10\" required></label>\
             <label>Length (minutes) <input name=\"duration_minutes\" type=\"number\" min=\"1\" value=\"120\"></label>\
             <fieldset><legend>Per learner</legend>\
             <label>Machine length (minutes; empty: until the class ends) <input name=\"session_minutes\" type=\"number\" min=\"5\"></label>\
             <label>Machine memory (MiB; empty: the server's default) <input name=\"memory_mib\" type=\"number\" min=\"256\" max=\"16384\" step=\"128\"></label>\
             </fieldset>\
             <button>Create class</button></form>",
            name = esc(&login.name)
        ),
    )
    .into_response()
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
    let join_url = super::actions::join_url(&headers, &class.code);
    let limits = format!(
        "Each learner gets a machine {} with {}.",
        class.session_minutes.map_or("until the class ends".to_owned(), |m| format!("for {m} minutes")),
        class.memory_mib.map_or("the server's default memory".to_owned(), |m| format!("{m} MiB of memory"))
    );
    page(
        &class.name,
        &format!(
            "<header class=\"class-head\"><div><h1>{name}</h1>\
             <p class=\"join\">Join at <a href=\"{url}\"><strong>{url}</strong></a> · code <strong class=\"code\">{code}</strong>\
             · <button type=\"button\" id=\"show-qr\">QR code for the room</button></p>\
             <p class=\"limits\">{limits} <span id=\"class-ends\"></span></p>\
             <p><a href=\"/api/classes/{id}/results.csv\">Results (CSV)</a> · <a href=\"/instructor\">All classes</a></p></div>\
             <div class=\"class-actions\" id=\"class-actions\">\
             <form id=\"broadcast\"><label>Message to every learner <input name=\"text\" maxlength=\"500\" required></label><button>Send</button></form>\
             <form id=\"extend\"><label>Extend by <input name=\"minutes\" type=\"number\" min=\"1\" max=\"480\" value=\"15\" required> minutes</label><button>Extend</button></form>\
             <form method=\"post\" action=\"/classes/{id}/end\" onsubmit=\"return confirm('End the class and remove every machine?')\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button class=\"danger\">End class</button></form></div></header>\
             <dialog id=\"qr\"><img src=\"/classes/{id}/qr.svg\" alt=\"QR code of {url}\" width=\"480\" height=\"480\">\
             <p class=\"code\">{url}</p><form method=\"dialog\"><button>Close</button></form></dialog>\
             <div class=\"grid-tools\"><label>Find <input type=\"search\" id=\"filter-name\" placeholder=\"name\"></label>\
             <label><input type=\"checkbox\" id=\"filter-stuck\"> stuck only</label>\
             <label><input type=\"checkbox\" id=\"filter-unfinished\"> not finished</label>\
             <label>Sort by <select id=\"sort\"><option value=\"joined\">joining order</option><option value=\"name\">name</option>\
             <option value=\"progress\">progress</option><option value=\"time\">time on task</option><option value=\"stuck\">stuck first</option></select></label>\
             <span id=\"grid-count\"></span></div>\
             <ul id=\"messages\" class=\"messages\"></ul>\
             <div id=\"grid\" data-class=\"{id}\" data-csrf=\"{csrf}\"></div><script src=\"/static/classroom.js\"></script>",
            name = esc(&class.name),
            url = esc(&join_url),
            code = esc(&class.code),
            id = esc(&class.id),
            csrf = esc(&login.csrf),
            limits = esc(&limits),
        ),
    )
    .into_response()
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
    let taken_over = state.classroom.is_taken_over(&session);
    page(
        &m.display_name,
        &format!(
            "<h1>{name} <small id=\"watch-mode\">(read-only)</small></h1><link rel=\"stylesheet\" href=\"/static/vendor/xterm.css\">\
             <p><button type=\"button\" id=\"takeover\">Take over (type in {name}'s terminal)</button>\
             <button type=\"button\" id=\"handback\" hidden>Hand back</button>\
             <button type=\"button\" id=\"reset-learner\">Reset {name}'s machine</button> <a href=\"/classes/{class}\">Back to the grid</a></p>\
             <p id=\"watch-message\" class=\"refusal\" hidden></p>\
             <div id=\"watch\" data-session=\"{session}\" data-class=\"{class}\" data-member=\"{member}\" data-csrf=\"{csrf}\" data-taken-over=\"{taken_over}\"></div>\
             <script src=\"/static/vendor/xterm.js\"></script>\
             <script src=\"/static/vendor/addon-fit.js\"></script><script src=\"/static/classroom.js\"></script>",
            name = esc(&m.display_name),
            session = esc(&session),
            class = esc(&id),
            csrf = esc(&login.csrf),
        ),
    )
    .into_response()
}

pub async fn join_page(Path(code): Path<String>) -> Html<String> {
    page(
        "Join a class",
        &format!(
            "<h1>Join class {code}</h1><form method=\"post\" action=\"/join/{code}\">\
             <label>Your name <input name=\"display_name\" required maxlength=\"60\"></label><button>Join</button></form>",
            code = esc(&code)
        ),
    )
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
            page("Joining", &format!("<p>Your machine is ready…</p><script>{script}</script>")).into_response()
        }
        Err(err) => error_page(err),
    }
}
