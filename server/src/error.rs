//! `AppError`: every way an API request can fail, as a status, a machine word and a human sentence.
//!
//! The body is always `{"error": "<human sentence>", "code": "<machine_word>"}`. Client errors say
//! what was wrong; server errors are logged (inside the request span) and say nothing internal.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the request needs a session token: send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("the session token is not valid for this session")]
    BadToken,
    #[error("this WebSocket request comes from a foreign origin ({origin})")]
    ForeignOrigin { origin: String },
    #[error("no exercise is called {exercise:?}")]
    UnknownExercise { exercise: String },
    #[error("no session {id} exists (it may have expired or been deleted)")]
    UnknownSession { id: String },
    #[error("session {id} is {state}: it cannot run commands or terminals now")]
    SessionNotReady { id: String, state: &'static str },
    #[error("all {max} session slots are in use; try again later")]
    OutOfCapacity { max: usize },
    #[error("too many new machines from your address or browser: try again in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("session {id} is already running {max} commands; wait for one to finish and try again")]
    TooManyExecs { id: String, max: usize },
    #[error("the session machine could not start: {reason}")]
    StartFailed { reason: String },
    #[error("this exercise has no task {task:?}")]
    UnknownTask { task: String },
    #[error("every hint of task {task} is already shown")]
    NoMoreHints { task: String },
    #[error("exercise {exercise} has no reference solution")]
    NoSolution { exercise: String },
    #[error("the Docker engine of session {id} is not answering ({reason}); try again in a moment")]
    EngineUnavailable { id: String, reason: String },
    /// Something broke on our side; `detail` is logged, never sent.
    #[error("something went wrong on the server")]
    Internal { detail: String },
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    code: &'a str,
}

impl AppError {
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        AppError::Internal { detail: detail.to_string() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::MissingToken | AppError::BadToken => StatusCode::UNAUTHORIZED,
            AppError::ForeignOrigin { .. } => StatusCode::FORBIDDEN,
            AppError::UnknownExercise { .. }
            | AppError::UnknownSession { .. }
            | AppError::UnknownTask { .. }
            | AppError::NoSolution { .. } => StatusCode::NOT_FOUND,
            AppError::NoMoreHints { .. } => StatusCode::CONFLICT,
            AppError::SessionNotReady { .. } => StatusCode::CONFLICT,
            AppError::OutOfCapacity { .. } | AppError::StartFailed { .. } | AppError::EngineUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::RateLimited { .. } | AppError::TooManyExecs { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine word clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::MissingToken => "missing_token",
            AppError::BadToken => "bad_token",
            AppError::ForeignOrigin { .. } => "foreign_origin",
            AppError::UnknownExercise { .. } => "unknown_exercise",
            AppError::UnknownSession { .. } => "unknown_session",
            AppError::SessionNotReady { .. } => "session_not_ready",
            AppError::OutOfCapacity { .. } => "out_of_capacity",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::TooManyExecs { .. } => "too_many_execs",
            AppError::StartFailed { .. } => "start_failed",
            AppError::UnknownTask { .. } => "unknown_task",
            AppError::NoMoreHints { .. } => "no_more_hints",
            AppError::NoSolution { .. } => "no_solution",
            AppError::EngineUnavailable { .. } => "engine_unavailable",
            AppError::Internal { .. } => "internal",
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match &self {
            AppError::Internal { detail } => tracing::error!(%detail, "request failed"),
            AppError::StartFailed { reason } => tracing::warn!(%reason, "session machine did not start"),
            _ => tracing::debug!(code = self.code(), error = %self, "request refused"),
        }
        let body = ErrorBody { error: self.to_string(), code: self.code() };
        let mut response = (self.status(), Json(body)).into_response();
        if let AppError::TooManyExecs { .. } = self {
            // A command's usual length: a client that waits this long usually finds a free slot.
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        if let AppError::RateLimited { retry_after_s } = self {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(retry_after_s));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak_details() {
        let err = AppError::internal("open /var/lib/docklab/secret: permission denied");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.to_string().contains("secret"));
    }
}
