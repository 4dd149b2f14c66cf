//! `docklab setup`: checks the host, installs the Debian packages docklab needs, and builds the
//! node image (the root filesystem every session machine is layered over) with mmdebstrap.
//! Idempotent: a step whose result is already there is skipped.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::images;

/// Debian packages the host needs.
/// (`nftables` holds the session firewall; `e2fsprogs` makes each machine's disk; `gcc` and
/// `libc6-dev` compile the hello-world image; `skopeo` is what the image tests pull with.)
pub const HOST_PACKAGES: &[&str] = &["mmdebstrap", "busybox-static", "uidmap", "iproute2", "nftables", "e2fsprogs", "gcc", "libc6-dev", "skopeo"];

/// Debian packages inside the node image.
pub const NODE_PACKAGES: &[&str] = &[
    "docker.io", "iproute2", "iputils-ping", "procps", "nano", "vim-tiny", "curl", "ca-certificates",
    "less", "bash-completion", "tini", "git", "jq", "tree", "netcat-openbsd", "dnsutils", "psmisc",
    // dockerd 20.10 decompresses pulled layers with unpigz when it is there: golang:1.19 pulls faster.
    "pigz",
];

/// Bumped whenever the node image's recipe (packages or files added) changes.
/// 3: no busybox preloaded (machines pull it from docklab's registry like any other image).
const NODE_RECIPE_VERSION: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("docklab setup must run as root (it installs packages and builds images); try: sudo docklab setup")]
    NotRoot,
    #[error("user namespaces are disabled on this host: set the sysctl user.max_user_namespaces above 0")]
    NoUserNamespaces,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error("cgroups: {0}")]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error("building an image: {0}")]
    Image(#[from] images::ImageError),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SetupError + 'a {
    move |source| SetupError::Io { what, path: path.to_path_buf(), source }
}

/// What stops this host from running session machines, if anything (root, user namespaces, cgroups).
pub fn check_host() -> Result<(), SetupError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(SetupError::NotRoot);
    }
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" || !Path::new("/proc/self/ns/user").exists() {
        return Err(SetupError::NoUserNamespaces);
    }
    crate::cgroup::Layout::detect(Path::new("/sys/fs/cgroup"))?;
    Ok(())
}

