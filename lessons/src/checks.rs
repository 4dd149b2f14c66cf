//! Typed checks: what a task's `checks = [...]` may say, parsed and validated at load.
//!
//! Each check is a TOML table with a `kind` and the fields of that kind; unknown kinds and unknown
//! fields are refused (toml's error names the line). The grader in the server evaluates them
//! against the session's Docker engine and with probes run inside the session machine.
//!
//! ```toml
//! checks = [
//!   { kind = "network_exists", network = "finance-net", driver = "bridge" },
//!   { kind = "container_networks", container = "finance", networks = ["finance-net"] },
//!   { kind = "not_reachable", from = "login", to = "finance", by = "ip" },
//! ]
//! ```

use serde::{Deserialize, Serialize};

/// Longest a `script` check may run, in seconds.
pub const MAX_SCRIPT_TIMEOUT_S: u64 = 60;
/// Default `script` timeout, in seconds.
pub const DEFAULT_SCRIPT_TIMEOUT_S: u64 = 10;

/// One thing a task requires of the session, checked against the real Docker engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// A named volume exists (optionally with this driver).
    VolumeExists { volume: String, driver: Option<String> },
    /// No volume of this name exists.
    VolumeAbsent { volume: String },
    /// `container` has something mounted at `path`, of type `as` (volume or bind).
    VolumeMounted {
        container: String,
        path: String,
        #[serde(rename = "as")]
        mount_type: MountType,
        /// The volume's name (for `as = "volume"`) or the host path (for `as = "bind"`).
        source: Option<String>,
        /// Which flag the learner must have used: `--mount` or `-v`.
        flag: Option<MountFlag>,
        read_only: Option<bool>,
    },
    /// A file's content: in a volume, in a container (running or not), or in the machine itself.
    FileContent {
        volume: Option<String>,
        container: Option<String>,
        /// Inside the volume (relative), the container (absolute) or the machine (absolute or `~/…`).
        path: String,
        contains: Option<String>,
        /// The whole file, ignoring one trailing newline.
        equals: Option<String>,
    },
    /// A network exists (optionally with this driver).
    NetworkExists { network: String, driver: Option<String> },
    /// `container` is attached to these networks: exactly these, or at least these.
    ContainerNetworks {
        container: String,
        networks: Vec<String>,
        #[serde(default = "yes")]
        exactly: bool,
    },
    /// From inside container `from`, container `to` answers a ping.
    Reachable {
        from: String,
        to: String,
        #[serde(default)]
        by: Address,
    },
    /// From inside container `from`, container `to` does not answer.
    NotReachable {
        from: String,
        to: String,
        #[serde(default)]
        by: Address,
    },
    /// A published port answers an HTTP GET, from the machine, with text containing `contains`.
    PortHttp {
        port: u16,
        /// The container that must be the one publishing `port` (another container's binding of
        /// the same port does not count).
        container: Option<String>,
        #[serde(default = "root_path")]
        path: String,
        contains: String,
    },
    /// An image with this reference exists (`greeter:1`; a missing tag means `latest`).
    ImageExists { image: String },
    /// The image is smaller than `mb` megabytes (10^6 bytes, as `docker image ls` shows them).
    ImageSizeBelow { image: String, mb: f64 },
    /// No shell in the image: none of `/bin/sh`, `/bin/bash`, `/bin/ash`, `/bin/busybox`.
    ImageNoShell { image: String },
    /// The image's final stage was built on `base` (`scratch`, or a local image such as `busybox`).
    ImageBase { image: String, base: String },
    /// The learner's Dockerfile, read from the machine.
    Dockerfile {
        path: String,
        min_stages: Option<u32>,
        max_stages: Option<u32>,
        /// At least one `COPY --from=…` (true) or none (false).
        copy_from: Option<bool>,
        /// The last `FROM`'s image (`scratch`, `busybox`, …).
        final_base: Option<String>,
        /// The image built from this file: its history must end with this file's last stage
        /// (a right Dockerfile left unbuilt next to an image built another way does not count).
        image: Option<String>,
    },
    /// Parts of an image's configuration; only the fields given are checked.
    ImageConfig {
        image: String,
        entrypoint: Option<Vec<String>>,
        cmd: Option<Vec<String>>,
        user: Option<String>,
        /// Whether the image declares a health check (other than `NONE`).
        healthcheck: Option<bool>,
        /// Exposed ports such as `"80/tcp"` (a bare number means tcp); exactly these.
        exposed_ports: Option<Vec<String>>,
    },
    /// A container's state, exit, restarts and limits; only the fields given are checked.
    ContainerState {
        container: String,
        state: Option<ContainerStatus>,
        exit_code: Option<i64>,
        oom_killed: Option<bool>,
        /// The container was created from this image (as typed: `busybox` matches `busybox:latest`).
        image: Option<String>,
        /// Docker restarted it at least this many times.
        min_restarts: Option<u64>,
        /// One of these restart policies (`no`, `always`, `on-failure`, `unless-stopped`).
        restart_policy: Option<OneOrMany>,
        /// Memory limit in MiB (`--memory 32m`).
        memory_mb: Option<u64>,
        /// CPU limit in CPUs (`--cpus 0.5`).
        cpus: Option<f64>,
    },
    /// No container of this name exists.
    ContainerAbsent { container: String },
    /// Some container (by name, or any container of `image`) printed text containing `contains`.
    ContainerLogs {
        container: Option<String>,
        image: Option<String>,
        contains: String,
    },
    /// The engine reported this event since the session began (`pause`, `unpause`, `kill`, …).
    EventSeen {
        #[serde(default)]
        object: EventObject,
        /// The container's, volume's, network's or image's name.
        name: String,
        action: String,
        /// For container events: the image the container was created from.
        image: Option<String>,
    },
    /// A shell script run in the machine; exit 0 passes and its output is the detail.
    Script {
        run: String,
        #[serde(default = "default_script_timeout")]
        timeout_s: u64,
        /// Rerun every tick (the default: scripts may read files, which change without engine
        /// events). `false` for scripts that only ask the engine, and for any script that runs a
        /// container (which must carry the label `docklab.grader=1`, so that its own events do
        /// not set off another grading pass).
        #[serde(default = "yes")]
        on_tick: bool,
    },
}

