//! The router (`app`), its shared state, and `serve` (listen until told to stop).

use std::future::Future;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::Router;
use lessons::Catalog;
use sandbox::MachineBackend;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::registry::SessionRegistry;
use crate::{lifecycle, metrics, pages, sessions, terminal};

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<dyn MachineBackend>,
    pub sessions: Arc<SessionRegistry>,
    pub catalog: Arc<Catalog>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ServerConfig>,
}

impl AppState {
    pub fn new(backend: Arc<dyn MachineBackend>, catalog: Arc<Catalog>, config: ServerConfig) -> Self {
        let sessions = SessionRegistry::new(config.max_sessions, config.session_ttl, config.terminal.clone());
        AppState {
            backend,
            sessions: Arc::new(sessions),
            catalog,
            metrics: Arc::new(Metrics::default()),
            config: Arc::new(config),
        }
    }
}

/// Every route of the server, with request tracing.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(sessions::router())
        .merge(terminal::router())
        .merge(metrics::router())
        .with_state(state.clone())
        .merge(pages::router(state.catalog.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            // The matched route, never the raw URI: terminal URLs carry the session token.
            let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
            tracing::info_span!("request", method = %request.method(), route)
        }))
}

/// Serves `app(state)` on `listener`, with the session reaper, until `shutdown` resolves; then
/// destroys every session so nothing outlives the server.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    lifecycle::destroy_leftovers(&state).await;
    let reaper = lifecycle::spawn_reaper(state.clone());
    let result = axum::serve(listener, app(state.clone())).with_graceful_shutdown(shutdown).await;
    reaper.abort();
    lifecycle::destroy_all_sessions_on_shutdown(&state).await;
    result
}
