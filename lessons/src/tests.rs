use super::*;
use std::fs;

const GOOD_LESSON: &str = "+++\nday = 24\ntitle = \"Containers\"\nsummary = \"What a container is.\"\nobjectives = [\"Run one\"]\n+++\n\nHello.\n\n```sh run\ndocker ps -a\n```\n";
const GOOD_EXERCISE: &str = "title = \"Lifecycle\"\nbrief = \"Walk a container through its life.\"\n\n[[tasks]]\nid = \"create\"\ntitle = \"Create it\"\nhints = [\"docker create\"]\nchecks = [{ kind = \"container_state\", container = \"box\", state = \"created\" }]\n";

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn load_err(files: &[(&str, &str)]) -> (tempfile::TempDir, ContentError) {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        write(dir.path(), rel, text);
    }
    let err = Catalog::load(dir.path()).expect_err("content should be rejected");
    (dir, err)
}

fn check_real_content(catalog: &Catalog) {
    let days: Vec<u32> = catalog.lessons().iter().map(|l| l.day).collect();
    assert_eq!(days, (24..=30).collect::<Vec<_>>());
    for lesson in catalog.lessons() {
        assert_eq!(catalog.lesson(&lesson.id).unwrap().day, lesson.day);
        assert!(
            (3..=5).contains(&lesson.objectives.len()),
            "{}: 3 to 5 objectives",
            lesson.id
        );
        assert!(
            lesson.body_html.contains("data-run"),
            "{}: at least one runnable snippet",
            lesson.id
        );
        assert!(
            !lesson.exercises.is_empty(),
            "{} has no exercise",
            lesson.id
        );
        for exercise in &lesson.exercises {
            assert_eq!(exercise.lesson, lesson.id);
            assert!(exercise.id.starts_with(&format!("{}/", lesson.id)));
            assert!(
                (2..=4).contains(&exercise.tasks.len()),
                "{}: 2 to 4 tasks",
                exercise.id
            );
            assert_eq!(
                catalog.exercise(&exercise.id).unwrap().title,
                exercise.title
            );
        }
    }
    assert_eq!(
        catalog.exercise("day-24/lifecycle").unwrap().lesson,
        "day-24"
    );
    assert!(catalog.exercise("day-27/volumes-lifecycle").is_some());
    use markdown::LiveVisual;
    for (day, visual) in [("day-26", LiveVisual::Images), ("day-27", LiveVisual::Volumes), ("day-28", LiveVisual::Networks)] {
        assert_eq!(catalog.lesson(day).unwrap().visuals, vec![visual], "{day} shows its live visual");
    }
    assert!(catalog.exercise("day-28/custom-bridge").is_some());
    assert!(catalog.lesson("day-31").is_none());
    assert!(catalog.exercise("day-27/nope").is_none());
}

#[test]
fn loads_the_real_content_from_disk() {
    let catalog = Catalog::load(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    check_real_content(&catalog);
}

#[test]
fn loads_the_embedded_content() {
    let catalog = Catalog::embedded().unwrap();
    check_real_content(&catalog);
}

#[test]
fn summaries_serialize_without_solutions() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "day-24-containers/lesson.md", GOOD_LESSON);
    write(
        dir.path(),
        "day-24-containers/exercises/lifecycle/exercise.toml",
        GOOD_EXERCISE,
    );
    let catalog = Catalog::load(dir.path()).unwrap();

    let list = serde_json::to_value(catalog.summaries()).unwrap();
    assert_eq!(
        list,
        serde_json::json!([{
            "id": "day-24", "day": 24, "title": "Containers", "summary": "What a container is.",
            "exercises": [{"id": "day-24/lifecycle", "title": "Lifecycle"}]
        }])
    );
    let detail = serde_json::to_string(catalog.lesson("day-24").unwrap()).unwrap();
    assert!(detail.contains("\"hints\":[\"docker create\"]"), "{detail}");
    assert!(
        !detail.contains("container_state"),
        "checks must not be served: {detail}"
    );
    assert_eq!(
        catalog.exercise("day-24/lifecycle").unwrap().tasks[0]
            .checks
            .len(),
        1
    );
}

