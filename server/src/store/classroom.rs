//! Instructors, their logins, classes, members and per-class results, in the same SQLite file as
//! progress (`<state-dir>/docklab.db`) through a connection of their own. Every table is created
//! with `IF NOT EXISTS`, so opening an older database migrates it.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instructors (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS instructor_logins (
    id_hash TEXT PRIMARY KEY,
    instructor INTEGER NOT NULL REFERENCES instructors(id),
    csrf TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS classes (
    id TEXT PRIMARY KEY,
    instructor INTEGER NOT NULL REFERENCES instructors(id),
    name TEXT NOT NULL,
    exercises TEXT NOT NULL,
    seats INTEGER NOT NULL,
    code TEXT NOT NULL UNIQUE,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    ended_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS class_members (
    id INTEGER PRIMARY KEY,
    class TEXT NOT NULL REFERENCES classes(id),
    learner TEXT NOT NULL,
    display_name TEXT NOT NULL,
    session TEXT,
    token TEXT,
    joined_at INTEGER NOT NULL,
    UNIQUE (class, learner)
);
CREATE TABLE IF NOT EXISTS class_messages (
    class TEXT NOT NULL REFERENCES classes(id),
    at INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS class_results (
    member INTEGER NOT NULL REFERENCES class_members(id),
    exercise TEXT NOT NULL,
    task TEXT NOT NULL,
    passed_at INTEGER NOT NULL,
    PRIMARY KEY (member, exercise, task)
);
";

/// Columns added after the first release: (table, column, definition). Added when missing.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("classes", "session_minutes", "INTEGER"),
    ("classes", "memory_mib", "INTEGER"),
    ("class_members", "exercise_index", "INTEGER NOT NULL DEFAULT 0"),
    ("class_members", "exercise_started_at", "INTEGER"),
    ("class_members", "finished_at", "INTEGER"),
];

pub type Result<T> = std::result::Result<T, rusqlite::Error>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub instructor: i64,
    pub name: String,
    pub csrf: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClassRow {
    pub id: String,
    #[serde(skip)]
    pub instructor: i64,
    pub name: String,
    pub exercises: Vec<String>,
    pub seats: u32,
    pub code: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub ended_at: Option<i64>,
    /// Per-learner limits: each machine's length (default: until the class ends) and memory
    /// (default: the server's).
    pub session_minutes: Option<u32>,
    pub memory_mib: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub id: i64,
    pub class: String,
    pub learner: String,
    pub display_name: String,
    pub session: Option<String>,
    pub token: Option<String>,
    pub joined_at: i64,
    /// Which of the class's exercises the learner is on (0-based), since when.
    pub exercise_index: u32,
    pub exercise_started_at: Option<i64>,
    /// When the learner passed every task of every exercise of the class.
    pub finished_at: Option<i64>,
}

pub struct ClassStore {
    conn: Mutex<Connection>,
}

const CLASS_COLUMNS: &str = "id, instructor, name, exercises, seats, code, starts_at, ends_at, ended_at, session_minutes, memory_mib";
const MEMBER_COLUMNS: &str = "id, class, learner, display_name, session, token, joined_at, exercise_index, exercise_started_at, finished_at";

fn class_row(r: &rusqlite::Row) -> Result<ClassRow> {
    let exercises: String = r.get(3)?;
    Ok(ClassRow {
        id: r.get(0)?,
        instructor: r.get(1)?,
        name: r.get(2)?,
        exercises: exercises.split('\n').filter(|e| !e.is_empty()).map(str::to_owned).collect(),
        seats: r.get(4)?,
        code: r.get(5)?,
        starts_at: r.get(6)?,
        ends_at: r.get(7)?,
        ended_at: r.get(8)?,
        session_minutes: r.get(9)?,
        memory_mib: r.get(10)?,
    })
}

fn member_row(r: &rusqlite::Row) -> Result<MemberRow> {
    Ok(MemberRow {
        id: r.get(0)?,
        class: r.get(1)?,
        learner: r.get(2)?,
        display_name: r.get(3)?,
        session: r.get(4)?,
        token: r.get(5)?,
        joined_at: r.get(6)?,
        exercise_index: r.get(7)?,
        exercise_started_at: r.get(8)?,
        finished_at: r.get(9)?,
    })
}

/// Migrates a database from before secrets were hashed (once, recorded in `docklab_migrations`):
/// learner ids become their [`super::learner::learner_key`], session tokens their SHA-256, and
/// stored CSRF tokens are dropped (they are derived from the login cookie now, so logins made
/// before keep working; an open instructor page needs a reload).
fn hash_secrets(conn: &Connection) -> Result<()> {
    let tx = conn.unchecked_transaction()?;
    if super::migration_done(&tx, "class-secrets-hashed")? {
        return Ok(());
    }
    let rows: Vec<(i64, String, Option<String>)> = {
        let mut stmt = tx.prepare("SELECT id, learner, token FROM class_members")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_>>()?;
        rows
    };
    for (id, learner, token) in rows {
        tx.execute(
            "UPDATE class_members SET learner = ?2, token = ?3 WHERE id = ?1",
            params![id, super::learner::learner_key(&learner), token.as_deref().map(super::token_hash)],
        )?;
    }
    tx.execute("UPDATE instructor_logins SET csrf = ''", [])?;
    super::record_migration(&tx, "class-secrets-hashed")?;
    tx.commit()
}

impl ClassStore {
    pub fn open(path: &Path) -> Result<ClassStore> {
        super::restrict_db_file(path).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::init(conn)
    }

    pub fn in_memory() -> ClassStore {
        Self::init(Connection::open_in_memory().expect("an in-memory database opens")).expect("the schema applies")
    }

    fn init(conn: Connection) -> Result<ClassStore> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        for (table, column, definition) in ADDED_COLUMNS {
            let present: bool = conn.query_row(
                &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
                params![column],
                |r| r.get(0),
            )?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))?;
            }
        }
        hash_secrets(&conn)?;
        Ok(ClassStore { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an instructor, or replaces the password of an existing one. Returns their id.
    pub fn set_instructor(&self, name: &str, password_hash: &str, now: i64) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO instructors (name, password_hash, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
            params![name, password_hash, now],
        )?;
        conn.query_row("SELECT id FROM instructors WHERE name = ?1", params![name], |r| r.get(0))
    }

    /// (id, password hash) of an instructor.
    pub fn instructor(&self, name: &str) -> Result<Option<(i64, String)>> {
        self.conn()
            .query_row("SELECT id, password_hash FROM instructors WHERE name = ?1", params![name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    /// Stores a login by the SHA-256 of its cookie. (The `csrf` column stays empty: the token is
    /// derived from the cookie, see `classroom::auth`.)
    pub fn add_login(&self, id_hash: &str, instructor: i64, expires_at: i64) -> Result<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM instructor_logins WHERE expires_at < ?1", params![expires_at - 86400 * 30])?;
        conn.execute(
            "INSERT INTO instructor_logins (id_hash, instructor, csrf, expires_at) VALUES (?1, ?2, '', ?3)",
            params![id_hash, instructor, expires_at],
        )?;
        Ok(())
    }

    /// The login whose cookie hashes to `id_hash`, with an empty `csrf` (the caller derives it).
    pub fn login(&self, id_hash: &str, now: i64) -> Result<Option<Login>> {
        self.conn()
            .query_row(
                "SELECT l.instructor, i.name FROM instructor_logins l JOIN instructors i ON i.id = l.instructor
                 WHERE l.id_hash = ?1 AND l.expires_at > ?2",
                params![id_hash, now],
                |r| Ok(Login { instructor: r.get(0)?, name: r.get(1)?, csrf: String::new() }),
            )
            .optional()
    }

    pub fn remove_login(&self, id_hash: &str) -> Result<()> {
        self.conn().execute("DELETE FROM instructor_logins WHERE id_hash = ?1", params![id_hash]).map(drop)
    }

    pub fn add_class(&self, class: &ClassRow, now: i64) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO classes (id, instructor, name, exercises, seats, code, starts_at, ends_at, ended_at, created_at,
                                      session_minutes, memory_mib)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9, ?10, ?11)",
                params![
                    class.id,
                    class.instructor,
                    class.name,
                    class.exercises.join("\n"),
                    class.seats,
                    class.code,
                    class.starts_at,
                    class.ends_at,
                    now,
                    class.session_minutes,
                    class.memory_mib
                ],
            )
            .map(drop)
    }

    pub fn class(&self, id: &str) -> Result<Option<ClassRow>> {
        self.conn()
            .query_row(&format!("SELECT {CLASS_COLUMNS} FROM classes WHERE id = ?1"), params![id], class_row)
            .optional()
    }

    pub fn class_by_code(&self, code: &str) -> Result<Option<ClassRow>> {
        self.conn()
            .query_row(&format!("SELECT {CLASS_COLUMNS} FROM classes WHERE code = ?1"), params![code], class_row)
            .optional()
    }

    pub fn classes_of(&self, instructor: i64) -> Result<Vec<ClassRow>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare(&format!("SELECT {CLASS_COLUMNS} FROM classes WHERE instructor = ?1 ORDER BY created_at DESC, id"))?;
        let rows = stmt.query_map(params![instructor], class_row)?.collect();
        rows
    }

    pub fn end_class(&self, id: &str, now: i64) -> Result<()> {
        self.conn()
            .execute("UPDATE classes SET ended_at = COALESCE(ended_at, ?2) WHERE id = ?1", params![id, now])
            .map(drop)
    }

    /// Adds a learner to a class (keeping an existing membership). Returns the member.
    pub fn join(&self, class: &str, learner: &str, display_name: &str, now: i64) -> Result<MemberRow> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO class_members (class, learner, display_name, joined_at, exercise_started_at)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![class, learner, display_name, now],
        )?;
        conn.query_row(
            &format!("SELECT {MEMBER_COLUMNS} FROM class_members WHERE class = ?1 AND learner = ?2"),
            params![class, learner],
            member_row,
        )
    }

    pub fn member(&self, class: &str, learner: &str) -> Result<Option<MemberRow>> {
        self.conn()
            .query_row(
                &format!("SELECT {MEMBER_COLUMNS} FROM class_members WHERE class = ?1 AND learner = ?2"),
                params![class, learner],
                member_row,
            )
            .optional()
    }

    pub fn member_by_session(&self, session: &str) -> Result<Option<MemberRow>> {
        self.conn()
            .query_row(&format!("SELECT {MEMBER_COLUMNS} FROM class_members WHERE session = ?1"), params![session], member_row)
            .optional()
    }

    pub fn members(&self, class: &str) -> Result<Vec<MemberRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {MEMBER_COLUMNS} FROM class_members WHERE class = ?1 ORDER BY id"))?;
        let rows = stmt.query_map(params![class], member_row)?.collect();
        rows
    }

    pub fn member_count(&self, class: &str) -> Result<u32> {
        self.conn().query_row("SELECT COUNT(*) FROM class_members WHERE class = ?1", params![class], |r| r.get(0))
    }

    /// Records the member's session; of its token only the SHA-256 is kept.
    pub fn set_member_session(&self, member: i64, session: Option<(&str, &str)>) -> Result<()> {
        let (id, token) = session.unzip();
        let token = token.map(super::token_hash);
        self.conn()
            .execute("UPDATE class_members SET session = ?2, token = ?3 WHERE id = ?1", params![member, id, token])
            .map(drop)
    }

    /// Moves the class's end (extending it).
    pub fn set_ends_at(&self, id: &str, ends_at: i64) -> Result<()> {
        self.conn().execute("UPDATE classes SET ends_at = ?2 WHERE id = ?1", params![id, ends_at]).map(drop)
    }

    pub fn member_by_id(&self, member: i64) -> Result<Option<MemberRow>> {
        self.conn()
            .query_row(&format!("SELECT {MEMBER_COLUMNS} FROM class_members WHERE id = ?1"), params![member], member_row)
            .optional()
    }

    /// Moves a learner to exercise `index` of the class, from `now`.
    pub fn set_member_exercise(&self, member: i64, index: u32, now: i64) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE class_members SET exercise_index = ?2, exercise_started_at = ?3 WHERE id = ?1",
                params![member, index, now],
            )
            .map(drop)
    }

    /// Records when a learner finished the whole class (the first time counts).
    pub fn set_member_finished(&self, member: i64, now: i64) -> Result<()> {
        self.conn()
            .execute("UPDATE class_members SET finished_at = COALESCE(finished_at, ?2) WHERE id = ?1", params![member, now])
            .map(drop)
    }

    pub fn add_message(&self, class: &str, text: &str, now: i64) -> Result<()> {
        self.conn().execute("INSERT INTO class_messages (class, at, text) VALUES (?1, ?2, ?3)", params![class, now, text]).map(drop)
    }

    /// The class's latest `limit` broadcast messages, oldest first: (at, text).
    pub fn messages(&self, class: &str, limit: u32) -> Result<Vec<(i64, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at, text FROM (SELECT rowid, at, text FROM class_messages WHERE class = ?1 ORDER BY rowid DESC LIMIT ?2) ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![class, limit], |r| Ok((r.get(0)?, r.get(1)?)))?.collect();
        rows
    }

    /// Records a passed task; true when it is new.
    pub fn record_pass(&self, member: i64, exercise: &str, task: &str, now: i64) -> Result<bool> {
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO class_results (member, exercise, task, passed_at) VALUES (?1, ?2, ?3, ?4)",
                params![member, exercise, task, now],
            )
            .map(|n| n > 0)
    }

    /// (exercise, task) of every task one learner passed.
    pub fn results_of(&self, member: i64) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT exercise, task FROM class_results WHERE member = ?1 ORDER BY passed_at")?;
        let rows = stmt.query_map(params![member], |r| Ok((r.get(0)?, r.get(1)?)))?.collect();
        rows
    }

    /// (member, exercise, task, passed_at) for every passed task of the class.
    pub fn results(&self, class: &str) -> Result<Vec<(i64, String, String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT r.member, r.exercise, r.task, r.passed_at FROM class_results r JOIN class_members m ON m.id = r.member
             WHERE m.class = ?1 ORDER BY r.passed_at, r.member",
        )?;
        let rows = stmt.query_map(params![class], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect();
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_idempotent_and_rows_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docklab.db");
        {
            let store = ClassStore::open(&path).unwrap();
            let id = store.set_instructor("ada", "hash1", 1).unwrap();
            assert_eq!(store.set_instructor("ada", "hash2", 2).unwrap(), id);
            let class = ClassRow {
                id: "c1".into(),
                instructor: id,
                name: "Monday".into(),
                exercises: vec!["day-1/a".into(), "day-1/b".into()],
                seats: 3,
                code: "ABC234".into(),
                starts_at: 0,
                ends_at: 100,
                ended_at: None,
                session_minutes: Some(45),
                memory_mib: None,
            };
            store.add_class(&class, 1).unwrap();
            let m = store.join("c1", "learner1", "Bo", 5).unwrap();
            assert_eq!(store.join("c1", "learner1", "Other", 6).unwrap(), m);
            assert!(store.record_pass(m.id, "day-1/a", "t1", 7).unwrap());
            assert!(!store.record_pass(m.id, "day-1/a", "t1", 8).unwrap());
        }
        let store = ClassStore::open(&path).unwrap();
        assert_eq!(store.instructor("ada").unwrap().unwrap().1, "hash2");
        let class = store.class_by_code("ABC234").unwrap().unwrap();
        assert_eq!(class.exercises, vec!["day-1/a", "day-1/b"]);
        assert_eq!(store.results("c1").unwrap().len(), 1);
        assert_eq!(store.member_count("c1").unwrap(), 1);
        assert_eq!((class.session_minutes, class.memory_mib), (Some(45), None));
        let m = store.member("c1", "learner1").unwrap().unwrap();
        assert_eq!((m.exercise_index, m.exercise_started_at, m.finished_at), (0, Some(5), None));
        store.set_member_exercise(m.id, 1, 9).unwrap();
        store.set_member_finished(m.id, 10).unwrap();
        store.set_member_finished(m.id, 11).unwrap();
        let m = store.member_by_id(m.id).unwrap().unwrap();
        assert_eq!((m.exercise_index, m.exercise_started_at, m.finished_at), (1, Some(9), Some(10)));
        for i in 0..5 {
            store.add_message("c1", &format!("note {i}"), 20 + i).unwrap();
        }
        assert_eq!(store.messages("c1", 2).unwrap(), vec![(23, "note 3".to_owned()), (24, "note 4".to_owned())]);
    }

    #[test]
    fn a_database_from_the_first_release_gains_the_new_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docklab.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE classes (id TEXT PRIMARY KEY, instructor INTEGER NOT NULL, name TEXT NOT NULL, exercises TEXT NOT NULL,
                    seats INTEGER NOT NULL, code TEXT NOT NULL UNIQUE, starts_at INTEGER NOT NULL, ends_at INTEGER NOT NULL,
                    ended_at INTEGER, created_at INTEGER NOT NULL);
                 CREATE TABLE class_members (id INTEGER PRIMARY KEY, class TEXT NOT NULL, learner TEXT NOT NULL,
                    display_name TEXT NOT NULL, session TEXT, token TEXT, joined_at INTEGER NOT NULL, UNIQUE (class, learner));
                 INSERT INTO classes VALUES ('old', 1, 'Old', 'day-24/lifecycle', 3, 'OLD234', 0, 100, NULL, 0);
                 INSERT INTO class_members (class, learner, display_name, joined_at) VALUES ('old', 'l', 'Ann', 7);",
            )
            .unwrap();
        }
        let store = ClassStore::open(&path).unwrap();
        let class = store.class("old").unwrap().unwrap();
        assert_eq!((class.session_minutes, class.memory_mib), (None, None));
        assert!(store.member("old", "l").unwrap().is_none(), "the learner's cookie is no longer in the file");
        let m = store.member("old", &crate::store::learner::learner_key("l")).unwrap().unwrap();
        assert_eq!((m.exercise_index, m.finished_at), (0, None));
        drop(store);
        let store = ClassStore::open(&path).expect("opening twice migrates nothing twice");
        assert!(store.member("old", &crate::store::learner::learner_key("l")).unwrap().is_some(), "hashed once, not twice");
    }

    #[test]
    fn secrets_are_kept_hashed_and_old_ones_are_hashed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docklab.db");
        let token = "ab".repeat(32);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(
                "INSERT INTO instructors VALUES (1, 'ada', 'h', 0);
                 INSERT INTO instructor_logins VALUES ('idhash', 1, 'a-clear-csrf-token', 99999999999);
                 INSERT INTO classes VALUES ('c', 1, 'C', 'day-24/lifecycle', 3, 'CCC234', 0, 100, NULL, 0);",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO class_members (class, learner, display_name, session, token, joined_at) VALUES ('c', 'cookie', 'Ann', 's1', ?1, 7)",
                params![token],
            )
            .unwrap();
        }
        let store = ClassStore::open(&path).unwrap();
        let m = store.member("c", &crate::store::learner::learner_key("cookie")).unwrap().unwrap();
        assert_eq!(m.token.as_deref(), Some(crate::store::token_hash(&token).as_str()));
        assert_eq!(store.login("idhash", 0).unwrap().unwrap().csrf, "", "the stored CSRF token is gone; the login stays");
        store.set_member_session(m.id, Some(("s2", &"cd".repeat(32)))).unwrap();
        drop(store);
        let raw = std::fs::read(&path).unwrap();
        let wal = std::fs::read(dir.path().join("docklab.db-wal")).unwrap_or_default();
        let seen = |needle: &str| raw.windows(needle.len()).chain(wal.windows(needle.len())).any(|w| w == needle.as_bytes());
        assert!(!seen(&"cd".repeat(32)), "a session token in clear");
        assert!(!seen("a-clear-csrf-token"));
        let store = ClassStore::open(&path).unwrap();
        let m = store.member_by_id(m.id).unwrap().unwrap();
        assert_eq!(m.token.as_deref(), Some(crate::store::token_hash(&"cd".repeat(32)).as_str()), "not hashed twice");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
