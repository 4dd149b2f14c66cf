//! A real class through a real server: an instructor (added with `docklab instructor add`) logs
//! in, creates a class of 3 over the API, 3 learners join with the code and get real machines,
//! solutions are typed through the exec API for some of them, the grid shows exactly those tasks
//! passed, ending the class leaves no machine, and the results CSV stays.
//!
//! One test function: only one server may run per state directory at a time.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docklab_tests::server::{curl, docklab_bin, exec, free_port, start_server};
use serde_json::{json, Value};

#[test]
fn a_class_of_three_joins_works_is_graded_live_and_ends_without_leftovers() {
    let name = docklab_tests::unique_id("teacher");
    let mut add = Command::new(docklab_bin())
        .args(["instructor", "add", &name, "--state-dir"])
        .arg(docklab_tests::state_dir())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"a long password\n").unwrap();
    assert!(add.wait().unwrap().success());

    let port = free_port();
    let _server = start_server(port);
    // Relative: the curl helper turns arguments starting with `/` into URLs.
    let jar = format!("./docklab-classroom-{port}.jar");
    let jar = jar.as_str();
    let login = curl(port, &["-c", jar, "-o", "/dev/null", "-w", "%{http_code}", "--data-urlencode", &format!("name={name}"), "--data-urlencode", "password=a long password", "/instructor/login"]);
    assert_eq!(login, "303");
    let me: Value = serde_json::from_str(&curl(port, &["-b", jar, "/api/instructor/me"])).unwrap();
    let csrf = me["csrf"].as_str().unwrap().to_owned();
    let csrf_header = format!("X-CSRF-Token: {csrf}");

    // An exercise with at least two tasks and a solution in steps.
    let catalog = lessons::Catalog::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../lessons")).unwrap();
    let exercise = catalog
        .lessons()
        .iter()
        .flat_map(|l| &l.exercises)
        .find(|e| e.tasks.len() >= 2 && e.solution_steps().len() >= 2 && e.setup.is_none())
        .expect("an exercise with a stepwise solution")
        .clone();
    let steps = exercise.solution_steps();

    let post = |path: &str, body: &str| -> Value {
        let out = curl(port, &["-b", jar, "-X", "POST", "-H", &csrf_header, "-H", "content-type: application/json", "-d", body, path]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{path}: {out:?}: {e}"))
    };
    // CSRF is required even with the login cookie.
    let refused = curl(port, &["-b", jar, "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "content-type: application/json", "-d", "{}", "/api/classes"]);
    assert_eq!(refused, "403");
    let class = post("/api/classes", &json!({"name": "Real class", "exercises": [exercise.id], "seats": 3}).to_string());
    let (class_id, code) = (class["id"].as_str().unwrap().to_owned(), class["code"].as_str().unwrap().to_owned());

    // Three learners join at once, each with their own cookie.
    let joins: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let code = code.clone();
                s.spawn(move || {
                    let cookie = format!("Cookie: docklab_learner={}", format!("{i:x}").repeat(32).chars().take(32).collect::<String>());
                    let body = json!({"display_name": format!("learner {i}")}).to_string();
                    let out = curl(port, &["-X", "POST", "-H", &cookie, "-H", "content-type: application/json", "-d", &body, &format!("/api/join/{code}")]);
                    serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("join {i}: {out:?}: {e}"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for j in &joins {
        assert!(j["id"].is_string(), "{j}");
    }

    // Learner 0 does everything, learner 1 the first step, learner 2 nothing.
    for (i, limit) in [(0, steps.len()), (1, 1)] {
        let (id, token) = (joins[i]["id"].as_str().unwrap(), joins[i]["token"].as_str().unwrap());
        for (task, script) in steps.iter().take(limit) {
            let out = exec(port, id, token, script);
            assert_eq!(out["exit_code"], 0, "learner {i} step {task}: {out}");
        }
    }
    let key = |task: &str| format!("{}:{task}", exercise.id);
    let all: Vec<String> = exercise.tasks.iter().map(|t| key(&t.id)).collect();
    let first = key(&steps[0].0);
    let deadline = Instant::now() + Duration::from_secs(90);
    let grid = loop {
        let grid: Value = serde_json::from_str(&curl(port, &["-b", jar, &format!("/api/classes/{class_id}")])).unwrap();
        let passed = |i: usize| -> Vec<String> {
            let row = grid["learners"].as_array().unwrap().iter().find(|l| l["name"] == format!("learner {i}")).unwrap();
            let mut p: Vec<String> = row["passed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
            p.sort();
            p
        };
        let mut want0 = all.clone();
        want0.sort();
        if passed(0) == want0 && passed(1).contains(&first) {
            assert!(passed(1).len() < all.len(), "learner 1 did one step only: {:?}", passed(1));
            assert!(passed(2).is_empty(), "learner 2 did nothing: {:?}", passed(2));
            break grid;
        }
        assert!(Instant::now() < deadline, "the grid did not show the passes: {grid}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(grid["learners"].as_array().unwrap().len(), 3);

    let ended = post(&format!("/api/classes/{class_id}/end"), "");
    assert_eq!(ended["machines_destroyed"], 3, "{ended}");
    for j in &joins {
        let status = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-H", &format!("Authorization: Bearer {}", j["token"].as_str().unwrap()), &format!("/api/sessions/{}", j["id"].as_str().unwrap())]);
        assert_eq!(status, "404");
        let dir = docklab_tests::state_dir().join("sessions").join(j["id"].as_str().unwrap());
        assert!(!dir.exists(), "{} is left", dir.display());
    }
    let csv = curl(port, &["-b", jar, &format!("/api/classes/{class_id}/results.csv")]);
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("learner 0,") && l.contains(&format!(",{},", all.len()))), "{csv}");
    let late = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "content-type: application/json", "-d", r#"{"display_name":"late"}"#, &format!("/api/join/{code}")]);
    assert_eq!(late, "410");
    let _ = std::fs::remove_file(jar);
}
