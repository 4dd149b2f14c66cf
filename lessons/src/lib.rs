//! Course content for docklab: lessons (one per course day) and their exercises.
//!
//! Content lives next to this crate as
//! ```text
//! lessons/day-27-volumes/
//!   lesson.md                          +++ TOML front matter +++ then Markdown
//!   exercises/volumes-lifecycle/
//!     exercise.toml                    title, brief, [[tasks]] {id, title, hints, history?, checks}
//!     files/                           optional: copied into the learner's home (/root) at start
//!     setup.sh                         optional: run in the machine before the learner arrives
//!     solution.sh                      the reference solution; `# task: <id>` lines split it
//! ```
//! Checks are typed ([`checks::Check`]); a task's checks all pass for the task to be done. A task
//! is a state task (done while it holds) or a history task (done once it happened): see
//! [`Task::history`] and `lessons/README.md`.
//! [`Catalog::embedded`] reads the copy compiled into the binary; [`Catalog::load`] reads an
//! operator-supplied folder of the same shape. Both validate everything before returning, and
//! every error names the file at fault.

pub mod checks;
mod error;
pub mod markdown;
pub mod questions;

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use checks::Check;
pub use error::ContentError;
pub use questions::{Question, Tag};

/// The lowest and highest course days that lessons may belong to.
pub const DAYS: std::ops::RangeInclusive<u32> = 24..=30;

/// One course day: its prose and its exercises.
#[derive(Debug, Clone, Serialize)]
pub struct Lesson {
    /// `day-NN`, e.g. `day-27`.
    pub id: String,
    pub day: u32,
    /// The folder's name after the day, e.g. `volumes` for `day-27-volumes`.
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub objectives: Vec<String>,
    /// `objectives` rendered as inline HTML.
    #[serde(skip)]
    pub objectives_html: Vec<String>,
    /// The lesson body rendered to HTML (trusted content: ours or the operator's).
    #[serde(skip)]
    pub body_html: String,
    /// Live pictures of the learner's session that the body places (`live <kind>` blocks).
    #[serde(skip)]
    pub visuals: Vec<markdown::LiveVisual>,
    pub exercises: Vec<Exercise>,
}

/// A hands-on exercise done in a session machine.
#[derive(Debug, Clone, Serialize)]
pub struct Exercise {
    /// `day-NN/slug`, e.g. `day-27/volumes-lifecycle`.
    pub id: String,
    /// The id of the lesson it belongs to, e.g. `day-27`.
    pub lesson: String,
    pub slug: String,
    pub title: String,
    /// The brief as written (Markdown).
    pub brief: String,
    #[serde(skip)]
    pub brief_html: String,
    pub tasks: Vec<Task>,
    /// Starting files for the learner's home directory. Not served.
    #[serde(skip)]
    pub files: Vec<StartingFile>,
    /// Shell script run in the machine before the learner arrives. Not served.
    #[serde(skip)]
    pub setup: Option<String>,
    /// The reference solution (a shell script). Not served: revealed on request only.
    #[serde(skip)]
    pub solution: Option<String>,
}

/// A file placed in the learner's home directory when the session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartingFile {
    /// Relative to the home directory, `/`-separated, without `..`.
    pub path: String,
    pub contents: Vec<u8>,
}

impl Exercise {
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// The reference solution cut into steps at its `# task: <id>` lines: (task id, script).
    /// Lines before the first marker belong to the first step. Without markers, one step for
    /// the last task.
    pub fn solution_steps(&self) -> Vec<(String, String)> {
        let Some(solution) = &self.solution else { return Vec::new() };
        let mut steps: Vec<(String, String)> = Vec::new();
        let mut preamble = String::new();
        for line in solution.lines() {
            if let Some(task) = line.trim().strip_prefix("# task:") {
                steps.push((task.trim().to_owned(), preamble.clone()));
                continue;
            }
            match steps.last_mut() {
                Some((_, script)) => {
                    script.push_str(line);
                    script.push('\n');
                }
                None => {
                    preamble.push_str(line);
                    preamble.push('\n');
                }
            }
        }
        if steps.is_empty() {
            let last = self.tasks.last().map(|t| t.id.clone()).unwrap_or_default();
            steps.push((last, preamble));
        }
        steps
    }
}

