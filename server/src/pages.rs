//! Human-facing pages (home, lessons, 404), the embedded static assets, and the read-only
//! catalog API (`GET /api/lessons`, `GET /api/lessons/{lesson}`).
//!
//! Templates are in `web/templates` (askama, compiled in); assets in `web/static` (rust-embed,
//! compiled into release builds), so the binary works from any working directory.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use lessons::{Catalog, Exercise, Lesson};
use serde::Deserialize;

/// Routes: `/`, `/lessons/{id}`, `/static/{*path}`, `/api/lessons`, `/api/lessons/{lesson}`.
///
/// No fallback is set, so the router merges cleanly; use [`not_found`] as the app's fallback to
/// get the same 404 page for every unknown path.
pub fn router<S: Clone + Send + Sync + 'static>(catalog: Arc<Catalog>) -> Router<S> {
    Router::new()
        .route("/", get(home))
        .route("/lessons/{id}", get(lesson_page))
        .route("/static/{*path}", get(static_asset))
        .route("/api/lessons", get(api_lessons))
        .route("/api/lessons/{lesson}", get(api_lesson))
        .with_state(catalog)
}

/// The 404 HTML page, usable as the application's fallback handler.
pub async fn not_found() -> Response {
    not_found_page("Check the address, or pick a lesson from the course.")
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    lessons: &'a [Lesson],
    /// Per lesson: (tasks done, tasks in all its exercises), for the learner behind the request.
    progress: Vec<(usize, usize)>,
}

#[derive(Template)]
#[template(path = "lesson.html")]
struct LessonPage<'a> {
    lesson: &'a Lesson,
    exercise: Option<&'a Exercise>,
    prev: Option<&'a Lesson>,
    next: Option<&'a Lesson>,
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage<'a> {
    message: &'a str,
}

/// A rendered page with `status`; a template that fails to render is a 500 and a logged error.
pub(crate) fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be rendered.",
            )
                .into_response()
        }
    }
}

fn not_found_page(message: &str) -> Response {
    render(&NotFoundPage { message }, StatusCode::NOT_FOUND)
}

async fn home(State(catalog): State<Arc<Catalog>>, learner: Option<Extension<crate::store::CurrentLearner>>) -> Response {
    let done = learner.map(|Extension(l)| l.progress()).unwrap_or_default();
    let progress = catalog
        .lessons()
        .iter()
        .map(|lesson| {
            let tasks: Vec<(&str, &str)> =
                lesson.exercises.iter().flat_map(|e| e.tasks.iter().map(move |t| (e.id.as_str(), t.id.as_str()))).collect();
            (done.done_count(tasks.iter().copied()), tasks.len())
        })
        .collect();
    render(
        &HomePage {
            lessons: catalog.lessons(),
            progress,
        },
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
struct LessonQuery {
    /// Which of the lesson's exercises the lab panel shows (its slug); the first by default.
    exercise: Option<String>,
}

async fn lesson_page(
    State(catalog): State<Arc<Catalog>>,
    Path(id): Path<String>,
    Query(query): Query<LessonQuery>,
) -> Response {
    let lessons = catalog.lessons();
    let Some(index) = lessons.iter().position(|l| l.id == id) else {
        return not_found_page(&format!(
            "There is no lesson called “{id}”. The course has days 24 to 30."
        ));
    };
    let lesson = &lessons[index];
    let exercise = query
        .exercise
        .as_deref()
        .and_then(|slug| lesson.exercise(slug))
        .or_else(|| lesson.exercises.first());
    let page = LessonPage {
        lesson,
        exercise,
        prev: index.checked_sub(1).map(|i| &lessons[i]),
        next: lessons.get(index + 1),
    };
    render(&page, StatusCode::OK)
}

async fn api_lessons(State(catalog): State<Arc<Catalog>>) -> Response {
    Json(catalog.summaries()).into_response()
}

async fn api_lesson(State(catalog): State<Arc<Catalog>>, Path(id): Path<String>) -> Response {
    match catalog.lesson(&id) {
        Some(lesson) => Json(lesson).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({
                "error": format!("There is no lesson called \"{id}\"."),
                "code": "unknown_lesson",
            })),
        )
            .into_response(),
    }
}

