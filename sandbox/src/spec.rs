//! The shape of a session machine: our own record (`machine.json`) and the OCI runtime `Spec`
//! (`config.json`) that the launcher and the machine's init follow.
//!
//! Both live in the session's state directory, so a restarted server can find every machine it
//! left behind and adopt or reap it.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder,
};
use serde::{Deserialize, Serialize};

use crate::cgroup::{Layout, Limits, MachineCgroup};
use crate::error::SandboxError;

/// Size cap of the machine's `/run/docklab` tmpfs (init's two small files and a socket).
const CONTROL_TMPFS_SIZE: &str = "size=1m";
/// Inode cap of the machine's `/run/docklab` tmpfs.
const CONTROL_TMPFS_INODES: &str = "nr_inodes=64";

/// Size of every machine's uid and gid range.
pub const UID_RANGE: u32 = 65_536;

/// Everything docklab knows about one machine, kept in `machine.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub id: String,
    /// Slot in the uid allocation table; the range is `uid_base .. uid_base + UID_RANGE`.
    pub uid_slot: u32,
    pub uid_base: u32,
    pub session_dir: PathBuf,
    pub node_image: PathBuf,
    pub cgroup: MachineCgroup,
    pub limits: Limits,
    /// Unix seconds at creation.
    pub created_unix: i64,
    /// The machine's place on the host bridge.
    #[serde(default)]
    pub net: Option<MachineNet>,
    /// Size cap of everything the machine writes (root filesystem changes, /var/lib/docker).
    #[serde(default)]
    pub disk_bytes: Option<u64>,
    /// The process that created the machine. While it lives, the machine is its; once it is
    /// gone, the next server adopts or reaps the machine.
    #[serde(default)]
    pub owner: Option<Owner>,
}

/// A process, identified by pid and start time so that a reused pid is not mistaken for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: i32,
    pub start_ticks: u64,
}

impl Owner {
    /// The calling process.
    pub fn current() -> Option<Owner> {
        let pid = std::process::id() as i32;
        Some(Owner { pid, start_ticks: start_ticks(pid)? })
    }