/// One gradable step of an exercise.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub hints: Vec<String>,
    /// `title` rendered as inline HTML (titles and hints may use Markdown such as `code`).
    #[serde(skip)]
    pub title_html: String,
    #[serde(skip)]
    pub hints_html: Vec<String>,
    /// What must hold for the task to be done. Not served: they would give the answers away.
    #[serde(skip)]
    pub checks: Vec<Check>,
    /// A history task: something that happened (once done, it stays done), as opposed to a
    /// state task, which is done only while the machine is that way. History tasks are the ones
    /// made only of history checks ([`Check::is_history`]), and those marked `history = true`
    /// in `exercise.toml` because a later task undoes what they check. See `lessons/README.md`.
    pub history: bool,
}

/// A lesson as listed by `GET /api/lessons`.
#[derive(Debug, Clone, Serialize)]
pub struct LessonSummary<'a> {
    pub id: &'a str,
    pub day: u32,
    pub title: &'a str,
    pub summary: &'a str,
    pub exercises: Vec<ExerciseSummary<'a>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExerciseSummary<'a> {
    pub id: &'a str,
    pub title: &'a str,
}

impl Lesson {
    pub fn summary(&self) -> LessonSummary<'_> {
        LessonSummary {
            id: &self.id,
            day: self.day,
            title: &self.title,
            summary: &self.summary,
            exercises: self
                .exercises
                .iter()
                .map(|e| ExerciseSummary {
                    id: &e.id,
                    title: &e.title,
                })
                .collect(),
        }
    }

    pub fn exercise(&self, slug: &str) -> Option<&Exercise> {
        self.exercises.iter().find(|e| e.slug == slug)
    }
}

/// Every lesson and exercise, validated, ordered by day.
#[derive(Debug, Clone)]
pub struct Catalog {
    lessons: Vec<Lesson>,
    by_lesson_id: HashMap<String, usize>,
    by_exercise_id: HashMap<String, (usize, usize)>,
    /// The interview question bank (`day-*/questions/<tag>.toml`), in file then written order.
    questions: Vec<Question>,
    by_question_id: HashMap<String, usize>,
}

#[derive(rust_embed::RustEmbed)]
#[folder = "."]
#[include = "day-*/lesson.md"]
#[include = "day-*/exercises/*/exercise.toml"]
#[include = "day-*/exercises/*/setup.sh"]
#[include = "day-*/exercises/*/solution.sh"]
#[include = "day-*/exercises/*/files/**"]
#[include = "day-*/questions/*.toml"]
struct EmbeddedContent;

impl Catalog {
    /// The course content compiled into this binary.
    pub fn embedded() -> Result<Catalog, ContentError> {
        let mut files = BTreeMap::new();
        for name in EmbeddedContent::iter() {
            if let Some(file) = EmbeddedContent::get(&name) {
                files.insert(PathBuf::from(name.as_ref()), file.data.into_owned());
            }
        }
        Catalog::from_files(Path::new("lessons"), files)
    }

