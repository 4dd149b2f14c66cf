//! Classroom routes in-process over the fake backend: logins, CSRF, who sees what, join codes,
//! capacity, the grid and results.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use crate::app::app;
use crate::config::ServerConfig;
use crate::grading::{TaskReport, TaskStatus};
use crate::terminal::protocol::ServerControl;
use crate::testing::{fake_state, ready_session, some_exercise};

struct Reply {
    status: StatusCode,
    cookie: Option<String>,
    body: Value,
}

async fn call(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let cookie = response.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_owned());
    let sse = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if sse {
        // An endless stream: the status is what counts here.
        return Reply { status, cookie, body: Value::Null };
    }
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply { status, cookie, body }
}

fn req(method: &str, uri: &str, cookie: Option<&str>, csrf: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    if let Some(t) = csrf {
        r = r.header(auth::CSRF_HEADER, t);
    }
    r.body(Body::from(body.to_owned())).unwrap()
}

/// Adds an instructor and logs in through the form: (cookie, csrf).
async fn login(state: &AppState, router: &Router, name: &str) -> (String, String) {
    state.classroom.store.set_instructor(name, &auth::hash_password("correct horse").unwrap(), now()).unwrap();
    let form = Request::builder()
        .method("POST")
        .uri("/instructor/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("name={name}&password=correct+horse")))
        .unwrap();
    let reply = call(router, form).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{:?}", reply.body);
    let set = reply.cookie.unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let me = call(router, req("GET", "/api/instructor/me", Some(&cookie), None, "")).await;
    assert_eq!(me.body["name"], name);
    (cookie, me.body["csrf"].as_str().unwrap().to_owned())
}

fn class_body(state: &AppState, seats: u32) -> String {
    json!({"name": "Monday lab", "exercises": [some_exercise(state)], "seats": seats}).to_string()
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_logins_are_stored_hashed() {
    let (state, _) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let (cookie, _) = login(&state, &router, "ada").await;
    let id = cookie.split_once('=').unwrap().1;
    assert!(state.classroom.store.login(id, now()).unwrap().is_none(), "the raw cookie is not a stored key");
    let bad = Request::builder()
        .method("POST")
        .uri("/instructor/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("name=ada&password=wrong"))
        .unwrap();
    let reply = call(&router, bad).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(!reply.cookie.unwrap_or_default().contains(auth::COOKIE), "no login cookie for a wrong password");
    let hash = state.classroom.store.instructor("ada").unwrap().unwrap().1;
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}

#[tokio::test]
async fn guessing_gets_429_with_retry_after_and_the_csrf_token_is_stored_nowhere() {
    let (state, _) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let (cookie, csrf) = login(&state, &router, "ada").await;
    assert_eq!(csrf.len(), 64);
    let id = cookie.split_once('=').unwrap().1;
    let stored = state.classroom.store.login(&crate::store::token_hash(id), now()).unwrap().unwrap();
    assert_eq!(stored.csrf, "", "the database keeps no CSRF token");
    let attempt = |password: &str| {
        Request::builder()
            .method("POST")
            .uri("/instructor/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("name=ada&password={password}")))
            .unwrap()
    };
    for _ in 0..10 {
        assert_eq!(call(&router, attempt("wrong")).await.status, StatusCode::UNAUTHORIZED);
    }
    let response = router.clone().oneshot(attempt("correct+horse")).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "the eleventh attempt, even a right one");
    let retry: u64 = response.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=90).contains(&retry), "Retry-After {retry}");
}

#[tokio::test]
async fn creating_a_class_needs_a_login_and_the_csrf_token() {
    let (state, _) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let (cookie, csrf) = login(&state, &router, "ada").await;
    let body = class_body(&state, 3);
    assert_eq!(call(&router, req("POST", "/api/classes", None, Some(&csrf), &body)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&router, req("POST", "/api/classes", Some(&cookie), None, &body)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(call(&router, req("POST", "/api/classes", Some(&cookie), Some("0000"), &body)).await.status, StatusCode::FORBIDDEN);
    // The forms check it too.
    let end = Request::builder()
        .method("POST")
        .uri("/instructor/logout")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(""))
        .unwrap();
    assert_eq!(call(&router, end).await.status, StatusCode::FORBIDDEN);
    let created = call(&router, req("POST", "/api/classes", Some(&cookie), Some(&csrf), &body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let code = created.body["code"].as_str().unwrap();
    assert_eq!(code.len(), 6);
    assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)));
    assert_eq!(created.body["join_path"], format!("/join/{code}"));
    assert_eq!(created.body["state"], "open");
}

#[tokio::test]
async fn a_class_larger_than_the_free_capacity_is_refused() {
    let (state, backend) = fake_state(ServerConfig { max_sessions: 4, ..ServerConfig::default() });
    let router = app(state.clone());
    let (cookie, csrf) = login(&state, &router, "ada").await;
    ready_session(&state, &backend).await;
    let reply = call(&router, req("POST", "/api/classes", Some(&cookie), Some(&csrf), &class_body(&state, 4))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["code"], "out_of_capacity");
    assert!(reply.body["error"].as_str().unwrap().contains("3 of its 4"), "{}", reply.body);
    let reply = call(&router, req("POST", "/api/classes", Some(&cookie), Some(&csrf), &class_body(&state, 3))).await;
    assert_eq!(reply.status, StatusCode::CREATED);
}

#[tokio::test]
async fn instructors_see_only_their_own_classes_and_learners_see_none() {
    let (state, backend) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let (ada, ada_csrf) = login(&state, &router, "ada").await;
    let (bob, bob_csrf) = login(&state, &router, "bob").await;
    let created = call(&router, req("POST", "/api/classes", Some(&ada), Some(&ada_csrf), &class_body(&state, 3))).await;
    let id = created.body["id"].as_str().unwrap().to_owned();

    // A learner in the class, with a live session.
    let (session, token) = ready_session(&state, &backend).await;
    let member = state.classroom.store.join(&id, "learner-a", "Ann", now()).unwrap();
    state.classroom.store.set_member_session(member.id, Some((&session, &token))).unwrap();
    let (other_session, _) = ready_session(&state, &backend).await;

    for path in [format!("/api/classes/{id}"), format!("/api/classes/{id}/events"), format!("/api/classes/{id}/results.csv")] {
        assert_eq!(call(&router, req("GET", &path, Some(&bob), None, "")).await.status, StatusCode::NOT_FOUND, "{path}");
        let learner = call(&router, req("GET", &path, Some("docklab_learner=0123456789abcdef0123456789abcdef"), None, "")).await;
        assert_eq!(learner.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(call(&router, req("GET", &path, Some(&ada), None, "")).await.status, StatusCode::OK, "{path}");
    }
    let end = format!("/api/classes/{id}/end");
    assert_eq!(call(&router, req("POST", &end, Some(&bob), Some(&bob_csrf), "")).await.status, StatusCode::NOT_FOUND);
    assert!(call(&router, req("GET", "/api/classes", Some(&bob), None, "")).await.body.as_array().unwrap().is_empty());
    assert_eq!(call(&router, req("GET", "/api/classes", Some(&ada), None, "")).await.body.as_array().unwrap().len(), 1);
    assert_eq!(call(&router, req("GET", &format!("/classes/{id}"), Some(&bob), None, "")).await.status, StatusCode::NOT_FOUND);

    // Read-only terminals: the class's instructor passes authorisation (then needs a WebSocket);
    // another instructor, a learner's cookie, or no token at all does not; nor does anyone for a
    // session outside the instructor's classes, nor for an interactive terminal.
    let view = |s: &str| format!("/api/sessions/{s}/terminal?mode=view");
    assert_eq!(call(&router, req("GET", &view(&session), Some(&ada), None, "")).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(call(&router, req("GET", &view(&session), Some(&bob), None, "")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&router, req("GET", &view(&session), None, None, "")).await.status, StatusCode::UNAUTHORIZED);
    let learner = "docklab_learner=0123456789abcdef0123456789abcdef";
    assert_eq!(call(&router, req("GET", &view(&session), Some(learner), None, "")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&router, req("GET", &view(&other_session), Some(&ada), None, "")).await.status, StatusCode::UNAUTHORIZED);
    let interactive = format!("/api/sessions/{session}/terminal");
    assert_eq!(call(&router, req("GET", &interactive, Some(&ada), None, "")).await.status, StatusCode::UNAUTHORIZED);
    // The grid never carries learners' tokens or cookie ids.
    let grid = call(&router, req("GET", &format!("/api/classes/{id}"), Some(&ada), None, "")).await.body.to_string();
    assert!(!grid.contains(&token) && !grid.contains("learner-a"), "{grid}");
}

#[tokio::test]
async fn expired_ended_and_unknown_join_codes_are_refused_clearly() {
    let (state, _) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let instructor = state.classroom.store.set_instructor("ada", "x", now()).unwrap();
    let mut class = ClassRow {
        id: "c-expired".into(),
        instructor,
        name: "Last week".into(),
        exercises: vec![some_exercise(&state)],
        seats: 3,
        code: "EXP234".into(),
        starts_at: now() - 7200,
        ends_at: now() - 60,
        ended_at: None,
        session_minutes: None,
        memory_mib: None,
    };
    state.classroom.store.add_class(&class, now()).unwrap();
    let join = |code: &str| req("POST", &format!("/api/join/{code}"), None, None, r#"{"display_name":"Ann"}"#);
    let reply = call(&router, join("EXP234")).await;
    assert_eq!(reply.status, StatusCode::GONE);
    assert!(reply.body["error"].as_str().unwrap().contains("has ended"), "{}", reply.body);
    // Lower case works the same way; the page says it too.
    assert_eq!(call(&router, join("exp234")).await.status, StatusCode::GONE);

    class.id = "c-later".into();
    class.code = "LAT234".into();
    class.starts_at = now() + 3600;
    class.ends_at = now() + 7200;
    state.classroom.store.add_class(&class, now()).unwrap();
    let reply = call(&router, join("LAT234")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["code"], "class_not_started");

    class.id = "c-ended".into();
    class.code = "END234".into();
    class.starts_at = now() - 60;
    state.classroom.store.add_class(&class, now()).unwrap();
    end_class(&state, &class).await.unwrap();
    assert_eq!(call(&router, join("END234")).await.body["code"], "class_ended");
    assert_eq!(call(&router, join("NOPE22")).await.status, StatusCode::NOT_FOUND);
    assert!(state.sessions.is_empty());
}

#[tokio::test]
async fn joining_returns_to_the_same_session_and_passes_reach_grid_events_and_csv() {
    let (state, _backend) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let (ada, csrf) = login(&state, &router, "ada").await;
    let created = call(&router, req("POST", "/api/classes", Some(&ada), Some(&csrf), &class_body(&state, 2))).await;
    let (id, code) = (created.body["id"].as_str().unwrap().to_owned(), created.body["code"].as_str().unwrap().to_owned());
    let mut events = state.classroom.channel(&id).subscribe();

    let ann = "docklab_learner=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let join = |cookie: &str, name: &str| {
        req("POST", &format!("/api/join/{code}"), Some(cookie), None, &json!({"display_name": name}).to_string())
    };
    let first = call(&router, join(ann, "Ann")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let again = call(&router, join(ann, "ignored")).await;
    assert_eq!(again.body["id"], first.body["id"], "the same cookie comes back to the same session");
    assert_eq!(state.sessions.len(), 1);
    let bo = call(&router, join("docklab_learner=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "<b>Bo</b>")).await;
    assert_eq!(bo.status, StatusCode::OK);
    let full = call(&router, join("docklab_learner=cccccccccccccccccccccccccccccccc", "Cy")).await;
    assert_eq!(full.status, StatusCode::CONFLICT);
    assert_eq!(full.body["code"], "class_full");

    // Grading publishes `checks` on the session's terminal hub: the class follows them.
    let session = state.sessions.get(first.body["id"].as_str().unwrap()).unwrap();
    let exercise = state.catalog.exercise(&session.exercise).unwrap().clone();
    let task = |i: usize, status| TaskReport { id: exercise.tasks[i].id.clone(), title: String::new(), status, detail: String::new() };
    session.terminal.publish_control(ServerControl::Checks {
        tasks: vec![task(0, TaskStatus::Passed), task(1, TaskStatus::Failed)],
    });
    let key = format!("{}:{}", exercise.id, exercise.tasks[0].id);
    let pass = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let GridEvent::Pass { member, task } = events.recv().await.unwrap() {
                return (member, task);
            }
        }
    })
    .await
    .expect("the pass was pushed");
    assert_eq!(pass.1, key);

    let grid = call(&router, req("GET", &format!("/api/classes/{id}"), Some(&ada), None, "")).await.body;
    let learners = grid["learners"].as_array().unwrap();
    assert_eq!(learners.len(), 2);
    assert_eq!(learners[0]["name"], "Ann");
    assert_eq!(learners[0]["passed"], json!([key]));
    assert_eq!(learners[1]["passed"], json!([]));
    assert_eq!(learners[0]["session"], first.body["id"]);

    // Ending the class removes every machine; results stay.
    let ended = call(&router, req("POST", &format!("/api/classes/{id}/end"), Some(&ada), Some(&csrf), "")).await;
    assert_eq!(ended.body["machines_destroyed"], 2, "{}", ended.body);
    assert!(state.sessions.is_empty());
    assert_eq!(call(&router, join(ann, "Ann")).await.status, StatusCode::GONE);
    let csv = call(&router, req("GET", &format!("/api/classes/{id}/results.csv"), Some(&ada), None, "")).await.body;
    let csv = csv.as_str().unwrap().to_owned();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("learner,") && lines[0].contains(&key), "{csv}");
    assert!(lines[1].starts_with("Ann,") && lines[1].contains(",1,"), "{csv}");
    assert!(lines[2].starts_with("<b>Bo</b>,") && lines[2].contains(",0,"), "{csv}");
}

#[test]
fn csv_fields_are_quoted_and_formulas_neutralised() {
    assert_eq!(csv_field("Ann"), "Ann");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("=cmd()"), "'=cmd()");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
}

fn form(uri: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::builder().method("POST").uri(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn the_pages_create_a_class_show_its_code_and_let_a_learner_join() {
    let (state, _) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    assert_eq!(call(&router, req("GET", "/instructor", None, None, "")).await.status, StatusCode::SEE_OTHER);
    let (cookie, csrf) = login(&state, &router, "ada").await;
    let page = call(&router, req("GET", "/instructor", Some(&cookie), None, "")).await;
    assert!(page.body.as_str().unwrap().contains(&format!("name=\"csrf\" value=\"{csrf}\"")));
    let exercise = some_exercise(&state);
    let body = format!("csrf={csrf}&name=Tue&exercises={}&seats=2&duration_minutes=60", exercise.replace('/', "%2F"));
    assert_eq!(call(&router, form("/instructor/classes", Some(&cookie), "name=Tue&seats=2")).await.status, StatusCode::FORBIDDEN);
    let created = call(&router, form("/instructor/classes", Some(&cookie), &body)).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let class = state.classroom.store.classes_of(1).unwrap().remove(0);
    assert_eq!(class.exercises, vec![exercise]);
    let grid = call(&router, req("GET", &format!("/classes/{}", class.id), Some(&cookie), None, "")).await;
    assert!(grid.body.as_str().unwrap().contains(&class.code));
    let joined = call(&router, form(&format!("/join/{}", class.code), None, "display_name=Ann")).await;
    assert_eq!(joined.status, StatusCode::OK);
    assert!(joined.body.as_str().unwrap().contains("sessionStorage.setItem"), "{}", joined.body);
    assert_eq!(state.sessions.len(), 1);
}

// ---- limits, actions, stuck markers, exercises in order, scale ---------------------------------

/// A class created over the API by a fresh instructor `name`: (cookie, csrf, class id, code).
async fn new_class(state: &AppState, router: &Router, name: &str, body: Value) -> (String, String, String, String) {
    let (cookie, csrf) = login(state, router, name).await;
    let created = call(router, req("POST", "/api/classes", Some(&cookie), Some(&csrf), &body.to_string())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let (id, code) = (created.body["id"].as_str().unwrap().to_owned(), created.body["code"].as_str().unwrap().to_owned());
    (cookie, csrf, id, code)
}

fn learner_cookie(c: char) -> String {
    format!("docklab_learner={}", c.to_string().repeat(32))
}

async fn join_as(router: &Router, code: &str, cookie: &str, name: &str) -> Value {
    let reply = call(router, req("POST", &format!("/api/join/{code}"), Some(cookie), None, &json!({"display_name": name}).to_string())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

fn all_passed(state: &AppState, exercise: &str) -> ServerControl {
    let e = state.catalog.exercise(exercise).unwrap();
    ServerControl::Checks {
        tasks: e.tasks.iter().map(|t| TaskReport { id: t.id.clone(), title: t.title.clone(), status: TaskStatus::Passed, detail: String::new() }).collect(),
    }
}

/// Two exercises that exist, in catalog order.
fn two_exercises(state: &AppState) -> Vec<String> {
    state.catalog.lessons().iter().flat_map(|l| &l.exercises).take(2).map(|e| e.id.clone()).collect()
}

async fn next_event<T: Clone + std::fmt::Debug>(rx: &mut broadcast::Receiver<T>, what: impl Fn(&T) -> bool) -> T {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let e = rx.recv().await.unwrap();
            if what(&e) {
                return e;
            }
        }
    })
    .await
    .expect("the event came")
}

#[tokio::test]
async fn per_learner_limits_reach_each_machine_and_its_length() {
    let (state, backend) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let exercise = some_exercise(&state);
    let (cookie, csrf) = login(&state, &router, "ada").await;
    for (field, value) in [("memory_mib", 100), ("memory_mib", 20000), ("session_minutes", 2)] {
        let body = json!({"name": "x", "exercises": [exercise], "seats": 2, field: value}).to_string();
        let reply = call(&router, req("POST", "/api/classes", Some(&cookie), Some(&csrf), &body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{field}={value}");
        assert!(reply.body["error"].as_str().unwrap().contains(field), "{}", reply.body);
    }
    let body = json!({"name": "Limits", "exercises": [exercise], "seats": 2, "duration_minutes": 90, "session_minutes": 30, "memory_mib": 512});
    let (_, _, id, code) = new_class(&state, &router, "bob", body).await;
    let class = state.classroom.store.class(&id).unwrap().unwrap();
    assert_eq!((class.session_minutes, class.memory_mib), (Some(30), Some(512)));
    let joined = join_as(&router, &code, &learner_cookie('a'), "Ann").await;
    let session = state.sessions.get(joined["id"].as_str().unwrap()).unwrap();
    let created = backend.created_with.lock().unwrap().clone();
    assert_eq!(created, vec![(session.id.clone(), sandbox::MachineOptions { memory_bytes: Some(512 << 20) })]);
    let left = session.expires_at().unix_timestamp() - now();
    assert!((29 * 60..=30 * 60).contains(&left), "the machine lives 30 minutes, not {left} s");

    // Without a per-learner length, a machine lasts until the class ends, never longer.
    let body = json!({"name": "Short", "exercises": [exercise], "seats": 2, "duration_minutes": 20, "session_minutes": 60});
    let (_, _, _, code) = new_class(&state, &router, "cy", body).await;
    let joined = join_as(&router, &code, &learner_cookie('b'), "Bo").await;
    let session = state.sessions.get(joined["id"].as_str().unwrap()).unwrap();
    let left = session.expires_at().unix_timestamp() - now();
    assert!((19 * 60..=20 * 60).contains(&left), "clamped to the class's end, not {left} s");
    assert_eq!(backend.created_with.lock().unwrap().last().unwrap().1, sandbox::MachineOptions::default());
}

#[tokio::test]
async fn the_capacity_refusal_says_how_many_machines_the_host_can_hold() {
    let (state, _) = fake_state(ServerConfig { max_sessions: 5, ..ServerConfig::default() });
    let router = app(state.clone());
    let (cookie, csrf) = login(&state, &router, "ada").await;
    let reply = call(&router, req("GET", "/api/classes/capacity", Some(&cookie), None, "")).await;
    assert_eq!(reply.body["capacity"]["slots_free"], 5, "{}", reply.body);
    let sentence = reply.body["sentence"].as_str().unwrap();
    assert!(sentence.contains("this host can start") && sentence.contains("5 of its 5 session slots"), "{sentence}");
    let reply = call(&router, req("POST", "/api/classes", Some(&cookie), Some(&csrf), &class_body(&state, 6))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let error = reply.body["error"].as_str().unwrap();
    assert!(error.contains("a class of 6 does not fit") && error.contains("can start 5 more"), "{error}");
    assert_eq!(call(&router, req("GET", "/api/classes/capacity", None, None, "")).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_instructor_action_needs_csrf_and_a_class_of_their_own() {
    let (state, _) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let (ada, ada_csrf, id, code) = new_class(&state, &router, "ada", json!({"name": "A", "exercises": [some_exercise(&state)], "seats": 3})).await;
    let (bob, bob_csrf) = login(&state, &router, "bob").await;
    join_as(&router, &code, &learner_cookie('a'), "Ann").await;
    let member = state.classroom.store.members(&id).unwrap()[0].id;
    let learner = learner_cookie('a');
    let actions = [
        (format!("/api/classes/{id}/extend"), r#"{"minutes":5}"#),
        (format!("/api/classes/{id}/broadcast"), r#"{"text":"hello"}"#),
        (format!("/api/classes/{id}/learners/{member}/takeover"), ""),
        (format!("/api/classes/{id}/learners/{member}/handback"), ""),
        (format!("/api/classes/{id}/learners/{member}/reset"), ""),
    ];
    for (path, body) in &actions {
        assert_eq!(call(&router, req("POST", path, Some(&ada), None, body)).await.status, StatusCode::FORBIDDEN, "no CSRF: {path}");
        assert_eq!(call(&router, req("POST", path, Some(&ada), Some(&bob_csrf), body)).await.status, StatusCode::FORBIDDEN, "another's CSRF: {path}");
        assert_eq!(call(&router, req("POST", path, Some(&bob), Some(&bob_csrf), body)).await.status, StatusCode::NOT_FOUND, "another's class: {path}");
        assert_eq!(call(&router, req("POST", path, Some(&learner), None, body)).await.status, StatusCode::UNAUTHORIZED, "a learner: {path}");
        let mut cross = req("POST", path, Some(&ada), Some(&ada_csrf), body);
        cross.headers_mut().insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        // docklab's own address (a name it was not told about would be refused before this check: 421).
        cross.headers_mut().insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(call(&router, cross).await.status, StatusCode::FORBIDDEN, "another site: {path}");
    }
    // A member of another class is not found through this one.
    let (_, _, other, other_code) = new_class(&state, &router, "cy", json!({"name": "C", "exercises": [some_exercise(&state)], "seats": 3})).await;
    join_as(&router, &other_code, &learner_cookie('b'), "Bo").await;
    let stranger = state.classroom.store.members(&other).unwrap()[0].id;
    let path = format!("/api/classes/{id}/learners/{stranger}/reset");
    assert_eq!(call(&router, req("POST", &path, Some(&ada), Some(&ada_csrf), "")).await.status, StatusCode::NOT_FOUND);
    // The QR code is the instructor's too.
    let qr = format!("/classes/{id}/qr.svg");
    assert_eq!(call(&router, req("GET", &qr, Some(&bob), None, "")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&router, req("GET", &qr, Some(&learner), None, "")).await.status, StatusCode::UNAUTHORIZED);
    // Nothing happened: no message, the end unchanged, nobody taken over.
    assert!(state.classroom.store.messages(&id, 10).unwrap().is_empty());
    assert!(!state.sessions.get(&state.classroom.store.members(&id).unwrap()[0].session.clone().unwrap()).unwrap().is_taken_over());
}

#[tokio::test]
async fn extending_moves_the_class_end_and_every_machine_with_it() {
    let (state, _) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let (ada, csrf, id, code) =
        new_class(&state, &router, "ada", json!({"name": "A", "exercises": [some_exercise(&state)], "seats": 3, "duration_minutes": 60})).await;
    let joined = join_as(&router, &code, &learner_cookie('a'), "Ann").await;
    let session = state.sessions.get(joined["id"].as_str().unwrap()).unwrap();
    let before = state.classroom.store.class(&id).unwrap().unwrap().ends_at;
    let mut learner_events = state.classroom.learner_channel(&id).subscribe();
    let path = format!("/api/classes/{id}/extend");
    for bad in [r#"{"minutes":0}"#, r#"{"minutes":100000}"#, r#"{"minutes":"soon"}"#] {
        assert_eq!(call(&router, req("POST", &path, Some(&ada), Some(&csrf), bad)).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let reply = call(&router, req("POST", &path, Some(&ada), Some(&csrf), r#"{"minutes":30}"#)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["ends_at"], before + 1800);
    assert_eq!(state.classroom.store.class(&id).unwrap().unwrap().ends_at, before + 1800);
    assert_eq!(session.expires_at().unix_timestamp(), before + 1800, "the learner's machine lives as long as the class");
    let event = next_event(&mut learner_events, |(_, e)| matches!(e, LearnerEvent::Extended { .. })).await;
    assert_eq!(event, (None, LearnerEvent::Extended { ends_at: before + 1800 }));
    // An ended class cannot be extended.
    call(&router, req("POST", &format!("/api/classes/{id}/end"), Some(&ada), Some(&csrf), "")).await;
    assert_eq!(call(&router, req("POST", &path, Some(&ada), Some(&csrf), r#"{"minutes":5}"#)).await.status, StatusCode::GONE);
}

#[tokio::test]
async fn a_broadcast_reaches_every_terminal_and_page_of_the_class_and_refuses_control_characters() {
    let (state, _) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let (ada, csrf, id, code) = new_class(&state, &router, "ada", json!({"name": "A", "exercises": [some_exercise(&state)], "seats": 3})).await;
    let joined = join_as(&router, &code, &learner_cookie('a'), "Ann").await;
    let session = state.sessions.get(joined["id"].as_str().unwrap()).unwrap();
    let (terminal, _pty) = crate::testing::FakePty::new();
    let mut viewer = session.terminal.attach(crate::terminal::hub::ViewerMode::Interactive, || async { Ok(terminal) }).await.unwrap();
    let mut pages = state.classroom.learner_channel(&id).subscribe();
    let path = format!("/api/classes/{id}/broadcast");
    for bad in ["", "\u{1b}[2J wipe", "two\nlines", &"x".repeat(501)] {
        let reply = call(&router, req("POST", &path, Some(&ada), Some(&csrf), &json!({"text": bad}).to_string())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    let reply = call(&router, req("POST", &path, Some(&ada), Some(&csrf), r#"{"text":"Break until 11:00"}"#)).await;
    assert_eq!(reply.body["terminals"], 1, "{}", reply.body);
    let crate::terminal::hub::HubEvent::Output(bytes) = viewer.events.recv().await.unwrap() else { panic!("no output") };
    assert!(String::from_utf8_lossy(&bytes).contains("Message from your instructor: Break until 11:00"));
    let (to, event) = next_event(&mut pages, |(_, e)| matches!(e, LearnerEvent::Message { .. })).await;
    assert_eq!(to, None, "every page of the class");
    assert!(matches!(event, LearnerEvent::Message { text, .. } if text == "Break until 11:00"));
    // Pages that open later see it too.
    let me = call(&router, req("GET", &format!("/api/classes/{id}/me"), Some(&learner_cookie('a')), None, "")).await;
    assert_eq!(me.body["messages"][0][1], "Break until 11:00", "{}", me.body);
}

#[tokio::test]
async fn take_over_lets_only_that_instructor_type_and_handing_back_revokes_it() {
    let (state, _) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let (ada, csrf, id, code) = new_class(&state, &router, "ada", json!({"name": "A", "exercises": [some_exercise(&state)], "seats": 3})).await;
    let (bob, _) = login(&state, &router, "bob").await;
    let joined = join_as(&router, &code, &learner_cookie('a'), "Ann").await;
    let session_id = joined["id"].as_str().unwrap().to_owned();
    let member = state.classroom.store.members(&id).unwrap()[0].id;
    let interactive = format!("/api/sessions/{session_id}/terminal?mode=interactive");
    let with_cookie = |c: &str| {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, c.parse().unwrap());
        h
    };
    // Before a take-over, the instructor cannot type (401 before any WebSocket).
    assert_eq!(call(&router, req("GET", &interactive, Some(&ada), None, "")).await.status, StatusCode::UNAUTHORIZED);
    let (terminal, _pty) = crate::testing::FakePty::new();
    let session = state.sessions.get(&session_id).unwrap();
    let mut viewer = session.terminal.attach(crate::terminal::hub::ViewerMode::Interactive, || async { Ok(terminal) }).await.unwrap();
    let mut pages = state.classroom.learner_channel(&id).subscribe();

    let reply = call(&router, req("POST", &format!("/api/classes/{id}/learners/{member}/takeover"), Some(&ada), Some(&csrf), "")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let crate::terminal::hub::HubEvent::Output(bytes) = viewer.events.recv().await.unwrap() else { panic!("no notice") };
    assert!(String::from_utf8_lossy(&bytes).contains("Your instructor is now typing in this terminal"));
    assert_eq!(next_event(&mut pages, |_| true).await, (Some(member), LearnerEvent::Takeover { active: true }));
    // Authorised now (400: it then needs a WebSocket); another instructor or a learner still not.
    assert_eq!(call(&router, req("GET", &interactive, Some(&ada), None, "")).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(call(&router, req("GET", &interactive, Some(&bob), None, "")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&router, req("GET", &interactive, Some(&learner_cookie('b')), None, "")).await.status, StatusCode::UNAUTHORIZED);
    let (_, active) = actions::takeover_for(&state, &with_cookie(&ada), &session_id).expect("ada took it over");
    assert!(actions::takeover_for(&state, &with_cookie(&bob), &session_id).is_none());
    let grid = call(&router, req("GET", &format!("/api/classes/{id}"), Some(&ada), None, "")).await.body;
    assert_eq!(grid["learners"][0]["taken_over"], true);

    let reply = call(&router, req("POST", &format!("/api/classes/{id}/learners/{member}/handback"), Some(&ada), Some(&csrf), "")).await;
    assert_eq!(reply.status, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), actions::handed_back(active)).await.expect("an open writable connection is cut");
    assert_eq!(next_event(&mut pages, |_| true).await, (Some(member), LearnerEvent::Takeover { active: false }));
    assert_eq!(call(&router, req("GET", &interactive, Some(&ada), None, "")).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn resetting_a_learner_gives_them_a_fresh_machine_with_the_same_limits() {
    let (state, backend) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let body = json!({"name": "A", "exercises": [some_exercise(&state)], "seats": 3, "memory_mib": 768});
    let (ada, csrf, id, code) = new_class(&state, &router, "ada", body).await;
    let joined = join_as(&router, &code, &learner_cookie('a'), "Ann").await;
    let session_id = joined["id"].as_str().unwrap().to_owned();
    let member = state.classroom.store.members(&id).unwrap()[0].id;
    let reply = call(&router, req("POST", &format!("/api/classes/{id}/learners/{member}/reset"), Some(&ada), Some(&csrf), "")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(*backend.destroyed.lock().unwrap(), vec![session_id.clone()], "the old machine is gone");
    let created = backend.created_with.lock().unwrap().clone();
    assert_eq!(created.len(), 2);
    assert!(created.iter().all(|(s, o)| *s == session_id && o.memory_bytes == Some(768 << 20)), "{created:?}");
    assert!(state.sessions.get(&session_id).is_some(), "same session, same token: the learner's page reconnects");
}

#[test]
fn stuck_means_idle_or_failing_the_same_task_too_long() {
    let rules = StuckRules { idle: Duration::from_secs(300), failing: Duration::from_secs(600), tick: Duration::from_secs(5) };
    let report = |id: &str, status| TaskReport { id: id.into(), title: String::new(), status, detail: String::new() };
    let mut watch = None;
    assert!(!live::TaskWatch::update(&mut watch, "e", &[report("a", TaskStatus::Passed), report("b", TaskStatus::Failed)], 1000));
    let w = watch.clone().unwrap();
    assert_eq!((w.task.as_deref(), w.since, w.failing), (Some("b"), 1000, true));
    // The same task failing again keeps its start.
    live::TaskWatch::update(&mut watch, "e", &[report("a", TaskStatus::Passed), report("b", TaskStatus::Failed)], 1300);
    assert_eq!(watch.as_ref().unwrap().since, 1000);
    let fresh = Some(Duration::from_secs(10));
    assert_eq!(live::stuck(&rules, fresh, watch.as_ref(), 1599, false), None, "9 minutes on it");
    assert_eq!(live::stuck(&rules, fresh, watch.as_ref(), 1600, false), Some(live::Stuck::Failing { task: "b".into(), minutes: 10 }));
    assert_eq!(live::stuck(&rules, Some(Duration::from_secs(420)), None, 0, false), Some(live::Stuck::Idle { minutes: 7 }));
    assert_eq!(live::stuck(&rules, None, watch.as_ref(), 9999, false), None, "no machine, no marker");
    assert_eq!(live::stuck(&rules, Some(Duration::from_secs(9999)), watch.as_ref(), 9999, true), None, "finished");
    // A check that has not run yet is not "failing".
    live::TaskWatch::update(&mut watch, "e", &[report("a", TaskStatus::Passed), report("b", TaskStatus::Pending)], 1700);
    assert_eq!(live::stuck(&rules, fresh, watch.as_ref(), 9999, false), None);
    // Moving on restarts the clock; finishing is reported once.
    assert!(live::TaskWatch::update(&mut watch, "e", &[report("a", TaskStatus::Passed), report("b", TaskStatus::Passed)], 1800));
    assert!(!live::TaskWatch::update(&mut watch, "e", &[report("a", TaskStatus::Passed), report("b", TaskStatus::Passed)], 1900));
    assert_eq!(live::stuck(&rules, fresh, watch.as_ref(), 99999, false), None);
}

#[tokio::test]
async fn the_stuck_marker_is_computed_on_the_server_and_pushed_by_itself() {
    let (state, _) = fake_state(ServerConfig::default());
    let rules = StuckRules { idle: Duration::from_millis(300), failing: Duration::from_secs(600), tick: Duration::from_millis(50) };
    let state = state.with_classroom(Arc::new(Classroom::with_rules(ClassStore::in_memory(), rules)));
    let router = app(state.clone());
    let (_, _, id, code) = new_class(&state, &router, "ada", json!({"name": "A", "exercises": [some_exercise(&state)], "seats": 3})).await;
    let joined = join_as(&router, &code, &learner_cookie('a'), "Ann").await;
    let session = state.sessions.get(joined["id"].as_str().unwrap()).unwrap();
    let mut grid = state.classroom.channel(&id).subscribe();
    live::ensure_ticker(&state, &id);
    let stuck = next_event(&mut grid, |e| matches!(e, GridEvent::Learner { learner } if learner.stuck)).await;
    let GridEvent::Learner { learner } = stuck else { unreachable!() };
    assert_eq!(learner.stuck_reason.as_deref(), Some("idle for 0 min"));
    // Typing again clears it, pushed likewise.
    session.terminal.touch();
    next_event(&mut grid, |e| matches!(e, GridEvent::Learner { learner } if !learner.stuck)).await;
}

#[tokio::test]
async fn a_learner_moves_through_the_class_exercises_in_order() {
    let (state, backend) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let exercises = two_exercises(&state);
    let (ada, _, id, code) = new_class(&state, &router, "ada", json!({"name": "Two", "exercises": exercises, "seats": 3})).await;
    let ann = learner_cookie('a');
    let joined = join_as(&router, &code, &ann, "Ann").await;
    assert_eq!((joined["exercise"].as_str(), joined["exercise_index"].as_u64()), (Some(exercises[0].as_str()), Some(0)));
    let first = state.catalog.exercise(&exercises[0]).unwrap();
    assert_eq!(joined["lesson_path"], format!("/lessons/{}?exercise={}", first.lesson, first.slug));
    let mut pages = state.classroom.learner_channel(&id).subscribe();
    let me = call(&router, req("GET", &format!("/api/classes/{id}/me"), Some(&ann), None, "")).await.body;
    assert_eq!((me["done"].as_bool(), me["exercises"].as_array().unwrap().len()), (Some(false), 2), "{me}");

    let session = state.sessions.get(joined["id"].as_str().unwrap()).unwrap();
    session.terminal.publish_control(all_passed(&state, &exercises[0]));
    let member = state.classroom.store.members(&id).unwrap()[0].id;
    let done = next_event(&mut pages, |(_, e)| matches!(e, LearnerEvent::Done { .. })).await;
    assert_eq!(done, (Some(member), LearnerEvent::Done { exercise: exercises[0].clone(), next: true }));
    let me = call(&router, req("GET", &format!("/api/classes/{id}/me"), Some(&ann), None, "")).await.body;
    assert_eq!(me["done"], true);

    // Someone else's cookie is not in the class and cannot move anyone.
    let bo = learner_cookie('b');
    assert_eq!(call(&router, req("POST", &format!("/api/classes/{id}/me/next"), Some(&bo), None, "")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&router, req("GET", &format!("/api/classes/{id}/me"), Some(&bo), None, "")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&router, req("GET", &format!("/api/classes/{id}/me/events"), Some(&bo), None, "")).await.status, StatusCode::NOT_FOUND);

    let next = call(&router, req("POST", &format!("/api/classes/{id}/me/next"), Some(&ann), None, "")).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    assert_eq!((next.body["exercise"].as_str(), next.body["exercise_index"].as_u64()), (Some(exercises[1].as_str()), Some(1)));
    assert_ne!(next.body["id"], joined["id"], "a fresh machine for the next exercise");
    assert!(backend.destroyed.lock().unwrap().contains(&session.id), "the first machine is gone");
    assert_eq!(state.sessions.len(), 1);
    // Coming back through the join link lands on the exercise they are on.
    let again = join_as(&router, &code, &ann, "Ann").await;
    assert_eq!(again["id"], next.body["id"]);
    let last = call(&router, req("POST", &format!("/api/classes/{id}/me/next"), Some(&ann), None, "")).await;
    assert_eq!((last.status, last.body["code"].as_str()), (StatusCode::CONFLICT, Some("last_exercise")));

    // Finishing the last exercise finishes the class for them; the grid shows both exercises' tasks.
    let second = state.sessions.get(next.body["id"].as_str().unwrap()).unwrap();
    second.terminal.publish_control(all_passed(&state, &exercises[1]));
    next_event(&mut pages, |(_, e)| matches!(e, LearnerEvent::Done { next: false, .. })).await;
    let grid = call(&router, req("GET", &format!("/api/classes/{id}"), Some(&ada), None, "")).await.body;
    let columns: Vec<&str> = grid["exercises"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(columns, exercises.iter().map(String::as_str).collect::<Vec<_>>());
    let total: usize = grid["exercises"].as_array().unwrap().iter().map(|e| e["tasks"].as_array().unwrap().len()).sum();
    assert_eq!(grid["learners"][0]["passed"].as_array().unwrap().len(), total);
    assert!(grid["learners"][0]["finished_at"].is_i64(), "{grid}");
    assert_eq!(grid["learners"][0]["exercise_index"], 1);
}

#[tokio::test]
async fn a_grid_of_200_learners_is_built_quickly_with_each_ones_passes() {
    let (state, _) = fake_state(ServerConfig::default());
    let instructor = state.classroom.store.set_instructor("ada", "x", now()).unwrap();
    let exercises = two_exercises(&state);
    let class = ClassRow {
        id: "big".into(),
        instructor,
        name: "Big".into(),
        exercises: exercises.clone(),
        seats: 200,
        code: "BIG234".into(),
        starts_at: now() - 60,
        ends_at: now() + 3600,
        ended_at: None,
        session_minutes: None,
        memory_mib: None,
    };
    state.classroom.store.add_class(&class, now()).unwrap();
    let tasks: Vec<(String, String)> = exercises
        .iter()
        .flat_map(|e| state.catalog.exercise(e).unwrap().tasks.iter().map(move |t| (e.clone(), t.id.clone())))
        .collect();
    for i in 0..200 {
        let m = state.classroom.store.join("big", &format!("{i:032x}"), &format!("learner {i:03}"), now()).unwrap();
        // Learner i passed the first i % (tasks + 1) tasks.
        for (e, t) in tasks.iter().take(i % (tasks.len() + 1)) {
            state.classroom.store.record_pass(m.id, e, t, now()).unwrap();
        }
    }
    let started = std::time::Instant::now();
    let grid = grid(&state, class).unwrap();
    let elapsed = started.elapsed();
    let json = serde_json::to_string(&grid).unwrap();
    println!("grid of 200 learners x {} tasks: built in {elapsed:?}, {} KiB of JSON", tasks.len(), json.len() / 1024);
    assert_eq!(grid.learners.len(), 200);
    for (i, l) in grid.learners.iter().enumerate() {
        assert_eq!(l.passed.len(), i % (tasks.len() + 1), "{}", l.name);
    }
    assert!(elapsed < Duration::from_secs(2), "building the grid took {elapsed:?}");
    assert!(json.len() < 512 * 1024, "{} bytes", json.len());
}

#[tokio::test]
async fn the_qr_code_is_an_svg_of_the_join_link() {
    let (state, _) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let (ada, _, id, _) = new_class(&state, &router, "ada", json!({"name": "A", "exercises": [some_exercise(&state)], "seats": 3})).await;
    let response = router.clone().oneshot(req("GET", &format!("/classes/{id}/qr.svg"), Some(&ada), None, "")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/svg+xml");
    let svg = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(svg.contains("<svg") && svg.contains("<path"), "{}", &svg[..svg.len().min(200)]);
    assert_ne!(actions::join_qr_svg("http://a/join/ABC234").unwrap(), actions::join_qr_svg("http://a/join/ABC235").unwrap());
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, "lab.example:8080".parse().unwrap());
    headers.insert("x-forwarded-proto", "https".parse().unwrap());
    assert_eq!(actions::join_url(&headers, "ABC234"), "https://lab.example:8080/join/ABC234");
}

#[tokio::test]
async fn hints_a_learner_opens_during_the_class_show_on_their_row() {
    let (state, _) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let exercise = state.catalog.lessons().iter().flat_map(|l| &l.exercises).find(|e| e.tasks.iter().any(|t| t.hints.len() >= 2)).unwrap().clone();
    let (ada, _, id, code) = new_class(&state, &router, "ada", json!({"name": "A", "exercises": [exercise.id], "seats": 3})).await;
    let joined = join_as(&router, &code, &learner_cookie('a'), "Ann").await;
    join_as(&router, &code, &learner_cookie('b'), "Bo").await;
    let task = exercise.tasks.iter().find(|t| t.hints.len() >= 2).unwrap();
    let hint = format!("/api/sessions/{}/hints/{}", joined["id"].as_str().unwrap(), task.id);
    let mut r = req("POST", &hint, None, None, "");
    r.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {}", joined["token"].as_str().unwrap()).parse().unwrap());
    assert_eq!(call(&router, r).await.status, StatusCode::OK);
    let mut r = req("POST", &hint, None, None, "");
    r.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {}", joined["token"].as_str().unwrap()).parse().unwrap());
    assert_eq!(call(&router, r).await.status, StatusCode::OK);
    let grid = call(&router, req("GET", &format!("/api/classes/{id}"), Some(&ada), None, "")).await.body;
    let hints: Vec<(String, u64)> =
        grid["learners"].as_array().unwrap().iter().map(|l| (l["name"].as_str().unwrap().to_owned(), l["hints"].as_u64().unwrap())).collect();
    assert_eq!(hints, vec![("Ann".to_owned(), 2), ("Bo".to_owned(), 0)]);
}

// ---- how sessions end ------------------------------------------------------------------------

/// Every way a session can end from outside (a failed start or reset ends it from inside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Delete,
    Expiry,
    Idle,
    ClassEnd,
    NextExercise,
    Shutdown,
}

/// A learner's running session in a class of two exercises, taken over by its instructor and
/// watched by one terminal viewer.
struct Watched {
    state: AppState,
    backend: std::sync::Arc<crate::testing::FakeBackend>,
    router: Router,
    ada: String,
    csrf: String,
    class: String,
    member: i64,
    learner: String,
    session: Arc<Session>,
    /// Flips (or closes) when the take-over ends.
    active: tokio::sync::watch::Receiver<bool>,
    viewer: crate::terminal::hub::Viewer,
    _pty: crate::testing::FakePty,
}

async fn watched_session(config: ServerConfig) -> Watched {
    let (state, backend) = fake_state(config);
    let router = app(state.clone());
    let body = json!({"name": "A", "exercises": two_exercises(&state), "seats": 3});
    let (ada, csrf, class, code) = new_class(&state, &router, "ada", body).await;
    let learner = learner_cookie('a');
    let joined = join_as(&router, &code, &learner, "Ann").await;
    let session = state.sessions.get(joined["id"].as_str().unwrap()).unwrap();
    let member = state.classroom.store.members(&class).unwrap()[0].id;
    let reply = call(&router, req("POST", &format!("/api/classes/{class}/learners/{member}/takeover"), Some(&ada), Some(&csrf), "")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut instructor = HeaderMap::new();
    instructor.insert(header::COOKIE, ada.parse().unwrap());
    let (_, active) = actions::takeover_for(&state, &instructor, &session.id).expect("the take-over is on");
    let (terminal, pty) = crate::testing::FakePty::new();
    let viewer = session.terminal.attach(crate::terminal::hub::ViewerMode::Interactive, || async { Ok(terminal) }).await.unwrap();
    Watched { state, backend, router, ada, csrf, class, member, learner, session, active, viewer, _pty: pty }
}

/// The next event of a viewer that is not output (the end of the shell, or a restart).
async fn viewer_end(viewer: &mut crate::terminal::hub::Viewer) -> Option<crate::terminal::hub::HubEvent> {
    use crate::terminal::hub::HubEvent;
    tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match viewer.events.recv().await {
                Ok(HubEvent::Output(_)) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn every_way_of_ending_a_session_leaves_the_same_clean_state() {
    use crate::lifecycle::{self, EndReason};
    use crate::terminal::hub::HubEvent;
    let mut failures = Vec::new();
    for way in [Way::Delete, Way::Expiry, Way::Idle, Way::ClassEnd, Way::NextExercise, Way::Shutdown] {
        let defaults = ServerConfig::default();
        let idle_timeout = if way == Way::Idle { Duration::ZERO } else { defaults.idle_timeout };
        let mut w = watched_session(ServerConfig { idle_timeout, ..defaults }).await;
        let id = w.session.id.clone();
        assert!(w.state.grading.learner(&id).is_some(), "{way:?}: the learner is known before");
        let reason = match way {
            Way::Delete => {
                let delete = Request::builder()
                    .method("DELETE")
                    .uri(format!("/api/sessions/{id}"))
                    .header(header::AUTHORIZATION, format!("Bearer {}", w.session.token))
                    .body(Body::empty())
                    .unwrap();
                assert_eq!(call(&w.router, delete).await.status, StatusCode::NO_CONTENT);
                EndReason::Deleted
            }
            Way::Expiry => {
                w.session.set_expires_at(time::OffsetDateTime::now_utc() - time::Duration::seconds(1));
                lifecycle::reap_expired(&w.state).await;
                EndReason::Expired
            }
            Way::Idle => {
                lifecycle::reap_expired(&w.state).await;
                EndReason::Idle
            }
            Way::ClassEnd => {
                let reply = call(&w.router, req("POST", &format!("/api/classes/{}/end", w.class), Some(&w.ada), Some(&w.csrf), "")).await;
                assert_eq!(reply.body["machines_destroyed"], 1, "{}", reply.body);
                EndReason::ClassEnded
            }
            Way::NextExercise => {
                let reply = call(&w.router, req("POST", &format!("/api/classes/{}/me/next", w.class), Some(&w.learner), None, "")).await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                EndReason::NextExercise
            }
            Way::Shutdown => {
                lifecycle::destroy_all_sessions_on_shutdown(&w.state).await;
                EndReason::ServerShutdown
            }
        };
        // Everything is checked, and every difference reported, for every way.
        let mut check = |ok: bool, what: &str| {
            if !ok {
                failures.push(format!("{way:?}: {what}"));
            }
        };
        let destroyed = |w: &Watched| w.backend.destroyed.lock().unwrap().iter().filter(|d| **d == id).count();
        check(w.state.sessions.get(&id).is_none(), "still in the registry");
        check(destroyed(&w) == 1, &format!("machine destroyed {} times", destroyed(&w)));
        check(w.state.grading.get(&id).is_none(), "still graded");
        check(w.state.grading.learner(&id).is_none(), "its learner is still remembered");
        check(!w.session.is_taken_over(), "still taken over");
        let handed_back = tokio::time::timeout(Duration::from_secs(1), actions::handed_back(w.active.clone())).await;
        check(handed_back.is_ok(), "the instructor's writable terminal stays open");
        let row = actions::takeover_for(&w.state, &{
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, w.ada.parse().unwrap());
            h
        }, &id);
        check(row.is_none(), "the instructor may still type in it");
        let expected = HubEvent::Ended(reason.message(&w.state.config));
        let got = viewer_end(&mut w.viewer).await;
        check(got.as_ref() == Some(&expected), &format!("the viewer got {got:?}, not {expected:?}"));
        let metric = format!("docklab_sessions_ended_total{{reason=\"{}\"}} 1\n", reason.label());
        check(w.state.metrics.render(0).contains(&metric), &format!("no {metric:?} on /metrics"));
        check(lifecycle::end(&w.state, &id, EndReason::Deleted).await.is_none(), "it ended twice");
        check(destroyed(&w) == 1, "a second end destroyed it again");
    }
    assert!(failures.is_empty(), "not the same clean state:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn a_reset_keeps_the_session_its_learner_and_its_take_over_and_replaces_only_the_machine() {
    use crate::terminal::hub::HubEvent;
    let mut w = watched_session(ServerConfig::default()).await;
    let id = w.session.id.clone();
    let learner = w.state.grading.learner(&id);
    assert!(learner.is_some());
    let graded_before = w.state.grading.get(&id);
    let reply = call(&w.router, req("POST", &format!("/api/classes/{}/learners/{}/reset", w.class, w.member), Some(&w.ada), Some(&w.csrf), "")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let now = w.state.sessions.get(&id).expect("the same session");
    assert!(Arc::ptr_eq(&now, &w.session) && now.token == w.session.token, "same id and token: pages reconnect");
    assert_eq!(w.state.grading.learner(&id), learner, "the learner stays");
    assert_eq!(*w.backend.destroyed.lock().unwrap(), vec![id.clone()], "the old machine is destroyed once");
    if let (Some(before), Some(after)) = (graded_before, w.state.grading.get(&id)) {
        assert!(!Arc::ptr_eq(&before, &after), "the old machine's grading was stopped and a fresh one started");
    }
    assert!(w.session.is_taken_over(), "the take-over is kept: the instructor's terminal reconnects");
    assert!(tokio::time::timeout(Duration::from_millis(200), actions::handed_back(w.active.clone())).await.is_err());
    let restarting = viewer_end(&mut w.viewer).await;
    assert_eq!(restarting, Some(HubEvent::Restarting("your instructor is resetting your machine: a fresh one is starting".into())));
    assert!(!w.state.metrics.render(0).contains("docklab_sessions_ended_total{"), "a reset ends nothing");
}
