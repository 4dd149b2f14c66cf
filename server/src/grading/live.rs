//! Live grading: one watcher per ready session follows its engine's events (and a short tick for
//! files and scripts), re-grades, and pushes `checks` messages to the terminal's viewers whenever
//! a task's status or detail changes. Newly done tasks are recorded in the learner's progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use lessons::Exercise;
use sandbox::MachineInfo;
use tokio::task::AbortHandle;
use tracing::Instrument;

use super::{lock, BackendShell, Grader, Scope, TaskReport, TaskStatus};
use crate::app::AppState;
use crate::registry::Session;
use crate::terminal::protocol::{PublishedPort, ServerControl};

/// How often file-based checks are re-evaluated.
pub const TICK: Duration = Duration::from_secs(2);
/// Wait before following the events again after the stream broke (dockerd restarting).
const EVENTS_RETRY: Duration = Duration::from_secs(1);
/// Events closer together than this are graded once, together...
const BURST_GAP: Duration = Duration::from_millis(5);
/// ...for at most this long after the first, so a steady stream of events still gets graded.
const BURST_MAX: Duration = Duration::from_millis(100);

/// Per-session grading state, for every session of this server.
#[derive(Default)]
pub struct Grading {
    sessions: Mutex<HashMap<String, Arc<LiveSession>>>,
    /// Learner and hints per session; set at creation, before the machine is ready.
    extras: Mutex<HashMap<String, SessionExtras>>,
}

#[derive(Default, Clone)]
struct SessionExtras {
    learner: Option<String>,
    hints: HashMap<String, usize>,
}

/// A ready session's grader and its latest grades.
pub struct LiveSession {
    pub grader: Arc<Grader>,
    pub exercise: Exercise,
    latest: Mutex<Vec<TaskReport>>,
    /// One grading pass at a time, so grades are published in order. Holds when the last pass
    /// that evaluated every check began (under this lock, so it is the latest grades' pass).
    refresh: tokio::sync::Mutex<Option<Instant>>,
    watcher: Mutex<Option<AbortHandle>>,
}

impl Grading {
    pub fn get(&self, session: &str) -> Option<Arc<LiveSession>> {
        lock(&self.sessions).get(session).cloned()
    }

    /// Remembers which learner a session belongs to (for progress).
    pub fn set_learner(&self, session: &str, learner: &str) {
        lock(&self.extras).entry(session.to_owned()).or_default().learner = Some(learner.to_owned());
    }

    pub fn learner(&self, session: &str) -> Option<String> {
        lock(&self.extras).get(session).and_then(|e| e.learner.clone())
    }

    /// Counts one more hint revealed for `task`; returns its index, or `None` when all are out.
    pub fn next_hint(&self, session: &str, task: &str, available: usize) -> Option<usize> {
        let mut extras = lock(&self.extras);
        let shown = extras.entry(session.to_owned()).or_default().hints.entry(task.to_owned()).or_default();
        if *shown >= available {
            return None;
        }
        *shown += 1;
        Some(*shown - 1)
    }

    /// Stops grading a session's machine (it is being reset or destroyed).
    pub fn stop(&self, session: &str) {
        if let Some(live) = lock(&self.sessions).remove(session) {
            if let Some(watcher) = lock(&live.watcher).take() {
                watcher.abort();
            }
        }
    }

    /// Forgets everything about a session.
    pub fn forget(&self, session: &str) {
        self.stop(session);
        lock(&self.extras).remove(session);
    }
}

/// Called once a session's machine answers: places the exercise's files, runs its setup, then
/// starts grading live. Events count from here on.
pub async fn machine_ready(state: &AppState, session: &Arc<Session>, info: &MachineInfo) -> Result<(), String> {
    let exercise = state
        .catalog
        .exercise(&session.exercise)
        .cloned()
        .ok_or_else(|| format!("exercise {} is not in the catalog", session.exercise))?;
    super::prepare_machine(state.backend.as_ref(), &session.id, &exercise).await.map_err(|e| e.to_string())?;
    start_live(state, session, info, exercise);
    Ok(())
}

/// Grades a session adopted from an earlier server: its machine is already prepared, so only
/// live grading starts again (events count from now; tasks already done stay done in the store).
pub async fn resume(state: &AppState, session: &Arc<Session>, info: &MachineInfo) {
    if let Some(exercise) = state.catalog.exercise(&session.exercise).cloned() {
        start_live(state, session, info, exercise);
    }
}

