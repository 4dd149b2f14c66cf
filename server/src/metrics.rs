//! `GET /metrics` (Prometheus text format, written by hand) and `GET /healthz`.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;

/// Upper bounds of the duration histograms, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// The server's counters. Sessions are counted from the registry when scraped.
#[derive(Debug)]
pub struct Metrics {
    /// From a create request to the session's Docker engine answering.
    pub session_start: Histogram,
    /// One evaluation of an exercise's checks.
    pub grade: Histogram,
    ws_connections: AtomicI64,
    /// Sessions ended since the server started, by reason (`lifecycle::EndReason::label`).
    sessions_ended: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            session_start: Histogram::new(DURATION_BUCKETS),
            grade: Histogram::new(DURATION_BUCKETS),
            ws_connections: AtomicI64::new(0),
            sessions_ended: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Counts an open terminal WebSocket until the returned guard is dropped.
    pub fn ws_connection(self: &Arc<Self>) -> WsConnection {
        self.ws_connections.fetch_add(1, Ordering::Relaxed);
        WsConnection(self.clone())
    }

    /// Counts one ended session; `reason` is a label from `lifecycle::EndReason::label`.
    pub fn session_ended(&self, reason: &'static str) {
        *self.sessions_ended.lock().unwrap_or_else(|p| p.into_inner()).entry(reason).or_default() += 1;
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, sessions_active: usize) -> String {
        let mut out = String::new();
        gauge(&mut out, "docklab_sessions_active", "Sessions starting or running.", sessions_active as i64);
        self.session_start.render(&mut out, "docklab_session_start_seconds", "Time to create a session machine.");
        self.grade.render(&mut out, "docklab_grade_seconds", "Time to evaluate an exercise's checks.");
        let ws = self.ws_connections.load(Ordering::Relaxed);
        gauge(&mut out, "docklab_ws_connections", "Open terminal WebSockets.", ws);
        let name = "docklab_sessions_ended_total";
        let _ = writeln!(out, "# HELP {name} Sessions ended since the server started, by reason.\n# TYPE {name} counter");
        for (reason, count) in self.sessions_ended.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {count}");
        }
        out
    }
}

/// Decrements the WebSocket gauge when dropped.
#[derive(Debug)]
pub struct WsConnection(Arc<Metrics>);

impl Drop for WsConnection {
    fn drop(&mut self) {
        self.0.ws_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A Prometheus histogram of durations.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<HistogramData>,
}

#[derive(Debug, Default)]
struct HistogramData {
    /// Per bucket (not cumulative), plus one for values above the last bound.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, inner: Mutex::new(HistogramData { counts: vec![0; bounds.len() + 1], sum: 0.0 }) }
    }

    pub fn observe(&self, duration: Duration) {
        let secs = duration.as_secs_f64();
        let bucket = self.bounds.iter().position(|&le| secs <= le).unwrap_or(self.bounds.len());
        let mut data = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        data.counts[bucket] += 1;
        data.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let data = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (le, count) in self.bounds.iter().zip(&data.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let total: u64 = data.counts.iter().sum();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}\n{name}_sum {}\n{name}_count {total}", data.sum);
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut body = state.metrics.render(state.sessions.len());
    gauge(&mut body, "docklab_warm_machines", "Machines started ahead of demand, waiting for a session.", state.warm.len() as i64);
    if let Some(d) = state.backend.disk_commitment().await {
        gauge(&mut body, "docklab_disk_promised_bytes", "Sum of the caps of every machine's (sparse) disk.", d.promised_bytes as i64);
        gauge(&mut body, "docklab_disk_used_bytes", "Bytes the machines' disks take on the host.", d.used_bytes as i64);
        gauge(&mut body, "docklab_disk_free_bytes", "Free bytes on the state directory's filesystem.", d.free_bytes as i64);
        let _ = writeln!(
            body,
            "# HELP docklab_disk_overcommit_ratio Space the disks may still claim over free space; creation stops past docklab_disk_overcommit_limit.\n# TYPE docklab_disk_overcommit_ratio gauge\ndocklab_disk_overcommit_ratio {:.3}\n# HELP docklab_disk_overcommit_limit The operator's bound (DOCKLAB_DISK_OVERCOMMIT; 0 is none).\n# TYPE docklab_disk_overcommit_limit gauge\ndocklab_disk_overcommit_limit {}",
            d.ratio(),
            d.limit
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.backend.health().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "not ready to create sessions");
            let body = json!({"status": "unavailable", "error": reason, "code": "not_ready"});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.session_start.observe(Duration::from_millis(300));
        metrics.session_start.observe(Duration::from_secs(60));
        let text = metrics.render(3);
        assert!(text.contains("docklab_sessions_active 3\n"));
        assert!(text.contains("docklab_session_start_seconds_bucket{le=\"0.25\"} 0\n"));
        assert!(text.contains("docklab_session_start_seconds_bucket{le=\"0.5\"} 1\n"));
        assert!(text.contains("docklab_session_start_seconds_bucket{le=\"30\"} 1\n"));
        assert!(text.contains("docklab_session_start_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("docklab_session_start_seconds_count 2\n"));
        assert!(text.contains("docklab_session_start_seconds_sum 60.3\n"));
    }

    #[test]
    fn the_websocket_gauge_follows_its_guards() {
        let metrics = Arc::new(Metrics::default());
        let guard = metrics.ws_connection();
        assert!(metrics.render(0).contains("docklab_ws_connections 1\n"));
        drop(guard);
        assert!(metrics.render(0).contains("docklab_ws_connections 0\n"));
    }

    #[test]
    fn ended_sessions_are_counted_by_reason() {
        let metrics = Metrics::default();
        assert!(metrics.render(0).contains("# TYPE docklab_sessions_ended_total counter\n"));
        assert!(!metrics.render(0).contains("docklab_sessions_ended_total{"), "no reason before the first end");
        metrics.session_ended("idle");
        metrics.session_ended("deleted");
        metrics.session_ended("idle");
        let text = metrics.render(0);
        assert!(text.contains("docklab_sessions_ended_total{reason=\"deleted\"} 1\n"), "{text}");
        assert!(text.contains("docklab_sessions_ended_total{reason=\"idle\"} 2\n"), "{text}");
    }
}
