//! `busybox`, from Debian's static busybox binary (the host's `busybox-static` package): as a
//! root filesystem for the OCI image, and as a `docker load` archive that every machine loads at
//! boot, so `docker run busybox` works even before the machine can reach the registry.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::ImageError;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io { what, path: path.to_path_buf(), source }
}

/// A tar stream builder with fixed times and owners, so the same inputs give the same digest.
struct LayerTar {
    b: tar::Builder<Vec<u8>>,
}

impl LayerTar {
    fn new() -> Self {
        LayerTar { b: tar::Builder::new(Vec::new()) }
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }
    fn dir(&mut self, path: &str) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.b.append_data(&mut h, path, std::io::empty())
    }
    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.b.append_data(&mut h, path, data)
    }
    fn symlink(&mut self, path: &str, target: &str) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.b.append_link(&mut h, path, target)
    }
    fn finish(self) -> std::io::Result<Vec<u8>> {
        self.b.into_inner()
    }
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

/// The root filesystem of the busybox image: the static binary and a link per applet.
fn busybox_layer(busybox: &Path) -> Result<Vec<u8>, ImageError> {
    let applets = applets(busybox)?;
    let bin = std::fs::read(busybox).map_err(io_err("reading", busybox))?;
    let mut t = LayerTar::new();
    let e = |r: std::io::Result<()>| r.map_err(io_err("writing the layer for", busybox));
    for d in ["bin/", "dev/", "etc/", "home/", "proc/", "root/", "sys/", "tmp/", "usr/", "usr/sbin/", "var/", "var/www/"] {
        e(t.dir(d))?;
    }
    e(t.file("bin/busybox", 0o755, &bin))?;
    for a in &applets {
        e(t.symlink(&format!("bin/{a}"), "busybox"))?;
    }
    e(t.file("etc/passwd", 0o644, PASSWD))?;
    e(t.file("etc/group", 0o644, GROUP))?;
    t.finish().map_err(io_err("writing the layer for", busybox))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes `busybox:latest` as an archive `docker load` accepts (the `manifest.json` format).
pub fn write_busybox_archive(busybox: &Path, out: &Path) -> Result<(), ImageError> {
    let layer = busybox_layer(busybox)?;
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let version = version(busybox);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
            "Labels": {
                "org.opencontainers.image.title": "busybox",
                "org.opencontainers.image.description": "BusyBox built by docklab from the Debian package busybox-static",
                "dev.docklab.built-from": format!("debian:bookworm busybox-static ({})", version.trim()),
            }
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "docklab: busybox-static from Debian" }]
    });
    let config_bytes = serde_json::to_vec(&config).expect("static JSON serializes");
    let config_name = format!("{}.json", sha256_hex(&config_bytes));
    let layer_dir = sha256_hex(&layer);
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["busybox:latest"],
        "Layers": [format!("{layer_dir}/layer.tar")]
    }]);
    let mut t = LayerTar::new();
    let e = |r: std::io::Result<()>| r.map_err(io_err("writing", out));
    e(t.dir(&format!("{layer_dir}/")))?;
    e(t.file(&format!("{layer_dir}/layer.tar"), 0o644, &layer))?;
    e(t.file(&config_name, 0o644, &config_bytes))?;
    e(t.file("manifest.json", 0o644, &serde_json::to_vec(&manifest).expect("static JSON serializes")))?;
    let archive = t.finish().map_err(io_err("writing", out))?;
    let mut f = File::create(out).map_err(io_err("creating", out))?;
    f.write_all(&archive).map_err(io_err("writing", out))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_archive_is_reproducible_and_loadable_shape() {
        let bb = Path::new("/bin/busybox");
        if !bb.exists() {
            eprintln!("skipping: busybox-static is not installed (docklab setup installs it)");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a.tar"), tmp.path().join("b.tar"));
        write_busybox_archive(bb, &a).unwrap();
        write_busybox_archive(bb, &b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "same inputs, same bytes");
        let mut ar = tar::Archive::new(File::open(&a).unwrap());
        let names: Vec<String> = ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert!(names.contains(&"manifest.json".to_string()));
        assert!(names.iter().any(|n| n.ends_with("/layer.tar")));
    }
}
