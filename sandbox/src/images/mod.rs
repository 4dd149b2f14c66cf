//! Base images docklab builds itself from Debian bookworm packages, as OCI image layouts.
//!
//! Each recipe (see [`recipes::CATALOG`]) becomes `<state-dir>/images/oci/<name>/<first-tag>/`, an
//! OCI image layout whose `index.json` names every tag of the image. The layout also holds
//! `docklab.json` ([`BuildInfo`]): the recipe's key, so an image is rebuilt only when its recipe
//! changes, and what it is made of. The registry (the `registry` module) serves these layouts.
//!
//! Builds are reproducible where the inputs are: the same recipe and the same Debian packages
//! give the same layer, config and manifest digests (sorted tar entries, clamped times, numeric
//! owners, gzip without a timestamp, JSON with sorted keys, `SOURCE_DATE_EPOCH` for mmdebstrap).

mod busybox;
mod debian;
mod hello;
pub mod layout;
pub mod recipes;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use oci_spec::image::{Arch, ConfigBuilder, HistoryBuilder, ImageConfigurationBuilder, Os, RootFsBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use layout::TaggedManifest;
pub use recipes::{Recipe, Source, CATALOG};

/// Every time inside an image is clamped to this (2025-01-01T00:00:00Z), which is also its
/// `created` date, so that rebuilding does not change a digest.
pub const SOURCE_DATE_EPOCH: u64 = 1_735_689_600;
const CREATED: &str = "2025-01-01T00:00:00Z";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error("listing busybox applets with {path} failed")]
    Applets { path: PathBuf },
    #[error("building {image}: {command} failed: {detail}")]
    Command { image: String, command: &'static str, detail: String },
    #[error("building {image}: {package} is not installed in its build root")]
    MissingPackage { image: String, package: String },
    #[error("no image is called {name:?}; docklab builds: {known}")]
    UnknownImage { name: String, known: String },
    #[error("reading the OCI layout {path}: {detail}")]
    Layout { path: PathBuf, detail: String },
    #[error("{} of the images failed to build: {}", failures.len(), failures.join("; "))]
    Failed { failures: Vec<String> },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io { what, path: path.to_path_buf(), source }
}

/// What docklab records next to each layout (`docklab.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildInfo {
    /// Hash of everything the image is built from except the Debian archive's current contents.
    pub recipe_key: String,
    /// `name:first-tag`.
    pub reference: String,
    /// The recipe in words (`mmdebstrap --variant=minbase --include=... bookworm`).
    pub recipe: String,
    /// The Debian packages asked for, with the versions installed.
    pub packages: Vec<String>,
    /// How many Debian packages the image holds in all.
    pub package_count: usize,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digest: String,
    /// Bytes of the compressed layer (what a pull transfers).
    pub size: u64,
    /// Bytes of the uncompressed layer tar.
    pub unpacked_size: u64,
    pub build_seconds: f64,
    /// For a stand-in: the manifest digest of the image it was built on (rebuilt when that changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_manifest: Option<String>,
}

/// The OCI layouts under `<state-dir>/images/oci`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// One layout in the store.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// Repository name (`busybox`, `gcr.io/distroless/static-debian12`).
    pub name: String,
    pub layout: PathBuf,
    pub tags: Vec<TaggedManifest>,
    pub info: Option<BuildInfo>,
}

impl ImageStore {
    pub fn new(state_dir: &Path) -> Self {
        ImageStore { root: state_dir.join("images/oci") }
    }

    /// A store over any directory of layouts (`<dir>/<name>/<tag>/index.json`).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        ImageStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn layout_dir(&self, name: &str, tag: &str) -> PathBuf {
        self.root.join(name).join(tag)
    }

    /// Every complete layout, sorted by name then directory.
    pub fn images(&self) -> Vec<StoredImage> {
        let mut out = Vec::new();
        self.scan(&self.root, 0, &mut out);
        out.sort_by(|a, b| (&a.name, &a.layout).cmp(&(&b.name, &b.layout)));
        out
    }

    fn scan(&self, dir: &Path, depth: usize, out: &mut Vec<StoredImage>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.contains(".building") || !p.is_dir() {
                continue;
            }
            if p.join("index.json").is_file() {
                let Ok(tags) = layout::read_tags(&p) else { continue };
                let repo = p.parent().and_then(|d| d.strip_prefix(&self.root).ok()).map(|r| r.to_string_lossy().into_owned()).unwrap_or_default();
                if repo.is_empty() {
                    continue;
                }
                let info = fs::read(p.join("docklab.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
                out.push(StoredImage { name: repo, layout: p, tags, info });
            } else if depth < 6 {
                self.scan(&p, depth + 1, out);
            }
        }
    }

    fn info(&self, recipe: &Recipe) -> Option<BuildInfo> {
        let p = self.layout_dir(recipe.name, recipe.tags[0]).join("docklab.json");
        serde_json::from_slice(&fs::read(p).ok()?).ok()
    }
}