fn yes() -> bool {
    true
}

fn root_path() -> String {
    "/".to_owned()
}

fn default_script_timeout() -> u64 {
    DEFAULT_SCRIPT_TIMEOUT_S
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Volume,
    Bind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountFlag {
    #[serde(rename = "--mount")]
    Mount,
    #[serde(rename = "-v")]
    V,
}

/// How a reachability probe names its target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Address {
    #[default]
    Name,
    Ip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
}

impl ContainerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Paused => "paused",
            ContainerStatus::Restarting => "restarting",
            ContainerStatus::Exited => "exited",
            ContainerStatus::Dead => "dead",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventObject {
    #[default]
    Container,
    Volume,
    Network,
    Image,
}

impl EventObject {
    /// The engine's name for the type (`type` in an event).
    pub fn as_str(self) -> &'static str {
        match self {
            EventObject::Container => "container",
            EventObject::Volume => "volume",
            EventObject::Network => "network",
            EventObject::Image => "image",
        }
    }

    /// Actions the engine reports for this type (Docker 20.10), for validating content.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            EventObject::Container => &[
                "attach", "commit", "copy", "create", "destroy", "detach", "die", "exec_create",
                "exec_detach", "exec_start", "exec_die", "export", "health_status", "kill", "oom",
                "pause", "rename", "resize", "restart", "start", "stop", "top", "unpause", "update",
            ],
            EventObject::Volume => &["create", "destroy", "mount", "unmount"],
            EventObject::Network => &["create", "connect", "disconnect", "destroy", "remove"],
            EventObject::Image => &["delete", "import", "load", "pull", "push", "save", "tag", "untag"],
        }
    }
}

/// One string or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// When a check's answer can change, so the live grader knows when to ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Only when the engine reports an event (containers, volumes, networks, images).
    Events,
    /// Also on the periodic tick: files and scripts change without engine events.
    Tick,
}

