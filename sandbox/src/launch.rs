//! The machine launcher: `docklab __launch <session-dir>`, run by the server for each new machine.
//!
//! It is a fresh, single-threaded process (user-namespace calls refuse multithreaded callers), so
//! it can fork and clone freely. It
//! 1. joins the machine's cgroup, so everything it starts is counted and can be killed as one;
//! 2. enters a private mount namespace of its own, so no mount it makes is ever seen by the host
//!    (and all of them vanish with the machine's last process, leaking nothing);
//! 3. mounts an idmapped view of the node image and the overlay root filesystem over it;
//! 4. clones the machine's init into new user, mount, pid, net, uts, ipc and cgroup namespaces,
//!    writes its uid/gid maps, and lets it go;
//! 5. relays init's progress to the `status` file and stays as the machine's host-side parent.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::protocol::{InitReport, LauncherStatus};
use crate::spec::{write_atomic, MachineRecord};
use crate::{init, sys};

/// Errors of the launcher, each naming the step and path that failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{step} ({path}): {source}")]
    Step { step: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error("{step}: {source}")]
    Sys { step: &'static str, #[source] source: nix::Error },
    #[error("{0}")]
    Record(#[from] crate::error::SandboxError),
    #[error("reading the OCI spec {path}: {reason}")]
    Spec { path: PathBuf, reason: String },
    #[error("joining the machine's cgroup: {0}")]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error("the machine's init failed: {0}")]
    Init(String),
}

fn step<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LaunchError + 'a {
    move |source| LaunchError::Step { step, path: path.to_path_buf(), source }
}
fn sys_step(step: &'static str) -> impl FnOnce(nix::Error) -> LaunchError {
    move |source| LaunchError::Sys { step, source }
}

/// Entry point of `docklab __launch <session-dir>`.
pub fn main(session_dir: &Path) -> ExitCode {
    // Whatever the server inherited and did not mark close-on-exec reached us; the machine's init
    // would inherit it from us (it is cloned, not executed), and dockerd, containerd and every
    // shim from it. Nothing above stderr is ours yet.
    crate::sys::close_fds_from(3);
    let status = session_dir.join("status");
    match launch(session_dir) {
        Ok(reason) => {
            let _ = LauncherStatus::Stopped(reason).write(&status);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("docklab launcher: {e}");
            let _ = LauncherStatus::Failed(e.to_string()).write(&status);
            ExitCode::FAILURE
        }
    }
}

fn launch(dir: &Path) -> Result<String, LaunchError> {
    let started = std::time::Instant::now();
    // Where start-up time goes, in launcher.log (read by `docklab` benchmarks and by people).
    let timing = |what: &str| eprintln!("launcher: {what} at {} ms", started.elapsed().as_millis());
    let rec = MachineRecord::load(dir)?;
    let spec_path = rec.spec_path();
    let spec = Spec::load(&spec_path).map_err(|e| LaunchError::Spec { path: spec_path.clone(), reason: e.to_string() })?;
    write_atomic(&rec.launcher_pid_path(), std::process::id().to_string().as_bytes())?;

    rec.cgroup.join(0)?;

    unshare(CloneFlags::CLONE_NEWNS).map_err(sys_step("unsharing the launcher's mount namespace"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(sys_step("making mounts private"))?;

    prepare_disk(&rec)?;
    timing("disk mounted");
    {
        let userns = mapped_userns(rec.uid_base)?;
        sys::idmapped_bind(&rec.node_image, &rec.lower(), &userns).map_err(step("idmapped mount of the node image", &rec.node_image))?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        rec.lower().display(),
        rec.upper().display(),
        rec.work().display()
    );
    mount(Some("overlay"), &rec.rootfs(), Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        .map_err(|e| LaunchError::Step { step: "mounting the overlay root filesystem", path: rec.rootfs(), source: e.into() })?;
    timing("root filesystem mounted");

    let (go_r, go_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_step("pipe"))?;
    let (st_r, st_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_step("pipe"))?;

    let mut flags = CloneFlags::empty();
    for ns in spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
        flags |= match ns.typ() {
            LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            LinuxNamespaceType::Time => CloneFlags::empty(),
        };
    }

    let go_w_raw = go_w.as_raw_fd();
    let st_r_raw = st_r.as_raw_fd();
    let mut stack = vec![0u8; 1 << 20];
    let mut go_r_opt = Some(go_r);
    let mut st_w_opt = Some(st_w);
    let cb = Box::new(|| -> isize {
        // In the child: drop the parent's ends so end-of-file works both ways.
        // SAFETY: these are this (copied) fd table's copies of the parent's pipe ends.
        unsafe {
            libc::close(go_w_raw);
            libc::close(st_r_raw);
        }
        let go = go_r_opt.take().expect("clone callback runs once");
        let st = st_w_opt.take().expect("clone callback runs once");
        init::run(&rec, &spec, go, st)
    });
    // SAFETY: the launcher is single-threaded; the child gets a private copy of the address space
    // (no CLONE_VM), so the callback may use everything it captured, and the stack outlives it.
    let child = unsafe { nix::sched::clone(cb, &mut stack, flags, Some(libc::SIGCHLD)) }.map_err(sys_step("cloning the machine's init"))?;
    // The parent's copies of the child's ends were moved into the callback; close them here.
    drop(go_r_opt.take());
    drop(st_w_opt.take());

    let mapping = format!("0 {} {}\n", rec.uid_base, crate::spec::UID_RANGE);
    for file in ["uid_map", "gid_map"] {
        let p = PathBuf::from(format!("/proc/{child}/{file}"));
        fs::write(&p, &mapping).map_err(step("writing the id map", &p))?;
    }
    write_atomic(&rec.init_pid_path(), child.to_string().as_bytes())?;
    if let Some(net) = &rec.net {
        crate::network::attach_machine(&net.bridge, &net.veth, child.as_raw(), net.address).map_err(|e| LaunchError::Init(format!("network: {e}")))?;
    }
    timing("init cloned and attached to the network");
    let mut go = fs::File::from(go_w);
    go.write_all(b"g").map_err(step("releasing init", dir))?;
    drop(go);

    // Relay init's progress; it closes its end once the machine is ready (or failed).
    let reader = BufReader::new(fs::File::from(st_r));
    let mut failure = None;
    for line in reader.lines() {
        match InitReport::parse(&line.unwrap_or_default()) {
            Some(InitReport::Ready) => {
                LauncherStatus::Ready.write(&rec.status_path())?;
                timing("ready");
            }
            Some(InitReport::Error(msg)) => failure = Some(msg),
            Some(InitReport::Progress(what)) => timing(&format!("init: {what}")),
            None => {}
        }
    }
    if let Some(msg) = failure {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err(LaunchError::Init(msg));
    }
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(format!("the machine's init exited with code {code}")),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(format!("the machine's init was killed by {sig}")),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(LaunchError::Sys { step: "waiting for init", source: e }),
        }
    }
}

