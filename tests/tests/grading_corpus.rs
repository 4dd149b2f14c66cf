//! The wrong-answer corpus, on real session machines: for every exercise, plausible wrong
//! solutions (`lessons/day-*/exercises/*/wrong/*.sh`) must leave it incomplete, with the task
//! each names in its `# red: <task>` line not done; and its `mistake-then-fix.sh` (a mistake,
//! a `# fix` line, then the fix) must leave that task red after the mistake and the whole
//! exercise complete after the fix: no dead ends.
//!
//! Graded as the live server grades: the grader follows the engine's events and grades while
//! the script runs (as a learner watching the page would see it), so a history task that passed
//! on a moment between two events of one command would show here.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::EventsOptions;
use docklab_server::grading::{prepare_machine, BackendShell, Grader, Scope, TaskReport, TaskStatus, SETTLE};
use docklab_tests::{manager, sh, unique_id, Cleanup};
use futures::StreamExt;
use lessons::{Catalog, Exercise};
use sandbox::{MachineBackend, SessionManager};

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");
/// How often the simulated page grades while a script runs (the server's tick is 2 s).
const TICK: Duration = Duration::from_secs(1);
/// Longest a fix may take to show as complete (history tasks wait for the engine to settle).
const FIX_DEADLINE: Duration = Duration::from_secs(60);

/// One script of the corpus.
struct Case {
    exercise: Exercise,
    /// `wrong/<name>.sh` or `mistake-then-fix.sh`.
    name: String,
    /// The task that must not be done after the (wrong or mistaken) script.
    red: String,
    script: String,
    /// The fix that must complete the exercise, for `mistake-then-fix.sh`.
    fix: Option<String>,
}

/// The folder of an exercise in the source tree (`day-27` + `volumes-lifecycle`).
fn exercise_dir(lessons: &Path, exercise: &Exercise) -> PathBuf {
    let lesson = std::fs::read_dir(lessons)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{}-", exercise.lesson)))
        .unwrap_or_else(|| panic!("no folder for lesson {}", exercise.lesson));
    lesson.join("exercises").join(&exercise.slug)
}

fn red_task(path: &Path, text: &str, exercise: &Exercise) -> String {
    let red = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("# red:"))
        .unwrap_or_else(|| panic!("{} has no `# red: <task>` line", path.display()))
        .trim()
        .to_owned();
    assert!(exercise.task(&red).is_some(), "{}: `# red: {red}` names no task of {}", path.display(), exercise.id);
    red
}

/// Every wrong solution and mistake-then-fix path of `exercise`, checked for shape.
fn cases(lessons: &Path, exercise: &Exercise) -> Vec<Case> {
    let dir = exercise_dir(lessons, exercise);
    let mut out = Vec::new();
    let mut wrong: Vec<PathBuf> = std::fs::read_dir(dir.join("wrong")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    wrong.sort();
    assert!(wrong.len() >= 2, "{} needs at least two wrong solutions in wrong/ (has {})", exercise.id, wrong.len());
    for path in wrong {
        let text = std::fs::read_to_string(&path).unwrap();
        let red = red_task(&path, &text, exercise);
        out.push(Case { exercise: exercise.clone(), name: format!("wrong/{}", path.file_name().unwrap().to_string_lossy()), red, script: text, fix: None });
    }
    let path = dir.join("mistake-then-fix.sh");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} has no mistake-then-fix.sh", exercise.id));
    let red = red_task(&path, &text, exercise);
    let (mistake, fix) = text.split_once("\n# fix\n").unwrap_or_else(|| panic!("{}: no `# fix` line between the mistake and the fix", path.display()));
    out.push(Case { exercise: exercise.clone(), name: "mistake-then-fix.sh".into(), red, script: mistake.to_owned(), fix: Some(fix.to_owned()) });
    out
}

/// A grader that follows the machine's events and grades on them and on a tick, like the
/// server's live watcher. `stop` ends it.
fn follow(g: Arc<Grader>, exercise: Exercise, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let since = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).to_string();
        let mut events = g.docker().events(Some(EventsOptions { since: Some(since), ..Default::default() })).boxed();
        let mut tick = tokio::time::interval(TICK);
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                item = events.next() => match item {
                    Some(Ok(event)) => {
                        if g.note_event(&event) {
                            g.grade(&exercise, Scope::All).await;
                        }
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                },
                _ = tick.tick() => {
                    g.grade(&exercise, Scope::Tick).await;
                }
            }
        }
    })
}

