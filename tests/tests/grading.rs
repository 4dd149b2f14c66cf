//! Grading on real session machines, as root: checks fail, the learner works, checks pass; and
//! every exercise in `lessons/` starts unfinished, is finished by its reference solution, and is
//! unfinished again once its `break.sh` undoes the final state. (Wrong solutions and
//! mistake-then-fix paths: `grading_corpus.rs`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use docklab_server::grading::{prepare_machine, BackendShell, Grader, Scope, TaskStatus};
use docklab_tests::{manager, sh, unique_id, Cleanup};
use lessons::{Catalog, Check, Exercise};
use sandbox::{MachineBackend, SessionManager};

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn grader(m: &Arc<SessionManager>, id: &str, socket: &std::path::Path, since: i64) -> Grader {
    let backend: Arc<dyn MachineBackend> = m.clone();
    let shell = Arc::new(BackendShell { backend, id: id.to_owned() });
    Grader::connect(id, socket, shell, since).expect("connect to the machine's engine")
}

/// A one-task exercise holding `checks`, written as in `exercise.toml`.
fn exercise(checks: &str) -> Exercise {
    let dir = tempfile_dir();
    std::fs::create_dir_all(dir.join("day-24-a/exercises/e")).unwrap();
    std::fs::write(dir.join("day-24-a/lesson.md"), "+++\nday = 24\ntitle = \"t\"\nsummary = \"s\"\n+++\n").unwrap();
    let text = format!("title = \"E\"\nbrief = \"B\"\n[[tasks]]\nid = \"t\"\ntitle = \"T\"\nchecks = [\n{checks}\n]\n");
    std::fs::write(dir.join("day-24-a/exercises/e/exercise.toml"), text).unwrap();
    let catalog = Catalog::load(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    catalog.exercise("day-24/e").unwrap().clone()
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique_id("grading-content"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Grades a one-check exercise each time from a fresh task state (no stickiness).
async fn detail(m: &Arc<SessionManager>, id: &str, socket: &std::path::Path, since: i64, check: &str) -> (TaskStatus, String) {
    let ex = exercise(check);
    let g = grader(m, id, socket, since);
    let report = g.grade(&ex, Scope::All).await.remove(0);
    (report.status, report.detail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn representative_checks_fail_then_pass_in_a_real_machine() {
    let m = manager(HELPER);
    m.health().await.expect("host ready for machines (run `docklab setup` first)");
    let id = unique_id("grade");
    let info = m.create(&id).await.expect("create machine");
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    let sock = info.docker_socket.clone();
    let started = now();
    let check = |c: &'static str| {
        let (m, id, sock) = (m.clone(), id.clone(), sock.clone());
        async move { detail(&m, &id, &sock, started, c).await }
    };

    // Volumes and files in them.
    let volume = r#"{ kind = "volume_exists", volume = "app-data" }"#;
    let file = r#"{ kind = "file_content", volume = "app-data", path = "greeting.txt", equals = "hello" }"#;
    let mounted = r#"{ kind = "volume_mounted", container = "writer", path = "/data", as = "volume", source = "app-data", flag = "--mount" }"#;
    assert_eq!(check(volume).await, (TaskStatus::Failed, "there is no volume named app-data".into()));
    assert_eq!(check(mounted).await, (TaskStatus::Failed, "there is no container named writer".into()));
    let out = sh(&*m, &id, "docker volume create app-data && docker run --name writer -v app-data:/data busybox sh -c 'echo hi > /data/greeting.txt'").await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(check(volume).await.0, TaskStatus::Passed);
    assert_eq!(check(file).await, (TaskStatus::Failed, "greeting.txt in volume app-data says “hi”; it should say “hello”".into()));
    assert_eq!(check(mounted).await, (TaskStatus::Failed, "container writer got its mount at /data from -v; this task asks for --mount".into()));
    let out = sh(&*m, &id, "docker rm writer && docker run --name writer --mount type=volume,source=app-data,target=/data busybox sh -c 'echo hello > /data/greeting.txt'").await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(check(file).await.0, TaskStatus::Passed);
    assert_eq!(check(mounted).await.0, TaskStatus::Passed);

    // Networks, attachments and reachability probed from inside containers.
    let only = r#"{ kind = "container_networks", container = "finance", networks = ["finance-net"] }"#;
    let apart = r#"{ kind = "not_reachable", from = "login", to = "finance", by = "ip" }"#;
    let by_name = r#"{ kind = "reachable", from = "auditor", to = "finance" }"#;
    let out = sh(&*m, &id, "docker run -d --name finance busybox sleep 3600 && docker run -d --name login busybox sleep 3600").await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(check(only).await, (TaskStatus::Failed, "container finance is attached to bridge; it should be on finance-net only".into()));
    let (status, why) = check(apart).await;
    assert_eq!(status, TaskStatus::Failed);
    assert!(why.starts_with("login reaches finance at 172.17.") && why.ends_with("they should be kept apart"), "{why}");
    let out = sh(&*m, &id, "docker network create finance-net && docker network disconnect bridge finance && docker network connect finance-net finance && docker run -d --name auditor --network finance-net busybox sleep 3600").await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(check(only).await.0, TaskStatus::Passed);
    assert_eq!(check(apart).await.0, TaskStatus::Passed, "{:?}", check(apart).await);
    assert_eq!(check(by_name).await.0, TaskStatus::Passed, "{:?}", check(by_name).await);
    // The learner removes what a probe needs: a failed task with a clear detail, not an error.
    sh(&*m, &id, "docker rm -f auditor").await;
    assert_eq!(check(by_name).await, (TaskStatus::Failed, "there is no container named auditor to probe from".into()));

    // Container state, limits and events since the lab started.
    let limits = r#"{ kind = "container_state", container = "neighbour", state = "running", memory_mb = 32, cpus = 0.5 }"#;
    let paused = r#"{ kind = "event_seen", name = "neighbour", action = "pause" }"#;
    sh(&*m, &id, "docker run -d --name neighbour busybox sleep 3600").await;
    assert_eq!(check(limits).await, (TaskStatus::Failed, "container neighbour has no memory limit; it should be limited to 32 MB".into()));
    assert_eq!(check(paused).await, (TaskStatus::Failed, "container neighbour has not been paused since the lab started".into()));
    let out = sh(&*m, &id, "docker rm -f neighbour && docker run -d --name neighbour --memory 32m --cpus 0.5 busybox sleep 3600 && docker pause neighbour && docker unpause neighbour").await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(check(limits).await.0, TaskStatus::Passed, "{:?}", check(limits).await);
    assert_eq!(check(paused).await.0, TaskStatus::Passed);

    // An HTTP GET through a published port, from the machine.
    let http = r#"{ kind = "port_http", port = 8080, contains = "hello from docklab" }"#;
    assert_eq!(check(http).await, (TaskStatus::Failed, "no running container publishes port 8080 (docker run -p 8080:…)".into()));
    let out = sh(&*m, &id, "mkdir -p /root/site && echo 'hello from docklab' > /root/site/index.html && docker run -d --name web -p 8080:80 -v /root/site:/www busybox httpd -f -p 80 -h /www && sleep 1").await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(check(http).await.0, TaskStatus::Passed, "{:?}", check(http).await);

    // Images: built from a learner's Dockerfile, config, base, size, no shell.
    let config = r#"{ kind = "image_config", image = "slim:1", entrypoint = ["/app/hello"] }"#;
    let no_shell = r#"{ kind = "image_no_shell", image = "slim:1" }"#;
    let scratch = r#"{ kind = "image_base", image = "slim:1", base = "scratch" }"#;
    let stages = r#"{ kind = "dockerfile", path = "~/slim/Dockerfile", min_stages = 2, copy_from = true, final_base = "scratch" }"#;
    assert_eq!(check(stages).await, (TaskStatus::Failed, "there is no Dockerfile at ~/slim/Dockerfile".into()));
    let out = sh(&*m, &id, "mkdir -p ~/slim && printf 'FROM busybox\\nRUN mkdir /app && echo hi > /app/hello\\nENTRYPOINT [\"/app/hello\"]\\n' > ~/slim/Dockerfile && docker build -q -t slim:1 ~/slim").await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(check(config).await.0, TaskStatus::Passed);
    assert_eq!(check(no_shell).await, (TaskStatus::Failed, "slim:1 has a shell at /bin/sh; an image without one leaves an intruder nothing to run".into()));
    assert_eq!(check(scratch).await, (TaskStatus::Failed, "slim:1 is built on busybox; its final stage should start FROM scratch".into()));
    assert_eq!(check(stages).await, (TaskStatus::Failed, "~/slim/Dockerfile has 1 stage (one FROM); it should have at least 2".into()));
    let out = sh(&*m, &id, "printf 'FROM busybox AS build\\nRUN mkdir /app && echo hi > /app/hello\\nFROM scratch\\nCOPY --from=build /app/hello /app/hello\\nENTRYPOINT [\"/app/hello\"]\\n' > ~/slim/Dockerfile && docker build -q -t slim:1 ~/slim").await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    for c in [config, no_shell, scratch, stages, r#"{ kind = "image_size_below", image = "slim:1", mb = 1 }"#] {
        assert_eq!(check(c).await.0, TaskStatus::Passed, "{c}: {:?}", check(c).await);
    }

    // A script check that hangs is stopped at its timeout.
    let hangs = r#"{ kind = "script", run = "sleep 30", timeout_s = 1 }"#;
    let t = Instant::now();
    assert_eq!(check(hangs).await, (TaskStatus::Failed, "the check did not finish within 1 s, so it was stopped".into()));
    assert!(t.elapsed() < Duration::from_secs(10));

    let g = grader(&m, &id, &sock, started);
    m.destroy(&id).await.unwrap();
    // The machine is gone: grading says so instead of failing the learner's work.
    let report = g.grade(&exercise(volume), Scope::All).await.remove(0);
    assert_eq!(report.status, TaskStatus::Pending, "{}", report.detail);
}

/// Runs one exercise: its starting state must leave every task undone; its solution, step by
/// step (grading after each, as a learner would look at the page), must finish every task.
async fn run_exercise(m: Arc<SessionManager>, exercise: Exercise) -> Result<(), String> {
    let id = unique_id(&exercise.slug.chars().take(12).collect::<String>());
    let info = m.create(&id).await.map_err(|e| format!("{}: create: {e}", exercise.id))?;
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    prepare_machine(&*m, &id, &exercise).await.map_err(|e| format!("{}: {e}", exercise.id))?;
    let g = grader(&m, &id, &info.docker_socket, now());
    let start = g.grade(&exercise, Scope::All).await;
    if let Some(done) = start.iter().find(|t| t.status != TaskStatus::Failed) {
        return Err(format!("{}: task {} is {:?} before the learner did anything: {}", exercise.id, done.id, done.status, done.detail));
    }
    for (task, script) in exercise.solution_steps() {
        let out = sh(&*m, &id, &format!("cd /root\n{script}")).await;
        if out.exit_code != 0 {
            // What the network looked like, for failures that are the machine's link to the
            // registry rather than the lesson (seen once: a dial i/o timeout to 10.200.0.1).
            let inside = sh(&*m, &id, "ip neigh; grep -i 'mirror\\|endpoint\\|timeout' /var/log/dockerd.log | tail -4").await;
            let host = std::process::Command::new("ip").args(["neigh", "show", "dev", "dlbr0"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            return Err(format!(
                "{}: solution step {task} failed ({}): {}{}\n  machine: {}\n  host neighbours: {}",
                exercise.id, out.exit_code, out.stdout, out.stderr, inside.stdout.trim(), host.trim()
            ));
        }
        let reports = g.grade(&exercise, Scope::All).await;
        let report = reports.iter().find(|r| r.id == task).unwrap();
        if report.status != TaskStatus::Passed {
            return Err(format!("{}: after its solution step, task {task} is {:?}: {}", exercise.id, report.status, report.detail));
        }
    }
    let end = g.grade(&exercise, Scope::All).await;
    if let Some(undone) = end.iter().find(|t| t.status != TaskStatus::Passed) {
        return Err(format!("{}: after the whole solution, task {} is {:?}: {}", exercise.id, undone.id, undone.status, undone.detail));
    }
    // Breaking the final state (`break.sh`) makes the exercise incomplete again: state tasks are
    // true of the machine now, not of a moment that passed.
    let (red, script) = break_script(&exercise);
    let out = sh(&*m, &id, &format!("cd /root\n{script}")).await;
    if out.exit_code != 0 {
        return Err(format!("{}: break.sh failed ({}): {}{}", exercise.id, out.exit_code, out.stdout, out.stderr));
    }
    let broken = g.grade(&exercise, Scope::All).await;
    let report = broken.iter().find(|r| r.id == red).unwrap();
    if report.status == TaskStatus::Passed {
        return Err(format!("{}: after break.sh, task {red} is still done", exercise.id));
    }
    m.destroy(&id).await.map_err(|e| format!("{}: destroy: {e}", exercise.id))?;
    Ok(())
}

/// An exercise's `break.sh` (next to its `exercise.toml` in the source tree) and the task its
/// `# red: <task>` line says must no longer be done after it.
fn break_script(exercise: &Exercise) -> (String, String) {
    let lessons = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../lessons");
    let lesson = std::fs::read_dir(&lessons)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{}-", exercise.lesson)))
        .unwrap();
    let path = lesson.join("exercises").join(&exercise.slug).join("break.sh");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} has no break.sh", exercise.id));
    let red = text.lines().find_map(|l| l.trim().strip_prefix("# red:")).unwrap_or_else(|| panic!("{}: no `# red: <task>` line", path.display()));
    let red = red.trim().to_owned();
    assert!(exercise.task(&red).is_some(), "{}: `# red: {red}` names no task", path.display());
    (red, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exercise_starts_unfinished_and_its_solution_finishes_it() {
    let m = manager(HELPER);
    m.health().await.expect("host ready for machines (run `docklab setup` first)");
    let lessons_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../lessons");
    let catalog = Catalog::load(&lessons_dir).expect("the lessons load");
    let mut exercises: Vec<Exercise> = catalog.lessons().iter().flat_map(|l| l.exercises.clone()).collect();
    assert!(exercises.len() >= 7);
    // `DOCKLAB_EXERCISES=day-29/,day-27/volumes-lifecycle` runs only those (by id prefix), for content authors.
    if let Ok(only) = std::env::var("DOCKLAB_EXERCISES") {
        exercises.retain(|e| only.split(',').any(|p| !p.is_empty() && e.id.starts_with(p)));
        assert!(!exercises.is_empty(), "DOCKLAB_EXERCISES={only} matches no exercise");
    }
    for e in &exercises {
        assert!(e.solution.is_some(), "{} has no solution.sh", e.id);
        assert!(e.tasks.iter().all(|t| !t.checks.is_empty()));
        assert!(e.tasks.iter().flat_map(|t| &t.checks).all(|c| !matches!(c, Check::Script { run, .. } if run.trim().is_empty())));
    }
    // Three at a time: the machine has two cores shared with other work.
    let limit = Arc::new(tokio::sync::Semaphore::new(3));
    let runs = exercises.into_iter().map(|exercise| {
        let (m, limit) = (m.clone(), limit.clone());
        tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let started = Instant::now();
            let id = exercise.id.clone();
            let result = run_exercise(m, exercise).await;
            eprintln!("{id}: {:?} in {:.1} s", result.as_ref().map(|_| "ok"), started.elapsed().as_secs_f64());
            result
        })
    });
    let failures: Vec<String> = futures::future::join_all(runs).await.into_iter().filter_map(|r| r.unwrap().err()).collect();
    assert!(failures.is_empty(), "exercises that do not grade as they should:\n{}", failures.join("\n"));
}
