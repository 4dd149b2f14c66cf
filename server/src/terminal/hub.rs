//! `TerminalHub`: one shell per session, shared by every viewer, kept across reconnects.
//!
//! The shell is opened lazily by the first viewer. Its output goes into a ring buffer (replayed to
//! viewers that attach later) and out through a bounded broadcast channel: a viewer that falls
//! behind skips output instead of growing memory or slowing the others. Keystrokes from
//! interactive viewers reach the PTY through one bounded channel. When the shell exits, every
//! viewer is told why, and the next viewer to attach starts a fresh shell.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use sandbox::backend::Resizer;
use sandbox::{SandboxError, Terminal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::AbortHandle;

use super::protocol::ServerControl;
use super::ring::RingBuffer;
use crate::config::TerminalConfig;

/// Size of one read from the PTY, and so the largest output chunk a viewer receives.
const READ_CHUNK: usize = 4096;
/// How long to keep reading output after the shell said it exited (its last words).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);
/// How long to wait for the exit reason after the PTY closed.
const WAIT_FOR_EXIT_REASON: Duration = Duration::from_secs(1);
/// Notices kept while no shell runs (none started yet, or the last one ended): the newest ones,
/// written into the next shell's output as it starts so its first viewer reads them.
const KEPT_NOTICES: usize = 8;

/// What viewers receive from the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    Output(Bytes),
    /// The shell is gone; a human sentence says why.
    Ended(String),
    /// The machine is being replaced (a reset): viewers should reconnect, not give up.
    Restarting(String),
}

/// Whether a viewer may type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerMode {
    Interactive,
    /// Output only (an instructor shadowing a learner).
    ReadOnly,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("could not start a shell in session {id}: {source}")]
    Open { id: String, #[source] source: SandboxError },
}

/// The terminal of one session.
#[derive(Debug)]
pub struct TerminalHub {
    session_id: String,
    config: TerminalConfig,
    shell: tokio::sync::Mutex<Option<Arc<Shell>>>,
    /// Session-level control messages (task grades), independent of any shell.
    controls: broadcast::Sender<ServerControl>,
    /// The latest `checks` message, sent to each viewer as it attaches.
    latest_checks: Mutex<Option<ServerControl>>,
    /// The latest `ports` message, likewise.
    latest_ports: Mutex<Option<ServerControl>>,
    /// When the learner last typed (or ran a command through the API): idle sessions end.
    last_activity: Arc<Mutex<std::time::Instant>>,
    /// Which end-of-session warnings were already written to the terminal.
    pub warned_idle: std::sync::atomic::AtomicBool,
    pub warned_expiry: std::sync::atomic::AtomicBool,
    /// Notices that came while no shell was running (at most `KEPT_NOTICES`, oldest dropped).
    kept_notices: Mutex<std::collections::VecDeque<Bytes>>,
}

/// One viewer's attachment to the shell.
#[derive(Debug)]
pub struct Viewer {
    /// Recent output, to draw before live output.
    pub replay: Bytes,
    /// Live output and the end of the shell.
    pub events: broadcast::Receiver<HubEvent>,
    /// Set when the shell had already ended by the time the viewer attached.
    pub ended: Option<String>,
    pub mode: ViewerMode,
    /// Control messages for every viewer of the session (`checks`).
    pub controls: broadcast::Receiver<ServerControl>,
    /// The latest `checks` message at attach time, if any.
    pub checks: Option<ServerControl>,
    /// The latest `ports` message at attach time, if any.
    pub ports: Option<ServerControl>,
    shell: Arc<Shell>,
}

impl Viewer {
    /// The channel keystrokes go through; `None` for read-only viewers.
    pub fn input(&self) -> Option<mpsc::Sender<Bytes>> {
        (self.mode == ViewerMode::Interactive).then(|| self.shell.input.clone())
    }

    /// Resizes the PTY; read-only viewers cannot.
    pub fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        match self.mode {
            ViewerMode::Interactive => (self.shell.resize)(cols, rows),
            ViewerMode::ReadOnly => Ok(()),
        }
    }
}

