//! [`ProgressStore`] on SQLite (bundled, so nothing needs installing).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};

use super::{ExerciseProgress, HintUsed, Progress, ProgressStore, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS learners (
    id TEXT PRIMARY KEY,
    display_name TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS task_completions (
    learner TEXT NOT NULL REFERENCES learners(id),
    exercise TEXT NOT NULL,
    task TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (learner, exercise, task)
);
CREATE TABLE IF NOT EXISTS hints_used (
    learner TEXT NOT NULL REFERENCES learners(id),
    exercise TEXT NOT NULL,
    task TEXT NOT NULL,
    hint_index INTEGER NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (learner, exercise, task, hint_index)
);
CREATE TABLE IF NOT EXISTS solutions_revealed (
    learner TEXT NOT NULL REFERENCES learners(id),
    exercise TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (learner, exercise)
);
";

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

use super::now;

/// Tables whose `learner` column holds a learner id (`learners.id` besides).
const LEARNER_TABLES: &[&str] = &["task_completions", "hints_used", "solutions_revealed", "drill_cards", "drill_reviews"];

/// Migrates a database from before learner ids were hashed (once, recorded in
/// `docklab_migrations`): every id becomes its [`super::learner::learner_key`], so returning
/// learners keep their progress and the file no longer holds their cookies.
fn hash_learner_ids(conn: &Connection) -> Result<(), rusqlite::Error> {
    let tx = conn.unchecked_transaction()?;
    if super::migration_done(&tx, "learner-ids-hashed")? {
        return Ok(());
    }
    // Learners and their rows are renamed one after the other: the references hold at the end.
    tx.pragma_update(None, "defer_foreign_keys", true)?;
    let mut ids = std::collections::BTreeSet::new();
    for sql in std::iter::once("SELECT id FROM learners".to_owned())
        .chain(LEARNER_TABLES.iter().map(|t| format!("SELECT DISTINCT learner FROM {t}")))
    {
        let mut stmt = tx.prepare(&sql)?;
        for id in stmt.query_map([], |r| r.get::<_, String>(0))? {
            ids.insert(id?);
        }
    }
    for id in &ids {
        let key = super::learner::learner_key(id);
        tx.execute("UPDATE learners SET id = ?2 WHERE id = ?1", params![id, key])?;
        for t in LEARNER_TABLES {
            tx.execute(&format!("UPDATE {t} SET learner = ?2 WHERE learner = ?1"), params![id, key])?;
        }
    }
    super::record_migration(&tx, "learner-ids-hashed")?;
    tx.commit()
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open { path: path.to_owned(), source };
        super::restrict_db_file(path).map_err(|source| StoreError::Restrict { path: path.to_owned(), source })?;
        let conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        Self::init(conn).map_err(open_err)
    }

    /// A private database in memory (for tests, and a server started without a state dir).
    pub fn in_memory() -> SqliteStore {
        let conn = Connection::open_in_memory().expect("an in-memory SQLite database always opens");
        Self::init(conn).expect("the schema applies to an empty database")
    }

    fn init(conn: Connection) -> Result<SqliteStore, rusqlite::Error> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(super::drills::SCHEMA)?;
        hash_learner_ids(&conn)?;
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, what: &'static str, learner: &str, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<(), StoreError> {
        let conn = self.conn();
        let query_err = |source| StoreError::Query { what, learner: learner.to_owned(), source };
        conn.execute("INSERT OR IGNORE INTO learners (id, created_at) VALUES (?1, ?2)", params![learner, now()])
            .map_err(query_err)?;
        conn.execute(sql, args).map_err(query_err)?;
        Ok(())
    }
}

impl ProgressStore for SqliteStore {
    fn task_done(&self, learner: &str, exercise: &str, task: &str) -> Result<(), StoreError> {
        self.write(
            "recording a finished task",
            learner,
            "INSERT OR IGNORE INTO task_completions (learner, exercise, task, at) VALUES (?1, ?2, ?3, ?4)",
            params![learner, exercise, task, now()],
        )
    }

    fn hint_used(&self, learner: &str, exercise: &str, task: &str, index: usize) -> Result<(), StoreError> {
        self.write(
            "recording a hint",
            learner,
            "INSERT OR IGNORE INTO hints_used (learner, exercise, task, hint_index, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![learner, exercise, task, index as i64, now()],
        )
    }

