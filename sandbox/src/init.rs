//! The machine's init: pid 1 inside a session machine.
//!
//! Runs in the child the launcher cloned into the machine's namespaces. It mounts what the OCI
//! spec lists, pivots into the overlay root, starts and supervises `dockerd`, reports `ready`,
//! then reaps orphans and restarts `dockerd` when it dies. Images are not preloaded: the first
//! `docker run busybox` pulls it from docklab's registry, as on any Docker host (0.3 s).
//! Nothing of the host stays open in here once it is ready.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, sethostname, Pid};
use oci_spec::runtime::Spec;

use crate::protocol::{Crashes, EngineState, InitReport};
use crate::spec::MachineRecord;
use crate::sys;

/// Shown by the learner's login shell (written at every boot, so it changes without rebuilding
/// the node image).
const GREETING: &str = r#"
  Welcome to your docklab session machine.

  A Linux machine of your own, with its own Docker engine.
  You are root here, and nothing you do can reach anyone
  else's machine. Break it if you like: ending the lab and
  starting it again gives you a fresh one.

  Try:  docker run --rm busybox echo hello
        docker ps -a
"#;

/// The machine's state file, seen by the host as `<session>/control/state`.
const STATE_FILE: &str = "/run/docklab/state";

#[derive(Debug, thiserror::Error)]
enum InitError {
    #[error("{step} {path}: {source}")]
    Mount { step: &'static str, path: PathBuf, #[source] source: nix::Error },
    #[error("{step} {path}: {source}")]
    Io { step: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error("{step}: {source}")]
    Sys { step: &'static str, #[source] source: nix::Error },
    #[error("Docker did not answer within {0} s (see /var/log/dockerd.log in the machine)")]
    DockerTimeout(u64),
    #[error("network: {0}")]
    Net(String),
}

fn io<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> InitError + 'a {
    move |source| InitError::Io { step, path: path.to_path_buf(), source }
}

/// Entry point in the cloned child; returns the process's exit code.
pub fn run(rec: &MachineRecord, spec: &Spec, go: OwnedFd, status: OwnedFd) -> isize {
    // A second wall behind the launcher's close: nothing above stderr (the launcher's pipes
    // included) survives into what init executes.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on this process's descriptors.
    unsafe { libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_uint) };
    let mut status = File::from(status);
    if let Err(e) = setup(rec, spec, go) {
        let _ = InitReport::Error(e.to_string()).send(&mut status);
        return 1;
    }
    // Before dockerd: it, containerd, runc and every container inherit the filter.
    if let Err(e) = crate::seccomp::apply() {
        let _ = InitReport::Error(e.to_string()).send(&mut status);
        return 1;
    }
    match supervise(spec, &mut status) {
        Ok(code) => code,
        Err(e) => {
            let _ = InitReport::Error(e.to_string()).send(&mut status);
            1
        }
    }
}

fn setup(rec: &MachineRecord, spec: &Spec, go: OwnedFd) -> Result<(), InitError> {
    // Wait for the launcher to write our uid/gid maps.
    let mut b = [0u8; 1];
    let _ = File::from(go).read(&mut b);
    nix::unistd::setgroups(&[]).map_err(|source| InitError::Sys { step: "clearing supplementary groups", source })?;
    nix::unistd::setresgid(0.into(), 0.into(), 0.into()).map_err(|source| InitError::Sys { step: "setgid", source })?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into()).map_err(|source| InitError::Sys { step: "setuid", source })?;

    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|source| InitError::Mount { step: "making mounts private", path: "/".into(), source })?;
    let root = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_else(|| rec.rootfs());
    // The new root must be a mount this namespace owns, or pivot_root fails with EINVAL.
    mount(Some(&root), &root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|source| InitError::Mount { step: "binding the root onto itself", path: root.clone(), source })?;

    for m in spec.mounts().as_ref().into_iter().flatten() {
        apply_mount(&root, m)?;
    }
    // The registry's CA certificate, read while the host's files are still in view (the key
    // never is: it is root's alone on the host).
    let registry_ca = rec.session_dir.parent().and_then(Path::parent).and_then(|state| fs::read_to_string(crate::registry::tls::ca_cert_path(state)).ok());

    chdir(&root).map_err(|source| InitError::Mount { step: "chdir", path: root.clone(), source })?;
    let old = root.join(".oldroot");
    fs::create_dir_all(&old).map_err(io("creating", &old))?;
    sys::pivot_root(Path::new("."), Path::new(".oldroot")).map_err(io("pivot_root into", &root))?;
    chdir("/").map_err(|source| InitError::Sys { step: "chdir /", source })?;
    umount2("/.oldroot", MntFlags::MNT_DETACH)
        .map_err(|source| InitError::Mount { step: "detaching the old root", path: "/.oldroot".into(), source })?;
    let _ = fs::remove_dir("/.oldroot");

    for (link, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/core", "/proc/kcore"),
    ] {
        let _ = std::os::unix::fs::symlink(target, link);
    }
    let hostname = spec.hostname().clone().unwrap_or_else(|| "lab".into());
    sethostname(&hostname).map_err(|source| InitError::Sys { step: "sethostname", source })?;
    sys::loopback_up().map_err(io("bringing up", Path::new("lo")))?;
    configure_eth0(spec)?;
    if let Some(ca) = registry_ca {
        trust_registry_ca(&ca)?;
    }
    let _ = fs::create_dir_all("/etc/docklab");
    fs::write("/etc/docklab/greeting", GREETING).map_err(io("writing", Path::new("/etc/docklab/greeting")))?;
    Ok(())
}

