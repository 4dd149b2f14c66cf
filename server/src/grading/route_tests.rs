//! Grading and progress routes in-process over the fake backend (whose machines have no Docker
//! engine, so tasks stay pending): authorisation, hints, solutions, reset, the learner cookie.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::app::app;
use crate::config::ServerConfig;
use crate::testing::fake_state;

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let cookie = response.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, cookie, body)
}

fn request(method: &str, uri: &str, token: Option<&str>, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn hints_solutions_and_progress_are_recorded_for_the_learners_cookie() {
    let (state, _backend) = fake_state(ServerConfig::default());
    let router = app(state.clone());

    // A browser without the cookie gets one, HttpOnly and SameSite=Lax.
    let (status, cookie, _) = call(&router, request("GET", "/api/progress", None, None, "")).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = cookie.expect("a learner cookie is set");
    assert!(cookie.starts_with("docklab_learner=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_owned();

    let body = r#"{"exercise":"day-27/volumes-lifecycle"}"#;
    let (status, again, created) = call(&router, request("POST", "/api/sessions", None, Some(&cookie), body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(again.is_none(), "a known learner keeps their cookie");
    let (id, token) = (created["id"].as_str().unwrap().to_owned(), created["token"].as_str().unwrap().to_owned());

    // Hints, one at a time, then no more.
    let hint = |task: &str| request("POST", &format!("/api/sessions/{id}/hints/{task}"), Some(&token), None, "");
    let (status, _, first) = call(&router, hint("write")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!((first["index"].as_u64(), first["remaining"].as_u64()), (Some(0), Some(1)));
    assert!(first["hint_html"].as_str().unwrap().contains("<code>"), "{first}");
    let (_, _, second) = call(&router, hint("write")).await;
    assert_eq!(second["index"], 1);
    let (status, _, body) = call(&router, hint("write")).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("no_more_hints")));
    let (status, _, body) = call(&router, hint("nope")).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_task")));
    let (status, _, _) = call(&router, request("POST", &format!("/api/sessions/{id}/hints/write"), Some("wrong"), None, "")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _, solution) = call(&router, request("POST", &format!("/api/sessions/{id}/solution"), Some(&token), None, "")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(solution["solution"].as_str().unwrap().contains("docker volume create app-data"));

    // The fake machine has no engine: grading is pending, never an error.
    let (status, _, checks) = call(&router, request("GET", &format!("/api/sessions/{id}/checks"), Some(&token), None, "")).await;
    assert_eq!(status, StatusCode::OK, "{checks}");
    assert_eq!(checks["exercise"], "day-27/volumes-lifecycle");
    assert_eq!(checks["tasks"].as_array().unwrap().len(), 4);
    assert!(checks["tasks"].as_array().unwrap().iter().all(|t| t["status"] == "pending"));

    let learner = crate::store::learner::learner_key(cookie.trim_start_matches("docklab_learner="));
    state.store.task_done(&learner, "day-27/volumes-lifecycle", "create").unwrap();
    let (_, _, progress) = call(&router, request("GET", "/api/progress", None, Some(&cookie), "")).await;
    let exercise = &progress["exercises"]["day-27/volumes-lifecycle"];
    assert_eq!(exercise["hints_used"].as_array().unwrap().len(), 2, "{progress}");
    assert!(exercise["solution_revealed_at"].is_string());
    assert!(exercise["tasks_done"]["create"].is_string());

    let (status, _, named) = call(&router, request("PUT", "/api/learner", None, Some(&cookie), r#"{"display_name":" Ada "}"#)).await;
    assert_eq!((status, named["display_name"].as_str()), (StatusCode::OK, Some("Ada")));
    let (status, _, body) = call(&router, request("PUT", "/api/learner", None, Some(&cookie), r#"{"display_name":1}"#)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));

    // The home page shows the day's progress.
    let (_, _, home) = call(&router, request("GET", "/", None, Some(&cookie), "")).await;
    let day_total: usize = state.catalog.lesson("day-27").unwrap().exercises.iter().map(|e| e.tasks.len()).sum();
    assert!(home.as_str().unwrap().contains(&format!("1 of {day_total} tasks done")), "{home}");
}

#[tokio::test]
async fn reset_gives_a_fresh_machine_with_the_same_id_and_token() {
    let (state, backend) = fake_state(ServerConfig::default());
    let router = app(state.clone());
    let (_, _, created) = call(&router, request("POST", "/api/sessions", None, None, r#"{"exercise":"day-25/entrypoint-cmd"}"#)).await;
    let (id, token) = (created["id"].as_str().unwrap().to_owned(), created["token"].as_str().unwrap().to_owned());
    let (status, _, reset) = call(&router, request("POST", &format!("/api/sessions/{id}/reset"), Some(&token), None, "")).await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!((reset["id"].as_str(), reset["token"].as_str()), (Some(id.as_str()), Some(token.as_str())));
    assert_eq!(*backend.destroyed.lock().unwrap(), vec![id.clone()]);
    assert!(backend.machines.lock().unwrap().contains(&id), "a new machine with the same id");
    // The starting files were copied in again (the fake echoes the command it ran).
    let last = backend.last_exec.lock().unwrap().clone().unwrap();
    assert!(last.cmd.last().unwrap().ends_with("/root/greeter/Dockerfile"), "{:?}", last.cmd);
    let (status, _, _) = call(&router, request("POST", "/api/sessions/nope/reset", Some(&token), None, "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
