//! What the grid knows about each learner while a class runs: which task they are on and since
//! when (from their session's `checks`), whether they look stuck, and the hints they opened. A
//! ticker per watched class recomputes the rows and pushes only those that changed.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::{lock, now, task_key, ClassError, GridEvent};
use crate::app::AppState;
use crate::grading::TaskStatus;
use crate::store::classroom::{ClassRow, MemberRow};
use crate::terminal::protocol::ServerControl;

/// When a learner counts as stuck, and how often the grid's markers are recomputed.
#[derive(Debug, Clone, Copy)]
pub struct StuckRules {
    /// No keystroke and no command for this long.
    pub idle: Duration,
    /// The same task still not passing, its check failing, for this long.
    pub failing: Duration,
    pub tick: Duration,
}

impl Default for StuckRules {
    fn default() -> Self {
        StuckRules { idle: Duration::from_secs(5 * 60), failing: Duration::from_secs(10 * 60), tick: Duration::from_secs(5) }
    }
}

/// The task a learner is on (the first of their exercise not passed yet), from their checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskWatch {
    pub exercise: String,
    /// `None` once every task of the exercise passed.
    pub task: Option<String>,
    /// Since when (unix seconds) this has been the task they are on.
    pub since: i64,
    /// Whether its check ran and failed (rather than not having run yet).
    pub failing: bool,
}

impl TaskWatch {
    /// Updates from a `checks` message; returns true when the exercise just became all passed.
    pub fn update(watch: &mut Option<TaskWatch>, exercise: &str, tasks: &[crate::grading::TaskReport], now: i64) -> bool {
        let first = tasks.iter().find(|t| t.status != TaskStatus::Passed);
        let task = first.map(|t| t.id.clone());
        let failing = first.is_some_and(|t| t.status == TaskStatus::Failed);
        match watch {
            Some(w) if w.exercise == exercise && w.task == task => {
                w.failing = failing;
                false
            }
            _ => {
                let was_done = watch.as_ref().is_some_and(|w| w.exercise == exercise && w.task.is_none());
                let done = task.is_none() && !tasks.is_empty();
                *watch = Some(TaskWatch { exercise: exercise.to_owned(), task, since: now, failing });
                done && !was_done
            }
        }
    }
}

/// Why a learner is marked stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stuck {
    Idle { minutes: u64 },
    Failing { task: String, minutes: u64 },
}

/// Whether a learner with a live machine looks stuck: idle too long, or failing the same check
/// too long. A learner who finished, or has no machine, is not.
pub fn stuck(rules: &StuckRules, idle: Option<Duration>, watch: Option<&TaskWatch>, now: i64, finished: bool) -> Option<Stuck> {
    let idle = idle.filter(|_| !finished)?;
    if idle >= rules.idle {
        return Some(Stuck::Idle { minutes: idle.as_secs() / 60 });
    }
    let w = watch?;
    let on_it = Duration::from_secs((now - w.since).max(0) as u64);
    match &w.task {
        Some(task) if w.failing && on_it >= rules.failing => Some(Stuck::Failing { task: task.clone(), minutes: on_it.as_secs() / 60 }),
        _ => None,
    }
}

/// One row of the grid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LearnerRow {
    pub member: i64,
    pub name: String,
    /// The live session (for watching and taking over), if any.
    pub session: Option<String>,
    /// Which of the class's exercises they are on (0-based).
    pub exercise_index: u32,
    pub joined_at: i64,
    pub finished_at: Option<i64>,
    /// From joining until they finished (or the class ended, or now).
    pub time_on_task_s: i64,
    pub idle_s: Option<u64>,
    pub stuck: bool,
    /// Why, in a sentence (`idle for 7 min`, `failing "Run a container" for 12 min`).
    pub stuck_reason: Option<String>,
    /// Hints opened during the class, over the class's exercises.
    pub hints: u32,
    /// Keys (`exercise:task`) of the passed tasks.
    pub passed: Vec<String>,
    /// Whether the instructor is typing in their terminal.
    pub taken_over: bool,
}