impl TerminalHub {
    pub fn new(session_id: &str, config: TerminalConfig) -> Self {
        let (controls, _) = broadcast::channel(16);
        TerminalHub {
            session_id: session_id.to_owned(),
            config,
            shell: tokio::sync::Mutex::new(None),
            controls,
            latest_checks: Mutex::new(None),
            latest_ports: Mutex::new(None),
            last_activity: Arc::new(Mutex::new(std::time::Instant::now())),
            warned_idle: std::sync::atomic::AtomicBool::new(false),
            warned_expiry: std::sync::atomic::AtomicBool::new(false),
            kept_notices: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Records learner activity now (keystrokes do this by themselves).
    pub fn touch(&self) {
        *lock(&self.last_activity) = std::time::Instant::now();
        self.warned_idle.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long since the learner last did anything.
    pub fn idle_for(&self) -> Duration {
        lock(&self.last_activity).elapsed()
    }

    /// Writes a line from docklab itself into every viewer's terminal (not into the shell). With a
    /// shell running it joins the output (and so the replay a viewer gets as it attaches); without
    /// one it is kept, and the next shell starts with the last few kept notices.
    pub async fn notice(&self, text: &str) {
        let line = Bytes::from(format!("\r\n\x1b[1;33m[docklab] {text}\x1b[0m\r\n"));
        // Held while deciding, so a shell starting now either gets this line or sees it kept.
        let shell = self.shell.lock().await;
        if shell.as_ref().is_some_and(|shell| shell.publish(line.clone())) {
            return;
        }
        let mut kept = lock(&self.kept_notices);
        if kept.len() == KEPT_NOTICES {
            kept.pop_front();
        }
        kept.push_back(line);
    }

    /// Sends a control message to every viewer; a `checks` message is also kept for viewers
    /// that attach later.
    pub fn publish_control(&self, control: ServerControl) {
        if matches!(control, ServerControl::Checks { .. }) {
            *lock(&self.latest_checks) = Some(control.clone());
        }
        if matches!(control, ServerControl::Ports { .. }) {
            *lock(&self.latest_ports) = Some(control.clone());
        }
        // An error only means no viewer is attached right now.
        let _ = self.controls.send(control);
    }

    /// Control messages as they are published, and the latest `checks` (for followers that are
    /// not terminal viewers, such as a class's live grid).
    pub fn subscribe_controls(&self) -> (broadcast::Receiver<ServerControl>, Option<ServerControl>) {
        (self.controls.subscribe(), lock(&self.latest_checks).clone())
    }

    /// Ends the shell for a machine being replaced: viewers are told to reconnect.
    pub async fn restart(&self, reason: &str) {
        *lock(&self.latest_checks) = None;
        if let Some(shell) = self.shell.lock().await.take() {
            shell.end_with(reason.to_owned(), true);
        }
    }

    /// Whether a shell is running now (a new viewer will not start one).
    pub async fn has_live_shell(&self) -> bool {
        self.shell.lock().await.as_ref().is_some_and(|s| !s.has_ended())
    }

    /// Attaches a viewer, starting a shell with `open` if none is running.
    pub async fn attach<F, Fut>(&self, mode: ViewerMode, open: F) -> Result<Viewer, HubError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Terminal, SandboxError>>,
    {
        let mut current = self.shell.lock().await;
        if let Some(shell) = current.as_ref() {
            let (replay, events, ended) = shell.subscribe();
            if ended.is_none() {
                let (controls, checks) = (self.controls.subscribe(), lock(&self.latest_checks).clone());
                return Ok(Viewer { replay, events, ended, mode, controls, checks, ports: lock(&self.latest_ports).clone(), shell: shell.clone() });
            }
        }
        let terminal = open().await.map_err(|source| HubError::Open { id: self.session_id.clone(), source })?;
        tracing::info!("shell started");
        let shell = Shell::start(terminal, &self.config, self.last_activity.clone());
        for notice in lock(&self.kept_notices).drain(..) {
            shell.publish(notice);
        }
        *current = Some(shell.clone());
        let (replay, events, ended) = shell.subscribe();
        let (controls, checks) = (self.controls.subscribe(), lock(&self.latest_checks).clone());
        Ok(Viewer { replay, events, ended, mode, controls, checks, ports: lock(&self.latest_ports).clone(), shell })
    }

    /// Hangs up the shell, if any, telling every viewer `reason`.
    pub async fn shutdown(&self, reason: &str) {
        if let Some(shell) = self.shell.lock().await.take() {
            shell.end(reason.to_owned());
        }
    }
}

/// A running shell and its fan-out.
struct Shell {
    log: Mutex<OutputLog>,
    events: broadcast::Sender<HubEvent>,
    input: mpsc::Sender<Bytes>,
    resize: Resizer,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// Recent output and whether the shell ended; changed together with each broadcast, under one
/// lock, so a new viewer's replay and live stream neither overlap nor leave a gap.
struct OutputLog {
    recent: RingBuffer,
    ended: Option<String>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell").field("ended", &lock(&self.log).ended).finish_non_exhaustive()
    }
}

impl Shell {
    fn start(terminal: Terminal, config: &TerminalConfig, activity: Arc<Mutex<std::time::Instant>>) -> Arc<Shell> {
        let Terminal { output, input, resize, exited } = terminal;
        let (input_tx, input_rx) = mpsc::channel(config.input_backlog.max(1));
        let (events, _) = broadcast::channel(config.viewer_backlog.max(1));
        let shell = Arc::new(Shell {
            log: Mutex::new(OutputLog { recent: RingBuffer::new(config.replay_bytes), ended: None }),
            events,
            input: input_tx,
            resize,
            tasks: Mutex::new(Vec::new()),
        });
        // The writer is registered before the reader starts, so the reader can always stop it.
        let writer = tokio::spawn(pump_input(input, input_rx, activity));
        lock(&shell.tasks).push(writer.abort_handle());
        let reader = tokio::spawn(pump_output(shell.clone(), output, exited));
        lock(&shell.tasks).push(reader.abort_handle());
        shell
    }

    fn subscribe(&self) -> (Bytes, broadcast::Receiver<HubEvent>, Option<String>) {
        let log = lock(&self.log);
        (log.recent.snapshot(), self.events.subscribe(), log.ended.clone())
    }

    fn has_ended(&self) -> bool {
        lock(&self.log).ended.is_some()
    }

    /// Adds output for every viewer and the replay; false (nothing done) once the shell ended.
    fn publish(&self, chunk: Bytes) -> bool {
        let mut log = lock(&self.log);
        if log.ended.is_some() {
            return false;
        }
        log.recent.push(&chunk);
        // An error only means no viewer is attached right now; the ring keeps the output.
        let _ = self.events.send(HubEvent::Output(chunk));
        true
    }

    /// Marks the shell ended, tells the viewers, and stops both pumps (which hangs up the PTY).
    fn end(&self, reason: String) {
        self.end_with(reason, false)
    }

    /// Like `end`; with `restarting`, viewers are told to come back rather than give up.
    fn end_with(&self, reason: String, restarting: bool) {
        {
            let mut log = lock(&self.log);
            if log.ended.is_some() {
                return;
            }
            log.ended = Some(reason.clone());
            let event = if restarting { HubEvent::Restarting(reason.clone()) } else { HubEvent::Ended(reason.clone()) };
            let _ = self.events.send(event);
        }
        tracing::info!(%reason, "shell ended");
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

async fn pump_input(
    mut input: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
    mut keys: mpsc::Receiver<Bytes>,
    activity: Arc<Mutex<std::time::Instant>>,
) {
    while let Some(bytes) = keys.recv().await {
        *lock(&activity) = std::time::Instant::now();
        if let Err(err) = async { input.write_all(&bytes).await?; input.flush().await }.await {
            tracing::debug!(%err, "writing to the shell failed");
            break;
        }
    }
}

async fn pump_output(
    shell: Arc<Shell>,
    mut output: std::pin::Pin<Box<dyn AsyncRead + Send>>,
    mut exited: oneshot::Receiver<String>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    let reason = loop {
        tokio::select! {
            read = output.read(&mut buf) => match read {
                Ok(0) | Err(_) => break None,
                Ok(n) => {
                    shell.publish(Bytes::copy_from_slice(&buf[..n]));
                }
            },
            reason = &mut exited => {
                let drain = async {
                    while let Ok(n @ 1..) = output.read(&mut buf).await {
                        shell.publish(Bytes::copy_from_slice(&buf[..n]));
                    }
                };
                let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, drain).await;
                break Some(reason.unwrap_or_else(|_| "the shell exited".to_owned()));
            }
        }
    };
    let reason = match reason {
        Some(reason) => reason,
        None => match tokio::time::timeout(WAIT_FOR_EXIT_REASON, exited).await {
            Ok(Ok(reason)) => reason,
            _ => "the shell exited".to_owned(),
        },
    };
    shell.end(reason);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::testing::FakePty;

    fn config(backlog: usize) -> TerminalConfig {
        TerminalConfig { viewer_backlog: backlog, ..TerminalConfig::default() }
    }

    /// A hub whose `open` hands out the given fake PTYs' terminals and counts the calls.
    async fn attach(hub: &TerminalHub, mode: ViewerMode, pty: &mut Option<Terminal>, opens: &AtomicUsize) -> Viewer {
        hub.attach(mode, || async {
            opens.fetch_add(1, Ordering::SeqCst);
            Ok(pty.take().expect("the hub opened a second shell"))
        })
        .await
        .unwrap()
    }

    async fn next_output(viewer: &mut Viewer) -> Bytes {
        match tokio::time::timeout(Duration::from_secs(5), viewer.events.recv()).await {
            Ok(Ok(HubEvent::Output(bytes))) => bytes,
            other => panic!("expected output, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_viewer_that_reattaches_gets_the_recent_output_replayed() {
        let hub = TerminalHub::new("s1", config(16));
        let (terminal, mut pty) = FakePty::new();
        let (mut terminal, opens) = (Some(terminal), AtomicUsize::new(0));
        let mut first = attach(&hub, ViewerMode::Interactive, &mut terminal, &opens).await;
        pty.print(b"$ docker ps\r\n").await;
        assert_eq!(next_output(&mut first).await, "$ docker ps\r\n");
        drop(first);

        let second = attach(&hub, ViewerMode::Interactive, &mut terminal, &opens).await;
        assert_eq!(second.replay, "$ docker ps\r\n");
        assert_eq!(opens.load(Ordering::SeqCst), 1, "the shell is kept across reconnects");
    }

    #[tokio::test]
    async fn two_viewers_both_get_the_output_and_input_reaches_the_shell() {
        let hub = TerminalHub::new("s1", config(16));
        let (terminal, mut pty) = FakePty::new();
        let (mut terminal, opens) = (Some(terminal), AtomicUsize::new(0));
        let mut a = attach(&hub, ViewerMode::Interactive, &mut terminal, &opens).await;
        let mut b = attach(&hub, ViewerMode::ReadOnly, &mut terminal, &opens).await;
        pty.print(b"hello").await;
        assert_eq!(next_output(&mut a).await, "hello");
        assert_eq!(next_output(&mut b).await, "hello");

        assert!(b.input().is_none(), "a read-only viewer has no input channel");
        a.input().unwrap().send(Bytes::from_static(b"ls\r")).await.unwrap();
        assert_eq!(pty.typed(3).await, "ls\r");
        a.resize(100, 30).unwrap();
        b.resize(10, 10).unwrap();
        assert_eq!(pty.sizes(), vec![(100, 30)], "read-only viewers do not resize");
    }

    #[tokio::test]
    async fn a_lagging_viewer_skips_output_without_holding_up_the_others() {
        let hub = TerminalHub::new("s1", config(4));
        let (terminal, mut pty) = FakePty::new();
        let (mut terminal, opens) = (Some(terminal), AtomicUsize::new(0));
        let mut slow = attach(&hub, ViewerMode::Interactive, &mut terminal, &opens).await;
        let mut fast = attach(&hub, ViewerMode::Interactive, &mut terminal, &opens).await;
        for i in 0..50 {
            let line = format!("line {i}\n");
            pty.print(line.as_bytes()).await;
            assert_eq!(next_output(&mut fast).await, line);
        }
        assert!(matches!(slow.events.recv().await, Err(broadcast::error::RecvError::Lagged(_))));
        assert_eq!(next_output(&mut slow).await, "line 46\n", "the slow viewer skips to recent output");
    }

    #[tokio::test]
    async fn when_the_shell_exits_viewers_are_told_and_the_next_attach_starts_a_new_shell() {
        let hub = TerminalHub::new("s1", config(16));
        let (first_terminal, pty) = FakePty::new();
        let (mut terminal, opens) = (Some(first_terminal), AtomicUsize::new(0));
        let mut viewer = attach(&hub, ViewerMode::Interactive, &mut terminal, &opens).await;
        pty.exit("logout");
        let event = tokio::time::timeout(Duration::from_secs(5), viewer.events.recv()).await.unwrap();
        assert_eq!(event.unwrap(), HubEvent::Ended("logout".into()));
        assert!(!hub.has_live_shell().await);

        let (second_terminal, _pty2) = FakePty::new();
        terminal = Some(second_terminal);
        let fresh = attach(&hub, ViewerMode::Interactive, &mut terminal, &opens).await;
        assert!(fresh.ended.is_none());
        assert_eq!(opens.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn notices_sent_while_no_shell_runs_reach_the_next_viewer_newest_kept() {
        let hub = TerminalHub::new("s1", config(16));
        // No viewer has attached yet, so no shell runs: the notices are kept...
        for i in 0..KEPT_NOTICES + 2 {
            hub.notice(&format!("notice {i}")).await;
        }
        let (terminal, _pty) = FakePty::new();
        let (mut terminal, opens) = (Some(terminal), AtomicUsize::new(0));
        let viewer = attach(&hub, ViewerMode::Interactive, &mut terminal, &opens).await;
        // ...and the first viewer reads the newest of them, in order.
        let replay = String::from_utf8_lossy(&viewer.replay).into_owned();
        assert!(!replay.contains("notice 0\x1b") && !replay.contains("notice 1\x1b"), "bounded: {replay:?}");
        let shown: Vec<usize> = (2..KEPT_NOTICES + 2).map(|i| replay.find(&format!("notice {i}\x1b")).expect("kept")).collect();
        assert!(shown.windows(2).all(|w| w[0] < w[1]), "in order: {replay:?}");

        // Once the shell ended, notices are kept again for the shell the next viewer starts.
        hub.shutdown("logout").await;
        hub.notice("after the end").await;
        let (terminal, _pty2) = FakePty::new();
        let mut terminal = Some(terminal);
        let next = attach(&hub, ViewerMode::Interactive, &mut terminal, &opens).await;
        let replay = String::from_utf8_lossy(&next.replay).into_owned();
        assert!(replay.contains("after the end"), "{replay:?}");
        assert!(!replay.contains("notice 9"), "delivered notices are not repeated: {replay:?}");
    }

    #[tokio::test]
    async fn shutdown_ends_the_shell_for_every_viewer() {
        let hub = TerminalHub::new("s1", config(16));
        let (terminal, _pty) = FakePty::new();
        let (mut terminal, opens) = (Some(terminal), AtomicUsize::new(0));
        let mut viewer = attach(&hub, ViewerMode::Interactive, &mut terminal, &opens).await;
        hub.shutdown("the session was deleted").await;
        assert_eq!(viewer.events.recv().await.unwrap(), HubEvent::Ended("the session was deleted".into()));
    }
}
