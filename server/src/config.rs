//! Server settings, built from the command line in `main.rs` and passed in (no globals).

use std::time::Duration;

/// Memory one idle session is budgeted at when sizing the default capacity (`cli`) and a class's
/// room (`classroom::capacity`).
pub const SESSION_MEMORY_BUDGET: u64 = 200 << 20;

/// How the server runs sessions and terminals.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a session lives after creation before the reaper destroys it.
    pub session_ttl: Duration,
    /// Largest `timeout_s` accepted by `POST /api/sessions/{id}/exec`.
    pub exec_timeout_max: Duration,
    /// Most sessions (starting or ready) at once; past that, creation answers `out_of_capacity`.
    pub max_sessions: usize,
    /// How often the reaper looks for expired sessions.
    pub reap_interval: Duration,
    /// Session creations allowed per client address: this many a minute on average...
    pub create_per_minute: u32,
    /// ...and this many at once.
    pub create_burst: u32,
    /// A session with no keystroke and no API command for this long ends.
    pub idle_timeout: Duration,
    /// How long before an idle or hard end the learner's terminal gets a warning.
    pub end_warning: Duration,
    /// Whether stopping the server ends every session. When false (`docklab serve`'s default),
    /// machines and shells keep running and the next server adopts them.
    pub end_sessions_on_exit: bool,
    /// Machines kept started ahead of demand (the warm pool); 0 starts every session cold.
    pub warm_machines: usize,
    /// HTTP connections open at once from one client address (0: no cap). Behind a reverse
    /// proxy every browser shares its address: raise this or set 0 there.
    pub connections_per_client: usize,
    /// The names docklab answers to and the origins trusted with the terminal (`--public-url`).
    pub site: crate::origin::SiteNames,
    /// `--preview-url`: the origin (another name for this server) that serves port previews and
    /// nothing else. None: previews are served on docklab's own origin, sandboxed.
    pub preview_url: Option<String>,
    pub terminal: TerminalConfig,
}

/// Terminal WebSocket settings.
#[derive(Debug, Clone)]
pub struct TerminalConfig {
    /// Recent output kept per session and replayed to a viewer that attaches.
    pub replay_bytes: usize,
    /// Output chunks buffered per viewer; a viewer further behind skips ahead.
    pub viewer_backlog: usize,
    /// Keystroke chunks buffered on the way to the shell.
    pub input_backlog: usize,
    /// Largest WebSocket message accepted from a client.
    pub max_message_bytes: usize,
    /// Largest binary frame sent to a client; larger output is split.
    pub max_output_frame: usize,
    /// Interval between keepalive pings; a viewer silent for three intervals is dropped.
    pub ping_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session_ttl: Duration::from_secs(2 * 3600),
            exec_timeout_max: Duration::from_secs(600),
            max_sessions: 100,
            reap_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30 * 60),
            create_per_minute: 20,
            create_burst: 10,
            end_warning: Duration::from_secs(5 * 60),
            end_sessions_on_exit: true,
            warm_machines: 0,
            connections_per_client: sandbox::listen::Limits::API.per_client,
            site: crate::origin::SiteNames::default(),
            preview_url: None,
            terminal: TerminalConfig::default(),
        }
    }
}

impl Default for TerminalConfig {
    fn default() -> Self {
        TerminalConfig {
            replay_bytes: 64 * 1024,
            viewer_backlog: 256,
            input_backlog: 64,
            max_message_bytes: 64 * 1024,
            max_output_frame: 16 * 1024,
            ping_interval: Duration::from_secs(20),
        }
    }
}
