//! Delegated cgroups for session machines, on cgroup v1 (one directory per controller) and v2
//! (one directory in the unified hierarchy).
//!
//! A machine's cgroup sits under the server's own cgroup, in a `docklab/<id>` directory, so the
//! operator's limits on docklab itself still hold. The directories are chowned to the machine's
//! base uid so that the machine's root (and the `dockerd` inside it) can create sub-cgroups for
//! its containers.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Errors of cgroup handling, each naming the cgroup file or directory.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {source}")]
    Io { path: PathBuf, #[source] source: io::Error },
    #[error("processes still alive in {path} after {secs} s")]
    StillBusy { path: PathBuf, secs: u64 },
    #[error("no usable cgroup hierarchy under {root}")]
    NoHierarchy { root: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_path_buf(), source }
}

/// Limits written into a machine's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: u64,
    pub pids_max: u64,
    pub cpu_shares: u64,
}

/// Which cgroup layout the host uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// cgroup v1: `(controller mount dir name, mount options)`, e.g. `("memory", "memory")`.
    V1 { controllers: Vec<(String, String)> },
    /// cgroup v2 unified hierarchy mounted at the root.
    V2,
}

/// The v1 controllers docklab delegates, with the mount options used inside a machine.
const V1_CONTROLLERS: &[(&str, &str)] = &[
    ("memory", "memory"),
    ("pids", "pids"),
    ("cpu", "cpu"),
    ("cpuacct", "cpuacct"),
    ("cpuset", "cpuset"),
    ("blkio", "blkio"),
    ("devices", "devices"),
    ("freezer", "freezer"),
    ("systemd", "none,name=systemd"),
];

impl Layout {
    /// Detects the layout under `root` (normally `/sys/fs/cgroup`).
    pub fn detect(root: &Path) -> Result<Layout, CgroupError> {
        if root.join("cgroup.controllers").exists() {
            return Ok(Layout::V2);
        }
        let controllers: Vec<(String, String)> = V1_CONTROLLERS
            .iter()
            .filter(|(dir, _)| root.join(dir).join("cgroup.procs").exists())
            .map(|(d, o)| (d.to_string(), o.to_string()))
            .collect();
        if controllers.iter().any(|(d, _)| d == "memory") && controllers.iter().any(|(d, _)| d == "pids") {
            Ok(Layout::V1 { controllers })
        } else {
            Err(CgroupError::NoHierarchy { root: root.to_path_buf() })
        }
    }
}

/// A machine's cgroup: one directory per v1 controller, or one v2 directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineCgroup {
    pub layout: Layout,
    /// Absolute directories, one per controller on v1 (same order as `layout`), one on v2.
    pub dirs: Vec<PathBuf>,
}

/// Reads the current process's cgroup path for a v1 controller (or v2 when `controller` is "").
pub fn own_cgroup(proc_self_cgroup: &str, controller: &str) -> Option<String> {
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller || c == format!("name={controller}"))
        };
        if matches {
            return Some(path.to_string());
        }
    }
    None
}

impl MachineCgroup {
    /// Where machine `id`'s cgroup goes, under the server's own cgroup in each hierarchy.
    pub fn plan(root: &Path, layout: &Layout, self_cgroup: &str, id: &str) -> MachineCgroup {
        let under = |ctrl: &str| -> PathBuf {
            let own = own_cgroup(self_cgroup, ctrl).unwrap_or_else(|| "/".into());
            let mut p = match ctrl {
                "" => root.to_path_buf(),
                c => root.join(c),
            };
            p.push(own.trim_start_matches('/'));
            p.join("docklab").join(id)
        };
        let dirs = match layout {
            Layout::V1 { controllers } => controllers.iter().map(|(d, _)| under(d)).collect(),
            Layout::V2 => vec![under("")],
        };
        MachineCgroup { layout: layout.clone(), dirs }
    }

