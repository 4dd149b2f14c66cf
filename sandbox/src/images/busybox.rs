//! `busybox`, from Debian's static busybox binary (the host's `busybox-static` package): the
//! image's root filesystem tree.

use std::path::Path;
use std::process::Command;

use super::ImageError;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io { what, path: path.to_path_buf(), source }
}

fn applets(busybox: &Path) -> Result<Vec<String>, ImageError> {
    let out = Command::new(busybox).arg("--list").output().map_err(io_err("running", busybox))?;
    if !out.status.success() {
        return Err(ImageError::Applets { path: busybox.to_path_buf() });
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|a| a != "busybox").collect();
    applets.sort();
    Ok(applets)
}

/// The version line busybox prints, e.g. `BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) multi-call binary.`
pub fn version(busybox: &Path) -> String {
    Command::new(busybox).output().map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string()).unwrap_or_default()
}

/// Writes the busybox root filesystem into the empty directory `root`.
pub fn write_tree(busybox: &Path, root: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let applets = applets(busybox)?;
    for d in ["bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "usr/sbin", "var/www"] {
        let p = root.join(d);
        std::fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
    }
    let tmp = root.join("tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).map_err(io_err("setting the mode of", &tmp))?;
    let bin = root.join("bin/busybox");
    std::fs::copy(busybox, &bin).map_err(io_err("copying", busybox))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).map_err(io_err("setting the mode of", &bin))?;
    for a in &applets {
        let p = root.join("bin").join(a);
        symlink("busybox", &p).map_err(io_err("linking", &p))?;
    }
    let passwd = root.join("etc/passwd");
    std::fs::write(&passwd, PASSWD).map_err(io_err("writing", &passwd))?;
    let group = root.join("etc/group");
    std::fs::write(&group, GROUP).map_err(io_err("writing", &group))?;
    Ok(())
}

const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n";
const GROUP: &[u8] = b"root:x:0:\nnogroup:x:65534:\n";
