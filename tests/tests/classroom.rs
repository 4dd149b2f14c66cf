//! A real class through a real server: an instructor (added with `docklab instructor add`) logs
//! in, creates a class of 10 over the API with per-learner limits, 10 learners join with the code
//! at once and each gets a real machine (with the class's memory limit in its cgroup), reference
//! solutions are typed through the exec API for half of them, the grid's data shows exactly those
//! tasks passed, the instructor extends the class and resets one learner's machine, and ending
//! the class leaves nothing behind: no machine, process, mount, cgroup, veth or state directory.
//! The results CSV stays.
//!
//! One test function: only one server may run per state directory at a time.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docklab_tests::server::{curl, docklab_bin, exec, free_port, start_server, EndClass};
use serde_json::{json, Value};

const LEARNERS: usize = 10;
const MEMORY_MIB: u64 = 768;

/// The memory limit written into a machine's cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`).
fn cgroup_memory_limit(record: &Value) -> Option<u64> {
    record["cgroup"]["dirs"].as_array()?.iter().filter_map(|d| d.as_str()).find_map(|dir| {
        ["memory.max", "memory.limit_in_bytes"]
            .iter()
            .find_map(|f| std::fs::read_to_string(std::path::Path::new(dir).join(f)).ok())
            .and_then(|v| v.trim().parse().ok())
    })
}

