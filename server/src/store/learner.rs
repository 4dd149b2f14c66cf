//! Anonymous learners: the `docklab_learner` cookie (random id, HttpOnly, SameSite=Lax), and
//! `GET /api/progress`, `PUT /api/learner`.
//!
//! The middleware gives every request a [`CurrentLearner`]; a browser without the cookie gets a
//! fresh id set on the response. Nothing is written to the store until the learner does something.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, put};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};

use super::{Progress, ProgressStore};
use crate::app::AppState;
use crate::error::AppError;
use crate::extract::Json;

pub const COOKIE: &str = "docklab_learner";
/// One year.
const COOKIE_MAX_AGE_S: u64 = 365 * 24 * 3600;
const MAX_DISPLAY_NAME: usize = 60;

/// The learner behind a request.
#[derive(Clone)]
pub struct CurrentLearner {
    /// [`learner_key`] of their cookie.
    pub id: String,
    pub store: Arc<dyn ProgressStore>,
}

impl CurrentLearner {
    /// Their progress; empty (and logged) if the store fails, so pages still render.
    pub fn progress(&self) -> Progress {
        self.store.progress(&self.id).unwrap_or_else(|err| {
            tracing::warn!(error = %err, "could not read a learner's progress");
            Progress::default()
        })
    }
}

/// The learner cookie from the request, if well-formed.
fn learner_from_cookies(headers: &HeaderMap) -> Option<String> {
    crate::extract::cookie_value(headers, COOKIE)
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

/// The id a learner is known by everywhere on the server (database, classes, grading): derived
/// from their cookie by SHA-256 (128 bits of it, in hex), so that the database does not hold the
/// cookie that would let anyone act as them.
pub fn learner_key(cookie: &str) -> String {
    super::token_hash(&format!("docklab-learner:{cookie}"))[..32].to_owned()
}

/// Middleware: attaches a [`CurrentLearner`], setting the cookie for a new learner.
pub async fn learner_cookie(State(store): State<Arc<dyn ProgressStore>>, mut request: Request, next: Next) -> Response {
    let (id, new) = match learner_from_cookies(request.headers()) {
        Some(id) => (id, false),
        None => (hex::encode(rand::random::<[u8; 16]>()), true),
    };
    request.extensions_mut().insert(CurrentLearner { id: learner_key(&id), store });
    let mut response = next.run(request).await;
    if new {
        let cookie = format!("{COOKIE}={id}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

pub fn router() -> Router<AppState> {
    Router::new().route("/api/progress", get(get_progress)).route("/api/learner", put(put_learner))
}

async fn get_progress(Extension(learner): Extension<CurrentLearner>) -> Result<Json<Progress>, AppError> {
    learner.store.progress(&learner.id).map(Json).map_err(AppError::internal)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LearnerBody {
    /// `null` or `""` clears it.
    display_name: Option<String>,
}

#[derive(Debug, Serialize)]
struct LearnerView {
    display_name: Option<String>,
}

async fn put_learner(
    Extension(learner): Extension<CurrentLearner>,
    Json(body): Json<LearnerBody>,
) -> Result<Json<LearnerView>, AppError> {
    let name = body.display_name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if let Some(name) = &name {
        if name.chars().count() > MAX_DISPLAY_NAME || name.chars().any(char::is_control) {
            return Err(AppError::BadRequest(format!(
                "`display_name` must be at most {MAX_DISPLAY_NAME} characters, without control characters"
            )));
        }
    }
    learner.store.set_display_name(&learner.id, name.as_deref()).map_err(AppError::internal)?;
    Ok(Json(LearnerView { display_name: name }))
}
