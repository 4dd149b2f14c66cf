//! The `docklab` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::ServerConfig;

#[derive(Debug, Parser)]
#[command(name = "docklab", version, about = "A self-hosted web lab for learning Docker")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prepare this host: check the kernel, install packages, build the node image.
    Setup(SetupArgs),
    /// Run the web server (as root: it creates session machines).
    Serve(ServeArgs),
    /// The base images docklab builds from Debian packages and serves to sessions.
    Images(ImagesArgs),
    /// Remove session machines no running server or test owns (what a crash left), or, with
    /// `--all` and no server running, every machine and docklab's network.
    Reap(ReapArgs),
    /// Instructor accounts (for classes).
    Instructor(InstructorArgs),
}

#[derive(Debug, Args)]
pub struct InstructorArgs {
    /// Where docklab keeps its database (`docklab.db`).
    #[arg(long, env = "DOCKLAB_STATE_DIR", default_value = "/var/lib/docklab", global = true)]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub command: InstructorCommand,
}

#[derive(Debug, Subcommand)]
pub enum InstructorCommand {
    /// Add an instructor (or set their password), reading the password from standard input.
    Add { name: String },
}

#[derive(Debug, Args)]
pub struct ReapArgs {
    /// Where docklab keeps images and session state.
    #[arg(long, env = "DOCKLAB_STATE_DIR", default_value = "/var/lib/docklab")]
    pub state_dir: PathBuf,
    /// Every machine, and the bridge and firewall table too (refused while a server runs).
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Where docklab keeps images and session state.
    #[arg(long, env = "DOCKLAB_STATE_DIR", default_value = "/var/lib/docklab", global = true)]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub command: ImagesCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Show every image: name and tags, size, digest, recipe.
    List,
    /// Build images (all, or those named, e.g. `golang` or `debian:bookworm`); cached ones are skipped.
    Build {
        names: Vec<String>,
        /// Rebuild even when the recipe has not changed.
        #[arg(long)]
        force: bool,
        /// How many images to build at once.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
        jobs: u16,
    },
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Where docklab keeps images and session state.
    #[arg(long, env = "DOCKLAB_STATE_DIR", default_value = "/var/lib/docklab")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DOCKLAB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where docklab keeps images and session state.
    #[arg(long, env = "DOCKLAB_STATE_DIR", default_value = "/var/lib/docklab")]
    pub state_dir: PathBuf,
    /// Course content to serve instead of the built-in lessons (a folder of `day-NN-slug/`).
    #[arg(long, env = "DOCKLAB_LESSONS_DIR")]
    pub lessons_dir: Option<PathBuf>,
    /// How long a session lives (e.g. 90m, 2h, 1h30m).
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    pub session_ttl: Duration,
    /// A session with no activity (keystrokes, API commands) for this long ends, e.g. 30m.
    #[arg(long, env = "DOCKLAB_IDLE_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// End every session when the server stops. Without it, machines and shells keep running
    /// and the next `docklab serve` on this state directory adopts them (browsers reattach).
    #[arg(long, env = "DOCKLAB_END_SESSIONS_ON_EXIT")]
    pub end_sessions_on_exit: bool,
    /// If another server is serving from this state directory, wait for it to stop instead of
    /// refusing to start (for hand-overs and for test runs that take turns).
    #[arg(long)]
    pub wait: bool,
    /// Machines to keep started ahead of demand, so that learners' sessions start at once
    /// (each idle machine holds about 45 MiB). 0 starts every session when it is asked for.
    #[arg(long, env = "DOCKLAB_WARM_MACHINES", default_value_t = 4)]
    pub warm_machines: usize,
    /// Longest timeout a client may ask for on exec (at most 10m).
    #[arg(long, default_value = "10m", value_parser = parse_exec_timeout)]
    pub exec_timeout_max: Duration,
    /// Most sessions at once. Default: what this host's memory holds, at 200 MiB per idle
    /// session (measured: about 120 MiB) after keeping 2 GiB for the host.
    #[arg(long, env = "DOCKLAB_MAX_SESSIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions: Option<u32>,
    /// Make the session registry a pull-through cache of this registry, for hosts that reach the
    /// internet: images docklab does not build are fetched from it, kept, and served from the
    /// cache afterwards. E.g. https://registry-1.docker.io (Docker Hub).
    #[arg(long, env = "DOCKLAB_REGISTRY_UPSTREAM", value_parser = parse_registry_upstream)]
    pub registry_upstream: Option<String>,
    /// The URL browsers use for docklab when it is reached by a name (e.g. through a reverse
    /// proxy at https://lab.example.org); repeat for several. Requests for any other name are
    /// refused (DNS rebinding); IP addresses and localhost always work.
    #[arg(long = "public-url", env = "DOCKLAB_PUBLIC_URL", value_delimiter = ',', value_parser = crate::origin::parse_public_url)]
    pub public_urls: Vec<String>,
    /// A second name for this server (pointing at the same address or proxy) that serves port
    /// previews and nothing else, e.g. https://preview.lab.example.org: a learner's app then runs
    /// on an origin of its own as well as in its sandbox. It must not be a --public-url's name.
    /// Default: previews on docklab's own origin, sandboxed.
    #[arg(long = "preview-url", env = "DOCKLAB_PREVIEW_URL", value_parser = crate::origin::parse_public_url)]
    pub preview_url: Option<String>,
    /// HTTP connections one client address may hold open at once (0: no cap). Behind a reverse
    /// proxy every browser comes from the proxy's address: raise it to what the proxy may open.
    #[arg(long, env = "DOCKLAB_MAX_CONNECTIONS_PER_CLIENT", default_value_t = sandbox::listen::Limits::API.per_client)]
    pub max_connections_per_client: usize,
}

