//! Which names docklab answers to, and which pages may open its terminal.
//!
//! **DNS rebinding.** A page on `attacker.example` whose name is made to resolve to 127.0.0.1 talks
//! to a local docklab with `Host: attacker.example:8080` and `Origin: http://attacker.example:8080`:
//! a check that compares Origin with Host alone lets it through. So:
//!
//! * every request must name one of docklab's hosts ([`check_host`], a middleware around the whole
//!   router; anything else gets 421): an IP literal (which no DNS answer can rebind), `localhost`,
//!   the host of a `--public-url`, or a host added with [`SiteNames::with_host`];
//! * a browser's `Origin` on the terminal WebSocket must be a `--public-url`, or the very address the
//!   request went to when that address is an IP literal or `localhost` (the default for a server
//!   used at `http://127.0.0.1:8080`). A name that is not configured is never trusted.
//!
//! A request without `Origin` or `Host` cannot come from a browser page and is let through: the
//! session token is the credential.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The names and origins docklab's own pages are served from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteNames {
    /// `--public-url`s as normalised origins (`https://lab.example.org`, default port left out).
    origins: Vec<String>,
    /// Host names requests may carry besides IP literals and `localhost` (lowercase, no port).
    /// An entry starting with `.` allows every name under it.
    hosts: Vec<String>,
}

impl SiteNames {
    /// From the operator's `--public-url`s (already checked by [`parse_public_url`]).
    pub fn new(public_urls: &[String]) -> Self {
        let mut names = SiteNames::default();
        for url in public_urls {
            if let Some((scheme, authority)) = normalise_origin(url) {
                names.hosts.push(split_host(&authority).0.to_owned());
                names.origins.push(format!("{scheme}://{authority}"));
            }
        }
        names
    }

    /// Also answers to `host` (no port; `.example.org` for every name under it), without trusting
    /// pages served there with the terminal (e.g. a separate port-preview hostname).
    pub fn with_host(mut self, host: &str) -> Self {
        self.hosts.push(host.trim_end_matches('.').to_ascii_lowercase());
        self
    }

    /// Whether a request's `Host` (`name[:port]`) is one of docklab's names.
    pub fn host_allowed(&self, host: &str) -> bool {
        let (name, _) = split_host(host);
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        unrebindable(&name)
            || self.hosts.iter().any(|allowed| match allowed.strip_prefix('.') {
                Some(suffix) => name.strip_suffix(suffix).is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => *allowed == name,
            })
    }

    /// Whether a page with this `Origin` may open the terminal of a request sent to `host`.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let Some((scheme, authority)) = normalise_origin(origin) else { return false };
        let normalised = format!("{scheme}://{authority}");
        if self.origins.contains(&normalised) {
            return true;
        }
        // The server's own address, when it is one no DNS answer can stand for.
        let Some(host) = host else { return false };
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        let host = host.to_ascii_lowercase();
        let host = host.strip_suffix(default_port).unwrap_or(&host);
        authority == host && unrebindable(split_host(&authority).0)
    }
}

/// An IP literal or `localhost`: names a DNS answer cannot make point somewhere else.
fn unrebindable(name: &str) -> bool {
    let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    name == "localhost" || bare.parse::<std::net::IpAddr>().is_ok()
}

/// `name[:port]` → (`name`, `port`); IPv6 literals keep their brackets.
fn split_host(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => (&host[..=end], host[end + 1..].strip_prefix(':')),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

/// `HTTP://Lab.Example.org:443/` → (`http`, `lab.example.org:443`); `https://x:443` → (`https`,
/// `x`). Only http(s) origins with a host and nothing after it (a trailing `/` aside).
fn normalise_origin(text: &str) -> Option<(&'static str, String)> {
    let lower = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest, default) = if let Some(rest) = lower.strip_prefix("http://") {
        ("http", rest, ":80")
    } else if let Some(rest) = lower.strip_prefix("https://") {
        ("https", rest, ":443")
    } else {
        return None;
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ', '\\']) || !rest.is_ascii() {
        return None;
    }
    let authority = rest.strip_suffix(default).unwrap_or(rest);
    let (name, port) = split_host(authority);
    if name.is_empty() || port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return None;
    }
    Some((scheme, authority.to_owned()))
}

/// Checks a `--public-url`: a scheme and a host (and port), nothing else.
pub fn parse_public_url(text: &str) -> Result<String, String> {
    normalise_origin(text).map(|(scheme, authority)| format!("{scheme}://{authority}")).ok_or_else(|| {
        format!("{text:?} is not a public URL: give the scheme and host browsers use, e.g. https://lab.example.org")
    })
}