impl Check {
    /// The kind, as written in `exercise.toml`.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::VolumeExists { .. } => "volume_exists",
            Check::VolumeAbsent { .. } => "volume_absent",
            Check::VolumeMounted { .. } => "volume_mounted",
            Check::FileContent { .. } => "file_content",
            Check::NetworkExists { .. } => "network_exists",
            Check::ContainerNetworks { .. } => "container_networks",
            Check::Reachable { .. } => "reachable",
            Check::NotReachable { .. } => "not_reachable",
            Check::PortHttp { .. } => "port_http",
            Check::ImageExists { .. } => "image_exists",
            Check::ImageSizeBelow { .. } => "image_size_below",
            Check::ImageNoShell { .. } => "image_no_shell",
            Check::ImageBase { .. } => "image_base",
            Check::Dockerfile { .. } => "dockerfile",
            Check::ImageConfig { .. } => "image_config",
            Check::ContainerState { .. } => "container_state",
            Check::ContainerAbsent { .. } => "container_absent",
            Check::ContainerLogs { .. } => "container_logs",
            Check::EventSeen { .. } => "event_seen",
            Check::Script { .. } => "script",
        }
    }

    pub fn trigger(&self) -> Trigger {
        match self {
            Check::Script { on_tick: false, .. } => Trigger::Events,
            Check::FileContent { .. } | Check::Dockerfile { .. } | Check::Script { .. } | Check::PortHttp { .. } => {
                Trigger::Tick
            }
            // Logs grow without events while a container runs.
            Check::ContainerLogs { .. } => Trigger::Tick,
            _ => Trigger::Events,
        }
    }

    /// Checks what serde cannot: field combinations and values. `Err` is a sentence for the author.
    pub fn validate(&self) -> Result<(), String> {
        let non_empty = |field: &str, value: &str| {
            if value.trim().is_empty() {
                Err(format!("`{field}` must not be empty"))
            } else {
                Ok(())
            }
        };
        match self {
            Check::VolumeExists { volume, .. } | Check::VolumeAbsent { volume } => non_empty("volume", volume),
            Check::VolumeMounted { container, path, .. } => {
                non_empty("container", container)?;
                absolute("path", path)
            }
            Check::FileContent { volume, container, path, contains, equals } => {
                match (volume, container) {
                    (Some(_), Some(_)) => return Err("give `volume` or `container`, not both".into()),
                    (Some(v), None) => {
                        non_empty("volume", v)?;
                        if path.starts_with('/') || path.split('/').any(|p| p == "..") {
                            return Err(format!("`path` {path:?} must be relative to the volume's root, without `..`"));
                        }
                    }
                    (None, Some(c)) => {
                        non_empty("container", c)?;
                        absolute("path", path)?;
                    }
                    (None, None) => {
                        if !(path.starts_with('/') || path.starts_with("~/")) {
                            return Err(format!("`path` {path:?} in the machine must start with `/` or `~/`"));
                        }
                    }
                }
                match (contains, equals) {
                    (None, None) => Err("give `contains` or `equals`".into()),
                    (Some(_), Some(_)) => Err("give `contains` or `equals`, not both".into()),
                    _ => Ok(()),
                }
            }
            Check::NetworkExists { network, .. } => non_empty("network", network),
            Check::ContainerNetworks { container, networks, .. } => {
                non_empty("container", container)?;
                if networks.is_empty() {
                    return Err("`networks` must list at least one network".into());
                }
                Ok(())
            }
            Check::Reachable { from, to, .. } | Check::NotReachable { from, to, .. } => {
                non_empty("from", from)?;
                non_empty("to", to)?;
                if from == to {
                    return Err("`from` and `to` must be different containers".into());
                }
                Ok(())
            }
            Check::PortHttp { port, path, contains, .. } => {
                if *port == 0 {
                    return Err("`port` must be 1 to 65535".into());
                }
                absolute("path", path)?;
                if path.chars().any(|c| c.is_whitespace() || c == '\'' || c == '"') {
                    return Err(format!("`path` {path:?} must be a plain URL path"));
                }
                non_empty("contains", contains)
            }
            Check::ImageExists { image } | Check::ImageNoShell { image } => non_empty("image", image),
            Check::ImageSizeBelow { image, mb } => {
                non_empty("image", image)?;
                if !(mb.is_finite() && *mb > 0.0) {
                    return Err("`mb` must be a positive number".into());
                }
                Ok(())
            }
            Check::ImageBase { image, base } => {
                non_empty("image", image)?;
                non_empty("base", base)
            }
            Check::Dockerfile { path, min_stages, max_stages, copy_from, final_base, .. } => {
                if !(path.starts_with('/') || path.starts_with("~/")) {
                    return Err(format!("`path` {path:?} must start with `/` or `~/`"));
                }
                if let (Some(min), Some(max)) = (min_stages, max_stages) {
                    if min > max {
                        return Err("`min_stages` is above `max_stages`".into());
                    }
                }
                if min_stages.is_none() && max_stages.is_none() && copy_from.is_none() && final_base.is_none() {
                    return Err("say what to check: `min_stages`, `max_stages`, `copy_from` or `final_base`".into());
                }
                Ok(())
            }
            Check::ImageConfig { image, entrypoint, cmd, user, healthcheck, exposed_ports } => {
                non_empty("image", image)?;
                if entrypoint.is_none()
                    && cmd.is_none()
                    && user.is_none()
                    && healthcheck.is_none()
                    && exposed_ports.is_none()
                {
                    return Err("say what to check: `entrypoint`, `cmd`, `user`, `healthcheck` or `exposed_ports`".into());
                }
                Ok(())
            }
            Check::ContainerState { container, restart_policy, cpus, .. } => {
                non_empty("container", container)?;
                if let Some(policies) = restart_policy {
                    for p in policies.to_vec() {
                        if !["no", "always", "on-failure", "unless-stopped"].contains(&p.as_str()) {
                            return Err(format!(
                                "`restart_policy` {p:?} is not one of no, always, on-failure, unless-stopped"
                            ));
                        }
                    }
                }
                if cpus.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
                    return Err("`cpus` must be a positive number".into());
                }
                Ok(())
            }
            Check::ContainerAbsent { container } => non_empty("container", container),
            Check::ContainerLogs { container, image, contains } => {
                if container.is_none() == image.is_none() {
                    return Err("give `container` or `image` (one of them)".into());
                }
                non_empty("contains", contains)
            }
            Check::EventSeen { object, name, action, image } => {
                non_empty("name", name)?;
                if !object.actions().contains(&action.as_str()) {
                    return Err(format!(
                        "{} events have no action {action:?}; they are: {}",
                        object.as_str(),
                        object.actions().join(", ")
                    ));
                }
                if image.is_some() && *object != EventObject::Container {
                    return Err("`image` only applies to container events".into());
                }
                Ok(())
            }
            Check::Script { run, timeout_s, on_tick } => {
                non_empty("run", run)?;
                if *on_tick && run.contains("docker run") {
                    return Err("a script that runs a container must say `on_tick = false` (and label the container `docklab.grader=1`)".into());
                }
                if run.contains("docker run") && !run.contains("docklab.grader=1") {
                    return Err("a container a script runs must carry `--label docklab.grader=1`, so that its events do not set off grading again".into());
                }
                if !(1..=MAX_SCRIPT_TIMEOUT_S).contains(timeout_s) {
                    return Err(format!("`timeout_s` must be 1 to {MAX_SCRIPT_TIMEOUT_S} seconds"));
                }
                Ok(())
            }
        }
    }

    /// Whether this check asks about history (something that happened, decided from the engine's
    /// event sequence) rather than about the machine as it is now. A task made only of history
    /// checks is a history task (see [`crate::Task::history`]).
    pub fn is_history(&self) -> bool {
        matches!(self, Check::EventSeen { .. })
    }

    /// The container whose current instance a state check inspects, if any. Event checks in the
    /// same task about that container must then be met by that same instance.
    pub fn current_container(&self) -> Option<&str> {
        match self {
            Check::VolumeMounted { container, .. }
            | Check::ContainerNetworks { container, .. }
            | Check::ContainerState { container, .. } => Some(container),
            Check::FileContent { container: Some(c), .. } | Check::ContainerLogs { container: Some(c), .. } => Some(c),
            _ => None,
        }
    }

    /// Whether this check can pass before the learner has done anything: it only asks that
    /// something be absent. A task made only of such checks would be done from the start.
    pub fn passes_vacuously(&self) -> bool {
        matches!(self, Check::VolumeAbsent { .. } | Check::ContainerAbsent { .. })
    }
}

fn absolute(field: &str, path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(format!("`{field}` {path:?} must be an absolute path"))
    }
}
