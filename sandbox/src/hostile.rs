//! Reading from a session machine as host root, without letting the machine choose what is read.
//!
//! Everything inside a machine belongs to its root, who may plant symlinks, FIFOs, device nodes,
//! huge files or another engine's socket wherever the server looks. So the server reaches a
//! machine's files only through its init's root directory (`/proc/<init>/root`, the machine's
//! own mount namespace, where nothing of the host or of another machine is mounted), and opens
//! them with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` as `O_PATH`
//! first: no link is followed, no path climbs out, and nothing is opened for reading (a FIFO's
//! open would block) before its type, owner and filesystem are checked with `fstat`/`fstatfs`.
//! Files are then read with `O_NONBLOCK` and a size cap; sockets are connected through
//! `/proc/self/fd/N` of the checked descriptor, so the socket connected to is the one checked.
//!
//! The calls here are blocking (if short): run them off the async threads
//! ([`read_file_blocking_capped`] does, with a timeout).

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why something of a machine was not read.
#[derive(Debug, thiserror::Error)]
pub enum HostileError {
    #[error("process {pid} is not the machine's init (gone, or not owned by uid {uid})")]
    NotInit { pid: i32, uid: u32 },
    #[error("{step} {path}: {source}")]
    Io { step: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error("{path} in the machine is not a {want} (refused)")]
    WrongType { path: PathBuf, want: &'static str },
    #[error("{path} in the machine belongs to uid {found}, not the machine's root ({want}) (refused)")]
    WrongOwner { path: PathBuf, found: u32, want: u32 },
    #[error("{path} in the machine is on a filesystem docklab does not read from (magic {magic:#x}) (refused)")]
    WrongFilesystem { path: PathBuf, magic: i64 },
    #[error("reading {path} in the machine took longer than {ms} ms")]
    Timeout { path: PathBuf, ms: u64 },
}

fn io_err<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> HostileError + 'a {
    move |source| HostileError::Io { step, path: path.to_path_buf(), source }
}

/// Filesystems whose reads never wait on anyone: memory and block-backed ones. A machine's root
/// can mount procfs, sysfs, cgroupfs, mqueue or devpts over a path the server reads; files
/// there may block (`/proc/kmsg`) or be anything, so they are refused.
const READABLE_FILESYSTEMS: &[i64] = &[
    0x0102_1994,  // tmpfs
    0xEF53,       // ext2/3/4
    0x5846_5342,  // xfs
    0x9123_683E,  // btrfs
    0x794C_7630,  // overlayfs
];

/// A machine's root directory, held open, and the host uid its root runs as.
#[derive(Debug)]
pub struct MachineRoot {
    dir: OwnedFd,
    uid: u32,
}

