//! Root filesystems from Debian packages with mmdebstrap, and the distroless selection of files
//! from them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::recipes::{MIRRORS, SUITE};
use super::ImageError;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io { what, path: path.to_path_buf(), source }
}

/// What the official `-slim` images leave out (their `/etc/dpkg/dpkg.cfg.d/docker`).
const SLIM_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
];

/// Runs a command, sending each line it prints to `log`; the last lines go into the error.
pub fn run_logged(image: &str, what: &'static str, cmd: &mut Command, log: &dyn Fn(String), show: fn(&str) -> bool) -> Result<(), ImageError> {
    let fail = |detail: String| ImageError::Command { image: image.to_string(), command: what, detail };
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| fail(e.to_string()))?;
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    let t1 = std::thread::spawn(move || BufReader::new(out).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
    let t2 = std::thread::spawn(move || BufReader::new(err).lines().map_while(Result::ok).for_each(|l| drop(tx2.send(l))));
    let mut tail = std::collections::VecDeque::new();
    for line in rx {
        if show(&line) {
            log(format!("[{image}] {line}"));
        }
        tail.push_back(line);
        if tail.len() > 8 {
            tail.pop_front();
        }
    }
    let _ = (t1.join(), t2.join());
    let status = child.wait().map_err(|e| fail(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(fail(format!("{status}: {}", Vec::from(tail).join(" | "))))
    }
}

/// `mmdebstrap` into the directory `root` (which must not exist yet).
pub fn bootstrap(image: &str, root: &Path, variant: &str, packages: &[&str], slim: bool, epoch: u64, log: &dyn Fn(String)) -> Result<(), ImageError> {
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--mode=root", "--format=directory", &format!("--variant={variant}")]);
    // Merged /usr the way debootstrap makes it: without this, bookworm's init-system-helpers
    // pulls in the `usrmerge` package, and with it all of perl (50 MB in every image).
    cmd.arg("--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr");
    if !packages.is_empty() {
        cmd.arg(format!("--include={}", packages.join(",")));
    }
    // No fsync per unpacked file (as Docker's official Debian images configure dpkg too): the
    // image is written out whole afterwards anyway. Stays in the image for learners' installs.
    cmd.arg("--dpkgopt=force-unsafe-io");
    if slim {
        for e in SLIM_EXCLUDES {
            cmd.arg(format!("--dpkgopt={e}"));
        }
        // Without man pages openjdk's postinst fails (update-alternatives links a man page into
        // /usr/share/man/man1), the well-known slim-image bug; the official images make it too.
        cmd.arg("--essential-hook=mkdir -p \"$1/usr/share/man/man1\"");
    }
    cmd.arg(SUITE).arg(root).args(MIRRORS).env("SOURCE_DATE_EPOCH", epoch.to_string());
    run_logged(image, "mmdebstrap", &mut cmd, log, |l| l.starts_with("I: ") || l.starts_with("E: ") || l.starts_with("W: "))?;
    // Left by the build, provided by Docker at run time, or different on every build.
    for p in ["etc/resolv.conf", "etc/hostname", "var/cache/ldconfig/aux-cache", "var/lib/dpkg/status-old", "var/lib/dpkg/diversions-old", "var/cache/debconf/config.dat-old", "var/cache/debconf/templates.dat-old"] {
        let _ = fs::remove_file(root.join(p));
    }
    Ok(())
}

/// Writes files into the image's root and runs its hooks (`sh -c HOOK sh ROOT`).
pub fn customize(image: &str, root: &Path, files: &[(&str, &str)], hooks: &[&str], log: &dyn Fn(String)) -> Result<(), ImageError> {
    for (rel, content) in files {
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        fs::write(&p, content).map_err(io_err("writing", &p))?;
    }
    for hook in hooks {
        run_logged(image, "a build hook", Command::new("sh").args(["-euc", hook, "sh"]).arg(root), log, |_| true)?;
    }
    Ok(())
}

/// One package in `var/lib/dpkg/status`.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    pub version: String,
    depends: Vec<Vec<String>>,
    provides: Vec<String>,
    paragraph: String,
}

fn dep_name(s: &str) -> String {
    let s = s.trim();
    let end = s.find([' ', '(']).unwrap_or(s.len());
    s[..end].split(':').next().unwrap_or("").to_string()
}