#[derive(rust_embed::RustEmbed)]
#[folder = "../web/static"]
struct StaticAssets;

async fn static_asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(file) = StaticAssets::get(&path) else {
        return (StatusCode::NOT_FOUND, "No such file.").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    // Vendored libraries change only with a docklab release; our own files may change with any
    // deploy, so browsers revalidate them (cheaply, thanks to the ETag).
    let cache = if path.starts_with("vendor/") {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = file.data.into_owned().into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(&path)),
        );
        response
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        Some("md" | "txt") => "text/plain; charset=utf-8",
        _ if path
            .rsplit('/')
            .next()
            .is_some_and(|name| name.starts_with("LICENSE")) =>
        {
            "text/plain; charset=utf-8"
        }
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use tower::ServiceExt;

    fn app() -> Router {
        router(Arc::new(
            Catalog::embedded().expect("the built-in content is valid"),
        ))
    }

    async fn get(path: &str) -> (StatusCode, HeaderMap, String) {
        let response = app()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn home_lists_the_seven_days() {
        let (status, headers, html) = get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert_eq!(html.matches("class=\"day-card\"").count(), 7, "{html}");
        for day in 24..=30 {
            assert!(
                html.contains(&format!("href=\"/lessons/day-{day}\"")),
                "day {day} missing"
            );
        }
        assert!(html.contains("Containers and the Docker lifecycle"));
    }

    #[tokio::test]
    async fn lesson_page_has_the_lab() {
        let (status, _, html) = get("/lessons/day-27").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("id=\"start-lab\""), "{html}");
        assert!(
            html.contains("data-exercise=\"day-27/volumes-lifecycle\""),
            "{html}"
        );
        assert!(html.contains("id=\"lab-status\""));
        assert!(html.contains("data-task-id=\"create\""));
        assert!(
            html.contains("<pre class=\"snippet\" data-run>"),
            "runnable snippets are rendered"
        );
        assert!(html.contains("/static/lab.js"));
    }

    #[tokio::test]
    async fn unknown_lesson_is_a_404_page() {
        let (status, headers, html) = get("/lessons/day-99").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(
            html.contains("day-99") && html.contains("See all lessons"),
            "{html}"
        );
    }

    #[tokio::test]
    async fn static_js_is_served_as_javascript_and_revalidated() {
        let (status, headers, body) = get("/static/lab.js").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert!(body.contains("docklabTerm"));

        let etag = headers[header::ETAG].clone();
        let request = Request::get("/static/lab.js")
            .header(header::IF_NONE_MATCH, etag)
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app().oneshot(request).await.unwrap().status(),
            StatusCode::NOT_MODIFIED
        );

        let (status, headers, _) = get("/static/vendor/xterm.css").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(get("/static/nope.js").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn api_lessons_has_the_documented_shape() {
        let (status, headers, body) = get("/api/lessons").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let lessons = json.as_array().unwrap();
        assert_eq!(lessons.len(), 7);
        let day27 = &lessons[3];
        assert_eq!(day27["id"], "day-27");
        assert_eq!(day27["day"], 27);
        assert!(day27["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(day27["summary"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(day27["exercises"][0]["id"], "day-27/volumes-lifecycle");
        assert!(day27["exercises"][0]["title"].is_string());
    }

    #[tokio::test]
    async fn api_lesson_has_tasks_and_no_checks() {
        let (status, _, body) = get("/api/lessons/day-24").await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["exercises"][0]["id"], "day-24/lifecycle");
        assert_eq!(json["exercises"][0]["tasks"][0]["id"], "create");
        assert!(json["exercises"][0]["tasks"][0].get("checks").is_none());

        let (status, _, body) = get("/api/lessons/day-99").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["code"], "unknown_lesson");
        assert!(json["error"].as_str().unwrap().contains("day-99"));
    }
}
