//! Everything that can be wrong with course content. Each variant names the file at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the file is not valid UTF-8")]
    NotUtf8 { path: PathBuf },
    #[error("{path}: a lesson must start with TOML front matter between two `+++` lines")]
    MissingFrontMatter { path: PathBuf },
    #[error("{path}: bad front matter: {source}")]
    FrontMatter {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: bad exercise definition: {source}")]
    ExerciseToml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: a lesson folder must be named `day-NN-slug` (for example `day-27-volumes`), found `{folder}`")]
    BadLessonFolder { path: PathBuf, folder: String },
    #[error("{path}: day {day} is outside the course (days 24 to 30)")]
    DayOutOfRange { path: PathBuf, day: u32 },
    #[error("{path}: the front matter says day {front_matter} but the folder is for day {folder}")]
    DayMismatch {
        path: PathBuf,
        folder: u32,
        front_matter: u32,
    },
    #[error("{path}: `{field}` must not be empty")]
    EmptyField { path: PathBuf, field: &'static str },
    #[error("{path}: {what} `{id}` may only contain lowercase letters, digits and `-`")]
    BadId {
        path: PathBuf,
        what: &'static str,
        id: String,
    },
    #[error("{path}: {what} `{id}` is already defined in {first}")]
    DuplicateId {
        path: PathBuf,
        what: &'static str,
        id: String,
        first: PathBuf,
    },
    #[error("{path}: this exercise has no lesson: no `{lesson_folder}/lesson.md` was found")]
    OrphanExercise {
        path: PathBuf,
        lesson_folder: String,
    },
    #[error("{path}:{line}: task `{task}`, check {index} ({kind}): {reason}")]
    BadCheck {
        path: PathBuf,
        line: usize,
        task: String,
        index: usize,
        kind: &'static str,
        reason: String,
    },
    #[error("{path}: task `{task}` has no checks, so it could never be graded")]
    NoChecks { path: PathBuf, task: String },
    #[error("{path}: task `{task}` only checks that things are absent, so it would pass before the learner does anything; add an `event_seen` check")]
    VacuousTask { path: PathBuf, task: String },
    #[error("{path}: task `{task}`: {reason}")]
    BadTask { path: PathBuf, task: String, reason: String },
    #[error("{path}:{line}: `# task: {task}` names no task of this exercise")]
    BadSolutionMarker { path: PathBuf, line: usize, task: String },
    #[error("{path}: `live {kind}` is not a live visual; a lesson can show: {known}")]
    UnknownVisual { path: PathBuf, kind: String, known: String },
    #[error("{path}: the lesson shows a live visual of the learner's session but has no exercise to start one")]
    VisualWithoutLab { path: PathBuf },
    #[error("{path}: bad question file: {source}")]
    QuestionToml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: bad question file name `{name}`: question files are named after their tag ({tags})")]
    BadQuestionFile { path: PathBuf, name: String, tags: String },
    #[error("{path}:{line}: question `{id}`: {reason}")]
    BadQuestion {
        path: PathBuf,
        line: usize,
        id: String,
        reason: String,
    },
    #[error("{path}: question `{id}` names the practical exercise `{exercise}`, which does not exist")]
    UnknownPractical { path: PathBuf, id: String, exercise: String },
    #[error("{path}: no lessons were found here")]
    Empty { path: PathBuf },
}
