//! Session routes, driven in-process with `oneshot` over the fake backend.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tower::ServiceExt;

use super::CreatedSession;
use crate::app::{app, AppState};
use crate::config::ServerConfig;
use crate::testing::{fake_state, some_exercise, FakeBackend};
use std::sync::Arc;

struct Harness {
    app: Router,
    state: AppState,
    backend: Arc<FakeBackend>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(ServerConfig::default())
    }

    fn with(config: ServerConfig) -> Harness {
        let (state, backend) = fake_state(config);
        Harness { app: app(state.clone()), state, backend }
    }

    async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("a JSON body") };
        (status, body)
    }

    async fn create(&self) -> CreatedSession {
        let body = json!({ "exercise": some_exercise(&self.state) }).to_string();
        let (status, body) = self.call(post("/api/sessions", &body, None)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        serde_json::from_value(body).unwrap()
    }
}

fn post(uri: &str, body: &str, token: Option<&str>) -> Request<Body> {
    with_token(Request::post(uri).header(header::CONTENT_TYPE, "application/json"), token)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn get(uri: &str, token: Option<&str>) -> Request<Body> {
    with_token(Request::get(uri), token).body(Body::empty()).unwrap()
}

fn delete(uri: &str, token: Option<&str>) -> Request<Body> {
    with_token(Request::delete(uri), token).body(Body::empty()).unwrap()
}

fn with_token(builder: axum::http::request::Builder, token: Option<&str>) -> axum::http::request::Builder {
    match token {
        Some(token) => builder.header(header::AUTHORIZATION, format!("Bearer {token}")),
        None => builder,
    }
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
}

#[tokio::test]
async fn create_answers_201_with_id_token_terminal_and_expiry() {
    let h = Harness::new();
    let created = h.create().await;
    assert_eq!(created.id.len(), 16);
    assert!(created.id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    assert_eq!(created.token.len(), 64);
    assert_eq!(created.terminal, format!("/api/sessions/{}/terminal", created.id));
    let expires = OffsetDateTime::parse(&created.expires_at, &Rfc3339).unwrap();
    let ttl = expires - OffsetDateTime::now_utc();
    assert!(ttl > time::Duration::minutes(119) && ttl <= time::Duration::hours(2), "{ttl}");
    assert!(h.backend.machines.lock().unwrap().contains(&created.id));

    let (status, body) = h.call(get(&format!("/api/sessions/{}", created.id), Some(&created.token))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "ready");
    assert_eq!(body["exercise"], some_exercise(&h.state));
}

#[tokio::test]
async fn an_unknown_exercise_is_404() {
    let h = Harness::new();
    let (status, body) = h.call(post("/api/sessions", r#"{"exercise":"day-99/nope"}"#, None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "unknown_exercise");
    assert!(h.state.sessions.is_empty());
}

#[tokio::test]
async fn malformed_requests_are_400_with_a_json_error() {
    let h = Harness::new();
    for bad in ["{", "[]", r#"{"exercise":42}"#, r#"{}"#, r#"{"exercise":"x","extra":1}"#, r#"{"exercise":""}"#] {
        let (status, body) = h.call(post("/api/sessions", bad, None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "for {bad}");
        assert_error(&body, "bad_request");
    }
    let no_type = Request::post("/api/sessions").body(Body::from(r#"{"exercise":"x"}"#)).unwrap();
    let (status, body) = h.call(no_type).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("application/json"), "{body}");
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401() {
    let h = Harness::new();
    let created = h.create().await;
    let uri = format!("/api/sessions/{}", created.id);
    let (status, body) = h.call(get(&uri, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "missing_token");
    let wrong = "0".repeat(64);
    for request in [get(&uri, Some(&wrong)), delete(&uri, Some(&wrong)), post(&format!("{uri}/exec"), r#"{"cmd":["true"]}"#, Some(&wrong))] {
        let (status, body) = h.call(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_error(&body, "bad_token");
    }
    assert!(h.backend.machines.lock().unwrap().contains(&created.id), "nothing was done without the token");
}

#[tokio::test]
async fn an_unknown_session_is_404() {
    let h = Harness::new();
    let (status, body) = h.call(get("/api/sessions/0123456789abcdef", Some("x"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "unknown_session");
}

#[tokio::test]
async fn exec_runs_the_command_in_the_machine() {
    let h = Harness::new();
    let created = h.create().await;
    let uri = format!("/api/sessions/{}/exec", created.id);
    let (status, body) = h.call(post(&uri, r#"{"cmd":["docker","volume","ls"]}"#, Some(&created.token))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["exit_code"], 0);
    assert_eq!(body["stdout"], "docker volume ls\n");
    assert_eq!(body["stderr"], "");
    let request = h.backend.last_exec.lock().unwrap().clone().unwrap();
    assert_eq!(request.timeout.as_secs(), 30, "the default timeout");
}

#[tokio::test]
async fn exec_input_is_validated() {
    let h = Harness::new();
    let created = h.create().await;
    let uri = format!("/api/sessions/{}/exec", created.id);
    let too_many = json!({ "cmd": vec!["a"; 257] }).to_string();
    let too_long = json!({ "cmd": ["echo", "x".repeat(70_000)] }).to_string();
    for bad in [
        r#"{"cmd":[]}"#,
        r#"{"cmd":[""]}"#,
        r#"{"cmd":["echo","a\u0000b"]}"#,
        r#"{"cmd":["true"],"timeout_s":0}"#,
        r#"{"cmd":["true"],"timeout_s":601}"#,
        r#"{"cmd":["true"],"timeout_s":-1}"#,
        r#"{"cmd":"docker ps"}"#,
        r#"{"command":["true"]}"#,
        &too_many,
        &too_long,
    ] {
        let (status, body) = h.call(post(&uri, bad, Some(&created.token))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "for {}", &bad[..bad.len().min(60)]);
        assert_error(&body, "bad_request");
    }
    assert!(h.backend.last_exec.lock().unwrap().is_none(), "nothing invalid reached the machine");
    let (status, _) = h.call(post(&uri, r#"{"cmd":["true"],"timeout_s":600}"#, Some(&created.token))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn delete_answers_204_then_the_session_is_gone() {
    let h = Harness::new();
    let created = h.create().await;
    let uri = format!("/api/sessions/{}", created.id);
    let (status, body) = h.call(delete(&uri, Some(&created.token))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    assert_eq!(*h.backend.destroyed.lock().unwrap(), vec![created.id.clone()]);
    let (status, body) = h.call(delete(&uri, Some(&created.token))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "unknown_session");
    let (status, _) = h.call(get(&uri, Some(&created.token))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_machine_that_fails_to_start_is_503_and_leaves_no_session() {
    let h = Harness::new();
    h.backend.fail_create.store(true, Ordering::SeqCst);
    let body = json!({ "exercise": some_exercise(&h.state) }).to_string();
    let (status, body) = h.call(post("/api/sessions", &body, None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&body, "start_failed");
    assert!(body["error"].as_str().unwrap().contains("dockerd crashed"), "{body}");
    assert!(h.state.sessions.is_empty());
}

#[tokio::test]
async fn past_capacity_creation_is_503_out_of_capacity() {
    let h = Harness::with(ServerConfig { max_sessions: 1, ..ServerConfig::default() });
    h.create().await;
    let body = json!({ "exercise": some_exercise(&h.state) }).to_string();
    let (status, body) = h.call(post("/api/sessions", &body, None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&body, "out_of_capacity");
}

#[tokio::test]
async fn expired_sessions_are_reaped_and_shutdown_destroys_the_rest() {
    let h = Harness::with(ServerConfig { session_ttl: std::time::Duration::ZERO, ..ServerConfig::default() });
    let expired = h.create().await;
    crate::lifecycle::reap_expired(&h.state).await;
    assert!(h.state.sessions.get(&expired.id).is_none());
    assert_eq!(*h.backend.destroyed.lock().unwrap(), vec![expired.id.clone()]);

    let h = Harness::new();
    let a = h.create().await;
    let b = h.create().await;
    crate::lifecycle::destroy_all_sessions_on_shutdown(&h.state).await;
    let mut destroyed = h.backend.destroyed.lock().unwrap().clone();
    destroyed.sort();
    let mut expected = vec![a.id, b.id];
    expected.sort();
    assert_eq!(destroyed, expected);
}

#[tokio::test]
async fn healthz_follows_the_backend() {
    let h = Harness::new();
    let (status, body) = h.call(get("/healthz", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
    *h.backend.unhealthy.lock().unwrap() = Some("the node image is not built: run `docklab setup`".into());
    let (status, body) = h.call(get("/healthz", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["code"], "not_ready");
    assert!(body["error"].as_str().unwrap().contains("docklab setup"));
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_every_name() {
    let h = Harness::new();
    h.create().await;
    let response = h.app.clone().oneshot(get("/metrics", None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for name in [
        "docklab_sessions_active 1",
        "# TYPE docklab_session_start_seconds histogram",
        "docklab_session_start_seconds_count 1",
        "# TYPE docklab_grade_seconds histogram",
        "docklab_ws_connections 0",
        "# TYPE docklab_sessions_ended_total counter",
    ] {
        assert!(text.contains(name), "missing {name:?} in\n{text}");
    }
}

#[tokio::test]
async fn a_session_still_starting_cannot_exec_yet() {
    let h = Harness::new();
    let session = h.state.sessions.insert_new(&some_exercise(&h.state)).unwrap();
    let uri = format!("/api/sessions/{}/exec", session.id);
    let (status, body) = h.call(post(&uri, r#"{"cmd":["true"]}"#, Some(&session.token))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "session_not_ready");
    let (status, body) = h.call(get(&format!("/api/sessions/{}", session.id), Some(&session.token))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "starting");
}