#[test]
fn rejects_bad_front_matter_naming_the_file() {
    let (_dir, err) = load_err(&[(
        "day-24-containers/lesson.md",
        "+++\nday = \"twenty-four\"\ntitle = \"x\"\nsummary = \"y\"\n+++\nbody",
    )]);
    assert!(matches!(err, ContentError::FrontMatter { .. }), "{err}");
    assert!(
        err.to_string().contains("day-24-containers/lesson.md"),
        "{err}"
    );

    let (_dir, err) = load_err(&[("day-24-containers/lesson.md", "# No front matter\n")]);
    assert!(
        matches!(err, ContentError::MissingFrontMatter { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("day-24-containers/lesson.md"),
        "{err}"
    );

    let (_dir, err) = load_err(&[(
        "day-24-containers/lesson.md",
        "+++\nday = 24\ntitle = \"x\"\nsummary = \"y\"\ntitel = \"typo\"\n+++\n",
    )]);
    assert!(
        err.to_string().contains("titel"),
        "unknown keys are named: {err}"
    );
}

#[test]
fn rejects_empty_titles_and_days_outside_the_course() {
    let (_dir, err) = load_err(&[(
        "day-24-containers/lesson.md",
        &GOOD_LESSON.replace("\"Containers\"", "\"  \""),
    )]);
    assert!(
        matches!(err, ContentError::EmptyField { field: "title", .. }),
        "{err}"
    );

    let (_dir, err) = load_err(&[(
        "day-23-intro/lesson.md",
        &GOOD_LESSON.replace("day = 24", "day = 23"),
    )]);
    assert!(
        matches!(err, ContentError::DayOutOfRange { day: 23, .. }),
        "{err}"
    );

    let (_dir, err) = load_err(&[("day-25-dockerfiles/lesson.md", GOOD_LESSON)]);
    assert!(
        matches!(
            err,
            ContentError::DayMismatch {
                folder: 25,
                front_matter: 24,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rejects_duplicate_ids() {
    let (_dir, err) = load_err(&[
        ("day-24-a/lesson.md", GOOD_LESSON),
        ("day-24-b/lesson.md", GOOD_LESSON),
    ]);
    match &err {
        ContentError::DuplicateId {
            path, id, first, ..
        } => {
            assert_eq!(id, "day-24");
            assert!(
                path.ends_with("day-24-b/lesson.md") && first.ends_with("day-24-a/lesson.md"),
                "{err}"
            );
        }
        other => panic!("expected a duplicate id, got {other}"),
    }

    let doubled = format!("{GOOD_EXERCISE}\n[[tasks]]\nid = \"create\"\ntitle = \"Again\"\n");
    let (_dir, err) = load_err(&[
        ("day-24-containers/lesson.md", GOOD_LESSON),
        (
            "day-24-containers/exercises/lifecycle/exercise.toml",
            &doubled,
        ),
    ]);
    assert!(
        matches!(
            &err,
            ContentError::DuplicateId {
                what: "task id",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("exercises/lifecycle/exercise.toml"),
        "{err}"
    );
}

#[test]
fn rejects_bad_ids_and_orphans() {
    let (_dir, err) = load_err(&[
        ("day-24-containers/lesson.md", GOOD_LESSON),
        (
            "day-24-containers/exercises/Life_Cycle/exercise.toml",
            GOOD_EXERCISE,
        ),
    ]);
    assert!(
        matches!(&err, ContentError::BadId { id, .. } if id == "Life_Cycle"),
        "{err}"
    );

    let (_dir, err) = load_err(&[
        ("day-24-containers/lesson.md", GOOD_LESSON),
        (
            "day-24-containers/exercises/lifecycle/exercise.toml",
            &GOOD_EXERCISE.replace("id = \"create\"", "id = \"Create it\""),
        ),
    ]);
    assert!(
        matches!(
            &err,
            ContentError::BadId {
                what: "task id",
                ..
            }
        ),
        "{err}"
    );

    let (_dir, err) = load_err(&[
        ("day-24-containers/lesson.md", GOOD_LESSON),
        (
            "day-25-dockerfiles/exercises/build/exercise.toml",
            GOOD_EXERCISE,
        ),
    ]);
    assert!(matches!(&err, ContentError::OrphanExercise { .. }), "{err}");

    let (_dir, err) = load_err(&[("day-24/lesson.md", GOOD_LESSON)]);
    assert!(
        matches!(&err, ContentError::BadLessonFolder { .. }),
        "{err}"
    );
}

#[test]
fn renders_sh_run_blocks_with_a_run_button() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "day-24-containers/lesson.md", GOOD_LESSON);
    let catalog = Catalog::load(dir.path()).unwrap();
    let html = &catalog.lesson("day-24").unwrap().body_html;
    assert!(
        html.contains(
            "<pre class=\"snippet\" data-run><code class=\"language-sh\">docker ps -a</code></pre>"
        ),
        "{html}"
    );
    assert!(html.contains("class=\"run-snippet\""), "{html}");
}

#[test]
fn live_visuals_are_listed_and_unknown_ones_refused() {
    let lesson = GOOD_LESSON.replace("Hello.", "Hello.\n\n```live volumes\nYour volumes\n```");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "day-24-containers/lesson.md", &lesson);
    write(dir.path(), "day-24-containers/exercises/lifecycle/exercise.toml", GOOD_EXERCISE);
    let catalog = Catalog::load(dir.path()).unwrap();
    let day = catalog.lesson("day-24").unwrap();
    assert_eq!(day.visuals, vec![markdown::LiveVisual::Volumes]);
    assert!(day.body_html.contains("data-visual=\"volumes\""), "{}", day.body_html);

    let (_dir, err) = load_err(&[(
        "day-24-containers/lesson.md",
        &GOOD_LESSON.replace("Hello.", "```live planets\n```"),
    )]);
    assert!(matches!(&err, ContentError::UnknownVisual { kind, .. } if kind == "planets"), "{err}");
    assert!(err.to_string().contains("images, volumes, networks"), "{err}");

    // A live visual needs a lab to draw from.
    let (_dir, err) = load_err(&[("day-24-containers/lesson.md", &lesson)]);
    assert!(matches!(&err, ContentError::VisualWithoutLab { .. }), "{err}");
    assert!(err.to_string().contains("day-24-containers"), "{err}");
}

#[test]
fn front_matter_split_handles_crlf() {
    let (front, body) = split_front_matter("+++\r\nday = 24\r\n+++\r\nbody").unwrap();
    assert_eq!(front, "day = 24\r\n");
    assert_eq!(body, "body");
    assert!(split_front_matter("+++\nday = 24\n").is_none());
}

fn exercise_with_checks(checks: &str) -> String {
    format!("title = \"Lifecycle\"\nbrief = \"Walk.\"\n\n[[tasks]]\nid = \"create\"\ntitle = \"Create it\"\nchecks = [\n{checks}\n]\n")
}

fn exercise_err(checks: &str) -> ContentError {
    load_err(&[
        ("day-24-containers/lesson.md", GOOD_LESSON),
        ("day-24-containers/exercises/lifecycle/exercise.toml", &exercise_with_checks(checks)),
    ])
    .1
}

#[test]
fn checks_are_typed_and_every_kind_parses() {
    let all = r#"
  { kind = "volume_exists", volume = "v", driver = "local" },
  { kind = "volume_absent", volume = "v" },
  { kind = "volume_mounted", container = "c", path = "/data", as = "bind", source = "/root/site", flag = "-v", read_only = true },
  { kind = "file_content", volume = "v", path = "a.txt", equals = "hi" },
  { kind = "file_content", container = "c", path = "/a.txt", contains = "hi" },
  { kind = "file_content", path = "~/a.txt", contains = "hi" },
  { kind = "network_exists", network = "n", driver = "bridge" },
  { kind = "container_networks", container = "c", networks = ["n"], exactly = false },
  { kind = "reachable", from = "a", to = "b" },
  { kind = "not_reachable", from = "a", to = "b", by = "ip" },
  { kind = "port_http", port = 8080, contains = "hello" },
  { kind = "image_exists", image = "x:1" },
  { kind = "image_size_below", image = "x:1", mb = 5 },
  { kind = "image_no_shell", image = "x:1" },
  { kind = "image_base", image = "x:1", base = "scratch" },
  { kind = "dockerfile", path = "~/x/Dockerfile", min_stages = 2, copy_from = true, final_base = "scratch" },
  { kind = "image_config", image = "x:1", entrypoint = ["echo"], cmd = ["hi"], user = "app", healthcheck = true, exposed_ports = ["80/tcp"] },
  { kind = "container_state", container = "c", state = "exited", exit_code = 137, oom_killed = true, min_restarts = 2, restart_policy = ["always", "on-failure"], memory_mb = 16, cpus = 0.5, image = "busybox" },
  { kind = "container_absent", container = "c" },
  { kind = "container_logs", image = "x:1", contains = "hi" },
  { kind = "event_seen", name = "c", action = "pause" },
  { kind = "event_seen", object = "volume", name = "v", action = "destroy" },
  { kind = "script", run = "true", timeout_s = 5 },
"#;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "day-24-containers/lesson.md", GOOD_LESSON);
    write(dir.path(), "day-24-containers/exercises/lifecycle/exercise.toml", &exercise_with_checks(all));
    let catalog = Catalog::load(dir.path()).unwrap();
    let checks = &catalog.exercise("day-24/lifecycle").unwrap().tasks[0].checks;
    assert_eq!(checks.len(), 23);
    assert_eq!(
        checks[2],
        Check::VolumeMounted {
            container: "c".into(),
            path: "/data".into(),
            mount_type: checks::MountType::Bind,
            source: Some("/root/site".into()),
            flag: Some(checks::MountFlag::V),
            read_only: Some(true),
        }
    );
    let kinds: std::collections::BTreeSet<&str> = checks.iter().map(Check::kind).collect();
    assert_eq!(kinds.len(), 20, "every kind is covered: {kinds:?}");
}

#[test]
fn unknown_kinds_and_fields_are_refused_with_the_file_and_line() {
    let err = exercise_err("  { kind = \"volume_exists\", volume = \"v\" },\n  { kind = \"volume_exsts\", volume = \"v\" },");
    let text = err.to_string();
    assert!(matches!(err, ContentError::ExerciseToml { .. }), "{text}");
    assert!(text.contains("exercises/lifecycle/exercise.toml"), "{text}");
    assert!(text.contains("volume_exsts") && text.contains("line 9"), "{text}");

    let err = exercise_err("  { kind = \"volume_exists\", volume = \"v\", drvier = \"local\" },");
    assert!(err.to_string().contains("drvier"), "{err}");
}

#[test]
fn bad_check_values_are_refused_with_the_task_and_line() {
    let err = exercise_err("  { kind = \"volume_exists\", volume = \"v\" },\n  { kind = \"event_seen\", name = \"box\", action = \"paused\" },");
    match &err {
        ContentError::BadCheck { line, task, index, kind, reason, .. } => {
            assert_eq!((*line, task.as_str(), *index, *kind), (9, "create", 2, "event_seen"));
            assert!(reason.contains("pause"), "{reason}");
        }
        other => panic!("expected a bad check, got {other}"),
    }
    assert!(err.to_string().contains("exercise.toml:9"), "{err}");

    for (checks, expect) in [
        ("{ kind = \"file_content\", volume = \"v\", container = \"c\", path = \"a\", equals = \"x\" }", "not both"),
        ("{ kind = \"file_content\", volume = \"v\", path = \"../etc/passwd\", equals = \"x\" }", "relative"),
        ("{ kind = \"script\", run = \"sleep 100\", timeout_s = 600 }", "timeout_s"),
        ("{ kind = \"container_state\", container = \"c\", restart_policy = \"sometimes\" }", "sometimes"),
        ("{ kind = \"dockerfile\", path = \"Dockerfile\", min_stages = 2 }", "must start with"),
        ("{ kind = \"image_config\", image = \"x\" }", "say what to check"),
        ("{ kind = \"script\", run = \"docker run --rm --label docklab.grader=1 x\" }", "on_tick = false"),
        ("{ kind = \"script\", run = \"docker run --rm x\", on_tick = false }", "docklab.grader=1"),
    ] {
        let err = exercise_err(checks);
        assert!(matches!(err, ContentError::BadCheck { .. }) && err.to_string().contains(expect), "{checks}: {err}");
    }
    assert!(matches!(exercise_err("  { kind = \"container_absent\", container = \"c\" },"), ContentError::VacuousTask { .. }));
}

#[test]
fn tasks_are_state_tasks_unless_only_history_checks_or_marked() {
    let load = |task: &str| {
        let text = format!("title = \"Lifecycle\"\nbrief = \"Walk.\"\n\n[[tasks]]\nid = \"create\"\ntitle = \"Create it\"\n{task}\n");
        let dir = tempfile::tempdir().unwrap();
        for (path, body) in [("day-24-containers/lesson.md", GOOD_LESSON), ("day-24-containers/exercises/lifecycle/exercise.toml", text.as_str())] {
            std::fs::create_dir_all(dir.path().join(path).parent().unwrap()).unwrap();
            std::fs::write(dir.path().join(path), body).unwrap();
        }
        Catalog::load(dir.path()).map(|c| c.exercise("day-24/lifecycle").unwrap().tasks[0].history)
    };
    let state = "checks = [{ kind = \"container_state\", container = \"box\", state = \"created\" }]";
    let events = "checks = [{ kind = \"event_seen\", name = \"box\", action = \"start\" }]";
    assert!(!load(state).unwrap());
    assert!(load(events).unwrap());
    assert!(load(&format!("history = true\n{state}")).unwrap());
    let err = load(&format!("history = false\n{events}")).unwrap_err();
    assert!(matches!(err, ContentError::BadTask { .. }) && err.to_string().contains("never be undone"), "{err}");
}

#[test]
fn a_task_without_checks_is_refused() {
    let (_dir, err) = load_err(&[
        ("day-24-containers/lesson.md", GOOD_LESSON),
        (
            "day-24-containers/exercises/lifecycle/exercise.toml",
            "title = \"L\"\nbrief = \"B\"\n[[tasks]]\nid = \"a\"\ntitle = \"A\"\n",
        ),
    ]);
    assert!(matches!(err, ContentError::NoChecks { .. }), "{err}");
}

#[test]
fn starting_files_setup_and_solution_are_loaded_and_not_served() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "day-24-containers/lesson.md", GOOD_LESSON);
    write(dir.path(), "day-24-containers/exercises/lifecycle/exercise.toml", GOOD_EXERCISE);
    write(dir.path(), "day-24-containers/exercises/lifecycle/files/app/Dockerfile", "FROM busybox\n");
    write(dir.path(), "day-24-containers/exercises/lifecycle/setup.sh", "docker volume create seed\n");
    write(
        dir.path(),
        "day-24-containers/exercises/lifecycle/solution.sh",
        "set -e\n# task: create\ndocker create --name box busybox\n",
    );
    let catalog = Catalog::load(dir.path()).unwrap();
    let exercise = catalog.exercise("day-24/lifecycle").unwrap();
    assert_eq!(exercise.files, vec![StartingFile { path: "app/Dockerfile".into(), contents: b"FROM busybox\n".to_vec() }]);
    assert_eq!(exercise.setup.as_deref(), Some("docker volume create seed\n"));
    assert_eq!(
        exercise.solution_steps(),
        vec![("create".to_string(), "set -e\ndocker create --name box busybox\n".to_string())]
    );
    let served = serde_json::to_string(catalog.lesson("day-24").unwrap()).unwrap();
    assert!(!served.contains("docker create --name box") && !served.contains("seed"), "{served}");

    write(dir.path(), "day-24-containers/exercises/lifecycle/solution.sh", "# task: crate\n");
    let err = Catalog::load(dir.path()).unwrap_err();
    assert!(matches!(err, ContentError::BadSolutionMarker { line: 1, .. }), "{err}");
}

#[test]
fn every_real_exercise_has_a_solution_marked_for_each_task() {
    for catalog in [Catalog::load(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap(), Catalog::embedded().unwrap()] {
        for exercise in catalog.lessons().iter().flat_map(|l| &l.exercises) {
            let steps: Vec<String> = exercise.solution_steps().into_iter().map(|(t, _)| t).collect();
            let tasks: Vec<String> = exercise.tasks.iter().map(|t| t.id.clone()).collect();
            assert_eq!(steps, tasks, "{}: solution.sh needs one `# task:` step per task, in order", exercise.id);
        }
        let greeter = catalog.exercise("day-25/entrypoint-cmd").unwrap();
        assert!(greeter.files.iter().any(|f| f.path == "greeter/Dockerfile"), "starting files are embedded too");
    }
}
