//! Every snippet a lesson marks to run (a fenced `sh run` block, a Run button on the page) works
//! when typed into a fresh session of the lesson's first exercise: on a real machine, after that
//! exercise's files and setup, each lesson's snippets run in document order in one machine (as a
//! learner clicking down the page would), each with `bash -e` in the directory the previous one
//! left, and each must exit 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use docklab_server::grading::prepare_machine;
use docklab_tests::{manager, unique_id, Cleanup};
use lessons::{Catalog, Lesson};
use sandbox::{ExecOutput, ExecRequest, MachineBackend, SessionManager};

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");
/// Longest one snippet may take (a Go build on a busy host is the slowest).
const SNIPPET_TIMEOUT: Duration = Duration::from_secs(300);
/// Where each snippet leaves its working directory for the next, as one terminal would.
const CWD_FILE: &str = "/tmp/.docklab-snippet-cwd";

/// The text of every runnable snippet in rendered lesson HTML, in document order.
pub fn snippets(html: &str) -> Vec<String> {
    const OPEN: &str = "<pre class=\"snippet\" data-run><code class=\"language-sh\">";
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(OPEN) {
        rest = &rest[start + OPEN.len()..];
        let end = rest.find("</code></pre>").expect("a snippet's code ends");
        out.push(unescape(&rest[..end]));
        rest = &rest[end..];
    }
    out
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

async fn bash(m: &dyn MachineBackend, id: &str, script: &str) -> ExecOutput {
    let wrapped = format!(
        "cd \"$(cat {CWD_FILE} 2>/dev/null || echo /root)\" 2>/dev/null || cd /root\n{script}\npwd > {CWD_FILE}\n"
    );
    m.exec(id, ExecRequest { cmd: vec!["bash".into(), "-e".into(), "-c".into(), wrapped], timeout: SNIPPET_TIMEOUT, stdin: None })
        .await
        .unwrap_or_else(|e| panic!("exec in {id}: {e}"))
}

/// Runs one lesson's snippets in a fresh machine prepared for its first exercise.
async fn run_lesson(m: Arc<SessionManager>, lesson: Lesson) -> Result<usize, String> {
    let snippets = snippets(&lesson.body_html);
    if snippets.is_empty() {
        return Ok(0);
    }
    let id = unique_id(&format!("snip-{}", lesson.id));
    m.create(&id).await.map_err(|e| format!("{}: create: {e}", lesson.id))?;
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    if let Some(first) = lesson.exercises.first() {
        prepare_machine(&*m, &id, first).await.map_err(|e| format!("{}: {e}", lesson.id))?;
    }
    for (i, snippet) in snippets.iter().enumerate() {
        let started = Instant::now();
        let out = bash(&*m, &id, snippet).await;
        eprintln!("{} snippet {}: exit {} in {:.1} s", lesson.id, i + 1, out.exit_code, started.elapsed().as_secs_f64());
        if out.exit_code != 0 {
            return Err(format!(
                "{} snippet {} exited with {}:\n--- snippet\n{snippet}\n--- stdout\n{}\n--- stderr\n{}",
                lesson.id,
                i + 1,
                out.exit_code,
                out.stdout,
                out.stderr
            ));
        }
    }
    let _ = m.destroy(&id).await;
    Ok(snippets.len())
}

#[test]
fn snippets_are_found_and_unescaped() {
    let html = lessons::markdown::render("```sh run\necho \"a<b\" && echo 'c'\n```\n\n```sh\nnot me\n```\n\n```sh run\nls\n```\n");
    assert_eq!(snippets(&html), vec!["echo \"a<b\" && echo 'c'".to_owned(), "ls".to_owned()]);
}

// Four workers: the registry served from this process streams large layers (golang:1.19).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_snippet_runs_in_a_fresh_session_of_its_lesson() {
    let m = manager(HELPER);
    m.health().await.expect("host ready for machines (run `docklab setup` first)");
    let lessons_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../lessons");
    let catalog = Catalog::load(&lessons_dir).expect("the lessons load");
    // `DOCKLAB_SNIPPETS_LESSON=day-26,day-27` runs only those lessons' snippets.
    let only = std::env::var("DOCKLAB_SNIPPETS_LESSON").ok();
    let lessons: Vec<Lesson> =
        catalog.lessons().iter().filter(|l| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == l.id))).cloned().collect();
    // One lesson at a time: with two machines pulling large images at once on two cores, a
    // machine's dockerd was seen giving up on docklab's mirror and falling back to Docker Hub
    // (unreachable here). Cause not found yet; see the session notes.
    let limit = Arc::new(tokio::sync::Semaphore::new(1));
    let runs = lessons.into_iter().map(|lesson| {
        let (m, limit) = (m.clone(), limit.clone());
        tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let id = lesson.id.clone();
            let started = Instant::now();
            let result = run_lesson(m, lesson).await;
            eprintln!("{id}: {:?} in {:.1} s", result.as_ref().map(|n| format!("{n} snippets ok")), started.elapsed().as_secs_f64());
            result
        })
    });
    let results: Vec<Result<usize, String>> = futures::future::join_all(runs).await.into_iter().map(|r| r.unwrap()).collect();
    let total: usize = results.iter().filter_map(|r| r.as_ref().ok()).sum();
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "snippets that do not run as the page says:\n{}", failures.join("\n\n"));
    eprintln!("{total} snippets ran");
}

/// Not a test: an author's tool. `DOCKLAB_TRY=script.sh cargo test -p docklab-tests --test
/// snippets -- --ignored try_a_script --nocapture` runs the script in a fresh machine (with the
/// registry bound) and prints what it printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn try_a_script() {
    let Some(path) = std::env::var_os("DOCKLAB_TRY") else { return };
    let script = std::fs::read_to_string(path).unwrap();
    let m = manager(HELPER);
    let id = unique_id("try");
    m.create(&id).await.unwrap();
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    let out = m
        .exec(&id, ExecRequest { cmd: vec!["bash".into(), "-c".into(), script], timeout: SNIPPET_TIMEOUT, stdin: None })
        .await
        .unwrap();
    println!("exit {}\n--- stdout\n{}\n--- stderr\n{}", out.exit_code, out.stdout, out.stderr);
}