fn start_live(state: &AppState, session: &Arc<Session>, info: &MachineInfo, exercise: lessons::Exercise) {
    let shell = Arc::new(BackendShell { backend: state.backend.clone(), id: session.id.clone() });
    let since = time::OffsetDateTime::now_utc().unix_timestamp();
    let grader = match Grader::connect(&session.id, &info.docker_socket, shell, since) {
        Ok(grader) => grader,
        Err(err) => {
            // The learner can still work; the task list just stays pending.
            tracing::warn!(error = %err, "no live grading for this session");
            return;
        }
    };
    let live = Arc::new(LiveSession {
        grader: Arc::new(grader),
        exercise,
        latest: Mutex::new(Vec::new()),
        refresh: tokio::sync::Mutex::new(None),
        watcher: Mutex::new(None),
    });
    let span = tracing::info_span!("grading", session = %session.id);
    let watcher = tokio::spawn(watch(state.clone(), session.clone(), live.clone()).instrument(span));
    *lock(&live.watcher) = Some(watcher.abort_handle());
    if let Some(old) = lock(&state.grading.sessions).insert(session.id.clone(), live) {
        if let Some(w) = lock(&old.watcher).take() {
            w.abort();
        }
    }
}

/// Grades now, publishes what changed, records newly done tasks. Returns the grades.
pub async fn refresh(state: &AppState, session: &Session, live: &LiveSession, scope: Scope) -> Vec<TaskReport> {
    let mut last_all = live.refresh.lock().await;
    grade_and_publish(state, session, live, scope, &mut last_all).await
}

/// The grades as of now, for a request: a pass that evaluated every check and began after
/// `asked` (while the request waited its turn behind it) already saw everything that happened
/// before the request, so its grades are served as they are; otherwise this grades now. Either
/// way the answer is never older than the request, so a state task is shown done only if it held
/// after the request came.
pub async fn current(state: &AppState, session: &Session, live: &LiveSession, asked: Instant) -> Vec<TaskReport> {
    let mut last_all = live.refresh.lock().await;
    if last_all.is_some_and(|began| began >= asked) {
        return lock(&live.latest).clone();
    }
    grade_and_publish(state, session, live, Scope::All, &mut last_all).await
}

/// One grading pass; the caller holds the refresh lock (`last_all` is what it guards).
async fn grade_and_publish(state: &AppState, session: &Session, live: &LiveSession, scope: Scope, last_all: &mut Option<Instant>) -> Vec<TaskReport> {
    let started = Instant::now();
    let reports = live.grader.grade(&live.exercise, scope).await;
    state.metrics.grade.observe(started.elapsed());
    if scope == Scope::All {
        *last_all = Some(started);
    }
    let previous = std::mem::replace(&mut *lock(&live.latest), reports.clone());
    if previous != reports {
        session.terminal.publish_control(ServerControl::Checks { tasks: reports.clone() });
        let newly_done: Vec<&TaskReport> = reports
            .iter()
            .filter(|r| r.status == TaskStatus::Passed)
            .filter(|r| !previous.iter().any(|p| p.id == r.id && p.status == TaskStatus::Passed))
            .collect();
        if let Some(learner) = state.grading.learner(&session.id) {
            for task in newly_done {
                if let Err(err) = state.store.task_done(&learner, &live.exercise.id, &task.id) {
                    tracing::warn!(error = %err, task = %task.id, "could not record a finished task");
                }
            }
        }
    }
    reports
}

async fn watch(state: AppState, session: Arc<Session>, live: Arc<LiveSession>) {
    refresh(&state, &session, &live, Scope::All).await;
    let mut ports = None;
    publish_ports(&session, &live, &mut ports).await;
    let mut scene = crate::visuals::SceneFeed::for_exercise(&state.catalog, &live.exercise);
    scene.publish(&session, live.grader.docker()).await;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut events = None;
    loop {
        let still_here = state.sessions.get(&session.id).is_some_and(|s| Arc::ptr_eq(&s, &session));
        if !still_here {
            state.grading.forget(&session.id);
            return;
        }
        let stream = events.get_or_insert_with(|| {
            let since = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
            live.grader.docker().events(Some(EventsOptions { since: Some(since), ..Default::default() })).boxed()
        });
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(event)) => {
                    let mut relevant = live.grader.note_event(&event);
                    // Take whatever else comes without a pause, then grade once for all of it.
                    // Through the relay a burst arrives an event or two per wake-up, so taking
                    // only what was ready meant one pass per event: after 300 `docker run`s
                    // the watcher was still grading them one by one a minute later, and every
                    // request for the grades waited behind one of those passes.
                    let (more, broke) = take_burst(stream, |e| live.grader.note_event(e)).await;
                    relevant |= more;
                    if relevant {
                        refresh(&state, &session, &live, Scope::All).await;
                        publish_ports(&session, &live, &mut ports).await;
                        scene.publish(&session, live.grader.docker()).await;
                    }
                    if broke {
                        events = None;
                        tokio::time::sleep(EVENTS_RETRY).await;
                    }
                }
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "the engine's event stream broke; following it again");
                    events = None;
                    tokio::time::sleep(EVENTS_RETRY).await;
                }
                None => {
                    events = None;
                    tokio::time::sleep(EVENTS_RETRY).await;
                }
            },
            _ = tick.tick() => {
                refresh(&state, &session, &live, Scope::Tick).await;
            }
        }
    }
}