/// Mounts the machine's capped disk (if it has one) and lays out the overlay's upper and work
/// directories and `/var/lib/docker` on it, owned by the machine's root.
fn prepare_disk(rec: &MachineRecord) -> Result<(), LaunchError> {
    let disk = rec.disk_dir();
    if rec.disk_bytes.is_some() {
        let out = std::process::Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,nosuid,nodev"])
            .arg(rec.disk_image())
            .arg(&disk)
            .output()
            .map_err(step("running mount for the machine's disk", &disk))?;
        if !out.status.success() {
            return Err(LaunchError::Step {
                step: "mounting the machine's disk",
                path: disk,
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            });
        }
        let _ = fs::remove_dir(disk.join("lost+found"));
    }
    for d in [rec.upper(), rec.work(), rec.docker_dir()] {
        fs::create_dir_all(&d).map_err(step("creating", &d))?;
        std::os::unix::fs::chown(&d, Some(rec.uid_base), Some(rec.uid_base)).map_err(step("chown", &d))?;
    }
    Ok(())
}

/// A user namespace carrying the machine's id mapping, for the idmapped mount. A short-lived child
/// creates it; its namespace file keeps the namespace alive after the child is gone.
fn mapped_userns(uid_base: u32) -> Result<OwnedFd, LaunchError> {
    let (r, w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_step("pipe"))?;
    let (r2, w2) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_step("pipe"))?;
    // SAFETY: the launcher is single-threaded, so the child may run ordinary code.
    match unsafe { fork() }.map_err(sys_step("fork"))? {
        ForkResult::Child => {
            drop(r);
            drop(w2);
            let ok = unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let mut w = fs::File::from(w);
            let _ = w.write_all(if ok { b"k" } else { b"e" });
            // Wait until the parent has opened our namespace, then leave.
            let mut b = [0u8; 1];
            let _ = fs::File::from(r2).read(&mut b);
            // SAFETY: _exit is async-signal-safe and skips the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            drop(r2);
            let mut b = [0u8; 1];
            let _ = fs::File::from(r).read(&mut b);
            let result = (|| {
                if b[0] != b'k' {
                    return Err(LaunchError::Init("could not create a user namespace (are user namespaces enabled?)".into()));
                }
                let mapping = format!("0 {uid_base} {}\n", crate::spec::UID_RANGE);
                for file in ["uid_map", "gid_map"] {
                    let p = PathBuf::from(format!("/proc/{child}/{file}"));
                    fs::write(&p, &mapping).map_err(step("writing the id map", &p))?;
                }
                let p = PathBuf::from(format!("/proc/{child}/ns/user"));
                let f = fs::File::open(&p).map_err(step("opening the user namespace", &p))?;
                Ok(OwnedFd::from(f))
            })();
            drop(w2);
            let _ = waitpid(Pid::from_raw(child.as_raw()), None);
            result
        }
    }
}