fn missing_packages(pkgs: &[&str]) -> Vec<String> {
    pkgs.iter()
        .filter(|p| {
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .map(|p| p.to_string())
        .collect()
}

/// Runs a command, passing each line it prints (on either stream) to `progress` as it comes.
fn run_streamed(cmd: &mut Command, what: &str, progress: &mut dyn FnMut(&str)) -> Result<(), SetupError> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SetupError::Command { what: what.into(), detail: e.to_string() })?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        }));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        }));
    }
    drop(tx);
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    for line in rx {
        progress(&format!("  {line}"));
        tail.push_back(line);
        if tail.len() > 5 {
            tail.pop_front();
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().map_err(|e| SetupError::Command { what: what.into(), detail: e.to_string() })?;
    if status.success() {
        Ok(())
    } else {
        Err(SetupError::Command { what: what.into(), detail: format!("{status}: {}", Vec::from(tail).join(" | ")) })
    }
}

fn install_packages(pkgs: &[&str], progress: &mut dyn FnMut(&str)) -> Result<(), SetupError> {
    let missing = missing_packages(pkgs);
    if missing.is_empty() {
        progress(&format!("[ok] host packages present: {}", pkgs.join(", ")));
        return Ok(());
    }
    progress(&format!("[..] installing host packages: {}", missing.join(", ")));
    run_streamed(Command::new("apt-get").args(["update", "-q"]), "apt-get update", &mut |_| {})?;
    run_streamed(
        Command::new("apt-get").args(["install", "-y", "-q", "--no-install-recommends"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
        progress,
    )?;
    progress("[ok] host packages installed");
    Ok(())
}

fn recipe_id() -> String {
    format!("node v{NODE_RECIPE_VERSION}: bookworm minbase + {}", NODE_PACKAGES.join(","))
}

/// Builds the node image into `<state>/images/node` unless the same recipe is already there.
pub fn build_node_image(state_dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), SetupError> {
    let images = state_dir.join("images");
    let node = images.join("node");
    let marker = node.join("etc/docklab/recipe");
    let recipe = recipe_id();
    if fs::read_to_string(&marker).map(|s| s.trim() == recipe).unwrap_or(false) {
        progress(&format!("[ok] node image is up to date ({})", node.display()));
        return Ok(());
    }
    fs::create_dir_all(&images).map_err(io_err("creating", &images))?;
    let tmp = images.join("node.building");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err("removing", &tmp))?;
    }
    progress("[..] building the node image with mmdebstrap (Debian bookworm + docker.io; about a minute)");
    let started = std::time::Instant::now();
    run_streamed(
        Command::new("mmdebstrap")
            .args(["--variant=minbase", "--verbose"])
            .arg(format!("--include={}", NODE_PACKAGES.join(",")))
            .args(["--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright"])
            .args(["bookworm"])
            .arg(&tmp),
        "mmdebstrap",
        &mut |l: &str| {
            if l.contains("I: ") || l.contains("E: ") {
                progress(l)
            }
        },
    )?;
    customize_node(&tmp)?;
    fs::create_dir_all(tmp.join("etc/docklab")).map_err(io_err("creating", &tmp))?;
    fs::write(tmp.join("etc/docklab/recipe"), format!("{recipe}\n")).map_err(io_err("writing", &marker))?;
    // Swap in the new image. Machines still running keep the old one open through their mounts.
    // Running machines keep using the old image as their lower layer, so it is retired, not
    // deleted; retired images are removed once no machine is left.
    if node.exists() {
        let retired = images.join("retired");
        fs::create_dir_all(&retired).map_err(io_err("creating", &retired))?;
        let old = retired.join(format!("node.{}", time::OffsetDateTime::now_utc().unix_timestamp()));
        fs::rename(&node, &old).map_err(io_err("retiring", &node))?;
    }
    fs::rename(&tmp, &node).map_err(io_err("installing", &node))?;
    progress(&format!("[ok] node image built in {:.0} s", started.elapsed().as_secs_f64()));
    Ok(())
}


fn customize_node(root: &Path) -> Result<(), SetupError> {
    let w = |rel: &str, content: &str| -> Result<(), SetupError> {
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        fs::write(&p, content).map_err(io_err("writing", &p))
    };
    w("etc/hostname", "lab\n")?;
    // gcr.io is docklab's registry on the session bridge, so `gcr.io/distroless/...` pulls come to it.
    w("etc/hosts", "127.0.0.1\tlocalhost lab\n::1\tlocalhost ip6-localhost ip6-loopback\n10.200.0.1\tgcr.io\n")?;
    w("etc/resolv.conf", "nameserver 127.0.0.1\n")?;
    w(
        "etc/profile.d/docklab.sh",
        "# docklab: greeting and prompt for the learner's login shell\n\
         if [ -n \"$PS1\" ] && [ -z \"$DOCKLAB_GREETED\" ]; then\n  export DOCKLAB_GREETED=1\n  cat /etc/docklab/greeting\nfi\n\
         PS1='\\[\\e[1;32m\\]root@lab\\[\\e[0m\\]:\\[\\e[1;34m\\]\\w\\[\\e[0m\\]# '\n",
    )?;
    w(
        "etc/docker/daemon.json",
        // docklab's read-only registry is the Docker Hub mirror and, by name, gcr.io (plain HTTP).
        "{\n  \"log-driver\": \"json-file\",\n  \"log-opts\": { \"max-size\": \"10m\", \"max-file\": \"2\" },\n  \"registry-mirrors\": [\"http://10.200.0.1\"],\n  \"insecure-registries\": [\"10.200.0.1\", \"gcr.io\"]\n}\n",
    )?;
    // Bash completion for docker comes with docker.io; make sure root's shell loads it.
    w("root/.bashrc", "[ -f /etc/bash_completion ] && . /etc/bash_completion\nalias ll='ls -l'\n")?;
    Ok(())
}

/// Deletes node images replaced by a newer recipe, once no session machine is left that uses them.
fn remove_retired_images(state_dir: &Path, progress: &mut dyn FnMut(&str)) {
    let sessions = state_dir.join("sessions");
    let busy = fs::read_dir(&sessions).map(|mut rd| rd.next().is_some()).unwrap_or(false);
    let retired = state_dir.join("images/retired");
    if busy || !retired.exists() {
        return;
    }
    match fs::remove_dir_all(&retired) {
        Ok(()) => progress("[ok] removed node images of older recipes"),
        Err(e) => progress(&format!("[!!] could not remove {}: {e}", retired.display())),
    }
}

/// Runs every set-up step; `progress` receives one human line per step.
pub fn run(state_dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), SetupError> {
    check_host()?;
    progress("[ok] running as root, user namespaces and cgroups available");
    install_packages(HOST_PACKAGES, progress)?;
    fs::create_dir_all(state_dir).map_err(io_err("creating", state_dir))?;
    remove_retired_images(state_dir, progress);
    build_node_image(state_dir, progress)?;
    images::build(state_dir, &[], &images::BuildOptions::default(), progress)?;
    progress("[ok] setup complete");
    Ok(())
}

/// Internal subcommands of the `docklab` binary that the sandbox re-executes
/// (`docklab __launch ...`, `docklab __enter ...`). `main` must call this first, before starting
/// any thread or runtime; it returns `None` when argv is not one of them.
pub fn dispatch_internal(args: &[String]) -> Option<ExitCode> {
    match args.get(1).map(String::as_str) {
        Some("__launch") => Some(match args.get(2) {
            Some(dir) => crate::launch::main(Path::new(dir)),
            None => {
                eprintln!("usage: docklab __launch <session-dir>");
                ExitCode::from(2)
            }
        }),
        Some("__enter") => Some(crate::enter::main(&args[2..])),
        _ => None,
    }
}