impl LearnerRow {
    /// What a change worth pushing is made of (not the clocks, which the page advances itself).
    fn signature(&self) -> impl PartialEq + '_ {
        (&self.session, self.exercise_index, self.finished_at, &self.stuck_reason, self.hints, self.passed.len(), self.taken_over)
    }
}

/// Hints a learner opened since `since` (unix seconds), over `exercises`.
fn hints_since(state: &AppState, learner: &str, exercises: &[String], since: i64) -> u32 {
    let Ok(progress) = state.store.progress(learner) else { return 0 };
    let after = |at: &str| {
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).map_or(true, |t| t.unix_timestamp() >= since)
    };
    exercises
        .iter()
        .filter_map(|e| progress.exercises.get(e))
        .flat_map(|e| e.hints_used.iter())
        .filter(|h| after(&h.at))
        .count() as u32
}

/// Every learner's row, in joining order.
pub fn learner_rows(state: &AppState, class: &ClassRow) -> Result<Vec<LearnerRow>, ClassError> {
    let now = now();
    let ended = super::class_state(class, now) == "ended";
    let mut passed: HashMap<i64, Vec<String>> = HashMap::new();
    for (member, exercise, task, _) in state.classroom.store.results(&class.id).map_err(super::internal)? {
        passed.entry(member).or_default().push(task_key(&exercise, &task));
    }
    let members = state.classroom.store.members(&class.id).map_err(super::internal)?;
    Ok(members
        .into_iter()
        .map(|m| {
            let passed = passed.remove(&m.id).unwrap_or_default();
            row_for(state, class, m, ended, now, Some(passed))
        })
        .collect())
}

/// One learner's row; `passed` when the caller already has their results.
pub fn row_for(state: &AppState, class: &ClassRow, m: MemberRow, ended: bool, now: i64, passed: Option<Vec<String>>) -> LearnerRow {
    let live = m.session.as_deref().and_then(|s| state.sessions.get(s)).filter(|_| !ended);
    let idle = live.as_ref().map(|s| s.terminal.idle_for());
    let passed = passed.unwrap_or_else(|| {
        state
            .classroom
            .store
            .results_of(m.id)
            .unwrap_or_default()
            .into_iter()
            .map(|(exercise, task)| task_key(&exercise, &task))
            .collect()
    });
    let watch = lock(&state.classroom.watches).get(&m.id).cloned().flatten();
    let stuck = stuck(&state.classroom.rules, idle, watch.as_ref(), now, m.finished_at.is_some());
    let title = |exercise: &str, task: &str| {
        state.catalog.exercise(exercise).and_then(|e| e.task(task)).map_or_else(|| task.to_owned(), |t| t.title.clone())
    };
    let stuck_reason = stuck.map(|s| match s {
        Stuck::Idle { minutes } => format!("idle for {minutes} min"),
        Stuck::Failing { task, minutes } => {
            let exercise = watch.as_ref().map(|w| w.exercise.as_str()).unwrap_or_default();
            format!("failing \u{201c}{}\u{201d} for {minutes} min", title(exercise, &task))
        }
    });
    let end = m.finished_at.or(class.ended_at).unwrap_or(now).min(class.ends_at.max(m.joined_at)).min(now);
    LearnerRow {
        member: m.id,
        name: m.display_name.clone(),
        taken_over: live.as_ref().is_some_and(|s| s.is_taken_over()),
        session: live.map(|s| s.id.clone()),
        exercise_index: m.exercise_index,
        joined_at: m.joined_at,
        finished_at: m.finished_at,
        time_on_task_s: (end - m.joined_at).max(0),
        idle_s: idle.map(|d| d.as_secs()),
        stuck: stuck_reason.is_some(),
        stuck_reason,
        hints: hints_since(state, &m.learner, &class.exercises, m.joined_at),
        passed,
    }
}

