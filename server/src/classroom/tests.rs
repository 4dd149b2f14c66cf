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