/// Gives `eth0` (the launcher moved it in) its address and the host as default gateway, and names
/// the host's services in /etc/hosts.
fn configure_eth0(spec: &Spec) -> Result<(), InitError> {
    let ann = spec.annotations().clone().unwrap_or_default();
    let (Some(addr), Some(gw)) = (ann.get("dev.docklab.address"), ann.get("dev.docklab.gateway")) else { return Ok(()) };
    for args in [
        vec!["addr", "add", addr.as_str(), "dev", "eth0"],
        vec!["link", "set", "dev", "eth0", "up"],
        vec!["route", "add", "default", "via", gw.as_str()],
    ] {
        let st = Command::new("/sbin/ip")
            .args(&args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(io("running", Path::new("/sbin/ip")))?;
        if !st.success() {
            return Err(InitError::Net(format!("ip {} failed ({st})", args.join(" "))));
        }
    }
    // Docker Hub's names and gcr.io lead to docklab's registry (HTTPS on 443, see registry::tls),
    // so a pull that falls back from the mirror to "Docker Hub" still gets docklab's answer.
    let hosts = format!(
        "127.0.0.1\tlocalhost lab\n::1\tlocalhost ip6-localhost ip6-loopback\n{gw}\tdocklab registry.docklab packages.docklab {}\n",
        crate::registry::tls::REGISTRY_HOSTS.join(" ")
    );
    fs::write("/etc/hosts", hosts).map_err(io("writing", Path::new("/etc/hosts")))?;
    Ok(())
}

/// The trust store of the machine's dockerd alone: the system's CAs and docklab's registry CA
/// (the learner's curl and the containers' own stores are left as they are).
const DOCKERD_ROOTS: &str = "/etc/docklab/dockerd-roots.pem";

fn trust_registry_ca(ca_pem: &str) -> Result<(), InitError> {
    let _ = fs::create_dir_all("/etc/docklab");
    let ca_path = Path::new("/etc/docklab/registry-ca.crt");
    fs::write(ca_path, ca_pem).map_err(io("writing", ca_path))?;
    let mut bundle = fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(ca_pem);
    fs::write(DOCKERD_ROOTS, bundle).map_err(io("writing", Path::new(DOCKERD_ROOTS)))
}

fn apply_mount(root: &Path, m: &oci_spec::runtime::Mount) -> Result<(), InitError> {
    let dest = m.destination();
    let target = root.join(dest.strip_prefix("/").unwrap_or(dest));
    let options = m.options().clone().unwrap_or_default();
    let (flags, data, bind) = sys::parse_mount_options(&options);
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from("none"));
    if bind {
        if source.is_dir() {
            fs::create_dir_all(&target).map_err(io("creating mount point", &target))?;
        } else if !target.exists() {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(io("creating", parent))?;
            }
            File::create(&target).map_err(io("creating mount point", &target))?;
        }
        let bind_flags = flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
        mount(Some(&source), &target, None::<&str>, bind_flags, None::<&str>)
            .map_err(|source_err| InitError::Mount { step: "bind mount onto", path: target.clone(), source: source_err })?;
        let extra = flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            // Hardening flags on a bind need a remount. Device nodes from the host keep flags the
            // kernel locked, and a refused remount there leaves a working, unhardened node.
            let _ = mount(None::<&str>, &target, None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra, None::<&str>);
        }
    } else {
        fs::create_dir_all(&target).map_err(io("creating mount point", &target))?;
        let typ = m.typ().clone().unwrap_or_default();
        let data = if data.is_empty() { None } else { Some(data.as_str()) };
        mount(Some(&source), &target, Some(typ.as_str()), flags, data)
            .map_err(|source_err| InitError::Mount { step: "mounting", path: target.clone(), source: source_err })?;
    }
    Ok(())
}

fn write_state(state: EngineState) {
    let _ = fs::write(STATE_FILE, state.encode());
}

/// Counts dockerd crashes for the host to notice even when the restart is quicker than it looks.
fn record_crash(count: u32, why: &str) {
    let _ = fs::write("/run/docklab/crashes", Crashes { count: count.into(), last: why.into() }.encode());
}

fn open_log(path: &str) -> Result<File, InitError> {
    let p = Path::new(path);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    OpenOptions::new().create(true).append(true).open(p).map_err(io("opening", p))
}