/// Records a session's `checks`: new passes (pushed as they happen), the task the learner is on,
/// and, when they finish an exercise, tells their page.
pub(crate) fn note_checks(state: &AppState, class: &str, member: i64, exercise: &str, control: &ServerControl) {
    let ServerControl::Checks { tasks } = control else { return };
    let now = now();
    for task in tasks.iter().filter(|t| t.status == TaskStatus::Passed) {
        match state.classroom.store.record_pass(member, exercise, &task.id, now) {
            Ok(true) => state.classroom.publish(class, GridEvent::Pass { member, task: task_key(exercise, &task.id) }),
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, %class, member, "could not record a class result"),
        }
    }
    let exercise_done = {
        let mut watches = lock(&state.classroom.watches);
        let watch = watches.entry(member).or_insert(None);
        TaskWatch::update(watch, exercise, tasks, now)
    };
    if exercise_done {
        exercise_finished(state, class, member, exercise, now);
    }
}

fn exercise_finished(state: &AppState, class_id: &str, member: i64, exercise: &str, now: i64) {
    let Ok(Some(class)) = state.classroom.store.class(class_id) else { return };
    let Ok(Some(m)) = state.classroom.store.member_by_id(member) else { return };
    let index = class.exercises.iter().position(|e| e == exercise).unwrap_or(m.exercise_index as usize);
    let last = index + 1 >= class.exercises.len();
    if last {
        // Finished means every task of every exercise passed (a learner may skip ahead).
        let keys: std::collections::HashSet<String> =
            state.classroom.store.results_of(member).unwrap_or_default().into_iter().map(|(e, t)| task_key(&e, &t)).collect();
        let all = class
            .exercises
            .iter()
            .filter_map(|e| state.catalog.exercise(e))
            .all(|e| e.tasks.iter().all(|t| keys.contains(&task_key(&e.id, &t.id))));
        if all {
            if let Err(err) = state.classroom.store.set_member_finished(member, now) {
                tracing::warn!(error = %err, member, "could not record a finished learner");
            }
        }
    }
    state.classroom.tell(class_id, Some(member), super::LearnerEvent::Done { exercise: exercise.to_owned(), next: !last });
    push_row(state, &class, member);
}

/// Pushes one learner's current row to the grid.
pub(crate) fn push_row(state: &AppState, class: &ClassRow, member: i64) {
    if let Ok(Some(m)) = state.classroom.store.member_by_id(member) {
        let ended = super::class_state(class, now()) == "ended";
        let row = row_for(state, class, m, ended, now(), None);
        lock(&state.classroom.sent).insert(member, row.clone());
        state.classroom.publish(&class.id, GridEvent::Learner { learner: Box::new(row) });
    }
}

/// Starts the class's ticker unless it runs: while someone watches the grid, it recomputes the
/// rows every `tick` and pushes those whose marker, hints, exercise or machine changed. It also
/// follows the class's live sessions (after a server restart, nothing else would).
pub(crate) fn ensure_ticker(state: &AppState, class_id: &str) {
    if !lock(&state.classroom.tickers).insert(class_id.to_owned()) {
        return;
    }
    let (state, class_id) = (state.clone(), class_id.to_owned());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.classroom.rules.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let class = match state.classroom.store.class(&class_id) {
                Ok(Some(class)) if super::class_state(&class, now()) != "ended" => class,
                _ => break,
            };
            if state.classroom.channel(&class_id).receiver_count() == 0 {
                break;
            }
            let Ok(rows) = learner_rows(&state, &class) else { continue };
            let mut sent = lock(&state.classroom.sent);
            for row in rows {
                if let Some(session) = row.session.as_deref().and_then(|s| state.sessions.get(s)) {
                    super::follow(&state, &class_id, row.member, session);
                }
                if sent.get(&row.member).is_some_and(|old| old.signature() == row.signature()) {
                    continue;
                }
                sent.insert(row.member, row.clone());
                state.classroom.publish(&class_id, GridEvent::Learner { learner: Box::new(row) });
            }
        }
        lock(&state.classroom.tickers).remove(&class_id);
    });
}