    /// Creates the directories, writes the limits and hands them to `uid_base`.
    pub fn create(&self, limits: &Limits, uid_base: u32) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V1 { controllers } => {
                for ((name, _), dir) in controllers.iter().zip(&self.dirs) {
                    create_dir_v1(dir, name)?;
                    match name.as_str() {
                        "memory" => {
                            write(dir, "memory.limit_in_bytes", &limits.memory_bytes.to_string())?;
                            // Swap would let a machine exceed its memory limit; best effort since
                            // hosts without swap accounting lack the file.
                            let _ = write(dir, "memory.memsw.limit_in_bytes", &limits.memory_bytes.to_string());
                        }
                        "pids" => write(dir, "pids.max", &limits.pids_max.to_string())?,
                        "cpu" => write(dir, "cpu.shares", &limits.cpu_shares.to_string())?,
                        _ => {}
                    }
                    chown_tree(dir, uid_base)?;
                }
            }
            Layout::V2 => {
                let dir = &self.dirs[0];
                // Every ancestor up to our `docklab` directory must pass the controllers down.
                if let Some(docklab) = dir.parent() {
                    fs::create_dir_all(docklab).map_err(io_err(docklab))?;
                    for p in [docklab.parent(), Some(docklab)].into_iter().flatten() {
                        enable_controllers_v2(p)?;
                    }
                }
                fs::create_dir_all(dir).map_err(io_err(dir))?;
                write(dir, "memory.max", &limits.memory_bytes.to_string())?;
                let _ = write(dir, "memory.swap.max", "0");
                write(dir, "pids.max", &limits.pids_max.to_string())?;
                // cpu.weight is 1..10000 with 100 as default; map v1 shares (1024 default) onto it.
                let weight = (limits.cpu_shares * 100 / 1024).clamp(1, 10000);
                write(dir, "cpu.weight", &weight.to_string())?;
                // Processes live in a leaf so the machine's root cgroup may delegate controllers.
                let leaf = dir.join("init");
                fs::create_dir_all(&leaf).map_err(io_err(&leaf))?;
                enable_controllers_v2(dir)?;
                chown_tree(dir, uid_base)?;
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes its pid into to join the machine.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match self.layout {
            Layout::V1 { .. } => self.dirs.iter().map(|d| d.join("cgroup.procs")).collect(),
            Layout::V2 => vec![self.dirs[0].join("init/cgroup.procs")],
        }
    }

    /// Moves process `pid` (0 = the caller) into the machine's cgroup.
    pub fn join(&self, pid: i32) -> Result<(), CgroupError> {
        for f in self.procs_files() {
            fs::write(&f, pid.to_string()).map_err(io_err(&f))?;
        }
        Ok(())
    }

    /// Every pid in the machine's cgroup tree (read from the first hierarchy).
    pub fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        if let Some(dir) = self.dirs.first() {
            collect_pids(dir, &mut out);
        }
        out
    }

    /// Kills every process of the machine but `spare`, then `spare` too, and waits until the
    /// cgroup is empty. Sparing the launcher lets it reap the machine's init, so no zombie is
    /// left for the host's init to collect.
    pub fn kill_all_sparing(&self, spare: Option<i32>, wait: Duration) -> Result<(), CgroupError> {
        if let Some(s) = spare {
            self.kill_matching(|p| p != s, wait)?;
        }
        self.kill_all(wait)
    }

    /// Kills every process of the machine and waits until the cgroup is empty.
    pub fn kill_all(&self, wait: Duration) -> Result<(), CgroupError> {
        self.kill_matching(|_| true, wait)
    }

    fn kill_matching(&self, select: impl Fn(i32) -> bool, wait: Duration) -> Result<(), CgroupError> {
        let Some(first) = self.dirs.first() else { return Ok(()) };
        if !first.exists() {
            return Ok(());
        }
        let freezer = match &self.layout {
            Layout::V1 { controllers } => controllers
                .iter()
                .zip(&self.dirs)
                .find(|((n, _), _)| n == "freezer")
                .map(|(_, d)| d.clone()),
            Layout::V2 => None,
        };
        let deadline = Instant::now() + wait;
        loop {
            if let Layout::V2 = self.layout {
                if select(-1) {
                    // cgroup.kill kills the whole subtree atomically (Linux 5.14+).
                    let _ = write(first, "cgroup.kill", "1");
                }
            }
            // Freeze first so nothing forks while we kill (a fork bomb cannot outrun us).
            if let Some(f) = &freezer {
                let _ = write(f, "freezer.state", "FROZEN");
            }
            let pids: Vec<i32> = self.pids().into_iter().filter(|p| select(*p)).collect();
            for pid in &pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
            }
            if let Some(f) = &freezer {
                let _ = write(f, "freezer.state", "THAWED");
            }
            if pids.is_empty() && !self.pids().into_iter().any(&select) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CgroupError::StillBusy { path: first.clone(), secs: wait.as_secs() });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes the machine's cgroup directories (children first). They must be empty of processes.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            remove_tree(dir)?;
        }
        Ok(())
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let p = dir.join(file);
    fs::write(&p, value).map_err(io_err(&p))
}