#[test]
fn a_class_of_ten_joins_works_is_graded_live_and_ends_without_leftovers() {
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
    let capacity: Value = serde_json::from_str(&curl(port, &["-b", jar, "/api/classes/capacity"])).unwrap();
    println!("capacity: {}", capacity["sentence"]);
    assert!(capacity["capacity"]["machines"].as_u64().unwrap() >= LEARNERS as u64, "{capacity}");
    let class = post(
        "/api/classes",
        &json!({"name": "Real class", "exercises": [exercise.id], "seats": LEARNERS, "session_minutes": 60, "memory_mib": MEMORY_MIB}).to_string(),
    );
    let (class_id, code) = (class["id"].as_str().unwrap_or_else(|| panic!("{class}")).to_owned(), class["code"].as_str().unwrap().to_owned());
    // If the test fails half-way, the class still ends (before the server is stopped), so no
    // machine outlives it.
    let _end = EndClass { port, jar, csrf: csrf.clone(), class: class_id.clone() };
    let grid_data = || -> Value {
        let out = curl(port, &["-b", jar, &format!("/api/classes/{class_id}")]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("grid: {out:?}: {e}"))
    };

    // Ten learners join at once, each with their own cookie.
    let started = Instant::now();
    let joins: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..LEARNERS)
            .map(|i| {
                let code = code.clone();
                s.spawn(move || {
                    let cookie = format!("Cookie: docklab_learner={:032x}", i + 1);
                    let body = json!({"display_name": format!("learner {i}")}).to_string();
                    let out = curl(port, &["-X", "POST", "-H", &cookie, "-H", "content-type: application/json", "-d", &body, &format!("/api/join/{code}")]);
                    serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("join {i}: {out:?}: {e}"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!("{LEARNERS} learners joined, each with a ready machine, in {:.1} s", started.elapsed().as_secs_f64());
    let mut records = Vec::new();
    for j in &joins {
        let id = j["id"].as_str().unwrap_or_else(|| panic!("a learner did not get a machine: {j}"));
        // The class's per-learner memory is the machine's cgroup limit.
        let dir = docklab_tests::state_dir().join("sessions").join(id);
        let record: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("machine.json")).unwrap()).unwrap();
        assert_eq!(record["limits"]["memory_bytes"], MEMORY_MIB << 20, "{record}");
        assert_eq!(cgroup_memory_limit(&record), Some(MEMORY_MIB << 20), "the cgroup of {id} holds the class's limit");
        records.push(record);
    }

    let key = |task: &str| format!("{}:{task}", exercise.id);
    let mut all: Vec<String> = exercise.tasks.iter().map(|t| key(&t.id)).collect();
    all.sort();
    let passed = |grid: &Value, i: usize| -> Vec<String> {
        let row = grid["learners"].as_array().unwrap().iter().find(|l| l["name"] == format!("learner {i}")).unwrap();
        let mut p: Vec<String> = row["passed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        p.sort();
        p
    };

    // Learners 0 to 4 type the reference solution, a step at a time as a person would (each
    // once the grid shows the step before passed); 5 to 9 do nothing.
    let solvers = LEARNERS / 2;
    std::thread::scope(|s| {
        for (i, j) in joins.iter().enumerate().take(solvers) {
            let (steps, passed, grid_data, key) = (&steps, &passed, &grid_data, &key);
            s.spawn(move || {
                let (id, token) = (j["id"].as_str().unwrap(), j["token"].as_str().unwrap());
                for (task, script) in steps {
                    let out = exec(port, id, token, script);
                    assert_eq!(out["exit_code"], 0, "learner {i} step {task}: {out}");
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !passed(&grid_data(), i).contains(&key(task)) {
                        assert!(Instant::now() < deadline, "learner {i}: the grid never showed {task} passed");
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
            });
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let grid = grid_data();
        if (0..solvers).all(|i| passed(&grid, i) == all) {
            break;
        }
        assert!(Instant::now() < deadline, "the grid did not show the passes: {grid}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Give a wrong pass time to show up, then check exactly those tasks passed.
    std::thread::sleep(Duration::from_secs(3));
    let grid = grid_data();
    assert_eq!(grid["learners"].as_array().unwrap().len(), LEARNERS);
    for i in 0..LEARNERS {
        let want = if i < solvers { all.clone() } else { Vec::new() };
        assert_eq!(passed(&grid, i), want, "learner {i}");
        let row = grid["learners"].as_array().unwrap().iter().find(|l| l["name"] == format!("learner {i}")).unwrap();
        assert_eq!(row["finished_at"].is_i64(), i < solvers, "learner {i}: {row}");
        assert!(row["session"].is_string(), "learner {i} has a live machine: {row}");
    }

    // Extending the class moves every learner machine's end with it (up to their 60 minutes).
    let session_of = |j: &Value| -> Value {
        let auth = format!("Authorization: Bearer {}", j["token"].as_str().unwrap());
        serde_json::from_str(&curl(port, &["-H", &auth, &format!("/api/sessions/{}", j["id"].as_str().unwrap())])).unwrap()
    };
    let before = session_of(&joins[0])["expires_at"].clone();
    let extended = post(&format!("/api/classes/{class_id}/extend"), r#"{"minutes":30}"#);
    assert_eq!(extended["ends_at"], class["ends_at"].as_i64().unwrap() + 1800, "{extended}");
    assert_eq!(session_of(&joins[0])["expires_at"], before, "a 60-minute machine in a 150-minute class keeps its 60 minutes");

    // The instructor resets learner 9's machine: a fresh one, same id and token, still working.
    let member9 = grid["learners"].as_array().unwrap().iter().find(|l| l["name"] == "learner 9").unwrap()["member"].clone();
    let reset = post(&format!("/api/classes/{class_id}/learners/{member9}/reset"), "");
    assert_eq!(reset["reset"], true, "{reset}");
    let j9 = &joins[LEARNERS - 1];
    let out = exec(port, j9["id"].as_str().unwrap(), j9["token"].as_str().unwrap(), "docker info --format '{{.ServerVersion}}'");
    assert_eq!(out["exit_code"], 0, "the reset machine answers: {out}");
    let dir = docklab_tests::state_dir().join("sessions").join(j9["id"].as_str().unwrap());
    let fresh: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("machine.json")).unwrap()).unwrap();
    assert_eq!(cgroup_memory_limit(&fresh), Some(MEMORY_MIB << 20), "the reset machine keeps the class's memory limit");
    let replaced = std::mem::replace(&mut records[LEARNERS - 1], fresh);
    let old_uids = replaced["uid_base"].as_u64().unwrap() as u32;

    let ended = post(&format!("/api/classes/{class_id}/end"), "");
    assert_eq!(ended["machines_destroyed"], LEARNERS, "{ended}");
    for (j, record) in joins.iter().zip(&records) {
        let id = j["id"].as_str().unwrap();
        let status = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-H", &format!("Authorization: Bearer {}", j["token"].as_str().unwrap()), &format!("/api/sessions/{id}")]);
        assert_eq!(status, "404");
        // The reset machine got a new uid range: look for both.
        let traces = docklab_tests::traces_after_removal(id, record["uid_base"].as_u64().unwrap() as u32);
        assert!(traces.is_empty(), "machine {id} left {traces:?}");
        let veth = record["net"]["veth"].as_str().unwrap();
        assert!(!std::path::Path::new("/sys/class/net").join(veth).exists() || veth_reused(veth, &joins), "veth {veth} of {id} is left");
    }
    let old = docklab_tests::traces_after_removal(j9["id"].as_str().unwrap(), old_uids);
    assert!(old.is_empty(), "the machine replaced by the reset left {old:?}");
    let csv = curl(port, &["-b", jar, &format!("/api/classes/{class_id}/results.csv")]);
    assert_eq!(csv.lines().count(), LEARNERS + 1, "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("learner 0,") && l.contains(&format!(",{},", all.len()))), "{csv}");
    let late = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "content-type: application/json", "-d", r#"{"display_name":"late"}"#, &format!("/api/join/{code}")]);
    assert_eq!(late, "410");
    let _ = std::fs::remove_file(jar);
}

/// Whether a veth name now belongs to a machine outside this class (slots are reused by other
/// tests running at the same time): its machine record says so.
fn veth_reused(veth: &str, ours: &[Value]) -> bool {
    let Ok(dirs) = std::fs::read_dir(docklab_tests::state_dir().join("sessions")) else { return false };
    dirs.flatten().any(|d| {
        let id = d.file_name().to_string_lossy().into_owned();
        let mine = ours.iter().any(|j| j["id"] == id.as_str());
        let record = std::fs::read_to_string(d.path().join("machine.json")).unwrap_or_default();
        !mine && record.contains(&format!("\"veth\":\"{veth}\""))
    })
}
