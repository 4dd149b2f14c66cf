//! The live sessions of this server: id, token, exercise, state, expiry and terminal hub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::config::TerminalConfig;
use crate::terminal::hub::TerminalHub;
use crate::token;

/// Most API commands running in one session at once; more answer 429 (each holds a process in
/// the machine and a task here until it ends, up to `exec_timeout_max`).
pub const MAX_EXECS_IN_FLIGHT: usize = 8;

/// Where a session is in its life, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPhase {
    /// The machine is being created.
    Starting,
    /// The machine answered; the learner can work.
    Ready,
}

/// One learner's session: a machine for one exercise.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub token: String,
    pub exercise: String,
    pub created_at: OffsetDateTime,
    /// When the session ends, and the same as a monotonic deadline the reaper uses (immune to
    /// wall-clock jumps). Moved when a class is extended.
    end: Mutex<(OffsetDateTime, Instant)>,
    /// The machine's own settings (a class's per-learner memory), kept for resets.
    pub machine: sandbox::MachineOptions,
    phase: Mutex<SessionPhase>,
    pub terminal: TerminalHub,
    /// API commands running in the machine now: a few at a time (see [`MAX_EXECS_IN_FLIGHT`]).
    pub exec_slots: Arc<tokio::sync::Semaphore>,
    /// A class's instructor typing in this terminal: (instructor, `true` until handed back). It
    /// ends with the session, so no path that ends a session can leave an instructor attached.
    takeover: Mutex<Option<(i64, watch::Sender<bool>)>>,
}

impl Session {
    pub fn phase(&self) -> SessionPhase {
        *lock(&self.phase)
    }

    pub fn set_phase(&self, phase: SessionPhase) {
        *lock(&self.phase) = phase;
    }

    pub fn token_matches(&self, given: &str) -> bool {
        token::tokens_match(&self.token, given)
    }

    pub fn expires_at(&self) -> OffsetDateTime {
        lock(&self.end).0
    }

    pub fn deadline(&self) -> Instant {
        lock(&self.end).1
    }

    /// Moves the session's end (a class extended or shortened); the expiry warning may come again.
    pub fn set_expires_at(&self, expires_at: OffsetDateTime) {
        let left = Duration::try_from((expires_at - OffsetDateTime::now_utc()).max(time::Duration::ZERO)).unwrap_or_default();
        *lock(&self.end) = (expires_at, Instant::now() + left);
        self.terminal.warned_expiry.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Lets `instructor` type in this session's terminal; `false` when it is already taken over
    /// (by them or another instructor: the first one keeps it).
    pub fn begin_takeover(&self, instructor: i64) -> bool {
        let mut takeover = lock(&self.takeover);
        if takeover.is_some() {
            return false;
        }
        *takeover = Some((instructor, watch::channel(true).0));
        true
    }

    /// A receiver that turns `false` (or closes) when the take-over ends, if `instructor` holds it.
    pub fn takeover_for(&self, instructor: i64) -> Option<watch::Receiver<bool>> {
        lock(&self.takeover).as_ref().filter(|(by, _)| *by == instructor).map(|(_, active)| active.subscribe())
    }

    /// Ends the take-over, if any: the instructor's writable connections close. Returns whether
    /// there was one.
    pub fn end_takeover(&self) -> bool {
        let Some((_, active)) = lock(&self.takeover).take() else { return false };
        let _ = active.send(false);
        true
    }

    pub fn is_taken_over(&self) -> bool {
        lock(&self.takeover).is_some()
    }
}

/// What a new session gets besides its exercise: its length and its machine's settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionOptions {
    /// Instead of the server's session length.
    pub ttl: Option<Duration>,
    pub machine: sandbox::MachineOptions,
}

/// Why a session could not be added.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("all {max} session slots are in use")]
    Full { max: usize },
}

/// All sessions, by id. Cheap to share: wrap it in an `Arc`.
#[derive(Debug)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    max_sessions: usize,
    ttl: Duration,
    terminal: TerminalConfig,
}

impl SessionRegistry {
    pub fn new(max_sessions: usize, ttl: Duration, terminal: TerminalConfig) -> Self {
        SessionRegistry { sessions: Mutex::new(HashMap::new()), max_sessions, ttl, terminal }
    }

    /// Registers a new session for `exercise` in the `Starting` phase, with a fresh id and token.
    pub fn insert_new(&self, exercise: &str) -> Result<Arc<Session>, RegistryError> {
        self.insert_new_with(exercise, SessionOptions::default())
    }

    /// Like [`Self::insert_new`], with a length and machine settings of its own.
    pub fn insert_new_with(&self, exercise: &str, options: SessionOptions) -> Result<Arc<Session>, RegistryError> {
        self.insert(exercise, options, None)
    }

    /// Like [`Self::insert_new`], for a machine that already runs (from the warm pool): the
    /// session takes the machine's id.
    pub fn insert_for_machine(&self, exercise: &str, machine_id: &str) -> Result<Arc<Session>, RegistryError> {
        self.insert(exercise, SessionOptions::default(), Some(machine_id))
    }