fn start_dockerd(spec: &Spec) -> Result<Pid, InitError> {
    // A dockerd that crashed leaves its pid file behind and refuses to start until it is gone.
    let _ = fs::remove_file("/var/run/docker.pid");
    let log = open_log("/var/log/dockerd.log")?;
    let log2 = log.try_clone().map_err(io("duplicating", Path::new("/var/log/dockerd.log")))?;
    let env = spec.process().as_ref().and_then(|p| p.env().clone()).unwrap_or_default();
    let mut cmd = Command::new("/usr/sbin/dockerd");
    cmd.args(["-H", "unix:///var/run/docker.sock", "-H", "unix:///run/docklab/docker.sock"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    for kv in env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    if Path::new(DOCKERD_ROOTS).is_file() {
        // Go reads its roots from here: dockerd trusts docklab's registry as registry-1.docker.io.
        cmd.env("SSL_CERT_FILE", DOCKERD_ROOTS);
    }
    let child = cmd.spawn().map_err(io("starting", Path::new("/usr/sbin/dockerd")))?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Whether dockerd answers `GET /_ping` on its socket.
fn docker_answers() -> bool {
    let Ok(mut s) = UnixStream::connect("/var/run/docker.sock") else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200")
}

fn wait_for_docker(timeout: Duration) -> Result<(), InitError> {
    let start = Instant::now();
    while !docker_answers() {
        if start.elapsed() > timeout {
            return Err(InitError::DockerTimeout(timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn supervise(spec: &Spec, status: &mut File) -> Result<isize, InitError> {
    // Signals arrive through a signalfd; block them first so none is lost between checks.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().map_err(|source| InitError::Sys { step: "blocking signals", source })?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(|source| InitError::Sys { step: "signalfd", source })?;

    // From here on nothing of the host stays open: stdio goes to the machine's own log.
    let log = open_log("/var/log/docklab-init.log")?;
    let null = File::open("/dev/null").map_err(io("opening", Path::new("/dev/null")))?;
    // SAFETY: dup2 onto the standard descriptors; both source fds are open files we own.
    unsafe {
        libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0);
        libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&log), 1);
        libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&log), 2);
    }

    let mut dockerd = start_dockerd(spec)?;
    let mut restarts = 0u32;
    wait_for_docker(Duration::from_secs(60))?;
    write_state(EngineState::Ready);
    InitReport::Ready.send(status).map_err(io("reporting ready", Path::new("status pipe")))?;
    // Closing the status pipe is the last host fd we held.
    // SAFETY: replacing our File with /dev/null closes the pipe; no other handle to it exists.
    let devnull = File::open("/dev/null").map_err(io("opening", Path::new("/dev/null")))?;
    *status = devnull;

    let mut next_restart: Option<Instant> = None;
    loop {
        // Reap every child that has exited; restart dockerd if it was one of them.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == dockerd => {
                    eprintln!("dockerd exited with code {code}");
                    let why = format!("dockerd exited with code {code}");
                    record_crash(restarts + 1, &why);
                    write_state(EngineState::Crashed(why));
                    next_restart = Some(Instant::now() + backoff(restarts));
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == dockerd => {
                    eprintln!("dockerd was killed by {sig}");
                    let why = format!("dockerd was killed by {sig}");
                    record_crash(restarts + 1, &why);
                    write_state(EngineState::Crashed(why));
                    next_restart = Some(Instant::now() + backoff(restarts));
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if let Some(at) = next_restart {
            if Instant::now() >= at {
                next_restart = None;
                restarts += 1;
                write_state(EngineState::Restarting);
                match start_dockerd(spec) {
                    Ok(pid) => {
                        dockerd = pid;
                        if wait_for_docker(Duration::from_secs(30)).is_ok() {
                            write_state(EngineState::Ready);
                        }
                    }
                    Err(e) => {
                        eprintln!("restarting dockerd: {e}");
                        next_restart = Some(Instant::now() + backoff(restarts));
                    }
                }
            }
        }
        // Sleep until a signal, or until the next restart is due.
        let timeout_ms = next_restart.map(|at| at.saturating_duration_since(Instant::now()).as_millis() as i32 + 1).unwrap_or(-1);
        let mut fds = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&sfd), nix::poll::PollFlags::POLLIN)];
        let t = if timeout_ms < 0 { nix::poll::PollTimeout::NONE } else { nix::poll::PollTimeout::try_from(timeout_ms).unwrap_or(nix::poll::PollTimeout::MAX) };
        let _ = nix::poll::poll(&mut fds, t);
        while let Ok(Some(info)) = sfd.read_signal() {
            let sig = info.ssi_signo as i32;
            if sig == libc::SIGTERM || sig == libc::SIGINT || sig == libc::SIGHUP {
                return Ok(shutdown(dockerd));
            }
        }
    }
}

fn backoff(restarts: u32) -> Duration {
    Duration::from_millis(500 * 2u64.pow(restarts.min(5)))
}

/// Stops dockerd politely, then everything else in the machine.
fn shutdown(dockerd: Pid) -> isize {
    write_state(EngineState::Stopping);
    let _ = kill(dockerd, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match waitpid(dockerd, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
            _ => break,
        }
    }
    // SAFETY: kill(-1) from pid 1 of a pid namespace signals every process in that namespace only.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    0
}
