//! The real server with real machines: images pulled from docklab's registry through the session
//! bridge, and a published port reached from the browser's side through the port preview.

use std::time::Duration;

use docklab_tests::server::{create_session, curl, exec, free_port, start_server};

#[test]
fn a_learner_pulls_nginx_and_sees_it_through_the_port_preview() {
    let port = free_port();
    let _server = start_server(port);
    let (id, token) = create_session(port, None);

    let out = exec(port, &id, &token, "docker pull -q nginx >/dev/null && docker run -d --name web -p 8080:80 nginx >/dev/null && echo up");
    assert_eq!(out["stdout"], "up\n", "{out}");
    std::thread::sleep(Duration::from_secs(1));

    // Without the token: refused. With it: a cookie, then the page itself.
    let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", &format!("/sessions/{id}/ports/8080/")]);
    assert_eq!(code, "401");
    let jar = std::env::temp_dir().join(format!("docklab-jar-{id}"));
    let jar = jar.to_string_lossy().to_string();
    let page = curl(port, &["-L", "-c", &jar, "-b", &jar, &format!("/sessions/{id}/ports/8080/?token={token}")]);
    assert!(page.contains("Welcome to nginx"), "{page}");
    // A port nobody listens on gets a clear answer, not a hang.
    let gone = curl(port, &["-b", &jar, &format!("/sessions/{id}/ports/9999/")]);
    assert!(gone.contains("port_unreachable"), "{gone}");

    // A push to docklab's registry is refused with advice.
    let out = exec(port, &id, &token, "docker tag nginx 10.200.0.1/mine && docker push 10.200.0.1/mine 2>&1 | tail -1");
    assert!(out["stdout"].as_str().unwrap().contains("read-only") || out["stdout"].as_str().unwrap().contains("denied"), "{out}");

    let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H", &format!("Authorization: Bearer {token}"), &format!("/api/sessions/{id}")]);
    assert_eq!(code, "204");
}
