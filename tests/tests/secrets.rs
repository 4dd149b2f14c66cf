//! What another user of the host can read of docklab's secrets (SECURITY-TESTS.md case 32): after
//! a real server has logged in an instructor, run a class with a joined learner and a plain
//! session, the state directory is 0711 (no listing), the database and its WAL and shared-memory files 0600,
//! each machine's disk image and records 0600; and the database file holds none of the tokens
//! handed out (session tokens, the learner cookie, the instructor's login cookie and CSRF token)
//! in clear.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use docklab_tests::server::{curl, docklab_bin, free_port, start_server_with, EndClass};
use serde_json::{json, Value};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// A cookie's value from a curl cookie jar.
fn jar_cookie(jar: &str, name: &str) -> String {
    let text = std::fs::read_to_string(jar).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 7 && f[5] == name).then(|| f[6].to_string())
        })
        .next()
        .unwrap_or_else(|| panic!("no {name} cookie in {jar}: {text}"))
}

/// Whether `needle` occurs in the database or its WAL, as text.
fn in_database(db: &Path, needle: &str) -> bool {
    ["", "-wal", "-shm"].iter().any(|suffix| {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let bytes = std::fs::read(Path::new(&p)).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

/// Removes the cookie jars even when the test fails half-way.
struct RemoveOnDrop([String; 2]);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[test]
fn the_state_directory_database_and_machine_files_are_private_and_tokens_are_stored_hashed() {
    let state = docklab_tests::state_dir();
    let name = docklab_tests::unique_id("secrets");
    let mut add = Command::new(docklab_bin()).args(["instructor", "add", &name, "--state-dir"]).arg(&state).stdin(Stdio::piped()).spawn().unwrap();
    add.stdin.take().unwrap().write_all(b"a long password\n").unwrap();
    assert!(add.wait().unwrap().success());

    let port = free_port();
    let mut server = start_server_with(port, &["--warm-machines", "0", "--end-sessions-on-exit"]);
    // Relative: the curl helper turns arguments starting with `/` into URLs.
    let (jar, learner_jar) = (format!("./docklab-secrets-{port}-instructor.jar"), format!("./docklab-secrets-{port}-learner.jar"));
    let (jar, learner_jar) = (jar.as_str(), learner_jar.as_str());
    let _jars = RemoveOnDrop([jar.to_owned(), learner_jar.to_owned()]);

    // An instructor logs in and opens a class; a learner joins it and also opens a plain session.
    let login = curl(port, &["-c", jar, "-o", "/dev/null", "-w", "%{http_code}", "--data-urlencode", &format!("name={name}"), "--data-urlencode", "password=a long password", "/instructor/login"]);
    assert_eq!(login, "303");
    let me: Value = serde_json::from_str(&curl(port, &["-b", jar, "/api/instructor/me"])).unwrap();
    let csrf = me["csrf"].as_str().unwrap().to_owned();
    let lessons: Value = serde_json::from_str(&curl(port, &["/api/lessons"])).unwrap();
    let exercise = lessons[0]["exercises"][0]["id"].as_str().unwrap().to_owned();
    let class: Value = serde_json::from_str(&curl(
        port,
        &["-b", jar, "-X", "POST", "-H", &format!("X-CSRF-Token: {csrf}"), "-H", "content-type: application/json", "-d", &json!({"name": "Secrets", "exercises": [exercise], "seats": 2}).to_string(), "/api/classes"],
    ))
    .unwrap();
    let class_id = class["id"].as_str().unwrap_or_else(|| panic!("{class}")).to_owned();
    let _end = EndClass { port, jar, csrf: csrf.clone(), class: class_id };
    let code = class["code"].as_str().unwrap();
    let joined: Value = serde_json::from_str(&curl(
        port,
        &["-c", learner_jar, "-b", learner_jar, "-X", "POST", "-H", "content-type: application/json", "-d", r#"{"display_name":"Ann"}"#, &format!("/api/join/{code}")],
    ))
    .unwrap();
    let join_token = joined["token"].as_str().unwrap_or_else(|| panic!("{joined}")).to_owned();
    let body = json!({"exercise": exercise}).to_string();
    let created: Value =
        serde_json::from_str(&curl(port, &["-b", learner_jar, "-X", "POST", "-H", "content-type: application/json", "-d", &body, "/api/sessions"])).unwrap();
    let (id, token) = (created["id"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned(), created["token"].as_str().unwrap().to_owned());
    let learner_cookie = jar_cookie(learner_jar, "docklab_learner");
    let instructor_cookie = jar_cookie(jar, "docklab_instructor");

    // Permissions, while the machines run.
    // 0711: nobody else may list or write it; search stays open for the machines' inits, which
    // reach their root filesystems through it as ordinary host uids.
    assert_eq!(mode(&state), 0o711, "the state directory");
    let db = state.join("docklab.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let p = Path::new(&p);
        if suffix.is_empty() || p.exists() {
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
    }
    for machine in [&id, joined["id"].as_str().unwrap()] {
        let session_dir = state.join("sessions").join(machine);
        for file in ["disk.img", "machine.json", "config.json", "session.json"] {
            assert_eq!(mode(&session_dir.join(file)), 0o600, "{machine}/{file}");
        }
    }

    // No token in clear in the database, though each one works.
    assert_eq!(curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-H", &format!("Authorization: Bearer {token}"), &format!("/api/sessions/{id}")]), "200");
    for (what, secret) in [
        ("the session token from POST /api/sessions", &token),
        ("the session token of a class member", &join_token),
        ("the learner cookie", &learner_cookie),
        ("the instructor's login cookie", &instructor_cookie),
        ("the instructor's CSRF token", &csrf),
    ] {
        assert!(secret.len() >= 32, "{what}: {secret:?}");
        assert!(!in_database(&db, secret), "{what} is in {} in clear", db.display());
    }
    // Still the same learner: progress and class membership are found through the cookie.
    let progress = curl(port, &["-b", learner_jar, "-o", "/dev/null", "-w", "%{http_code}", "/api/progress"]);
    assert_eq!(progress, "200");

    drop(_end);
    server.stop(std::time::Duration::from_secs(30));
    assert_eq!(mode(&state), 0o711, "the state directory after the server stopped");
    assert_eq!(mode(&db), 0o600);
}
