//! The port preview against a hostile app (SECURITY-TESTS.md case 24, and the headers of 34), at
//! the HTTP level, with a real server, a real machine and the app in a real container: what the
//! browser sends for docklab never reaches the app; what the app answers can act on nothing of
//! docklab's (cookies, site data, service-worker scope, redirects); a control character in a
//! preview path is a clean 400; docklab's own pages carry their security headers. The same app
//! is attacked from a real Chromium in tests/browser/preview-security.test.mjs.

use std::collections::HashMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use docklab_tests::server::{create_session, curl, exec, free_port, start_server};

/// The learner's app (plain Node): the hostile answers and an echo of what it received.
const APP: &str = include_str!("../browser/preview-app.js");

/// One answer: status, headers (lowercase names, every value of a repeated header), body.
struct Answer {
    status: u16,
    headers: HashMap<String, Vec<String>>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.first()).map(String::as_str)
    }

    fn all(&self, name: &str) -> &[String] {
        self.headers.get(name).map_or(&[], Vec::as_slice)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `curl` with the answer's head and body taken apart (no redirect followed).
fn request(port: u16, args: &[&str]) -> Answer {
    // Relative: the curl helper turns arguments that start with '/' into URLs.
    let out_file = std::path::PathBuf::from(format!("docklab-preview-body-{}-{port}", std::process::id()));
    let out = out_file.to_str().unwrap();
    let mut all = vec!["-D", "-", "-o", out];
    all.extend_from_slice(args);
    let head = curl(port, &all);
    let body = std::fs::read_to_string(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.entry(k.trim().to_ascii_lowercase()).or_default().push(v.trim().to_string());
        }
    }
    Answer { status, headers, body }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The cookies an answer sets, but for docklab's own anonymous-learner cookie (which docklab's
/// middleware gives every browser that has none, previews included).
fn cookies_set(answer: &Answer) -> Vec<&String> {
    answer.all("set-cookie").iter().filter(|c| !c.starts_with("docklab_learner=")).collect()
}

fn assert_sandboxed(answer: &Answer, what: &str) {
    let csp = answer.all("content-security-policy");
    assert!(
        csp.iter().any(|p| p.starts_with("sandbox ") && p.contains("allow-scripts")) && !csp.iter().any(|p| p.contains("allow-same-origin")),
        "{what}: the preview answer is not sandboxed into an opaque origin: {csp:?}"
    );
    assert_eq!(answer.all("referrer-policy"), ["no-referrer"], "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_app_behind_the_port_preview_can_touch_nothing_of_docklab() {
    let port = free_port();
    let _server = start_server(port);
    let (id, token) = create_session(port, None);
    let bearer = format!("Authorization: Bearer {token}");

    let script = format!(
        "mkdir -p /root/app && cat > /root/app/server.js <<'JS'\n{APP}\nJS\n\
         docker run -d --name app -p 8080:8080 -v /root/app:/app node:18 node /app/server.js >/dev/null && \
         for i in $(seq 100); do curl -fs http://127.0.0.1:8080/app/data.json && break; sleep 0.2; done"
    );
    let out = exec(port, &id, &token, &script);
    assert_eq!(out["stdout"], "{\"hello\":\"preview\"}", "{out}");

    // The preview URL, from the session's owner only.
    assert_eq!(request(port, &[&format!("/api/sessions/{id}/preview")]).status, 401);
    let base = request(port, &["-H", &bearer, &format!("/api/sessions/{id}/preview")]).json()["base"].as_str().unwrap().to_string();
    assert!(base.starts_with(&format!("/preview/{id}/")) && base.ends_with('/') && !base.contains(&token), "{base}");
    let app = format!("{base}8080");
    let wrong_key = format!("/preview/{id}/{}/8080/app/data.json", "0".repeat(32));
    assert_eq!(request(port, &[&wrong_key]).status, 401, "a made-up preview key");
    // Scripts holding the token may still use the older path; a browser going there lands on the
    // capability URL (the token never reaches the app, nor stays in the address bar).
    let legacy = request(port, &[&format!("/sessions/{id}/ports/8080/app/?token={token}&x=1")]);
    assert_eq!(legacy.status, 303);
    assert_eq!(legacy.header("location"), Some(format!("{app}/app/?x=1").as_str()));

    // What docklab's browser sends is not the app's: no session token, no docklab cookie, no
    // CSRF token, no Referer (it would carry the page's URL), no forwarding headers.
    let echo = request(
        port,
        &[
            "-H",
            &bearer,
            "-H",
            "Cookie: docklab_instructor=instructor-secret; docklab_learner=learner-secret",
            "-H",
            "X-CSRF-Token: csrf-secret",
            "-H",
            "Referer: http://127.0.0.1/classes/secret-class",
            "-H",
            "X-Forwarded-For: 192.0.2.7",
            "-H",
            "X-Mine: kept",
            &format!("{app}/echo?q=1"),
        ],
    );
    assert_eq!(echo.status, 200, "{}", echo.body);
    assert_sandboxed(&echo, "echo");
    let seen = echo.json();
    let seen_headers = seen["headers"].as_object().unwrap();
    for name in ["authorization", "cookie", "x-csrf-token", "referer", "x-forwarded-for"] {
        assert!(!seen_headers.contains_key(name), "the app received {name}: {seen}");
    }
    assert_eq!(seen["url"], "/echo?q=1");
    assert_eq!(seen_headers["x-mine"], "kept", "{seen}");
    assert!(!seen.to_string().contains("secret") && !seen.to_string().contains(&token), "{seen}");
    let machine_host = seen_headers["host"].as_str().unwrap().to_string();
    let machine_addr = machine_host.split(':').next().unwrap().to_string();
    // The same through the older path with its cookie (which the app never sees either).
    let cookie = format!("Cookie: docklab_preview_{id}={token}");
    let old = request(port, &["-H", &cookie, "-H", &bearer, &format!("/sessions/{id}/ports/8080/echo")]);
    assert_eq!(old.status, 200, "{}", old.body);
    assert_sandboxed(&old, "echo through the older path");
    assert!(!old.body.contains(&token) && !old.body.contains("authorization"), "{}", old.body);

    // What the app answers cannot act on docklab's origin.
    let evil = request(port, &[&format!("{app}/evil-headers")]);
    assert_eq!(evil.status, 200);
    assert_eq!(evil.body, "hostile headers sent\n");
    assert_eq!(cookies_set(&evil), Vec::<&String>::new(), "the app's Set-Cookie reached the browser");
    for name in [
        "clear-site-data",
        "service-worker-allowed",
        "refresh",
        "strict-transport-security",
        "nel",
        "report-to",
        "access-control-allow-credentials",
    ] {
        assert!(!evil.headers.contains_key(name), "{name} reached the browser: {:?}", evil.headers[name]);
    }
    assert_eq!(evil.header("x-app"), Some("kept"), "the app's own headers pass");
    assert_sandboxed(&evil, "evil-headers");
    assert!(
        !evil.all("content-security-policy").iter().any(|p| p.contains("frame-ancestors")),
        "the preview gets its own policy, not the pages' one"
    );
    let sw = request(port, &[&format!("{app}/sw.js")]);
    assert_eq!(sw.status, 200);
    assert!(!sw.headers.contains_key("service-worker-allowed"));
    let sw_fetch = request(port, &["-H", "Service-Worker: script", &format!("{app}/sw.js")]);
    assert_eq!(sw_fetch.status, 403, "a service worker script fetched from a preview: {}", sw_fetch.body);

    // Redirects stay inside the preview: the app's own paths are moved under it, the rest refused.
    let redirect = |to: &str| request(port, &[&format!("{app}/redirect?to={}", encode(to))]);
    for outside in [
        "http://example.invalid/phish",
        "https://example.invalid/",
        "//example.invalid/phish",
        "/\\example.invalid/phish",
        "http://127.0.0.1@example.invalid/",
        "javascript:alert(1)",
        "../../../../instructor",
        "/../../../../instructor",
        "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/instructor",
    ] {
        let answer = redirect(outside);
        assert_eq!(answer.status, 502, "Location {outside:?} passed: {:?}", answer.header("location"));
        assert_eq!(answer.header("location"), None, "{outside:?}");
        assert_eq!(answer.json()["code"], "preview_redirect_refused");
        assert_sandboxed(&answer, outside);
    }
    for (inside, expected) in [
        ("/app/", format!("{app}/app/")),
        ("app/?a=1", "app/?a=1".to_string()),
        (&format!("http://{machine_host}/app/x?y=1") as &str, format!("{app}/app/x?y=1")),
        (&format!("http://{machine_addr}/app/"), format!("{app}/app/")),
        ("http://localhost:8080/app/", format!("{app}/app/")),
    ] {
        let answer = redirect(inside);
        assert_eq!(answer.status, 302, "Location {inside:?}: {}", answer.body);
        assert_eq!(answer.header("location"), Some(expected.as_str()), "{inside:?}");
    }
    assert_eq!(request(port, &[&format!("{app}/login-redirect")]).header("location"), Some(format!("{app}/app/").as_str()));

    // A control character in the path: a clean 400 (it was a 500), on both paths; other escapes
    // reach the app as sent.
    for path in [format!("{app}/a%0d%0aSet-Cookie:%20x=1"), format!("{app}/%00"), format!("/sessions/{id}/ports/8080/x%0a?token={token}")] {
        let answer = request(port, &["-H", &cookie, &path]);
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        assert_eq!(answer.json()["code"], "bad_request", "{path}");
        assert_sandboxed(&answer, &path);
    }
    let spaced = request(port, &[&format!("{app}/my%20file%2Fx/echo")]);
    assert_eq!(spaced.status, 200, "{}", spaced.body);
    assert_eq!(spaced.json()["url"], "/my%20file%2Fx/echo");

    // The preview page's own requests come from an opaque origin (`Origin: null`): their CORS
    // preflight is answered, and their answers are readable by it (and credentials never allowed).
    let preflight = request(
        port,
        &["-X", "OPTIONS", "-H", "Origin: null", "-H", "Access-Control-Request-Method: POST", "-H", "Access-Control-Request-Headers: content-type", &format!("{app}/app/echo")],
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("null"));
    assert_eq!(preflight.header("access-control-allow-methods"), Some("POST"));
    let post = request(port, &["-H", "Origin: null", "-H", "content-type: application/json", "-d", "{\"n\":1}", &format!("{app}/app/echo")]);
    assert_eq!(post.json()["body"], "{\"n\":1}");
    assert_eq!(post.header("access-control-allow-origin"), Some("null"));
    // docklab's own API answers such a page nothing it could read.
    let api = request(port, &["-H", "Origin: null", "/api/lessons"]);
    assert_eq!(api.header("access-control-allow-origin"), None);

    // A WebSocket through the capability URL, from the sandboxed page (no cookie, Origin null).
    let url = format!("ws://127.0.0.1:{port}{app}/app/ws");
    let mut ws_request = url.as_str().into_client_request().unwrap();
    ws_request.headers_mut().insert("origin", "null".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(ws_request).await.expect("websocket through the preview");
    assert_eq!(response.status(), 101);
    ws.send(Message::Text("ping".into())).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("an echo within 10 s") {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "echo from /app/ws: ping"),
        other => panic!("expected an echo, got {other:?}"),
    }
    let _ = ws.close(None).await;

    // docklab's own pages, files and API: CSP without inline script, no framing, nosniff,
    // same-origin referrer and opener.
    for path in ["/", "/lessons/day-24", "/instructor/login", "/static/lab.js", "/api/lessons", "/nowhere"] {
        let page = request(port, &[path]);
        let csp = page.header("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("object-src 'none'") && csp.contains("base-uri 'none'"), "{path}: {csp}");
        let script_src = csp.split(';').map(str::trim).find(|d| d.starts_with("script-src")).unwrap_or_default();
        assert!(script_src.starts_with("script-src 'self'") && !script_src.contains("unsafe-inline") && !script_src.contains("unsafe-eval"), "{path}: {script_src}");
        assert_eq!(page.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(page.header("referrer-policy"), Some("same-origin"), "{path}");
        assert_eq!(page.header("cross-origin-opener-policy"), Some("same-origin"), "{path}");
    }

    let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H", &bearer, &format!("/api/sessions/{id}")]);
    assert_eq!(code, "204");
}

/// With `--preview-url`, previews live on that name only and nothing of docklab's is served
/// there; docklab's own name redirects previews to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_preview_name_previews_live_only_there() {
    let port = free_port();
    let preview_origin = format!("http://localhost:{port}");
    let _server = docklab_tests::server::start_server_with(port, &["--warm-machines", "1", "--end-sessions-on-exit", "--preview-url", &preview_origin]);
    let (id, token) = create_session(port, None);
    let bearer = format!("Authorization: Bearer {token}");
    let out = exec(
        port,
        &id,
        &token,
        "docker run -d -p 8080:80 busybox sh -c 'mkdir -p /www && echo preview-name > /www/index.html && httpd -f -p 80 -h /www' >/dev/null && \
         for i in $(seq 50); do curl -fs http://127.0.0.1:8080/ && break; sleep 0.2; done",
    );
    assert_eq!(out["stdout"], "preview-name\n", "{out}");

    let base = request(port, &["-H", &bearer, &format!("/api/sessions/{id}/preview")]).json()["base"].as_str().unwrap().to_string();
    let path = base.strip_prefix(&preview_origin).unwrap_or_else(|| panic!("{base} is not on {preview_origin}")).to_string();
    let on_preview_name = format!("Host: localhost:{port}");

    // On docklab's own name: only redirects to the preview name.
    let moved = request(port, &[&format!("{path}8080/?a=1")]);
    assert_eq!(moved.status, 308);
    assert_eq!(moved.header("location"), Some(format!("{base}8080/?a=1").as_str()));
    let legacy = request(port, &[&format!("/sessions/{id}/ports/8080/?token={token}")]);
    assert_eq!(legacy.status, 303);
    assert_eq!(legacy.header("location"), Some(format!("{base}8080/").as_str()));
    assert_eq!(cookies_set(&legacy), Vec::<&String>::new(), "no preview cookie for docklab's name");

    // On the preview name: the preview, sandboxed; none of docklab's pages or API.
    let page = request(port, &["-H", &on_preview_name, &format!("{path}8080/")]);
    assert_eq!((page.status, page.body.as_str()), (200, "preview-name\n"));
    assert_sandboxed(&page, "preview on its own name");
    for docklab_path in ["/", "/lessons/day-24", "/api/lessons", "/instructor/login", "/static/lab.js", &format!("/api/sessions/{id}")] {
        let answer = request(port, &["-H", &on_preview_name, "-H", &bearer, docklab_path]);
        assert_eq!(answer.status, 404, "{docklab_path} served on the preview name: {}", answer.body);
        assert_eq!(answer.json()["code"], "preview_host", "{docklab_path}");
    }
    // docklab's own name still serves docklab.
    assert_eq!(request(port, &["/api/lessons"]).status, 200);

    let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H", &bearer, &format!("/api/sessions/{id}")]);
    assert_eq!(code, "204");
}