    fn insert(&self, exercise: &str, options: SessionOptions, id: Option<&str>) -> Result<Arc<Session>, RegistryError> {
        let ttl = options.ttl.unwrap_or(self.ttl);
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= self.max_sessions {
            return Err(RegistryError::Full { max: self.max_sessions });
        }
        let id = match id {
            // A pooled machine's id is a fresh random session id too, and no session has it.
            Some(id) => id.to_owned(),
            None => {
                let mut id = token::new_session_id();
                while sessions.contains_key(&id) {
                    id = token::new_session_id();
                }
                id
            }
        };
        let now = OffsetDateTime::now_utc();
        let session = Arc::new(Session {
            terminal: TerminalHub::new(&id, self.terminal.clone()),
            id: id.clone(),
            token: token::new_token(),
            exercise: exercise.to_owned(),
            created_at: now,
            end: Mutex::new((now + ttl, Instant::now() + ttl)),
            machine: options.machine,
            phase: Mutex::new(SessionPhase::Starting),
            exec_slots: Arc::new(tokio::sync::Semaphore::new(MAX_EXECS_IN_FLIGHT)),
            takeover: Mutex::new(None),
        });
        sessions.insert(id, session.clone());
        Ok(session)
    }

    /// Registers a session adopted from an earlier server, `Ready`, keeping its id, token and
    /// expiry. `None` when the registry is full or already has that id.
    pub fn insert_adopted(
        &self,
        id: &str,
        token: &str,
        exercise: &str,
        created_at: OffsetDateTime,
        expires_at: OffsetDateTime,
        machine: sandbox::MachineOptions,
    ) -> Option<Arc<Session>> {
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= self.max_sessions || sessions.contains_key(id) {
            return None;
        }
        let left = (expires_at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
        let session = Arc::new(Session {
            terminal: TerminalHub::new(id, self.terminal.clone()),
            id: id.to_owned(),
            token: token.to_owned(),
            exercise: exercise.to_owned(),
            created_at,
            end: Mutex::new((expires_at, Instant::now() + Duration::try_from(left).unwrap_or_default())),
            machine,
            phase: Mutex::new(SessionPhase::Ready),
            exec_slots: Arc::new(tokio::sync::Semaphore::new(MAX_EXECS_IN_FLIGHT)),
            takeover: Mutex::new(None),
        });
        sessions.insert(id.to_owned(), session.clone());
        Some(session)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).get(id).cloned()
    }

    /// Removes a session; `None` if it was already gone.
    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).remove(id)
    }

    /// The ids of the sessions whose deadline has passed (removing them is `lifecycle::end`'s job).
    pub fn expired_ids(&self, now: Instant) -> Vec<String> {
        lock(&self.sessions).values().filter(|s| s.deadline() <= now).map(|s| s.id.clone()).collect()
    }

    /// The ids of every session.
    pub fn ids(&self) -> Vec<String> {
        lock(&self.sessions).keys().cloned().collect()
    }

    /// Every session, for periodic checks.
    pub fn all(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// Removes and returns every session, for a shutdown that leaves them running for the next
    /// server (ending them goes through `lifecycle::end`).
    pub fn take_all(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions).drain().map(|(_, s)| s).collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Locks a mutex; a panic elsewhere while holding it leaves plain data that is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize, ttl: Duration) -> SessionRegistry {
        SessionRegistry::new(max, ttl, TerminalConfig::default())
    }

    #[test]
    fn capacity_is_enforced() {
        let reg = registry(1, Duration::from_secs(60));
        reg.insert_new("day-24/x").unwrap();
        assert!(matches!(reg.insert_new("day-24/x"), Err(RegistryError::Full { max: 1 })));
    }

    #[test]
    fn expired_sessions_are_listed_and_left_in_place() {
        let reg = registry(10, Duration::ZERO);
        let s = reg.insert_new("day-24/x").unwrap();
        assert_eq!(s.phase(), SessionPhase::Starting);
        assert_eq!(reg.expired_ids(Instant::now()), vec![s.id.clone()]);
        assert!(reg.get(&s.id).is_some(), "ending it is lifecycle::end's job");
        s.set_expires_at(OffsetDateTime::now_utc() + time::Duration::minutes(5));
        assert!(reg.expired_ids(Instant::now()).is_empty(), "a class extension moves the deadline");
    }

    #[test]
    fn a_take_over_belongs_to_one_instructor_and_ends_once() {
        let reg = registry(10, Duration::from_secs(60));
        let s = reg.insert_new("day-24/x").unwrap();
        assert!(!s.is_taken_over());
        assert!(s.begin_takeover(1));
        assert!(!s.begin_takeover(2), "the first instructor keeps it");
        assert!(s.takeover_for(2).is_none());
        let active = s.takeover_for(1).unwrap();
        assert!(*active.borrow());
        assert!(s.end_takeover());
        assert!(!*active.borrow() && !s.is_taken_over());
        assert!(!s.end_takeover(), "already ended");
    }
}