impl MachineRoot {
    /// The root directory of the machine whose init is host pid `pid` and whose root is host uid
    /// `uid`. The pid is checked to be that machine's init (pid 1 of its own namespace, owned by
    /// `uid`) through a pidfd, so a pid reused by someone else is never mistaken for it.
    pub fn of_init(pid: i32, uid: u32) -> Result<MachineRoot, HostileError> {
        let not_init = || HostileError::NotInit { pid, uid };
        if pid <= 1 {
            return Err(not_init());
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw < 0 {
            return Err(not_init());
        }
        // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| not_init())?;
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_default().to_string();
        let real_uid: Option<u32> = field("Uid:").split_whitespace().next().and_then(|u| u.parse().ok());
        let inner_pid = field("NSpid:").split_whitespace().last().map(str::to_string);
        if real_uid != Some(uid) || inner_pid.as_deref() != Some("1") {
            return Err(not_init());
        }
        // Following /proc/<pid>/root is the point here: it is the host's procfs, and the link is
        // the init's root in the machine's own mount namespace.
        let path = PathBuf::from(format!("/proc/{pid}/root"));
        let dir = open_dir_path(&path).map_err(io_err("opening the root of", &path))?;
        // Still the same process? (While it lives, its pid cannot have been reused.)
        let mut poll = [libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: one valid pollfd, zero timeout.
        let ready = unsafe { libc::poll(poll.as_mut_ptr(), 1, 0) };
        if ready != 0 {
            return Err(not_init());
        }
        Ok(MachineRoot { dir: dir.into(), uid })
    }

    /// A directory standing for a machine's root (tests; or a host directory only root writes).
    pub fn from_dir(dir: &Path, uid: u32) -> Result<MachineRoot, HostileError> {
        let f = open_dir_path(dir).map_err(io_err("opening", dir))?;
        Ok(MachineRoot { dir: f.into(), uid })
    }

    /// Opens `path` (relative to the machine's root) as `O_PATH`, never following a link nor
    /// leaving the root, and checks its owner.
    fn open_path(&self, path: &Path) -> Result<(OwnedFd, libc::stat), HostileError> {
        let rel = path.strip_prefix("/").unwrap_or(path);
        let c = CString::new(rel.as_os_str().as_encoded_bytes()).map_err(|_| HostileError::WrongType { path: path.into(), want: "path without NUL" })?;
        // SAFETY: open_how is plain integers; all zero is its "nothing asked" value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: openat2 with a valid directory fd, a NUL-terminated path and an open_how of
        // the size passed; returns a new descriptor or -1.
        let raw = unsafe {
            libc::syscall(libc::SYS_openat2, self.dir.as_raw_fd(), c.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>())
        };
        if raw < 0 {
            return Err(HostileError::Io { step: "opening (no links, beneath the machine's root)", path: path.into(), source: std::io::Error::last_os_error() });
        }
        // SAFETY: a fresh descriptor from openat2, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let st = fstat(&fd).map_err(io_err("fstat", path))?;
        if st.st_uid != self.uid {
            return Err(HostileError::WrongOwner { path: path.into(), found: st.st_uid, want: self.uid });
        }
        Ok((fd, st))
    }

    /// Reads at most `cap` bytes of the regular file `path` in the machine. Refuses links,
    /// FIFOs, devices, sockets, directories, files of another owner and files on filesystems
    /// whose reads may block. Blocking: call off the async threads.
    pub fn read_file(&self, path: &Path, cap: usize) -> Result<Vec<u8>, HostileError> {
        let (fd, st) = self.open_path(path)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(HostileError::WrongType { path: path.into(), want: "regular file" });
        }
        let magic = fstatfs_magic(&fd).map_err(io_err("fstatfs", path))?;
        if !READABLE_FILESYSTEMS.contains(&magic) {
            return Err(HostileError::WrongFilesystem { path: path.into(), magic });
        }
        // Reopen the very inode checked, for reading, through the descriptor (following this
        // magic link is the point; it cannot lead anywhere else).
        let proc = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&proc)
            .map_err(io_err("reopening", path))?;
        let again = fstat(&f).map_err(io_err("fstat", path))?;
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
            return Err(HostileError::WrongType { path: path.into(), want: "file that stays put" });
        }
        let mut buf = Vec::with_capacity(cap.min(64 * 1024));
        f.take(cap as u64).read_to_end(&mut buf).map_err(io_err("reading", path))?;
        Ok(buf)
    }

    /// Connects to the unix socket `path` in the machine (owned by the machine's root). The
    /// socket returned is non-blocking; a listener with a full backlog is an error, not a wait.
    pub fn connect(&self, path: &Path) -> Result<UnixStream, HostileError> {
        let (fd, st) = self.open_path(path)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(HostileError::WrongType { path: path.into(), want: "socket" });
        }
        let sock = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| HostileError::Io { step: "creating a socket for", path: path.into(), source: e.into() })?;
        let addr = nix::sys::socket::UnixAddr::new(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str())
            .map_err(|e| HostileError::Io { step: "addressing", path: path.into(), source: e.into() })?;
        nix::sys::socket::connect(sock.as_raw_fd(), &addr).map_err(|e| HostileError::Io { step: "connecting to", path: path.into(), source: e.into() })?;
        Ok(UnixStream::from(sock))
    }
}

/// [`MachineRoot::read_file`] of the machine whose init is `pid`, on a blocking thread, given up
/// after `timeout` (the thread is left to finish on its own; the caller is not held).
pub async fn read_file_blocking_capped(pid: i32, uid: u32, path: &'static str, cap: usize, timeout: Duration) -> Result<Vec<u8>, HostileError> {
    let task = tokio::task::spawn_blocking(move || MachineRoot::of_init(pid, uid)?.read_file(Path::new(path), cap));
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(HostileError::Io { step: "reading", path: path.into(), source: std::io::Error::other(join.to_string()) }),
        Err(_) => Err(HostileError::Timeout { path: path.into(), ms: timeout.as_millis() as u64 }),
    }
}

fn fstat(fd: &impl AsRawFd) -> std::io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes a struct stat into the buffer we own.
    let r = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so the struct is initialised.
    Ok(unsafe { st.assume_init() })
}

fn fstatfs_magic(fd: &impl AsRawFd) -> std::io::Result<i64> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs writes a struct statfs into the buffer we own.
    let r = unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstatfs succeeded, so the struct is initialised.
    Ok(unsafe { st.assume_init() }.f_type as i64)
}