/// The key that decides whether a cached image is still what its recipe says.
pub fn recipe_key(recipe: &Recipe) -> String {
    let mut h = Sha256::new();
    h.update(format!("format {}\n{recipe:?}\n", recipes::RECIPE_FORMAT));
    match recipe.source {
        Source::Busybox => h.update(fs::read(BUSYBOX).unwrap_or_default()),
        Source::HelloWorld => h.update(hello::SOURCE),
        Source::Distroless { .. } => h.update(format!("selection {}", debian::DISTROLESS_SELECTION)),
        Source::Debian { .. } | Source::StandIn { .. } => {}
    }
    hex::encode(&h.finalize()[..16])
}

/// The recipe in words, for `docklab images list`.
pub fn describe(recipe: &Recipe) -> String {
    let pk = |p: &[&str]| if p.is_empty() { String::new() } else { format!(" --include={}", p.join(",")) };
    match recipe.source {
        Source::Busybox => format!("{BUSYBOX} from the host's busybox-static, one link per applet"),
        Source::HelloWorld => "gcc -static hello.c (host gcc, libc6-dev)".into(),
        Source::Debian { variant, packages, slim, hooks, .. } => {
            format!("mmdebstrap --variant={variant}{} {}{}{}", pk(packages), recipes::SUITE, if slim { ", slim" } else { "" }, if hooks.is_empty() { String::new() } else { format!(", {} hook{}", hooks.len(), if hooks.len() == 1 { "" } else { "s" }) })
        }
        Source::Distroless { packages, .. } => format!("distroless: files of {} and their dependencies, from {}", packages.join(","), recipes::SUITE),
        Source::StandIn { base: (name, tag), stands_in_for, files } => {
            let written: Vec<String> = files.iter().map(|(p, _)| format!("/{p}")).collect();
            format!("{name}:{tag}'s files with {} written over them: a stand-in for {stands_in_for}, not {stands_in_for} itself", written.join(", "))
        }
    }
}

const BUSYBOX: &str = "/bin/busybox";

/// How `build` should go.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Rebuild even when the cached image has the same recipe.
    pub force: bool,
    /// Images built at once (mmdebstrap is mostly dpkg unpacking: one per core).
    pub jobs: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { force: false, jobs: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4) }
    }
}

/// What happened to one image.
#[derive(Debug, Clone)]
pub enum Outcome {
    Cached(BuildInfo),
    Built(BuildInfo),
}

impl Outcome {
    pub fn info(&self) -> &BuildInfo {
        match self {
            Outcome::Cached(i) | Outcome::Built(i) => i,
        }
    }
}