    fn solution_revealed(&self, learner: &str, exercise: &str) -> Result<(), StoreError> {
        self.write(
            "recording a revealed solution",
            learner,
            "INSERT OR IGNORE INTO solutions_revealed (learner, exercise, at) VALUES (?1, ?2, ?3)",
            params![learner, exercise, now()],
        )
    }

    fn set_display_name(&self, learner: &str, name: Option<&str>) -> Result<(), StoreError> {
        self.write("setting the display name", learner, "UPDATE learners SET display_name = ?2 WHERE id = ?1", params![learner, name])
    }

    fn progress(&self, learner: &str) -> Result<Progress, StoreError> {
        let conn = self.conn();
        let query_err = |source| StoreError::Query { what: "reading progress", learner: learner.to_owned(), source };
        let mut progress = Progress {
            display_name: conn
                .query_row("SELECT display_name FROM learners WHERE id = ?1", params![learner], |r| r.get::<_, Option<String>>(0))
                .optional()
                .map_err(query_err)?
                .flatten(),
            ..Progress::default()
        };
        let mut stmt = conn
            .prepare("SELECT exercise, task, at FROM task_completions WHERE learner = ?1 ORDER BY at")
            .map_err(query_err)?;
        let rows = stmt
            .query_map(params![learner], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(query_err)?;
        for row in rows {
            let (exercise, task, at) = row.map_err(query_err)?;
            progress.exercises.entry(exercise).or_insert_with(ExerciseProgress::default).tasks_done.insert(task, at);
        }
        let mut stmt = conn
            .prepare("SELECT exercise, task, hint_index, at FROM hints_used WHERE learner = ?1 ORDER BY at, hint_index")
            .map_err(query_err)?;
        let rows = stmt
            .query_map(params![learner], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
            })
            .map_err(query_err)?;
        for row in rows {
            let (exercise, task, index, at) = row.map_err(query_err)?;
            progress.exercises.entry(exercise).or_default().hints_used.push(HintUsed { task, index: index.max(0) as usize, at });
        }
        let mut stmt = conn.prepare("SELECT exercise, at FROM solutions_revealed WHERE learner = ?1").map_err(query_err)?;
        let rows = stmt
            .query_map(params![learner], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(query_err)?;
        for row in rows {
            let (exercise, at) = row.map_err(query_err)?;
            progress.exercises.entry(exercise).or_default().solution_revealed_at = Some(at);
        }
        Ok(progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_kept_once_with_times_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docklab.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.task_done("l1", "day-27/volumes", "create").unwrap();
            store.task_done("l1", "day-27/volumes", "create").unwrap();
            store.hint_used("l1", "day-27/volumes", "write", 0).unwrap();
            store.hint_used("l1", "day-27/volumes", "write", 1).unwrap();
            store.solution_revealed("l1", "day-27/volumes").unwrap();
            store.set_display_name("l1", Some("Ada")).unwrap();
            store.task_done("l2", "day-24/lifecycle", "create").unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let p = store.progress("l1").unwrap();
        assert_eq!(p.display_name.as_deref(), Some("Ada"));
        let e = &p.exercises["day-27/volumes"];
        assert_eq!(e.tasks_done.keys().collect::<Vec<_>>(), vec!["create"]);
        assert!(e.tasks_done["create"].contains('T'), "an RFC 3339 time");
        assert_eq!(e.hints_used.iter().map(|h| (h.task.as_str(), h.index)).collect::<Vec<_>>(), vec![("write", 0), ("write", 1)]);
        assert!(e.solution_revealed_at.is_some());
        assert_eq!(p.done_count([("day-27/volumes", "create"), ("day-27/volumes", "write"), ("day-24/lifecycle", "create")]), 1);
        assert_eq!(store.progress("nobody").unwrap(), Progress::default());
    }

    #[test]
    fn progress_kept_under_raw_cookies_moves_to_their_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docklab.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(super::super::drills::SCHEMA).unwrap();
            conn.execute_batch(
                "INSERT INTO learners VALUES ('rawcookie', 'Ada', 'now');
                 INSERT INTO task_completions VALUES ('rawcookie', 'day-27/volumes', 'create', 'now');",
            )
            .unwrap();
        }
        let key = super::super::learner::learner_key("rawcookie");
        for _ in 0..2 {
            let store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.progress(&key).unwrap().display_name.as_deref(), Some("Ada"));
            assert_eq!(store.progress(&key).unwrap().exercises["day-27/volumes"].tasks_done.len(), 1);
            assert_eq!(store.progress("rawcookie").unwrap(), Progress::default());
        }
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "made private on open");
    }
}
