//! `docklab __enter <session-dir> [--tty | --relay SOCKET] -- CMD...`: runs a command inside a
//! session machine. With `--relay`, the command gets a PTY from the machine's own devpts and this
//! process serves it on SOCKET (see `relay.rs`), so the shell survives a server restart.
//!
//! A fresh single-threaded process (the kernel refuses `setns` into a user namespace from a
//! multithreaded one). It joins the machine's cgroup, then its namespaces (user first, mount last,
//! which also moves it to the machine's root), becomes root of the machine, and forks the command
//! so that it lives inside the machine's pid namespace. It waits for the command and exits with
//! its status (128 + signal when killed), so the server sees exactly what a shell would.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::spec::MachineRecord;
use crate::sys;

/// The environment every command and shell in a machine starts with.
pub const MACHINE_ENV: &[&str] = &[
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "USER=root",
    "LOGNAME=root",
    "SHELL=/bin/bash",
    "HOSTNAME=lab",
    "LANG=C.UTF-8",
];

static CHILD: AtomicI32 = AtomicI32::new(0);

/// On SIGTERM the whole command goes: its process group is killed (the server sends SIGTERM when
/// a command runs past its timeout or its caller goes away). Other signals are passed on.
extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe. The child leads its own process group (setsid).
        unsafe {
            if sig == libc::SIGTERM {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            } else {
                libc::kill(-pid, sig);
            }
        }
    }
}

fn fail(msg: String) -> ExitCode {
    eprintln!("docklab: {msg}");
    // 125, like `docker run`, means "could not even start the command".
    ExitCode::from(125)
}

/// Entry point. `args` are what follows `__enter`.
pub fn main(args: &[String]) -> ExitCode {
    // Nothing the server inherited goes into the machine with us (nothing above stderr is ours yet).
    sys::close_fds_from(3);
    let Some(dir) = args.first() else { return fail("usage: __enter <session-dir> [--tty] -- CMD...".into()) };
    let rest = &args[1..];
    let opts: Vec<&String> = rest.iter().take_while(|a| *a != "--").collect();
    let tty = opts.iter().any(|a| *a == "--tty");
    let relay_path = opts.iter().position(|a| *a == "--relay").and_then(|i| opts.get(i + 1)).map(|s| std::path::PathBuf::from(s.as_str()));
    let Some(sep) = rest.iter().position(|a| a == "--") else { return fail("missing -- before the command".into()) };
    let cmd = &rest[sep + 1..];
    if cmd.is_empty() {
        return fail("no command given".into());
    }
    let dir = Path::new(dir);
    let rec = match MachineRecord::load(dir) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let pid = match rec.init_pid() {
        Some(p) => p,
        None => return fail(format!("session machine {} has no running init", rec.id)),
    };
    if let Err(e) = rec.cgroup.join(0) {
        return fail(format!("joining the machine's cgroup: {e}"));
    }
    // The relay's socket is a host path: bind it before the host's files are out of sight.
    let listener = match &relay_path {
        Some(p) => {
            let _ = std::fs::remove_file(p);
            match std::os::unix::net::UnixListener::bind(p) {
                Ok(l) => Some(l),
                Err(e) => return fail(format!("listening on {}: {e}", p.display())),
            }
        }
        None => None,
    };
    // Open every namespace before joining any: once in the machine's mount namespace, the host's
    // /proc is out of sight.
    let kinds = [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut files = Vec::new();
    for (name, flag) in kinds {
        let p = format!("/proc/{pid}/ns/{name}");
        match File::open(&p) {
            Ok(f) => files.push((name, flag, f)),
            Err(e) => return fail(format!("session machine {} is not running ({p}: {e})", rec.id)),
        }
    }
    for (name, flag, f) in &files {
        if let Err(e) = setns(f.as_fd(), *flag) {
            return fail(format!("joining the machine's {name} namespace: {e}"));
        }
    }
    drop(files);
    if nix::unistd::setgroups(&[]).is_err()
        || nix::unistd::setresgid(0.into(), 0.into(), 0.into()).is_err()
        || nix::unistd::setresuid(0.into(), 0.into(), 0.into()).is_err()
    {
        return fail("becoming root of the machine failed".into());
    }
    // Commands and shells run under the machine's seccomp filter, as everything init starts does.
    if let Err(e) = crate::seccomp::apply() {
        return fail(e.to_string());
    }

    let argv: Vec<CString> = match cmd.iter().map(|a| CString::new(a.as_bytes())).collect() {
        Ok(v) => v,
        Err(_) => return fail("an argument contains a NUL byte".into()),
    };
    let mut env: Vec<CString> = MACHINE_ENV.iter().map(|s| CString::new(*s).expect("static env has no NUL")).collect();
    env.push(CString::new(if tty || listener.is_some() { "TERM=xterm-256color" } else { "TERM=dumb" }).expect("no NUL"));

    if let Some(listener) = listener {
        return relay_shell(listener, &argv, &env, &cmd[0]);
    }

    // SAFETY: this process is single-threaded, so the child may allocate and run ordinary code.
    match unsafe { fork() } {
        Err(e) => fail(format!("session machine {} is not running (fork into it failed: {e})", rec.id)),
        Ok(ForkResult::Child) => {
            let _ = nix::unistd::setsid();
            if tty {
                // SAFETY: fd 0 is the PTY slave the server gave us; TIOCSCTTY makes it our terminal.
                unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
            }
            // SAFETY: prctl with PR_SET_PDEATHSIG only sets a signal for this process.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let home = if Path::new("/root").is_dir() { "/root" } else { "/" };
            let _ = nix::unistd::chdir(home);
            sys::close_fds_from(3);
            let err = nix::unistd::execvpe(&argv[0], &argv, &env).unwrap_err();
            eprintln!("{}: {}", cmd[0], err.desc());
            // SAFETY: _exit skips destructors, which belong to the parent.
            unsafe { libc::_exit(if err == nix::Error::ENOENT { 127 } else { 126 }) }
        }
        Ok(ForkResult::Parent { child }) => {
            CHILD.store(child.as_raw(), Ordering::SeqCst);
            for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT] {
                // SAFETY: `forward` only calls the async-signal-safe kill().
                unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
            }
            loop {
                match waitpid(Pid::from_raw(child.as_raw()), None) {
                    Ok(WaitStatus::Exited(_, code)) => return ExitCode::from(code as u8),
                    Ok(WaitStatus::Signaled(_, sig, _)) => return ExitCode::from(128u8.wrapping_add(sig as u8)),
                    Ok(_) | Err(nix::Error::EINTR) => continue,
                    Err(e) => return fail(format!("waiting for the command: {e}")),
                }
            }
        }
    }
}