/// Takes the events that follow without a pause of [`BURST_GAP`], for at most [`BURST_MAX`],
/// noting each. Returns whether any of them calls for grading, and whether the stream broke or
/// ended meanwhile (then it must be followed again).
async fn take_burst<S, T, E>(stream: &mut S, mut note: impl FnMut(&T) -> bool) -> (bool, bool)
where
    S: futures::Stream<Item = Result<T, E>> + Unpin,
{
    let ends = tokio::time::Instant::now() + BURST_MAX;
    let mut relevant = false;
    loop {
        let until = ends.min(tokio::time::Instant::now() + BURST_GAP);
        match tokio::time::timeout_at(until, stream.next()).await {
            Ok(Some(Ok(event))) => relevant |= note(&event),
            Ok(Some(Err(_)) | None) => return (relevant, true),
            Err(_) => return (relevant, false),
        }
    }
}

/// Tells the session's viewers which ports its containers publish, when that changed.
async fn publish_ports(session: &Session, live: &LiveSession, last: &mut Option<Vec<PublishedPort>>) {
    let options = bollard::query_parameters::ListContainersOptions { all: false, ..Default::default() };
    let Ok(containers) = live.grader.docker().list_containers(Some(options)).await else { return };
    let mut ports: Vec<PublishedPort> = containers
        .iter()
        .flat_map(|c| {
            let name = c.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default();
            c.ports.clone().unwrap_or_default().into_iter().filter_map(move |p| {
                Some(PublishedPort { port: p.public_port?, target: p.private_port, container: name.clone() })
            })
        })
        .collect();
    ports.sort();
    ports.dedup_by_key(|p| p.port);
    if last.as_ref() != Some(&ports) {
        session.terminal.publish_control(ServerControl::Ports { ports: ports.clone() });
        *last = Some(ports);
    }
}

#[cfg(test)]
mod burst_tests {
    use super::*;
    use futures::FutureExt;
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Hands over its items one per wake-up, as events come through the relay (each is ready
    /// only after another turn of the runtime), then ends.
    struct Trickle {
        items: VecDeque<Result<usize, ()>>,
        ready: bool,
    }

    impl futures::Stream for Trickle {
        type Item = Result<usize, ()>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            if !self.ready {
                self.ready = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.ready = false;
            Poll::Ready(self.items.pop_front())
        }
    }

    fn trickle(items: impl IntoIterator<Item = Result<usize, ()>>) -> Trickle {
        Trickle { items: items.into_iter().collect(), ready: false }
    }

    #[tokio::test]
    async fn a_burst_that_trickles_in_is_taken_whole_and_graded_once() {
        // Taking only what is ready takes none of it: that was one grading pass per event.
        assert!(trickle((0..300).map(Ok)).next().now_or_never().is_none());
        let mut stream = Box::pin(trickle((0..300).map(Ok)).chain(futures::stream::pending()));
        let mut noted = 0;
        let (relevant, broke) = take_burst(&mut stream, |_| {
            noted += 1;
            noted == 7
        })
        .await;
        assert_eq!(noted, 300, "the whole burst is taken at once");
        assert!(relevant && !broke, "one relevant event calls for a grade");
    }

    #[tokio::test]
    async fn a_pause_ends_the_burst_and_quiet_events_need_no_grade() {
        let later = futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(9)
        });
        let mut stream = Box::pin(trickle([Ok(0), Ok(1)]).chain(later));
        let started = Instant::now();
        let mut noted = Vec::new();
        let (relevant, broke) = take_burst(&mut stream, |i: &usize| {
            noted.push(*i);
            false
        })
        .await;
        assert_eq!(noted, [0, 1], "the event after a pause belongs to the next burst");
        assert!(!relevant && !broke);
        assert!(started.elapsed() < Duration::from_millis(300), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_stream_that_breaks_or_ends_in_a_burst_is_followed_again() {
        let mut stream = Box::pin(trickle([Ok(1), Err(()), Ok(2)]));
        assert_eq!(take_burst(&mut stream, |_| true).await, (true, true));
        let mut ended = Box::pin(trickle([Ok(1)]));
        assert_eq!(take_burst(&mut ended, |_| false).await, (false, true));
    }
}
