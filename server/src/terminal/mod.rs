//! The terminal WebSocket: `GET /api/sessions/{id}/terminal?token=…[&mode=view][&cols=N&rows=N]`.
//!
//! Everything is checked before the upgrade, so a refused client gets a plain HTTP error:
//!
//! * **Origin.** A browser always sends `Origin` on a WebSocket handshake; it must be one of the
//!   server's `--public-url`s, or the address the request went to when that is an IP literal or
//!   `localhost` (see `crate::origin`: a name is never trusted just because Host repeats it, which
//!   DNS rebinding would exploit). That stops another site from driving a learner's terminal
//!   (cross-site WebSocket hijacking). A request *without* `Origin` cannot come from a browser
//!   page, so it is allowed: command-line clients and tests still need the session token, which is
//!   the real credential.
//! * **Session and token**, as for the other session routes (`?token=` or `Authorization: Bearer`).

pub mod hub;
pub mod protocol;
pub mod ring;
pub mod viewer;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use serde::Deserialize;
use tracing::Instrument;

use crate::app::AppState;
use crate::error::AppError;
use crate::extract::Query;
use crate::registry::Session;
use crate::sessions::{authorize, require_ready};
use hub::ViewerMode;
use protocol::{ServerControl, TerminalStatus};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/sessions/{id}/terminal", get(terminal))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TerminalQuery {
    token: Option<String>,
    /// `view` for a read-only viewer; anything else is refused.
    mode: Option<ModeParam>,
    /// Size of a shell started by this attach (default 80x24).
    cols: Option<u32>,
    rows: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ModeParam {
    View,
    Interactive,
}

async fn terminal(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<TerminalQuery>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    check_origin(&state.config.site, &headers, crate::origin::request_host(&headers, &uri))?;
    // Set when an instructor types in a learner's terminal: resolves when they hand it back.
    let mut taken_over = None;
    let session = match authorize(&state, &id, &headers, query.token.as_deref()) {
        Ok(session) => session,
        // A class's instructor may watch (read-only) their own learners' terminals.
        Err(err) if matches!(query.mode, Some(ModeParam::View)) && query.token.is_none() => state
            .sessions
            .get(&id)
            .filter(|_| crate::classroom::may_view_session(&state, &headers, &id))
            .ok_or(err)?,
        // ...and type in one they took over.
        Err(err) if query.token.is_none() => {
            let (session, active) = crate::classroom::actions::takeover_for(&state, &headers, &id).ok_or(err)?;
            taken_over = Some(active);
            session
        }
        Err(err) => return Err(err),
    };
    require_ready(&session)?;
    let (cols, rows) = protocol::validate_size(query.cols.unwrap_or(80), query.rows.unwrap_or(24))
        .map_err(AppError::BadRequest)?;
    let mode = match query.mode {
        Some(ModeParam::View) => ViewerMode::ReadOnly,
        _ => ViewerMode::Interactive,
    };
    let upgrade = upgrade.map_err(|rejection| {
        AppError::BadRequest(format!("this route only speaks WebSocket: {}", rejection.body_text()))
    })?;
    let limit = state.config.terminal.max_message_bytes;
    let span = tracing::info_span!("session", id = %session.id);
    Ok(upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            async move {
                let viewer = serve_viewer(state, session, socket, mode, cols, rows);
                match taken_over {
                    Some(active) => tokio::select! {
                        _ = viewer => {}
                        _ = crate::classroom::actions::handed_back(active) => tracing::info!("take-over ended; instructor detached"),
                    },
                    None => viewer.await,
                }
            }
            .instrument(span)
        }))
}

async fn serve_viewer(state: AppState, session: std::sync::Arc<Session>, socket: WebSocket, mode: ViewerMode, cols: u16, rows: u16) {
    let _connection = state.metrics.ws_connection();
    let (mut sink, stream) = socket.split();
    if !session.terminal.has_live_shell().await {
        let starting = ServerControl::status(TerminalStatus::Reconnecting, Some("starting a shell".into()));
        if viewer::send_control(&mut sink, &starting).await.is_err() {
            return;
        }
    }
    let backend = state.backend.clone();
    let id = session.id.clone();
    let attached = session.terminal.attach(mode, || async move { backend.open_terminal(&id, cols, rows).await }).await;
    let viewer = match attached {
        Ok(viewer) => viewer,
        Err(err) => {
            tracing::warn!(error = %err, "could not open a terminal");
            let ended = ServerControl::status(TerminalStatus::Ended, Some("the shell could not be started".into()));
            let _ = viewer::send_control(&mut sink, &ended).await;
            return;
        }
    };
    tracing::info!(?mode, "viewer attached");
    let exit = viewer::run_viewer(sink, stream, viewer, &state.config.terminal).await;
    tracing::info!(?exit, "viewer left");
}

/// Refuses a browser request from another site; see the module comment.
fn check_origin(site: &crate::origin::SiteNames, headers: &HeaderMap, host: Option<&str>) -> Result<(), AppError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or("(not text)");
    if site.origin_allowed(origin, host) {
        Ok(())
    } else {
        Err(AppError::ForeignOrigin { origin: origin.chars().take(200).collect() })
    }
}

#[cfg(test)]
mod tests;
