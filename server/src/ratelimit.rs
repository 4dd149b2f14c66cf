//! Per-client rate limiting of session creation: a token bucket per client address, so a storm
//! of creations from one place gets `429` instead of half-made machines.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// Token buckets by client address.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Option<IpAddr>, (f64, Instant)>>,
    per_second: f64,
    burst: f64,
}

impl RateLimiter {
    /// `per_minute` creations on average, up to `burst` at once.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        RateLimiter { buckets: Mutex::new(HashMap::new()), per_second: per_minute as f64 / 60.0, burst: burst.max(1) as f64 }
    }

    /// Takes one token for `client`; `Err(wait)` says how long until one is available.
    pub fn check(&self, client: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Forget clients whose bucket is full again, so the map stays small.
        if buckets.len() > 10_000 {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(client).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second.max(1e-9)))
        }
    }
}

/// The client's address, when the server was started with connection info (tests may not be).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_client() {
        let rl = RateLimiter::new(60, 3);
        let t0 = Instant::now();
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(rl.check(a, t0).is_ok());
        }
        let wait = rl.check(a, t0).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert!(rl.check(b, t0).is_ok(), "another client is not affected");
        assert!(rl.check(a, t0 + Duration::from_millis(1100)).is_ok(), "one token a second comes back");
    }

    #[tokio::test]
    async fn a_creation_storm_gets_429_with_a_clear_error() {
        use tower::ServiceExt;
        let config = crate::config::ServerConfig { create_burst: 2, create_per_minute: 1, ..Default::default() };
        let (state, _backend) = crate::testing::fake_state(config);
        let exercise = crate::testing::some_exercise(&state);
        let app = crate::app::app(state);
        let mut codes = Vec::new();
        for _ in 0..4 {
            let req = axum::http::Request::post("/api/sessions")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(format!("{{\"exercise\":\"{exercise}\"}}")))
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            codes.push(resp.status().as_u16());
            if resp.status() == 429 {
                let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["code"], "rate_limited");
                assert!(v["error"].as_str().unwrap().contains("try again in"));
            }
        }
        assert_eq!(codes, vec![201, 201, 429, 429]);
    }
}