fn create_dir_v1(dir: &Path, controller: &str) -> Result<(), CgroupError> {
    // cpuset needs cpus and mems set at every level before a task may join; copy the parent's.
    let mut missing = Vec::new();
    let mut p = dir.to_path_buf();
    while !p.exists() {
        missing.push(p.clone());
        if !p.pop() {
            break;
        }
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::Io { path: d, source: e }),
        }
        if controller == "cpuset" {
            let parent = d.parent().unwrap_or(Path::new("/"));
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let v = fs::read_to_string(parent.join(f)).map_err(io_err(parent))?;
                write(&d, f, v.trim())?;
            }
        }
    }
    Ok(())
}

fn enable_controllers_v2(dir: &Path) -> Result<(), CgroupError> {
    let avail = fs::read_to_string(dir.join("cgroup.controllers")).map_err(io_err(dir))?;
    for c in ["memory", "pids", "cpu", "cpuset", "io"] {
        if avail.split_whitespace().any(|a| a == c) {
            let _ = write(dir, "cgroup.subtree_control", &format!("+{c}"));
        }
    }
    Ok(())
}

/// Files a delegated cgroup's owner may write: enough to create sub-cgroups and move processes,
/// never the limits docklab set on the machine itself (cgroup v2 delegation rules, applied to v1 too).
const DELEGATED_FILES: &[&str] = &["cgroup.procs", "tasks", "cgroup.threads", "cgroup.subtree_control", "cgroup.clone_children", "notify_on_release"];

fn chown_tree(dir: &Path, uid: u32) -> Result<(), CgroupError> {
    let own = |p: &Path| std::os::unix::fs::chown(p, Some(uid), Some(uid)).map_err(io_err(p));
    own(dir)?;
    for f in DELEGATED_FILES {
        let p = dir.join(f);
        if p.exists() {
            own(&p)?;
        }
    }
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            // Sub-cgroups (the v2 `init` leaf) belong to the machine entirely.
            chown_all(&entry.path(), uid)?;
        }
    }
    Ok(())
}

fn chown_all(dir: &Path, uid: u32) -> Result<(), CgroupError> {
    let own = |p: &Path| std::os::unix::fs::chown(p, Some(uid), Some(uid)).map_err(io_err(p));
    own(dir)?;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            chown_all(&entry.path(), uid)?;
        } else {
            let _ = own(&entry.path());
        }
    }
    Ok(())
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out);
            }
        }
    }
}

fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    if !dir.exists() {
        return Ok(());
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path())?;
            }
        }
    }
    // A cgroup directory may stay busy for a moment after its last process died.
    let mut last = None;
    for _ in 0..100 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(CgroupError::Io { path: dir.to_path_buf(), source: last.unwrap_or_else(|| io::Error::other("busy")) })
}