/// Builds the selected images (all for an empty `names`), skipping those already built from the
/// same recipe. Several at once; safe against another `docklab` building the same image (a lock
/// per layout). `progress` gets one line per step, as it happens.
pub fn build(state_dir: &Path, names: &[String], options: &BuildOptions, progress: &mut dyn FnMut(&str)) -> Result<Vec<Outcome>, ImageError> {
    let selected = recipes::select(names)?;
    let store = ImageStore::new(state_dir);
    let queue = std::sync::Mutex::new(selected.iter().copied().enumerate().collect::<std::collections::VecDeque<_>>());
    let total = selected.len();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut results: Vec<Option<Result<Outcome, ImageError>>> = (0..total).map(|_| None).collect();
    let started = Instant::now();
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for _ in 0..options.jobs.max(1) {
            let tx = tx.clone();
            let (queue, store) = (&queue, &store);
            workers.push(s.spawn(move || {
                let mut done = Vec::new();
                loop {
                    let next = queue.lock().expect("queue lock").pop_front();
                    let Some((i, recipe)) = next else { break };
                    let log = |l: String| drop(tx.send(l));
                    let r = build_one(recipe, store, state_dir, options.force, &log);
                    match &r {
                        Ok(Outcome::Cached(info)) => log(format!("[ok] {} is up to date ({})", info.reference, short(&info.manifest_digest))),
                        Ok(Outcome::Built(info)) => log(format!(
                            "[ok] {} built in {:.0} s: {} compressed, {} unpacked, {}",
                            info.reference,
                            info.build_seconds,
                            human(info.size),
                            human(info.unpacked_size),
                            short(&info.manifest_digest)
                        )),
                        Err(e) => log(format!("[!!] {}: {e}", recipe.reference())),
                    }
                    done.push((i, r));
                }
                done
            }));
        }
        drop(tx);
        for line in rx {
            progress(&line);
        }
        for w in workers {
            for (i, r) in w.join().expect("an image build thread panicked") {
                results[i] = Some(r);
            }
        }
    });
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for (r, recipe) in results.into_iter().zip(&selected) {
        match r.expect("every queued image has a result") {
            Ok(o) => outcomes.push(o),
            Err(e) => failures.push(format!("{}: {e}", recipe.reference())),
        }
    }
    let built = outcomes.iter().filter(|o| matches!(o, Outcome::Built(_))).count();
    progress(&format!("[ok] images: {built} built, {} up to date, {} failed, in {:.0} s", outcomes.len() - built, failures.len(), started.elapsed().as_secs_f64()));
    if failures.is_empty() {
        Ok(outcomes)
    } else {
        Err(ImageError::Failed { failures })
    }
}

pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.0} kB", bytes as f64 / 1e3)
    }
}