/// Installed packages of a root filesystem, by name.
pub fn installed(root: &Path) -> Result<BTreeMap<String, Installed>, ImageError> {
    let path = root.join("var/lib/dpkg/status");
    let text = fs::read_to_string(&path).map_err(io_err("reading", &path))?;
    let mut out = BTreeMap::new();
    for para in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let mut fields: BTreeMap<&str, String> = BTreeMap::new();
        let mut last = "";
        for line in para.lines() {
            if line.starts_with(' ') {
                if let Some(v) = fields.get_mut(last) {
                    v.push('\n');
                    v.push_str(line);
                }
            } else if let Some((k, v)) = line.split_once(':') {
                last = k;
                fields.insert(k, v.trim().to_string());
            }
        }
        if !fields.get("Status").is_some_and(|s| s.ends_with("installed") && !s.contains("not-installed") && !s.contains("config-files")) {
            continue;
        }
        let Some(name) = fields.get("Package") else { continue };
        let deps = |k: &str| -> Vec<Vec<String>> {
            fields.get(k).map(|v| v.split(',').map(|g| g.split('|').map(dep_name).collect()).collect()).unwrap_or_default()
        };
        let mut depends = deps("Pre-Depends");
        depends.extend(deps("Depends"));
        let provides = fields.get("Provides").map(|v| v.split(',').map(dep_name).collect()).unwrap_or_default();
        out.insert(name.clone(), Installed { version: fields.get("Version").cloned().unwrap_or_default(), depends, provides, paragraph: format!("{}\n", para.trim_end()) });
    }
    Ok(out)
}

/// What a distroless image never contains, even when something depends on it: shells, package
/// managers, and the tools their maintainer scripts need.
const NOT_DISTROLESS: &[&str] = &[
    "dpkg", "apt", "debconf", "debconf-2.0", "perl-base", "bash", "dash", "coreutils", "debianutils", "sed", "grep", "tar", "gzip",
    "findutils", "diffutils", "util-linux", "mount", "login", "passwd", "adduser", "init-system-helpers", "sensible-utils", "ucf",
    "ca-certificates", "ca-certificates-java", "java-common", "lsb-base", "sysvinit-utils", "procps", "mawk", "libc-bin",
];

/// The packages an image keeps: `roots` and, recursively, what they depend on, minus the above.
pub fn closure(image: &str, roots: &[&str], db: &BTreeMap<String, Installed>) -> Result<BTreeSet<String>, ImageError> {
    let mut providers: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, p) in db {
        for v in &p.provides {
            providers.entry(v.as_str()).or_insert(name.as_str());
        }
    }
    let mut keep = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    for r in roots {
        if !db.contains_key(*r) {
            return Err(ImageError::MissingPackage { image: image.into(), package: r.to_string() });
        }
        todo.push(r.to_string());
    }
    while let Some(p) = todo.pop() {
        if NOT_DISTROLESS.contains(&p.as_str()) || !keep.insert(p.clone()) {
            continue;
        }
        for group in &db[&p].depends {
            let chosen = group.iter().find_map(|alt| {
                if db.contains_key(alt) {
                    Some(alt.clone())
                } else {
                    providers.get(alt.as_str()).map(|s| s.to_string())
                }
            });
            if let Some(c) = chosen {
                todo.push(c);
            }
        }
    }
    Ok(keep)
}

/// Files of the kept packages, as paths relative to the root.
pub fn package_files(root: &Path, packages: &BTreeSet<String>) -> Result<BTreeSet<PathBuf>, ImageError> {
    let mut out = BTreeSet::new();
    for p in packages {
        let info = root.join("var/lib/dpkg/info");
        let list = [info.join(format!("{p}.list")), info.join(format!("{p}:amd64.list"))].into_iter().find(|l| l.exists());
        let Some(list) = list else { continue };
        let text = fs::read_to_string(&list).map_err(io_err("reading", &list))?;
        for line in text.lines() {
            let rel = line.trim_start_matches('/');
            if !rel.is_empty() && rel != "." {
                out.insert(PathBuf::from(rel));
                // dpkg lists /lib/x86_64-linux-gnu/libc.so.6, but with merged /usr the file is
                // /usr/lib/...: keep the path through the link as well as the link.
                out.insert(physical(root, Path::new(rel)));
            }
        }
    }
    Ok(out)
}

/// `rel` with every symbolic link among its parent directories resolved (within `root`).
fn physical(root: &Path, rel: &Path) -> PathBuf {
    let Some(name) = rel.file_name() else { return rel.to_path_buf() };
    let mut cur = PathBuf::new();
    for c in rel.parent().unwrap_or(Path::new("")).components() {
        cur.push(c);
        for _ in 0..8 {
            let Ok(target) = fs::read_link(root.join(&cur)) else { break };
            let base = if target.is_absolute() { PathBuf::new() } else { cur.parent().unwrap_or(Path::new("")).to_path_buf() };
            let mut next = PathBuf::new();
            for t in base.join(target.strip_prefix("/").unwrap_or(&target)).components() {
                match t {
                    std::path::Component::ParentDir => {
                        next.pop();
                    }
                    std::path::Component::Normal(n) => next.push(n),
                    _ => {}
                }
            }
            cur = next;
        }
    }
    cur.join(name)
}

/// Bumped when the way distroless images pick their files changes.
pub const DISTROLESS_SELECTION: u32 = 2;

const DISTROLESS_PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const DISTROLESS_GROUP: &str = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n";