/// Checks an upstream registry URL: scheme and host (and port), nothing else.
pub fn parse_registry_upstream(text: &str) -> Result<String, String> {
    let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"));
    match rest.map(|r| r.trim_end_matches('/')) {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => Ok(text.trim_end_matches('/').to_string()),
        _ => Err(format!("{text:?} is not a registry URL: give its scheme and host, e.g. https://registry-1.docker.io")),
    }
}

/// How many sessions a host with `mem_total` bytes of memory holds by default.
pub fn default_max_sessions(mem_total: u64) -> usize {
    let usable = mem_total.saturating_sub(2 << 30);
    ((usable / crate::config::SESSION_MEMORY_BUDGET) as usize).clamp(1, 4000)
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map(|kib| kib * 1024)
        .unwrap_or(4 << 30)
}

impl ServeArgs {
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            session_ttl: self.session_ttl,
            exec_timeout_max: self.exec_timeout_max,
            max_sessions: self.max_sessions.map(|m| m as usize).unwrap_or_else(|| default_max_sessions(host_memory())),
            end_sessions_on_exit: self.end_sessions_on_exit,
            idle_timeout: self.idle_timeout,
            warm_machines: self.warm_machines,
            connections_per_client: self.max_connections_per_client,
            site: crate::ports::with_preview_host(crate::origin::SiteNames::new(&self.public_urls), self.preview_url.as_deref()),
            preview_url: self.preview_url.clone(),
            ..ServerConfig::default()
        }
    }
}

/// Parses durations like `30s`, `90m`, `2h`, `1h30m` (a bare number means seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration: write e.g. 30s, 90m, 2h or 1h30m");
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let (mut total, mut number) = (0u64, String::new());
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let value: u64 = number.parse().map_err(|_| bad())?;
        total = value.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

fn parse_exec_timeout(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() || duration > Duration::from_secs(600) {
        return Err(format!("{text:?}: the exec timeout limit must be between 1s and 10m"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("0m").is_err());
        assert!(parse_exec_timeout("11m").is_err());
    }

    #[test]
    fn serve_defaults_match_the_docs() {
        let cli = Cli::try_parse_from(["docklab", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        let config = args.server_config();
        assert_eq!(config.session_ttl, Duration::from_secs(7200));
        assert_eq!(config.exec_timeout_max, Duration::from_secs(600));
        assert_eq!(config.max_sessions, default_max_sessions(host_memory()));
        assert_eq!(config.idle_timeout, Duration::from_secs(1800));
        assert!(!config.end_sessions_on_exit, "sessions survive a restart by default");
        let cli = Cli::try_parse_from(["docklab", "serve", "--max-sessions", "7"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!(args.server_config().max_sessions, 7);
    }

    #[test]
    fn registry_upstream_takes_a_scheme_and_host_only() {
        let cli = Cli::try_parse_from(["docklab", "serve", "--registry-upstream", "https://registry-1.docker.io/"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!(args.registry_upstream.as_deref(), Some("https://registry-1.docker.io"));
        assert_eq!(parse_registry_upstream("http://127.0.0.1:5000"), Ok("http://127.0.0.1:5000".into()));
        for bad in ["registry-1.docker.io", "https://", "https://x/v2/", "ftp://x"] {
            let err = Cli::try_parse_from(["docklab", "serve", "--registry-upstream", bad]).unwrap_err().to_string();
            assert!(err.contains("not a registry URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn capacity_follows_host_memory() {
        // 24 GiB, as on the project's machines: at least the 100 idle sessions the design asks for.
        assert_eq!(default_max_sessions(24 << 30), 112);
        assert_eq!(default_max_sessions(1 << 30), 1);
    }
}