/// Middleware: refuses a request whose `Host` is not one of docklab's names (421, with what to
/// configure), so a rebound name reaches nothing: no page, no API, no terminal.
pub async fn check_host(State(names): State<std::sync::Arc<SiteNames>>, request: Request, next: Next) -> Response {
    let host = request_host(request.headers(), request.uri()).map(str::to_owned);
    match host {
        Some(host) if !names.host_allowed(&host) => {
            let shown: String = host.chars().take(100).collect();
            tracing::debug!(host = ?shown, "request for a host docklab does not serve refused");
            let body = serde_json::json!({
                "error": format!(
                    "this server does not answer to the name {shown:?}; if browsers reach docklab by it, \
                     start `docklab serve` with --public-url http://{shown} (or https://)"
                ),
                "code": "unknown_host",
            });
            (StatusCode::MISDIRECTED_REQUEST, axum::Json(body)).into_response()
        }
        _ => next.run(request).await,
    }
}

/// The host a request was sent to: `Host`, or on HTTP/2 the URI's authority.
pub fn request_host<'a>(headers: &'a axum::http::HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    match headers.get(header::HOST) {
        // A Host that is not text is no name of ours.
        Some(value) => Some(value.to_str().unwrap_or("(not text)")),
        None => uri.authority().map(|a| a.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_and_localhost_are_always_ours_other_names_only_when_configured() {
        let default = SiteNames::default();
        for host in ["127.0.0.1:8080", "127.0.0.1", "localhost:8080", "LOCALHOST", "[::1]:8080", "10.0.0.5:80"] {
            assert!(default.host_allowed(host), "{host}");
        }
        for host in ["attacker.example:8080", "attacker.example", "localhost.attacker.example", "127.0.0.1.nip.io:8080", "", "[::1"] {
            assert!(!default.host_allowed(host), "{host}");
        }
        let configured = SiteNames::new(&["https://Lab.Example.org".into()]).with_host(".preview.example.org");
        assert!(configured.host_allowed("lab.example.org"));
        assert!(configured.host_allowed("lab.example.org.:443"));
        assert!(configured.host_allowed("s1-8080.preview.example.org"));
        assert!(!configured.host_allowed("preview.example.org"));
        assert!(!configured.host_allowed("evilpreview.example.org"));
        assert!(!configured.host_allowed("attacker.example"));
    }

    #[test]
    fn a_rebound_name_is_not_trusted_even_when_origin_matches_host() {
        let default = SiteNames::default();
        // The DNS-rebinding request: Origin and Host agree, but the name is the attacker's.
        assert!(!default.origin_allowed("http://attacker.example:8080", Some("attacker.example:8080")));
        assert!(default.origin_allowed("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(default.origin_allowed("http://localhost:8080", Some("localhost:8080")));
        assert!(default.origin_allowed("http://[::1]:8080", Some("[::1]:8080")));
        assert!(default.origin_allowed("http://localhost", Some("localhost:80")));
        // Another site on the same machine (another port) is another origin.
        assert!(!default.origin_allowed("http://127.0.0.1:9999", Some("127.0.0.1:8080")));
        assert!(!default.origin_allowed("null", Some("127.0.0.1:8080")));
        assert!(!default.origin_allowed("http://127.0.0.1:8080", None));
    }

    #[test]
    fn public_urls_are_trusted_origins_whatever_host_a_proxy_passes() {
        let names = SiteNames::new(&[parse_public_url("https://lab.example.org:443/").unwrap()]);
        assert!(names.origin_allowed("https://lab.example.org", Some("127.0.0.1:8080")));
        assert!(names.origin_allowed("HTTPS://LAB.EXAMPLE.ORG", None));
        assert!(!names.origin_allowed("http://lab.example.org", Some("lab.example.org")), "scheme counts");
        assert!(!names.origin_allowed("https://lab.example.org:8443", Some("lab.example.org:8443")));
        // A preview hostname is served, but its pages do not get the terminal.
        let names = names.with_host("preview.example.org");
        assert!(names.host_allowed("preview.example.org"));
        assert!(!names.origin_allowed("https://preview.example.org", Some("preview.example.org")));
    }

    #[test]
    fn public_urls_are_checked() {
        assert_eq!(parse_public_url("https://lab.example.org/").unwrap(), "https://lab.example.org");
        assert_eq!(parse_public_url("http://LAB:8080").unwrap(), "http://lab:8080");
        for bad in ["lab.example.org", "ftp://x", "https://", "https://x/path", "https://x:port", "https://u@x"] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
    }
}