/// Prepares a bootstrapped root for the distroless selection and returns the paths to keep.
pub fn distroless(image: &str, root: &Path, roots: &[&str], extra: &[&str], links: &[(&str, &str)]) -> Result<(BTreeSet<PathBuf>, Vec<String>), ImageError> {
    use std::os::unix::fs::symlink;
    let db = installed(root)?;
    let keep = closure(image, roots, &db)?;
    let mut only = package_files(root, &keep)?;
    // distroless records its packages one file each, for scanners, since there is no dpkg.
    let status_d = root.join("var/lib/dpkg/status.d");
    fs::create_dir_all(&status_d).map_err(io_err("creating", &status_d))?;
    for p in &keep {
        let f = status_d.join(p);
        fs::write(&f, &db[p].paragraph).map_err(io_err("writing", &f))?;
    }
    for (rel, content) in [("etc/passwd", DISTROLESS_PASSWD), ("etc/group", DISTROLESS_GROUP)] {
        let f = root.join(rel);
        fs::write(&f, content).map_err(io_err("writing", &f))?;
    }
    let home = root.join("home/nonroot");
    fs::create_dir_all(&home).map_err(io_err("creating", &home))?;
    nix::unistd::chown(&home, Some(nix::unistd::Uid::from_raw(65532)), Some(nix::unistd::Gid::from_raw(65532)))
        .map_err(|e| io_err("changing the owner of", &home)(e.into()))?;
    for (rel, target) in links {
        let p = root.join(rel);
        let _ = fs::remove_file(&p);
        symlink(target, &p).map_err(io_err("linking", &p))?;
        only.insert(PathBuf::from(rel));
    }
    for rel in ["etc/passwd", "etc/group", "var/lib/dpkg/status.d/**", "home/nonroot", "root", "tmp", "proc", "sys", "dev", "run", "var/tmp"] {
        only.insert(PathBuf::from(rel));
    }
    for rel in extra {
        if !rel.ends_with("/**") && !root.join(rel).exists() {
            return Err(ImageError::MissingPackage { image: image.into(), package: format!("(the file /{rel})") });
        }
        only.insert(PathBuf::from(rel));
    }
    let versions = keep.iter().map(|p| format!("{p}={}", db[p].version)).collect();
    Ok((only, versions))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: libc6\nStatus: install ok installed\nVersion: 2.36\nDepends: libgcc-s1\n\n\
Package: libgcc-s1\nStatus: install ok installed\nVersion: 12\nDepends: gcc-12-base (= 12), libc6 (>= 2.35)\n\n\
Package: gcc-12-base\nStatus: install ok installed\nVersion: 12\n\n\
Package: tzdata\nStatus: install ok installed\nVersion: 2024a\nDepends: debconf (>= 0.5) | debconf-2.0\n\n\
Package: debconf\nStatus: install ok installed\nVersion: 1.5\nPre-Depends: perl-base (>= 5.20.1-3~)\nProvides: debconf-2.0\n\n\
Package: python3.11-minimal\nStatus: install ok installed\nVersion: 3.11.2\nDepends: libpython3.11-minimal (= 3.11.2), libexpat1 (>= 2.1~beta3), zlib1g (>= 1:1.2.0) | libz-virtual\n\n\
Package: libpython3.11-minimal\nStatus: install ok installed\nVersion: 3.11.2\nDepends: libc6 (>= 2.36)\n\n\
Package: libexpat1\nStatus: install ok installed\nVersion: 2.5\n\n\
Package: zlib-ng\nStatus: install ok installed\nVersion: 1\nProvides: libz-virtual\n\n\
Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n";

    #[test]
    fn listed_paths_follow_merged_usr_links() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::os::unix::fs::symlink("usr/lib", tmp.path().join("lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", tmp.path().join("usr/lib64")).unwrap();
        assert_eq!(physical(tmp.path(), Path::new("lib/x86_64-linux-gnu/libc.so.6")), Path::new("usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert_eq!(physical(tmp.path(), Path::new("usr/lib64/ld.so")), Path::new("usr/lib/ld.so"));
        assert_eq!(physical(tmp.path(), Path::new("etc/passwd")), Path::new("etc/passwd"));
    }

    #[test]
    fn closure_follows_dependencies_but_never_into_shells_or_debconf() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("var/lib/dpkg")).unwrap();
        fs::write(tmp.path().join("var/lib/dpkg/status"), STATUS).unwrap();
        let db = installed(tmp.path()).unwrap();
        assert!(!db.contains_key("gone"));
        let keep = closure("t", &["tzdata", "python3.11-minimal"], &db).unwrap();
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        assert_eq!(keep, ["gcc-12-base", "libc6", "libexpat1", "libgcc-s1", "libpython3.11-minimal", "python3.11-minimal", "tzdata", "zlib-ng"]);
        assert!(matches!(closure("t", &["nope"], &db), Err(ImageError::MissingPackage { .. })));
    }
}