    pub fn is_alive(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
    }
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it start past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A machine's network attachment: `eth0` inside, `veth` on the host's `bridge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineNet {
    pub bridge: String,
    pub veth: String,
    pub address: std::net::Ipv4Addr,
    pub gateway: std::net::Ipv4Addr,
    pub prefix_len: u8,
}

impl MachineRecord {
    pub fn spec_path(&self) -> PathBuf {
        self.session_dir.join("config.json")
    }
    pub fn record_path(dir: &Path) -> PathBuf {
        dir.join("machine.json")
    }
    /// The machine's root filesystem mount point (an overlay, only inside the machine's namespaces).
    pub fn rootfs(&self) -> PathBuf {
        self.session_dir.join("rootfs")
    }
    /// Mount point of the idmapped view of the node image (the overlay's lower layer).
    pub fn lower(&self) -> PathBuf {
        self.session_dir.join("lower")
    }
    /// Everything the machine writes lives here: on its own capped filesystem when `disk_bytes`
    /// is set (a sparse ext4 image, loop-mounted only inside the machine's namespaces).
    pub fn disk_dir(&self) -> PathBuf {
        self.session_dir.join("disk")
    }
    pub fn disk_image(&self) -> PathBuf {
        self.session_dir.join("disk.img")
    }
    pub fn upper(&self) -> PathBuf {
        self.disk_dir().join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.disk_dir().join("work")
    }
    /// The machine's `/var/lib/docker`: a plain host directory, since overlay2 cannot sit on overlayfs.
    pub fn docker_dir(&self) -> PathBuf {
        self.disk_dir().join("docker")
    }
    /// The host side of the machine's Docker engine: the socket of its engine relay (see
    /// [`crate::engine_relay`]), `<state>/engines/<id>.sock`, in a directory only host root can
    /// enter. (The engine itself listens on `/run/docklab/docker.sock` inside the machine, on a
    /// small tmpfs of the machine's own that the host never sees.)
    pub fn docker_socket(&self) -> PathBuf {
        let state = self.session_dir.parent().and_then(Path::parent).unwrap_or(Path::new("/"));
        state.join("engines").join(format!("{}.sock", self.id))
    }
    /// Written by the launcher on the host: `starting`, `ready`, `failed: …`, `stopped: …`.
    pub fn status_path(&self) -> PathBuf {
        self.session_dir.join("status")
    }
    pub fn init_pid_path(&self) -> PathBuf {
        self.session_dir.join("init.pid")
    }
    /// Host pid of the machine's init, as the launcher recorded it.
    pub fn init_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.init_pid_path()).ok()?.trim().parse().ok()
    }
    pub fn launcher_pid_path(&self) -> PathBuf {
        self.session_dir.join("launcher.pid")
    }

    pub fn save(&self) -> Result<(), SandboxError> {
        let path = Self::record_path(&self.session_dir);
        let json = serde_json::to_vec_pretty(self).map_err(|e| SandboxError::Spec { path: path.clone(), reason: e.to_string() })?;
        write_atomic(&path, &json)
    }

    pub fn load(dir: &Path) -> Result<MachineRecord, SandboxError> {
        let path = Self::record_path(dir);
        let bytes = std::fs::read(&path).map_err(|e| SandboxError::io("reading the machine record", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| SandboxError::Spec { path, reason: e.to_string() })
    }
}

/// Writes a file so that readers see either the old or the new content, never half of it.
/// Readable by root only (mode 0600): records of a machine are nobody else's business.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SandboxError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| SandboxError::io("writing", &tmp, e))?;
    std::io::Write::write_all(&mut f, bytes).map_err(|e| SandboxError::io("writing", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| SandboxError::io("renaming", path, e))
}

fn spec_err(path: &Path) -> impl Fn(oci_spec::OciSpecError) -> SandboxError + '_ {
    move |e| SandboxError::Spec { path: path.to_path_buf(), reason: e.to_string() }
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str], p: &Path) -> Result<Mount, SandboxError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_err(p))
}

/// Builds the OCI runtime spec for a machine. Mounts are applied in order by the machine's init,
/// before `pivot_root`; `bind` sources are host paths.
pub fn build_spec(rec: &MachineRecord) -> Result<Spec, SandboxError> {
    let p = rec.spec_path();
    let p = p.as_path();
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"], p)?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev"], p)?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"], p)?,
    ];
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        let d = format!("/dev/{dev}");
        mounts.push(mount(&d, "bind", &d, &["bind", "nosuid"], p)?);
    }
    mounts.extend([
        mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"], p)?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"], p)?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"], p)?,
        mount("/run", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=755", "size=65536k"], p)?,
        mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777", "size=524288k"], p)?,
        mount("/var/lib/docker", "bind", &rec.docker_dir().to_string_lossy(), &["rbind"], p)?,
        // init's state and crash count and the engine's socket for docklab: the machine's own
        // small tmpfs (charged to its memory cgroup, capped in bytes and inodes), never a host
        // directory. The server reads it through the init's root, without following links
        // (crate::hostile).
        mount("/run/docklab", "tmpfs", "tmpfs", &["nosuid", "nodev", "noexec", "mode=755", CONTROL_TMPFS_SIZE, CONTROL_TMPFS_INODES], p)?,
        mount("/sys/fs/cgroup", "tmpfs", "cgroup", &["nosuid", "noexec", "nodev", "mode=755"], p)?,
    ]);
    match &rec.cgroup.layout {
        Layout::V1 { controllers } => {
            for (dir, opts) in controllers {
                let mut o = vec!["nosuid", "noexec", "nodev"];
                o.extend(opts.split(','));
                mounts.push(mount(&format!("/sys/fs/cgroup/{dir}"), "cgroup", "cgroup", &o, p)?);
            }
        }
        Layout::V2 => {
            // On a v2 host the whole of /sys/fs/cgroup is the namespace's own cgroup2 tree.
            mounts.retain(|m| m.destination() != Path::new("/sys/fs/cgroup"));
            mounts.push(mount("/sys/fs/cgroup", "cgroup2", "cgroup2", &["nosuid", "noexec", "nodev"], p)?);
        }
    }

    let idmap = |base: u32| {
        LinuxIdMappingBuilder::default().container_id(0u32).host_id(base).size(UID_RANGE).build().map_err(spec_err(p))
    };
    let namespaces = [
        LinuxNamespaceType::User,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ]
    .into_iter()
    .map(|t| LinuxNamespaceBuilder::default().typ(t).build().map_err(spec_err(p)))
    .collect::<Result<Vec<_>, _>>()?;
    let resources = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(rec.limits.memory_bytes as i64).build().map_err(spec_err(p))?)
        .pids(LinuxPidsBuilder::default().limit(rec.limits.pids_max as i64).build().map_err(spec_err(p))?)
        .cpu(LinuxCpuBuilder::default().shares(rec.limits.cpu_shares).build().map_err(spec_err(p))?)
        .build()
        .map_err(spec_err(p))?;
    let cgroups_path = rec.cgroup.dirs.first().cloned().unwrap_or_default();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .uid_mappings(vec![idmap(rec.uid_base)?])
        .gid_mappings(vec![idmap(rec.uid_base)?])
        .resources(resources)
        .cgroups_path(cgroups_path)
        .build()
        .map_err(spec_err(p))?;
    let process = ProcessBuilder::default()
        .args(vec!["/usr/sbin/dockerd".to_string()])
        .env(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "HOME=/root".to_string(),
        ])
        .cwd("/")
        .build()
        .map_err(spec_err(p))?;
    let mut annotations = std::collections::HashMap::new();
    if let Some(net) = &rec.net {
        annotations.insert("dev.docklab.address".to_string(), format!("{}/{}", net.address, net.prefix_len));
        annotations.insert("dev.docklab.gateway".to_string(), net.gateway.to_string());
    }
    SpecBuilder::default()
        .annotations(annotations)
        .version("1.0.2")
        .hostname("lab")
        .root(RootBuilder::default().path(rec.rootfs()).readonly(false).build().map_err(spec_err(p))?)
        .mounts(mounts)
        .process(process)
        .linux(linux)
        .build()
        .map_err(spec_err(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> MachineRecord {
        MachineRecord {
            id: "abc".into(),
            uid_slot: 3,
            uid_base: 200_000 + 3 * UID_RANGE,
            session_dir: "/var/lib/docklab/sessions/abc".into(),
            node_image: "/var/lib/docklab/images/node".into(),
            cgroup: MachineCgroup {
                layout: Layout::V1 { controllers: vec![("memory".into(), "memory".into()), ("systemd".into(), "none,name=systemd".into())] },
                dirs: vec!["/sys/fs/cgroup/memory/docklab/abc".into(), "/sys/fs/cgroup/systemd/docklab/abc".into()],
            },
            limits: Limits { memory_bytes: 1 << 30, pids_max: 2048, cpu_shares: 1024 },
            created_unix: 0,
            net: None,
            disk_bytes: None,
            owner: Owner::current(),
        }
    }

    #[test]
    fn spec_maps_root_to_the_machine_range() {
        let spec = build_spec(&record()).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let m = &linux.uid_mappings().as_ref().unwrap()[0];
        assert_eq!((m.container_id(), m.host_id(), m.size()), (0, 396_608, 65_536));
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 7);
        assert_eq!(spec.hostname().as_deref(), Some("lab"));
    }

    #[test]
    fn spec_mounts_docker_dir_and_cgroup_controllers() {
        let spec = build_spec(&record()).unwrap();
        let mounts = spec.mounts().as_ref().unwrap();
        let docker = mounts.iter().find(|m| m.destination() == Path::new("/var/lib/docker")).unwrap();
        assert_eq!(docker.source().as_deref(), Some(Path::new("/var/lib/docklab/sessions/abc/disk/docker")));
        let sysd = mounts.iter().find(|m| m.destination() == Path::new("/sys/fs/cgroup/systemd")).unwrap();
        assert!(sysd.options().as_ref().unwrap().contains(&"name=systemd".to_string()));
        // /dev must be mounted before the device nodes bound onto it.
        let pos = |d: &str| mounts.iter().position(|m| m.destination() == Path::new(d)).unwrap();
        assert!(pos("/dev") < pos("/dev/null") && pos("/dev") < pos("/dev/pts"));
        assert!(pos("/sys/fs/cgroup") < pos("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn control_dir_is_the_machines_own_capped_tmpfs() {
        let spec = build_spec(&record()).unwrap();
        let mounts = spec.mounts().as_ref().unwrap();
        let control = mounts.iter().find(|m| m.destination() == Path::new("/run/docklab")).unwrap();
        assert_eq!(control.typ().as_deref(), Some("tmpfs"));
        let opts = control.options().as_ref().unwrap();
        assert!(opts.contains(&"size=1m".to_string()) && opts.contains(&"nr_inodes=64".to_string()), "{opts:?}");
        // No bind mount from the host lands under /run (only devices and the machine's own disk).
        for m in mounts.iter().filter(|m| m.typ().as_deref() == Some("bind")) {
            let d = m.destination().to_string_lossy().to_string();
            assert!(d.starts_with("/dev/") || d == "/var/lib/docker", "{d} is bound from the host");
        }
        let pos = |d: &str| mounts.iter().position(|m| m.destination() == Path::new(d)).unwrap();
        assert!(pos("/run") < pos("/run/docklab"));
        assert_eq!(record().docker_socket(), Path::new("/var/lib/docklab/engines/abc.sock"));
    }

    #[test]
    fn owner_is_alive_only_while_its_process_runs() {
        let me = Owner::current().unwrap();
        assert!(me.is_alive());
        assert!(!Owner { start_ticks: me.start_ticks + 1, ..me.clone() }.is_alive(), "a reused pid is not the owner");
        assert!(!Owner { pid: i32::MAX, start_ticks: 1 }.is_alive());
    }

    #[test]
    fn record_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = record();
        r.session_dir = tmp.path().to_path_buf();
        r.save().unwrap();
        assert_eq!(MachineRecord::load(tmp.path()).unwrap(), r);
    }
}