/// Starts `argv` on a PTY of the machine's own devpts and relays it on `listener` until it exits.
fn relay_shell(listener: std::os::unix::net::UnixListener, argv: &[CString], env: &[CString], name: &str) -> ExitCode {
    use nix::fcntl::OFlag;
    let master = match nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC) {
        Ok(m) => m,
        Err(e) => return fail(format!("opening the machine's /dev/ptmx: {e}")),
    };
    if nix::pty::grantpt(&master).is_err() || nix::pty::unlockpt(&master).is_err() {
        return fail("preparing the terminal failed".into());
    }
    let slave_name = match nix::pty::ptsname_r(&master) {
        Ok(n) => n,
        Err(e) => return fail(format!("naming the terminal: {e}")),
    };
    let _ = crate::pty::resize_fd(std::os::fd::AsRawFd::as_raw_fd(&master), 80, 24);
    // SAFETY: this process is single-threaded, so the child may allocate and run ordinary code.
    match unsafe { fork() } {
        Err(e) => fail(format!("the session machine is not running (fork into it failed: {e})")),
        Ok(ForkResult::Child) => {
            let _ = nix::unistd::setsid();
            let slave = match std::fs::OpenOptions::new().read(true).write(true).open(&slave_name) {
                Ok(f) => f,
                // SAFETY: _exit skips destructors, which belong to the parent.
                Err(_) => unsafe { libc::_exit(126) },
            };
            let fd = std::os::fd::AsRawFd::as_raw_fd(&slave);
            // SAFETY: fd is the terminal we just opened; TIOCSCTTY makes it our controlling
            // terminal and dup2 puts it on the standard descriptors.
            unsafe {
                libc::ioctl(fd, libc::TIOCSCTTY, 0);
                libc::dup2(fd, 0);
                libc::dup2(fd, 1);
                libc::dup2(fd, 2);
            }
            let home = if Path::new("/root").is_dir() { "/root" } else { "/" };
            let _ = nix::unistd::chdir(home);
            sys::close_fds_from(3);
            let err = nix::unistd::execvpe(&argv[0], argv, env).unwrap_err();
            eprintln!("{name}: {}", err.desc());
            // SAFETY: as above.
            unsafe { libc::_exit(if err == nix::Error::ENOENT { 127 } else { 126 }) }
        }
        Ok(ForkResult::Parent { child }) => {
            let master: std::os::fd::OwnedFd = master.into();
            match crate::relay::serve(listener, master, child) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("terminal relay: {e}")),
            }
        }
    }
}