/// A directory handle that can only anchor lookups (`O_PATH | O_DIRECTORY`, close-on-exec).
fn open_dir_path(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn root() -> (tempfile::TempDir, MachineRoot) {
        let dir = tempfile::tempdir_in(std::env::var_os("DOCKLAB_TEST_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir)).unwrap();
        std::fs::create_dir_all(dir.path().join("run/docklab")).unwrap();
        let uid = std::fs::metadata(dir.path()).unwrap().uid();
        let r = MachineRoot::from_dir(dir.path(), uid).unwrap();
        (dir, r)
    }

    #[test]
    fn reads_a_small_regular_file_up_to_the_cap() {
        let (dir, r) = root();
        std::fs::write(dir.path().join("run/docklab/state"), "ready\n").unwrap();
        let magic = fstatfs_magic(&std::fs::File::open(dir.path()).unwrap()).unwrap();
        if !READABLE_FILESYSTEMS.contains(&magic) {
            eprintln!("skipped: the temporary directory is on filesystem {magic:#x}");
            return;
        }
        assert_eq!(r.read_file(Path::new("/run/docklab/state"), 4096).unwrap(), b"ready\n");
        std::fs::write(dir.path().join("run/docklab/big"), vec![b'x'; 100_000]).unwrap();
        assert_eq!(r.read_file(Path::new("run/docklab/big"), 4096).unwrap().len(), 4096);
    }

    #[test]
    fn refuses_links_climbing_fifos_devices_and_other_owners() {
        let (dir, r) = root();
        // The host's file, next to the machine's root (not beneath it).
        let host = tempfile::tempdir_in(dir.path().parent().unwrap()).unwrap();
        let secret = host.path().join("secret");
        std::fs::write(&secret, "host secret").unwrap();
        let up = format!("../../../{}/secret", host.path().file_name().unwrap().to_string_lossy());
        let d = dir.path().join("run/docklab");
        std::fs::write(dir.path().join("inside"), "the machine's own").unwrap();
        std::os::unix::fs::symlink(&secret, d.join("abs")).unwrap();
        std::os::unix::fs::symlink(&up, d.join("rel")).unwrap();
        std::os::unix::fs::symlink("../../inside", d.join("own")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("zero")).unwrap();
        nix::unistd::mkfifo(&d.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let climb = format!("run/docklab/{up}");
        for p in ["run/docklab/abs", "run/docklab/rel", "run/docklab/own", "run/docklab/zero", &climb, "../secret"] {
            let e = r.read_file(Path::new(p), 4096).unwrap_err();
            assert!(!e.to_string().contains("host secret"), "{p}: {e}");
        }
        // A FIFO is refused at once (opening it for reading would block).
        let started = std::time::Instant::now();
        assert!(matches!(r.read_file(Path::new("run/docklab/fifo"), 4096), Err(HostileError::WrongType { .. })));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(r.read_file(Path::new("run/docklab"), 4096), Err(HostileError::WrongType { .. })));
        // Another owner's file (here: a machine root whose uid is not ours).
        let other = MachineRoot::from_dir(dir.path(), 4_000_000).unwrap();
        std::fs::write(d.join("state"), "ready").unwrap();
        assert!(matches!(other.read_file(Path::new("run/docklab/state"), 4096), Err(HostileError::WrongOwner { .. })));
    }

    #[test]
    fn connects_only_to_a_real_socket_beneath_the_root() {
        let (dir, r) = root();
        let d = dir.path().join("run/docklab");
        let _listener = std::os::unix::net::UnixListener::bind(d.join("docker.sock")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        let _other = std::os::unix::net::UnixListener::bind(outside.path().join("other.sock")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("other.sock"), d.join("link.sock")).unwrap();
        std::fs::write(d.join("file.sock"), "").unwrap();
        assert!(r.connect(Path::new("/run/docklab/docker.sock")).is_ok());
        assert!(r.connect(Path::new("/run/docklab/link.sock")).is_err(), "a symlink to another socket is refused");
        assert!(matches!(r.connect(Path::new("/run/docklab/file.sock")), Err(HostileError::WrongType { .. })));
    }

    #[test]
    fn a_pid_that_is_not_a_machine_init_is_refused() {
        // This test process is not pid 1 of its namespace.
        let me = std::process::id() as i32;
        assert!(matches!(MachineRoot::of_init(me, nix::unistd::getuid().as_raw()), Err(HostileError::NotInit { .. })));
        assert!(matches!(MachineRoot::of_init(1, 0), Err(HostileError::NotInit { .. })));
    }
}
