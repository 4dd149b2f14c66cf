use super::*;
use std::fs;

const GOOD_LESSON: &str = "+++\nday = 24\ntitle = \"Containers\"\nsummary = \"What a container is.\"\nobjectives = [\"Run one\"]\n+++\n\nHello.\n\n```sh run\ndocker ps -a\n```\n";
const GOOD_EXERCISE: &str = "title = \"Lifecycle\"\nbrief = \"Walk a container through its life.\"\n\n[[tasks]]\nid = \"create\"\ntitle = \"Create it\"\nhints = [\"docker create\"]\nchecks = [{ kind = \"container_state\", state = \"created\" }]\n";

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
fn front_matter_split_handles_crlf() {
    let (front, body) = split_front_matter("+++\r\nday = 24\r\n+++\r\nbody").unwrap();
    assert_eq!(front, "day = 24\r\n");
    assert_eq!(body, "body");
    assert!(split_front_matter("+++\nday = 24\n").is_none());
}