    /// Course content from a folder laid out like this crate's own (`day-NN-slug/lesson.md`, ...).
    pub fn load(dir: &Path) -> Result<Catalog, ContentError> {
        let read_dir = |path: &Path| {
            std::fs::read_dir(path).map_err(|source| ContentError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ContentError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let mut files = BTreeMap::new();
        for entry in read_dir(dir)? {
            let entry = entry.map_err(|source| ContentError::Read {
                path: dir.to_owned(),
                source,
            })?;
            let folder = entry.file_name().to_string_lossy().into_owned();
            if !folder.starts_with("day-") || !entry.path().is_dir() {
                continue;
            }
            let lesson_md = entry.path().join("lesson.md");
            if lesson_md.exists() {
                files.insert(PathBuf::from(&folder).join("lesson.md"), read(&lesson_md)?);
            }
            let questions = entry.path().join("questions");
            if questions.is_dir() {
                for file in read_dir(&questions)? {
                    let file = file.map_err(|source| ContentError::Read { path: questions.clone(), source })?;
                    if file.path().extension().is_some_and(|e| e == "toml") {
                        files.insert(PathBuf::from(&folder).join("questions").join(file.file_name()), read(&file.path())?);
                    }
                }
            }
            let exercises = entry.path().join("exercises");
            if exercises.is_dir() {
                for exercise in read_dir(&exercises)? {
                    let exercise = exercise.map_err(|source| ContentError::Read {
                        path: exercises.clone(),
                        source,
                    })?;
                    if !exercise.path().is_dir() {
                        continue;
                    }
                    let rel = PathBuf::from(&folder).join("exercises").join(exercise.file_name());
                    files.insert(rel.join("exercise.toml"), read(&exercise.path().join("exercise.toml"))?);
                    for script in ["setup.sh", "solution.sh"] {
                        let path = exercise.path().join(script);
                        if path.is_file() {
                            files.insert(rel.join(script), read(&path)?);
                        }
                    }
                    let mut stack = vec![PathBuf::from("files")];
                    while let Some(sub) = stack.pop() {
                        let dir = exercise.path().join(&sub);
                        if !dir.is_dir() {
                            continue;
                        }
                        for entry in read_dir(&dir)? {
                            let entry = entry.map_err(|source| ContentError::Read { path: dir.clone(), source })?;
                            let sub = sub.join(entry.file_name());
                            if entry.path().is_dir() {
                                stack.push(sub);
                            } else {
                                files.insert(rel.join(&sub), read(&entry.path())?);
                            }
                        }
                    }
                }
            }
        }
        Catalog::from_files(dir, files)
    }

    /// Lessons in course order.
    pub fn lessons(&self) -> &[Lesson] {
        &self.lessons
    }

    /// A lesson by id (`day-27`).
    pub fn lesson(&self, id: &str) -> Option<&Lesson> {
        self.by_lesson_id.get(id).map(|&i| &self.lessons[i])
    }

    /// An exercise by id (`day-27/volumes-lifecycle`).
    pub fn exercise(&self, id: &str) -> Option<&Exercise> {
        self.by_exercise_id
            .get(id)
            .map(|&(l, e)| &self.lessons[l].exercises[e])
    }

    /// The interview question bank, in file then written order.
    pub fn questions(&self) -> &[Question] {
        &self.questions
    }

    /// A question by id.
    pub fn question(&self, id: &str) -> Option<&Question> {
        self.by_question_id.get(id).map(|&i| &self.questions[i])
    }

    /// What `GET /api/lessons` serves.
    pub fn summaries(&self) -> Vec<LessonSummary<'_>> {
        self.lessons.iter().map(Lesson::summary).collect()
    }

    /// Builds the catalog from `relative path → bytes`; `base` only prefixes paths in errors.
    fn from_files(base: &Path, files: BTreeMap<PathBuf, Vec<u8>>) -> Result<Catalog, ContentError> {
        let mut lessons: Vec<(PathBuf, Lesson)> = Vec::new();
        let mut exercises: Vec<(PathBuf, String, Exercise)> = Vec::new();
        let mut questions: Vec<(PathBuf, Question)> = Vec::new();
        // (lesson folder, exercise folder) → (file name or files/… path, bytes)
        let mut extras: BTreeMap<(String, String), Vec<(PathBuf, String, Vec<u8>)>> = BTreeMap::new();
        for (rel, bytes) in files {
            let path = base.join(&rel);
            let parts: Vec<String> = rel
                .components()
                .filter_map(|c| match c {
                    Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect();
            if let [folder, ex, slug, rest @ ..] = parts.as_slice() {
                let is_extra = match rest {
                    [file] => file == "setup.sh" || file == "solution.sh",
                    [files, _, ..] => files == "files",
                    _ => false,
                };
                if ex == "exercises" && is_extra {
                    extras
                        .entry((folder.clone(), slug.clone()))
                        .or_default()
                        .push((path.clone(), rest.join("/"), bytes));
                    continue;
                }
            }
            let text = String::from_utf8(bytes)
                .map_err(|_| ContentError::NotUtf8 { path: path.clone() })?;
            match parts.as_slice() {
                [folder, file] if file == "lesson.md" => {
                    lessons.push((path.clone(), parse_lesson(&path, folder, &text)?));
                }
                [_, dir, file] if dir == "questions" && file.ends_with(".toml") => {
                    let stem = file.trim_end_matches(".toml");
                    let parsed = questions::parse_file(&path, stem, &text)?;
                    questions.extend(parsed.into_iter().map(|q| (path.clone(), q)));
                }
                [folder, ex, slug, file] if ex == "exercises" && file == "exercise.toml" => {
                    exercises.push((
                        path.clone(),
                        folder.clone(),
                        parse_exercise(&path, slug, &text)?,
                    ));
                }
                _ => {}
            }
        }
        if lessons.is_empty() {
            return Err(ContentError::Empty {
                path: base.to_owned(),
            });
        }
        lessons.sort_by_key(|(_, l)| l.day);

        let mut by_lesson_id = HashMap::new();
        let mut lesson_paths: HashMap<String, PathBuf> = HashMap::new();
        let mut lesson_by_folder: HashMap<String, usize> = HashMap::new();
        for (i, (path, lesson)) in lessons.iter().enumerate() {
            if let Some(first) = lesson_paths.get(&lesson.id) {
                return Err(ContentError::DuplicateId {
                    path: path.clone(),
                    what: "lesson",
                    id: lesson.id.clone(),
                    first: first.clone(),
                });
            }
            lesson_paths.insert(lesson.id.clone(), path.clone());
            by_lesson_id.insert(lesson.id.clone(), i);
            lesson_by_folder.insert(format!("day-{:02}-{}", lesson.day, lesson.slug), i);
        }
        let mut lessons: Vec<Lesson> = lessons.into_iter().map(|(_, l)| l).collect();

        // Exercises arrive sorted by path, so each lesson's exercises are in folder-name order.
        let mut by_exercise_id = HashMap::new();
        for (path, folder, mut exercise) in exercises {
            let Some(&li) = lesson_by_folder.get(&folder) else {
                return Err(ContentError::OrphanExercise {
                    path,
                    lesson_folder: folder,
                });
            };
            for (extra_path, name, bytes) in extras.remove(&(folder.clone(), exercise.slug.clone())).unwrap_or_default() {
                let script = || {
                    String::from_utf8(bytes.clone()).map_err(|_| ContentError::NotUtf8 { path: extra_path.clone() })
                };
                match name.as_str() {
                    "setup.sh" => exercise.setup = Some(script()?),
                    "solution.sh" => exercise.solution = Some(script()?),
                    _ => exercise.files.push(StartingFile {
                        path: name.trim_start_matches("files/").to_owned(),
                        contents: bytes,
                    }),
                }
            }
            if let Some(solution) = &exercise.solution {
                let solution_path = path.with_file_name("solution.sh");
                for (line_no, line) in solution.lines().enumerate() {
                    if let Some(task) = line.trim().strip_prefix("# task:") {
                        if exercise.task(task.trim()).is_none() {
                            return Err(ContentError::BadSolutionMarker {
                                path: solution_path,
                                line: line_no + 1,
                                task: task.trim().to_owned(),
                            });
                        }
                    }
                }
            }
            let lesson = &mut lessons[li];
            exercise.lesson = lesson.id.clone();
            exercise.id = format!("{}/{}", lesson.id, exercise.slug);
            by_exercise_id.insert(exercise.id.clone(), (li, lesson.exercises.len()));
            lesson.exercises.push(exercise);
        }
        if let Some(lesson) = lessons.iter().find(|l| !l.visuals.is_empty() && l.exercises.is_empty()) {
            return Err(ContentError::VisualWithoutLab { path: lesson_paths[&lesson.id].clone() });
        }
        let mut by_question_id = HashMap::new();
        let mut question_paths: HashMap<String, PathBuf> = HashMap::new();
        for (i, (path, question)) in questions.iter().enumerate() {
            if let Some(first) = question_paths.get(&question.id) {
                return Err(ContentError::DuplicateId {
                    path: path.clone(),
                    what: "question",
                    id: question.id.clone(),
                    first: first.clone(),
                });
            }
            if let Some(exercise) = &question.practical {
                if !by_exercise_id.contains_key(exercise) {
                    return Err(ContentError::UnknownPractical {
                        path: path.clone(),
                        id: question.id.clone(),
                        exercise: exercise.clone(),
                    });
                }
            }
            question_paths.insert(question.id.clone(), path.clone());
            by_question_id.insert(question.id.clone(), i);
        }
        Ok(Catalog {
            lessons,
            by_lesson_id,
            by_exercise_id,
            questions: questions.into_iter().map(|(_, q)| q).collect(),
            by_question_id,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    day: u32,
    title: String,
    summary: String,
    #[serde(default)]
    objectives: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExerciseFile {
    title: String,
    brief: String,
    tasks: Vec<TaskFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    id: String,
    title: String,
    #[serde(default)]
    hints: Vec<String>,
    #[serde(default)]
    checks: Vec<toml::Spanned<Check>>,
    /// `true`: a step that later tasks undo, done once its checks held together while the engine
    /// was settled. `false` is the default unless every check is a history check.
    history: Option<bool>,
}

/// Splits `+++\n<toml>\n+++\n<markdown>`.
fn split_front_matter(text: &str) -> Option<(&str, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text.strip_prefix("+++")?.trim_start_matches([' ', '\t']);
    let rest = rest
        .strip_prefix("\r\n")
        .or_else(|| rest.strip_prefix('\n'))?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "+++" {
            return Some((&rest[..offset], &rest[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

fn parse_lesson(path: &Path, folder: &str, text: &str) -> Result<Lesson, ContentError> {
    let bad_folder = || ContentError::BadLessonFolder {
        path: path.to_owned(),
        folder: folder.to_owned(),
    };
    let rest = folder.strip_prefix("day-").ok_or_else(bad_folder)?;
    let (digits, slug) = rest.split_once('-').ok_or_else(bad_folder)?;
    let folder_day: u32 = match digits.len() {
        2 => digits.parse().map_err(|_| bad_folder())?,
        _ => return Err(bad_folder()),
    };
    if !is_valid_id(slug) {
        return Err(bad_folder());
    }

    let (toml_text, body) =
        split_front_matter(text).ok_or_else(|| ContentError::MissingFrontMatter {
            path: path.to_owned(),
        })?;
    let front: FrontMatter =
        toml::from_str(toml_text).map_err(|source| ContentError::FrontMatter {
            path: path.to_owned(),
            source,
        })?;
    if !DAYS.contains(&front.day) {
        return Err(ContentError::DayOutOfRange {
            path: path.to_owned(),
            day: front.day,
        });
    }
    if front.day != folder_day {
        return Err(ContentError::DayMismatch {
            path: path.to_owned(),
            folder: folder_day,
            front_matter: front.day,
        });
    }
    non_empty(path, "title", &front.title)?;
    non_empty(path, "summary", &front.summary)?;
    if front.objectives.iter().any(|o| o.trim().is_empty()) {
        return Err(ContentError::EmptyField {
            path: path.to_owned(),
            field: "objectives",
        });
    }
    let body = markdown::render_lesson(body).map_err(|kind| ContentError::UnknownVisual {
        path: path.to_owned(),
        kind,
        known: markdown::LiveVisual::ALL.map(markdown::LiveVisual::as_str).join(", "),
    })?;
    Ok(Lesson {
        id: format!("day-{:02}", front.day),
        day: front.day,
        slug: slug.to_owned(),
        title: front.title.trim().to_owned(),
        summary: front.summary.trim().to_owned(),
        objectives_html: front
            .objectives
            .iter()
            .map(|o| markdown::render_inline(o))
            .collect(),
        objectives: front.objectives,
        body_html: body.html,
        visuals: body.visuals,
        exercises: Vec::new(),
    })
}

fn parse_exercise(path: &Path, slug: &str, text: &str) -> Result<Exercise, ContentError> {
    if !is_valid_id(slug) {
        return Err(ContentError::BadId {
            path: path.to_owned(),
            what: "exercise folder",
            id: slug.to_owned(),
        });
    }
    let file: ExerciseFile = toml::from_str(text).map_err(|source| ContentError::ExerciseToml {
        path: path.to_owned(),
        source,
    })?;
    non_empty(path, "title", &file.title)?;
    non_empty(path, "brief", &file.brief)?;
    if file.tasks.is_empty() {
        return Err(ContentError::EmptyField {
            path: path.to_owned(),
            field: "tasks",
        });
    }
    let mut tasks: Vec<Task> = Vec::with_capacity(file.tasks.len());
    for task in file.tasks {
        if !is_valid_id(&task.id) {
            return Err(ContentError::BadId {
                path: path.to_owned(),
                what: "task id",
                id: task.id,
            });
        }
        if tasks.iter().any(|t| t.id == task.id) {
            return Err(ContentError::DuplicateId {
                path: path.to_owned(),
                what: "task id",
                id: task.id,
                first: path.to_owned(),
            });
        }
        non_empty(path, "tasks.title", &task.title)?;
        if task.checks.is_empty() {
            return Err(ContentError::NoChecks { path: path.to_owned(), task: task.id });
        }
        for (index, check) in task.checks.iter().enumerate() {
            if let Err(reason) = check.get_ref().validate() {
                return Err(ContentError::BadCheck {
                    path: path.to_owned(),
                    line: line_of(text, check.span().start),
                    task: task.id,
                    index: index + 1,
                    kind: check.get_ref().kind(),
                    reason,
                });
            }
        }
        if task.checks.iter().all(|c| c.get_ref().passes_vacuously()) {
            return Err(ContentError::VacuousTask { path: path.to_owned(), task: task.id });
        }
        let only_history = task.checks.iter().all(|c| c.get_ref().is_history());
        if task.history == Some(false) && only_history {
            return Err(ContentError::BadTask {
                path: path.to_owned(),
                task: task.id,
                reason: "`history = false`, but every check is a history check (event_seen): it could never be undone".into(),
            });
        }
        tasks.push(Task {
            history: task.history.unwrap_or(only_history),
            title_html: markdown::render_inline(&task.title),
            hints_html: task
                .hints
                .iter()
                .map(|h| markdown::render_inline(h))
                .collect(),
            id: task.id,
            title: task.title.trim().to_owned(),
            hints: task.hints,
            checks: task.checks.into_iter().map(toml::Spanned::into_inner).collect(),
        });
    }
    Ok(Exercise {
        id: String::new(), // set once the lesson is known
        lesson: String::new(),
        slug: slug.to_owned(),
        title: file.title.trim().to_owned(),
        brief_html: markdown::render(&file.brief),
        brief: file.brief,
        tasks,
        files: Vec::new(),
        setup: None,
        solution: None,
    })
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

fn non_empty(path: &Path, field: &'static str, value: &str) -> Result<(), ContentError> {
    if value.trim().is_empty() {
        return Err(ContentError::EmptyField {
            path: path.to_owned(),
            field,
        });
    }
    Ok(())
}

/// Ids are `[a-z0-9-]+`, starting and ending with a letter or digit.
fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

#[cfg(test)]
mod tests;