/// Machine ids that have a cgroup under the server's `docklab` directory (for the start-up sweep).
pub fn machine_ids(root: &Path, layout: &Layout, self_cgroup: &str) -> Vec<String> {
    let probe = MachineCgroup::plan(root, layout, self_cgroup, "x");
    let Some(docklab) = probe.dirs.first().and_then(|d| d.parent()) else { return Vec::new() };
    fs::read_dir(docklab)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SELF_V1: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n3:cpuset:/\n0::/\n";

    #[test]
    fn finds_own_cgroup_per_controller() {
        assert_eq!(own_cgroup(SELF_V1, "memory").as_deref(), Some("/process_api/abc"));
        assert_eq!(own_cgroup(SELF_V1, "pids").as_deref(), Some("/"));
        assert_eq!(own_cgroup(SELF_V1, "systemd").as_deref(), Some("/"));
        assert_eq!(own_cgroup(SELF_V1, "").as_deref(), Some("/"));
        assert_eq!(own_cgroup(SELF_V1, "blkio"), None);
    }

    #[test]
    fn plans_machine_dirs_under_own_cgroup() {
        let layout = Layout::V1 { controllers: vec![("memory".into(), "memory".into()), ("pids".into(), "pids".into())] };
        let cg = MachineCgroup::plan(Path::new("/sys/fs/cgroup"), &layout, SELF_V1, "s1");
        assert_eq!(
            cg.dirs,
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/docklab/s1"),
                PathBuf::from("/sys/fs/cgroup/pids/docklab/s1")
            ]
        );
        let v2 = MachineCgroup::plan(Path::new("/sys/fs/cgroup"), &Layout::V2, "0::/user.slice/x\n", "s1");
        assert_eq!(v2.dirs, vec![PathBuf::from("/sys/fs/cgroup/user.slice/x/docklab/s1")]);
        assert_eq!(v2.procs_files(), vec![PathBuf::from("/sys/fs/cgroup/user.slice/x/docklab/s1/init/cgroup.procs")]);
    }

    #[test]
    fn writes_v2_limits_and_delegates() {
        // A plain directory stands in for the unified hierarchy: the kernel's files are ordinary
        // files here, which is enough to check what gets written where.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory pids").unwrap();
        fs::create_dir_all(root.join("docklab")).unwrap();
        fs::write(root.join("docklab/cgroup.controllers"), "cpuset cpu io memory pids").unwrap();
        let cg = MachineCgroup::plan(root, &Layout::V2, "0::/\n", "m1");
        fs::create_dir_all(&cg.dirs[0]).unwrap();
        fs::write(cg.dirs[0].join("cgroup.controllers"), "cpu memory pids").unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        cg.create(&Limits { memory_bytes: 1 << 30, pids_max: 100, cpu_shares: 512 }, uid).unwrap();
        let read = |f: &str| fs::read_to_string(cg.dirs[0].join(f)).unwrap();
        assert_eq!(read("memory.max"), "1073741824");
        assert_eq!(read("pids.max"), "100");
        assert_eq!(read("cpu.weight"), "50");
        assert!(cg.dirs[0].join("init").is_dir());
        assert!(fs::read_to_string(root.join("docklab/cgroup.subtree_control")).unwrap().starts_with('+'));
    }

    #[test]
    fn detects_v1_and_v2() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(Layout::detect(tmp.path()).is_err());
        for c in ["memory", "pids"] {
            fs::create_dir_all(tmp.path().join(c)).unwrap();
            fs::write(tmp.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        match Layout::detect(tmp.path()).unwrap() {
            Layout::V1 { controllers } => assert_eq!(controllers.len(), 2),
            Layout::V2 => panic!("expected v1"),
        }
        fs::write(tmp.path().join("cgroup.controllers"), "memory").unwrap();
        assert_eq!(Layout::detect(tmp.path()).unwrap(), Layout::V2);
    }
}
