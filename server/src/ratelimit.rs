//! Rate limiting by token buckets: session creation, resets and class joins per client address,
//! per learner (cookie) and per class (see [`Client`]), so a storm of machine starts from one
//! place gets `429` with `Retry-After` instead of half-made machines; and instructor logins per
//! address and per account (`classroom::auth`).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// Who a machine start is charged to. A start must find a token in every bucket it names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    /// The client's address (none when the server runs without connection info, in tests).
    Addr(Option<IpAddr>),
    /// The learner's `docklab_learner` cookie id.
    Learner(String),
    /// A class: every join that starts a machine.
    Class(String),
}

/// How fast a bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub fn per_minute(per_minute: u32, burst: u32) -> Rate {
        Rate { per_second: f64::from(per_minute) / 60.0, burst: f64::from(burst.max(1)) }
    }
}

/// Token buckets by key.
#[derive(Debug)]
pub struct RateLimiter<K = Client> {
    /// Tokens left, when last counted, and the bucket's rate.
    buckets: Mutex<HashMap<K, (f64, Instant, Rate)>>,
    rate: Rate,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// `per_minute` on average, up to `burst` at once.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self::with_rate(Rate::per_minute(per_minute, burst))
    }

    pub fn with_rate(rate: Rate) -> Self {
        RateLimiter { buckets: Mutex::new(HashMap::new()), rate }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one token for `client`; `Err(wait)` says how long until one is available.
    pub fn check(&self, client: K, now: Instant) -> Result<(), Duration> {
        self.check_all(&[(client, self.rate)], now)
    }

    /// Takes one token from each bucket, or from none when one of them is empty: then
    /// `Err(wait)` is how long until every one of them has a token.
    pub fn check_all(&self, keys: &[(K, Rate)], now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Forget buckets that are full again, so the map stays small.
        if buckets.len() > 10_000 {
            buckets.retain(|_, (tokens, at, rate)| *tokens + now.duration_since(*at).as_secs_f64() * rate.per_second < rate.burst);
        }
        let mut wait = Duration::ZERO;
        for (key, rate) in keys {
            let (tokens, at, _) = buckets.entry(key.clone()).or_insert((rate.burst, now, *rate));
            *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate.per_second).min(rate.burst);
            *at = now;
            if *tokens < 1.0 {
                wait = wait.max(Duration::from_secs_f64((1.0 - *tokens) / rate.per_second.max(1e-9)));
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        for (key, _) in keys {
            if let Some((tokens, _, _)) = buckets.get_mut(key) {
                *tokens -= 1.0;
            }
        }
        Ok(())
    }

    /// Gives back the token an attempt took (a login that succeeded).
    pub fn refund(&self, key: &K) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((tokens, _, rate)) = buckets.get_mut(key) {
            *tokens = (*tokens + 1.0).min(rate.burst);
        }
    }
}

/// Whole seconds to wait, at least one: the `Retry-After` of a 429.
pub fn retry_after_s(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
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
        let a = Client::Addr(Some("10.0.0.1".parse().unwrap()));
        let b = Client::Addr(Some("10.0.0.2".parse().unwrap()));
        for _ in 0..3 {
            assert!(rl.check(a.clone(), t0).is_ok());
        }
        let wait = rl.check(a.clone(), t0).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert!(rl.check(b, t0).is_ok(), "another client is not affected");
        assert!(rl.check(a, t0 + Duration::from_millis(1100)).is_ok(), "one token a second comes back");
    }

    #[test]
    fn every_bucket_named_must_have_a_token_and_none_is_taken_otherwise() {
        let rl = RateLimiter::new(60, 2);
        let t0 = Instant::now();
        let rate = rl.rate();
        let addr = (Client::Addr(None), rate);
        let learner = |n: &str| (Client::Learner(n.into()), rate);
        assert!(rl.check_all(&[addr.clone(), learner("l1")], t0).is_ok());
        assert!(rl.check_all(&[addr.clone(), learner("l1")], t0).is_ok());
        assert!(rl.check_all(&[addr.clone(), learner("l1")], t0).is_err(), "the learner is out");
        // A fresh cookie does not help: the address is out as well.
        assert!(rl.check_all(&[addr.clone(), learner("l2")], t0).is_err());
        let other = (Client::Addr(Some("10.0.0.9".parse().unwrap())), rate);
        assert!(rl.check_all(&[other.clone(), learner("l1")], t0).is_err(), "another address does not help the learner");
        assert!(rl.check_all(&[other, learner("l3")], t0).is_ok());
        assert_eq!(retry_after_s(Duration::from_millis(1200)), 2);
        assert_eq!(retry_after_s(Duration::ZERO), 1);
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
