//! Learners' progress: task completions, hints used and solutions revealed, with times.
//!
//! Behind [`ProgressStore`], so PostgreSQL can follow SQLite (the default: one file,
//! `<state-dir>/docklab.db`, no set-up). Learners are anonymous: a random id in the
//! `docklab_learner` cookie ([`learner`]), with an optional display name.

pub mod classroom;
mod drills;
pub mod learner;
mod sqlite;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use drills::{CardRow, DrillStore, RatingRow};
pub use learner::CurrentLearner;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("progress database {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("progress database {path}: making it private (mode 0600): {source}")]
    Restrict {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("progress database: {what} for learner {learner}: {source}")]
    Query {
        what: &'static str,
        learner: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// Makes the database file at `path` (and its `-wal` and `-shm` companions, when present)
/// readable by its owner only, creating it empty with mode 0600 when missing, so that it is never
/// world-readable, not even for an instant. SQLite creates `-wal` and `-shm` with the mode of the
/// database file.
pub fn restrict_db_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// How a secret (a session token) is stored: its SHA-256, in hex.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Whether the one-time migration `name` already ran on this database.
pub(crate) fn migration_done(conn: &rusqlite::Connection, name: &str) -> rusqlite::Result<bool> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS docklab_migrations (name TEXT PRIMARY KEY, at INTEGER NOT NULL)")?;
    conn.query_row("SELECT COUNT(*) > 0 FROM docklab_migrations WHERE name = ?1", [name], |r| r.get(0))
}

pub(crate) fn record_migration(conn: &rusqlite::Connection, name: &str) -> rusqlite::Result<()> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    conn.execute("INSERT OR IGNORE INTO docklab_migrations (name, at) VALUES (?1, ?2)", rusqlite::params![name, now]).map(drop)
}

/// Where progress is kept (flashcard schedules included: [`DrillStore`]).
pub trait ProgressStore: DrillStore + Send + Sync {
    /// Records that `task` of `exercise` was done (the first time counts).
    fn task_done(&self, learner: &str, exercise: &str, task: &str) -> Result<(), StoreError>;
    /// Records that hint number `index` (0-based) of `task` was revealed.
    fn hint_used(&self, learner: &str, exercise: &str, task: &str, index: usize) -> Result<(), StoreError>;
    /// Records that the reference solution of `exercise` was revealed.
    fn solution_revealed(&self, learner: &str, exercise: &str) -> Result<(), StoreError>;
    /// Sets (or with `None` clears) the learner's display name.
    fn set_display_name(&self, learner: &str, name: Option<&str>) -> Result<(), StoreError>;
    /// Everything recorded for a learner (empty for one never seen).
    fn progress(&self, learner: &str) -> Result<Progress, StoreError>;
}

/// One learner's progress, by exercise id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub display_name: Option<String>,
    pub exercises: BTreeMap<String, ExerciseProgress>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExerciseProgress {
    /// Task id → when it was first done (RFC 3339).
    pub tasks_done: BTreeMap<String, String>,
    pub hints_used: Vec<HintUsed>,
    /// When the solution was first revealed.
    pub solution_revealed_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintUsed {
    pub task: String,
    pub index: usize,
    pub at: String,
}

impl Progress {
    /// How many of these tasks (exercise id, task id) are done.
    pub fn done_count<'a>(&self, tasks: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
        tasks
            .into_iter()
            .filter(|(exercise, task)| self.exercises.get(*exercise).is_some_and(|e| e.tasks_done.contains_key(*task)))
            .count()
    }
}

/// The time rows are stamped with: RFC 3339 in UTC (shared by every store, so none imports another).
pub(super) fn now() -> String {
    let at = time::OffsetDateTime::now_utc();
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| at.unix_timestamp().to_string())
}