fn build_one(recipe: &Recipe, store: &ImageStore, state_dir: &Path, force: bool, log: &dyn Fn(String)) -> Result<Outcome, ImageError> {
    let key = recipe_key(recipe);
    let dir = store.layout_dir(recipe.name, recipe.tags[0]);
    let parent = dir.parent().expect("a layout has a parent").to_path_buf();
    fs::create_dir_all(&parent).map_err(io_err("creating", &parent))?;
    let lock_path = parent.join(format!(".{}.lock", recipe.tags[0]));
    let lock_file = fs::File::create(&lock_path).map_err(io_err("creating", &lock_path))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| io_err("locking", &lock_path)(e.into()))?;
    // A stand-in is made from its base's built layer: the base first (usually up to date).
    let base = match recipes::base_of(recipe) {
        Some(b) => Some((b, build_one(b, store, state_dir, false, log)?.info().clone())),
        None if matches!(recipe.source, Source::StandIn { .. }) => {
            return Err(ImageError::UnknownImage { name: format!("the base of {}", recipe.reference()), known: CATALOG.iter().map(Recipe::reference).collect::<Vec<_>>().join(", ") })
        }
        None => None,
    };
    let base_manifest = base.as_ref().map(|(_, i)| i.manifest_digest.clone());
    if let Some(info) = store.info(recipe).filter(|i| i.recipe_key == key && !force && i.base_manifest == base_manifest) {
        if layout::read_tags(&dir).is_ok() {
            return Ok(Outcome::Cached(info));
        }
    }
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    log(format!("[..] building {}: {}", recipe.reference(), describe(recipe)));
    let slug = format!("{}-{}", recipe.name.replace('/', "_"), recipe.tags[0]);
    let work = state_dir.join("images/build").join(&slug);
    if work.exists() {
        fs::remove_dir_all(&work).map_err(io_err("removing", &work))?;
    }
    fs::create_dir_all(&work).map_err(io_err("creating", &work))?;
    let root = work.join("root");
    let result = (|| {
        let mut options = layout::TreeOptions::new(SOURCE_DATE_EPOCH);
        let packages: Vec<String>;
        let package_count: usize;
        match recipe.source {
            Source::Busybox => {
                fs::create_dir(&root).map_err(io_err("creating", &root))?;
                busybox::write_tree(Path::new(BUSYBOX), &root)?;
                packages = vec![format!("busybox-static ({})", busybox::version(Path::new(BUSYBOX)))];
                package_count = 1;
            }
            Source::HelloWorld => {
                fs::create_dir(&root).map_err(io_err("creating", &root))?;
                hello::write_tree(&root, &work)?;
                packages = host_versions(&["gcc", "libc6-dev"]);
                package_count = 0;
            }
            Source::Debian { variant, packages: pk, slim, files, hooks } => {
                debian::bootstrap(recipe.name, &root, variant, pk, slim, SOURCE_DATE_EPOCH, log)?;
                debian::customize(recipe.name, &root, files, hooks, log)?;
                let db = debian::installed(&root)?;
                packages = if pk.is_empty() { vec![format!("{variant}: {} essential and required packages", db.len())] } else { pk.iter().map(|p| format!("{p}={}", db.get(*p).map(|i| i.version.as_str()).unwrap_or("?"))).collect() };
                package_count = db.len();
                options.built_after = started_unix.saturating_sub(5);
            }
            Source::Distroless { packages: pk, extra, links } => {
                let mut include: Vec<&str> = pk.to_vec();
                include.push("ca-certificates");
                debian::bootstrap(recipe.name, &root, "minbase", &include, true, SOURCE_DATE_EPOCH, log)?;
                let (only, versions) = debian::distroless(recipe.name, &root, pk, extra, links)?;
                packages = pk.iter().filter_map(|p| versions.iter().find(|v| v.starts_with(&format!("{p}="))).cloned()).collect();
                package_count = versions.len();
                options.only = Some(only);
                options.built_after = started_unix.saturating_sub(5);
            }
            Source::StandIn { files, .. } => {
                let (base_recipe, base_info) = base.as_ref().expect("a stand-in's base was built above");
                let base_layout = store.layout_dir(base_recipe.name, base_recipe.tags[0]);
                let blob = layout::blob_path(&base_layout, &base_info.layer_digest)
                    .ok_or_else(|| ImageError::Layout { path: base_layout.clone(), detail: format!("no layer {}", base_info.layer_digest) })?;
                fs::create_dir(&root).map_err(io_err("creating", &root))?;
                layout::unpack_layer(&blob, &root)?;
                // Replace, never write through: a link in the base must not send a write elsewhere.
                for (rel, _) in files {
                    let p = root.join(rel);
                    if fs::symlink_metadata(&p).is_ok() {
                        fs::remove_file(&p).map_err(io_err("replacing", &p))?;
                    }
                }
                debian::customize(recipe.name, &root, files, &[], log)?;
                packages = base_info.packages.clone();
                package_count = debian::installed(&root)?.len();
                options.built_after = started_unix.saturating_sub(5);
            }
        }
        let building = parent.join(format!("{}.building", recipe.tags[0]));
        if building.exists() {
            fs::remove_dir_all(&building).map_err(io_err("removing", &building))?;
        }
        log(format!("[..] {}: writing the layer", recipe.reference()));
        let layer = layout::write_layer(&root, &building, &options)?;
        let config = image_config(recipe, &key, &packages, &layer.diff_id);
        let (manifest_digest, config_digest) = layout::write_image(&building, &layer, &config, recipe.tags)?;
        let info = BuildInfo {
            recipe_key: key.clone(),
            reference: recipe.reference(),
            recipe: describe(recipe),
            packages,
            package_count,
            manifest_digest,
            config_digest,
            layer_digest: layer.digest.clone(),
            size: layer.size,
            unpacked_size: layer.unpacked_size,
            build_seconds: started.elapsed().as_secs_f64(),
            base_manifest: base_manifest.clone(),
        };
        let info_path = building.join("docklab.json");
        fs::write(&info_path, serde_json::to_vec_pretty(&info).expect("build info serializes")).map_err(io_err("writing", &info_path))?;
        if dir.exists() {
            let old = parent.join(format!("{}.old.building", recipe.tags[0]));
            let _ = fs::remove_dir_all(&old);
            fs::rename(&dir, &old).map_err(io_err("moving aside", &dir))?;
            let _ = fs::remove_dir_all(&old);
        }
        fs::rename(&building, &dir).map_err(io_err("installing", &dir))?;
        Ok(Outcome::Built(info))
    })();
    if let Err(e) = fs::remove_dir_all(&work) {
        log(format!("[!!] could not remove the build directory {}: {e}", work.display()));
    }
    result
}

