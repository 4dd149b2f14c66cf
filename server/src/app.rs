//! The router (`app`), its shared state, and `serve` (listen until told to stop).

use std::future::Future;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::Router;
use lessons::Catalog;
use sandbox::MachineBackend;
use tokio::net::TcpListener;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::config::ServerConfig;
use crate::grading::live::Grading;
use crate::store::{ProgressStore, SqliteStore};
use crate::metrics::Metrics;
use crate::registry::SessionRegistry;
use crate::{drills, grading, lifecycle, metrics, pages, ports, sessions, store, terminal};

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<dyn MachineBackend>,
    pub sessions: Arc<SessionRegistry>,
    pub catalog: Arc<Catalog>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ServerConfig>,
    /// Live grading of every ready session.
    pub grading: Arc<Grading>,
    /// Learners' progress.
    pub store: Arc<dyn ProgressStore>,
    /// Session creations per client.
    pub create_limiter: Arc<crate::ratelimit::RateLimiter>,
    /// Instructors and classes.
    pub classroom: Arc<crate::classroom::Classroom>,
    /// Machines started ahead of demand.
    pub warm: Arc<crate::warm::WarmPool>,
}

impl AppState {
    pub fn new(backend: Arc<dyn MachineBackend>, catalog: Arc<Catalog>, config: ServerConfig) -> Self {
        let sessions = SessionRegistry::new(config.max_sessions, config.session_ttl, config.terminal.clone());
        let create_limiter = Arc::new(crate::ratelimit::RateLimiter::new(config.create_per_minute, config.create_burst));
        let warm = Arc::new(crate::warm::WarmPool::new(config.warm_machines));
        AppState {
            backend,
            sessions: Arc::new(sessions),
            catalog,
            metrics: Arc::new(Metrics::default()),
            config: Arc::new(config),
            grading: Arc::new(Grading::default()),
            // Until `with_store` gives it the real database: progress lasts as long as the process.
            store: Arc::new(SqliteStore::in_memory()),
            create_limiter,
            classroom: Arc::new(crate::classroom::Classroom::new(crate::store::classroom::ClassStore::in_memory())),
            warm,
        }
    }

    /// Keeps instructors and classes in `classroom` (the server's SQLite file) instead of memory.
    pub fn with_classroom(mut self, classroom: Arc<crate::classroom::Classroom>) -> Self {
        self.classroom = classroom;
        self
    }

    /// Keeps progress in `store` (the server's SQLite file) instead of memory.
    pub fn with_store(mut self, store: Arc<dyn ProgressStore>) -> Self {
        self.store = store;
        self
    }
}

/// Every route of the server, with request tracing.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(sessions::router())
        .merge(terminal::router())
        .merge(metrics::router())
        .merge(grading::routes::router())
        .merge(store::learner::router())
        .merge(ports::router())
        .merge(drills::router())
        .merge(crate::classroom::router())
        .merge(crate::visuals::router())
        .with_state(state.clone())
        .merge(pages::router(state.catalog.clone()))
        .layer(axum::middleware::from_fn_with_state(state.store.clone(), store::learner::learner_cookie))
        .layer(axum::middleware::from_fn_with_state(state.config.clone(), crate::security_headers::add))
        // Outside everything else: a request for a name docklab does not serve (DNS rebinding) reaches nothing.
        .layer(axum::middleware::from_fn_with_state(Arc::new(state.config.site.clone()), crate::origin::check_host))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    // The matched route, never the raw URI: terminal URLs carry the session token.
                    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
                    tracing::info_span!("request", method = %request.method(), route)
                })
                // AppError already logs server errors with their cause; don't log them twice.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
}

/// Serves `app(state)` on `listener`, with the session reaper, until `shutdown` resolves; then
/// destroys every session so nothing outlives the server.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    lifecycle::adopt_leftovers(&state).await;
    let reaper = lifecycle::spawn_reaper(state.clone());
    let docker_watch = lifecycle::spawn_docker_watch(state.clone());
    let warm_filler = crate::warm::spawn_filler(state.clone());
    // Header and idle timeouts, and a cap on connections per client address (`sandbox::listen`).
    let limits = sandbox::listen::Limits { per_client: state.config.connections_per_client, ..sandbox::listen::Limits::API };
    sandbox::listen::serve(listener, app(state.clone()), limits, None, shutdown).await;
    let result: std::io::Result<()> = Ok(());
    reaper.abort();
    docker_watch.abort();
    warm_filler.abort();
    // Pooled machines are nobody's session: they never outlive the server.
    crate::warm::destroy_all(&state).await;
    if state.config.end_sessions_on_exit {
        lifecycle::destroy_all_sessions_on_shutdown(&state).await;
    } else {
        lifecycle::detach_sessions_on_shutdown(&state).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    use super::*;
    use crate::terminal::protocol::{ServerControl, TerminalStatus};
    use crate::testing::{fake_state, ready_session};

    #[tokio::test]
    async fn serve_stops_with_a_terminal_open_and_destroys_every_session() {
        let (state, backend) = fake_state(ServerConfig::default());
        let (id, token) = ready_session(&state, &backend).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));

        let url = format!("ws://{addr}/api/sessions/{id}/terminal?token={token}");
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut statuses = Vec::new();
        let read_status = async |socket: &mut tokio_tungstenite::WebSocketStream<_>| loop {
            match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap() {
                Some(Ok(Message::Text(text))) => return serde_json::from_str::<ServerControl>(text.as_str()).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        };
        while !matches!(statuses.last(), Some(ServerControl::Status { state: TerminalStatus::Ready, .. })) {
            statuses.push(read_status(&mut socket).await);
        }

        stop.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), server).await.expect("serve did not stop");
        result.unwrap().unwrap();
        assert_eq!(*backend.destroyed.lock().unwrap(), vec![id]);
        assert!(state.sessions.is_empty());
        assert_eq!(
            read_status(&mut socket).await,
            ServerControl::status(TerminalStatus::Ended, Some("the server is shutting down".into()))
        );
    }
}