fn show(reports: &[TaskReport]) -> String {
    reports.iter().map(|r| format!("{} {:?}: {}", r.id, r.status, r.detail)).collect::<Vec<_>>().join("\n    ")
}

async fn run_script(m: &SessionManager, id: &str, case: &Case, script: &str) -> Result<(), String> {
    let out = sh(m, id, &format!("cd /root\n{script}")).await;
    if out.exit_code != 0 {
        return Err(format!("{} {}: the script failed ({}): {}{}", case.exercise.id, case.name, out.exit_code, out.stdout, out.stderr));
    }
    Ok(())
}

/// Waits for the engine to settle, then grades.
async fn settled_grade(g: &Grader, exercise: &Exercise) -> Vec<TaskReport> {
    tokio::time::sleep(SETTLE + Duration::from_millis(500)).await;
    g.grade(exercise, Scope::All).await
}

async fn run_case(m: Arc<SessionManager>, case: Case) -> Result<(), String> {
    let label = format!("{} {}", case.exercise.id, case.name);
    let id = unique_id(&case.exercise.slug.chars().take(10).collect::<String>());
    let info = m.create(&id).await.map_err(|e| format!("{label}: create: {e}"))?;
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    prepare_machine(&*m, &id, &case.exercise).await.map_err(|e| format!("{label}: {e}"))?;
    let backend: Arc<dyn MachineBackend> = m.clone();
    let shell = Arc::new(BackendShell { backend, id: id.clone() });
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let g = Arc::new(Grader::connect(&id, &info.docker_socket, shell, since).map_err(|e| format!("{label}: {e}"))?);
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = follow(g.clone(), case.exercise.clone(), stop.clone());
    let result = async {
        run_script(&m, &id, &case, &case.script).await?;
        let reports = settled_grade(&g, &case.exercise).await;
        let red = reports.iter().find(|r| r.id == case.red).unwrap();
        if red.status == TaskStatus::Passed {
            return Err(format!("{label}: task {} passed, but this answer is wrong:\n    {}", case.red, show(&reports)));
        }
        let Some(fix) = &case.fix else { return Ok(()) };
        run_script(&m, &id, &case, fix).await?;
        let deadline = Instant::now() + FIX_DEADLINE;
        loop {
            let reports = settled_grade(&g, &case.exercise).await;
            if reports.iter().all(|r| r.status == TaskStatus::Passed) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{label}: after the fix, the exercise is still not complete (a dead end):\n    {}", show(&reports)));
            }
        }
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    watcher.abort();
    let _ = m.destroy(&id).await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_solutions_stay_incomplete_and_mistakes_can_be_fixed() {
    let m = manager(HELPER);
    m.health().await.expect("host ready for machines (run `docklab setup` first)");
    let lessons_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lessons");
    let catalog = Catalog::load(&lessons_dir).expect("the lessons load");
    let mut exercises: Vec<Exercise> = catalog.lessons().iter().flat_map(|l| l.exercises.clone()).collect();
    // `DOCKLAB_EXERCISES=day-29/,day-27/volumes-lifecycle` runs only those (by id prefix).
    if let Ok(only) = std::env::var("DOCKLAB_EXERCISES") {
        exercises.retain(|e| only.split(',').any(|p| !p.is_empty() && e.id.starts_with(p)));
        assert!(!exercises.is_empty(), "DOCKLAB_EXERCISES={only} matches no exercise");
    }
    let all: Vec<Case> = exercises.iter().flat_map(|e| cases(&lessons_dir, e)).collect();
    // Three machines at a time: the host has two cores shared with other work.
    let limit = Arc::new(tokio::sync::Semaphore::new(3));
    let runs = all.into_iter().map(|case| {
        let (m, limit) = (m.clone(), limit.clone());
        tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let started = Instant::now();
            let label = format!("{} {}", case.exercise.id, case.name);
            let result = run_case(m, case).await;
            eprintln!("{label}: {} in {:.1} s", if result.is_ok() { "ok" } else { "FAILED" }, started.elapsed().as_secs_f64());
            result
        })
    });
    let failures: Vec<String> = futures::future::join_all(runs).await.into_iter().filter_map(|r| r.unwrap().err()).collect();
    assert!(failures.is_empty(), "the grader was fooled or left a dead end:\n{}", failures.join("\n"));
}