fn host_versions(pkgs: &[&str]) -> Vec<String> {
    pkgs.iter()
        .map(|p| {
            let v = std::process::Command::new("dpkg-query").args(["-W", "-f=${Version}", p]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            format!("{p}={v}")
        })
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The image configuration: the recipe's settings, docklab's labels, one layer.
fn image_config(recipe: &Recipe, key: &str, packages: &[String], diff_id: &str) -> oci_spec::image::ImageConfiguration {
    let s = &recipe.config;
    let mut labels = HashMap::from([
        ("org.opencontainers.image.title".to_string(), recipe.name.to_string()),
        ("org.opencontainers.image.description".to_string(), recipe.description.to_string()),
        ("org.opencontainers.image.vendor".to_string(), "docklab".to_string()),
        ("dev.docklab.built-by".to_string(), format!("docklab, from Debian {} packages", recipes::SUITE)),
        ("dev.docklab.packages".to_string(), packages.join(", ")),
        ("dev.docklab.recipe".to_string(), describe(recipe)),
        ("dev.docklab.recipe-key".to_string(), key.to_string()),
    ]);
    if let Source::Distroless { .. } = recipe.source {
        labels.insert("dev.docklab.distroless".into(), "no shell, no package manager; package records in /var/lib/dpkg/status.d".into());
    }
    if let Source::StandIn { base: (name, tag), stands_in_for, .. } = recipe.source {
        labels.insert("dev.docklab.stand-in-for".into(), format!("{stands_in_for} (this is {name}:{tag}, Debian {}, not {stands_in_for})", recipes::SUITE));
    }
    let mut c = ConfigBuilder::default().labels(labels);
    if !s.env.is_empty() {
        c = c.env(strings(s.env));
    }
    if !s.entrypoint.is_empty() {
        c = c.entrypoint(strings(s.entrypoint));
    }
    if !s.cmd.is_empty() {
        c = c.cmd(strings(s.cmd));
    }
    if !s.working_dir.is_empty() {
        c = c.working_dir(s.working_dir.to_string());
    }
    if !s.exposed_ports.is_empty() {
        c = c.exposed_ports(strings(s.exposed_ports));
    }
    if !s.volumes.is_empty() {
        c = c.volumes(strings(s.volumes));
    }
    if !s.user.is_empty() {
        c = c.user(s.user.to_string());
    }
    if !s.stop_signal.is_empty() {
        c = c.stop_signal(s.stop_signal.to_string());
    }
    let history = HistoryBuilder::default().created(CREATED.to_string()).created_by(format!("docklab: {}", describe(recipe))).comment(recipe.description.to_string()).build().expect("history");
    ImageConfigurationBuilder::default()
        .created(CREATED.to_string())
        .author("docklab".to_string())
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(c.build().expect("config"))
        .rootfs(RootFsBuilder::default().typ("layers".to_string()).diff_ids(vec![diff_id.to_string()]).build().expect("rootfs"))
        .history(vec![history])
        .build()
        .expect("image configuration")
}

/// Packages kept by an image, from its `docklab.json` (for listings).
pub fn package_summary(info: &BuildInfo) -> String {
    let set: BTreeSet<&str> = info.packages.iter().map(String::as_str).collect();
    set.into_iter().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_image_builds_reproducibly_into_an_oci_layout() {
        if !Path::new(BUSYBOX).exists() || !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: needs root and busybox-static (docklab setup installs it)");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let names = vec!["busybox".to_string()];
        let opts = BuildOptions { force: false, jobs: 1 };
        let first = build(tmp.path(), &names, &opts, &mut |_| {}).unwrap();
        let Outcome::Built(a) = &first[0] else { panic!("first build must build") };
        let again = build(tmp.path(), &names, &opts, &mut |_| {}).unwrap();
        assert!(matches!(again[0], Outcome::Cached(_)), "same recipe: cached");
        let forced = build(tmp.path(), &names, &BuildOptions { force: true, jobs: 1 }, &mut |_| {}).unwrap();
        let Outcome::Built(b) = &forced[0] else { panic!("forced build must build") };
        assert_eq!((&a.layer_digest, &a.config_digest, &a.manifest_digest), (&b.layer_digest, &b.config_digest, &b.manifest_digest), "rebuilt image has the same digests");
        let store = ImageStore::new(tmp.path());
        let images = store.images();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].name, "busybox");
        let tags: Vec<&str> = images[0].tags.iter().map(|t| t.tag.as_str()).collect();
        assert_eq!(tags, ["latest", "1.35", "stable"]);
        assert!(images[0].tags.iter().all(|t| t.digest == a.manifest_digest && t.media_type == layout::OCI_MANIFEST));
        let config: serde_json::Value = serde_json::from_slice(&fs::read(layout::blob_path(&images[0].layout, &a.config_digest).unwrap()).unwrap()).unwrap();
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
        assert!(config["config"]["Labels"]["dev.docklab.packages"].as_str().unwrap().starts_with("busybox-static"));
    }
}
