//! Images known by what they are, not by what they are called: ids, layer chains, and the
//! engine's image list read tolerantly.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::errors::Error as EngineError;
use bollard::models::{ContainerInspectResponse, ImageSummary};
use bollard::query_parameters::ListImagesOptions;
use bollard::Docker;
use serde::Deserialize;

use super::dockerfile::normalize_image;
use super::{lock, Grader, Outcome};

/// One entry of `GET /images/json` with every field optional: some engines leave out fields
/// bollard's type requires (`ParentId`, `SharedSize`, `Containers`, …).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LooseImageSummary {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "ParentId")]
    parent_id: Option<String>,
    #[serde(rename = "RepoTags")]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "RepoDigests")]
    repo_digests: Option<Vec<String>>,
    #[serde(rename = "Created")]
    created: Option<i64>,
    #[serde(rename = "Size")]
    size: Option<i64>,
    #[serde(rename = "SharedSize")]
    shared_size: Option<i64>,
    #[serde(rename = "VirtualSize")]
    virtual_size: Option<i64>,
    #[serde(rename = "Labels")]
    labels: Option<HashMap<String, String>>,
    #[serde(rename = "Containers")]
    containers: Option<i64>,
}

impl From<LooseImageSummary> for ImageSummary {
    fn from(l: LooseImageSummary) -> ImageSummary {
        ImageSummary {
            id: l.id,
            parent_id: l.parent_id.unwrap_or_default(),
            repo_tags: l.repo_tags.unwrap_or_default(),
            repo_digests: l.repo_digests.unwrap_or_default(),
            created: l.created.unwrap_or(0),
            size: l.size.unwrap_or(0),
            shared_size: l.shared_size.unwrap_or(-1),
            virtual_size: l.virtual_size,
            labels: l.labels.unwrap_or_default(),
            containers: l.containers.unwrap_or(-1),
            manifests: None,
            descriptor: None,
        }
    }
}

/// Parses an image list the way [`list_images`] falls back to.
pub(crate) fn parse_image_list(json: &str) -> Result<Vec<ImageSummary>, serde_json::Error> {
    let loose: Vec<LooseImageSummary> = serde_json::from_str(json)?;
    Ok(loose.into_iter().map(ImageSummary::from).collect())
}

/// The engine's images (tagged and untagged, not intermediate layers), also when its answer
/// lacks fields bollard's type requires.
pub(crate) async fn list_images(docker: &Docker) -> Result<Vec<ImageSummary>, EngineError> {
    match docker.list_images(Some(ListImagesOptions { all: false, ..Default::default() })).await {
        Ok(images) => Ok(images),
        Err(EngineError::JsonDataError { message, contents, column }) => match parse_image_list(&contents) {
            Ok(images) => {
                tracing::debug!(%message, "the engine's image list lacks fields; read it leniently");
                Ok(images)
            }
            Err(_) => Err(EngineError::JsonDataError { message, contents, column }),
        },
        Err(err) => Err(err),
    }
}

/// docklab's own images, by content: every reference its registry serves (`nginx:latest`,
/// `gcr.io/distroless/static-debian12:latest`, …) → the image's layer chain (diff ids, oldest
/// first). A learner's retag cannot change an image's layers, so a task about `nginx` asks for
/// these layers, whatever the machine calls them.
#[derive(Debug, Default)]
pub(crate) struct KnownImages {
    chains: BTreeMap<String, Vec<String>>,
}

impl KnownImages {
    /// Reads the OCI layouts under `<state>/images/oci` (host files, written by `docklab setup`).
    pub(crate) fn load(state_dir: &Path) -> KnownImages {
        let mut chains = BTreeMap::new();
        for image in sandbox::images::ImageStore::new(state_dir).images() {
            for tag in &image.tags {
                if let Some(chain) = diff_ids(&image.layout, &tag.digest) {
                    chains.insert(normalize_image(&format!("{}:{}", image.name, tag.tag)), chain);
                }
            }
        }
        KnownImages { chains }
    }

    /// The layer chain of docklab's image `reference` (as a learner types it), if it is one.
    pub(crate) fn chain(&self, reference: &str) -> Option<&[String]> {
        let r = normalize_image(reference);
        let r = r.strip_prefix("registry-1.docker.io/").or_else(|| r.strip_prefix("index.docker.io/")).unwrap_or(&r);
        self.chains.get(r).map(Vec::as_slice)
    }

    /// What `layers` are, in docklab's words: exactly one of its images, or built on the one
    /// whose chain is the longest prefix. `(reference, exact)`.
    pub(crate) fn identify(&self, layers: &[String]) -> Option<(String, bool)> {
        let mut best: Option<(&String, &Vec<String>)> = None;
        for (name, chain) in &self.chains {
            let better = best.is_none_or(|(b_name, b)| chain.len() > b.len() || (chain.len() == b.len() && preferred(name, b_name)));
            if !chain.is_empty() && layers.starts_with(chain) && better {
                best = Some((name, chain));
            }
        }
        best.map(|(name, chain)| (name.trim_end_matches(":latest").to_owned(), chain.len() == layers.len()))
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        self.chains.iter()
    }
}

/// Of two names for the same image, whether `a` reads better than `b`: `latest` first, then
/// the shorter.
fn preferred(a: &str, b: &str) -> bool {
    (a.ends_with(":latest"), std::cmp::Reverse(a.len())) > (b.ends_with(":latest"), std::cmp::Reverse(b.len()))
}

fn diff_ids(layout: &Path, manifest: &str) -> Option<Vec<String>> {
    let read = |digest: &str| -> Option<serde_json::Value> {
        let path = sandbox::images::layout::blob_path(layout, digest)?;
        let mut text = Vec::new();
        std::fs::File::open(path).ok()?.take(1 << 20).read_to_end(&mut text).ok()?;
        serde_json::from_slice(&text).ok()
    };
    let manifest = read(manifest)?;
    let config = read(manifest.get("config")?.get("digest")?.as_str()?)?;
    let ids = config.get("rootfs")?.get("diff_ids")?.as_array()?;
    ids.iter().map(|d| d.as_str().map(str::to_owned)).collect()
}

/// How long the known images are trusted before the layouts are read again (`docklab images
/// build` may rebuild one while the server runs).
const KNOWN_TTL: Duration = Duration::from_secs(60);

type KnownCache = Mutex<HashMap<PathBuf, (Instant, Arc<KnownImages>)>>;

/// docklab's images for the machines of `state_dir`, read at most once a minute.
pub(crate) fn known_images(state_dir: &Path) -> Arc<KnownImages> {
    static CACHE: std::sync::OnceLock<KnownCache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some((at, known)) = super::lock(cache).get(state_dir) {
        if at.elapsed() < KNOWN_TTL {
            return known.clone();
        }
    }
    let known = Arc::new(KnownImages::load(state_dir));
    super::lock(cache).insert(state_dir.to_owned(), (Instant::now(), known.clone()));
    known
}

/// Names of programs that are a shell, or a multi-call binary that provides one.
pub(crate) const SHELL_NAMES: &[&str] =
    &["sh", "bash", "rbash", "dash", "ash", "busybox", "toybox", "zsh", "ksh", "mksh", "pdksh", "yash", "posh", "fish", "tcsh", "csh", "sash"];

/// Strings only a shell's (or a multi-call binary's) executable holds.
const SHELL_SIGNATURES: &[(&[u8], &str)] = &[
    (b"BusyBox v", "BusyBox"),
    (b"toybox: Unknown command", "toybox"),
    (b"GNU bash, version", "bash"),
    (b"@(#)MIRBSD KSH", "mksh"),
    (b"zsh: command not found", "zsh"),
];

/// Most bytes of one file read to look for a shell's signature (the rest is skipped unread).
const SIGNATURE_CAP: u64 = 64 << 20;
/// Bytes of a file looked at at a time; a signature across two windows is still found.
const SIGNATURE_WINDOW: usize = 64 << 10;
/// Most file entries (in all layers together) one scan keeps a summary of.
const SCAN_MAX_ENTRIES: usize = 1_000_000;
/// Most bytes of paths one scan keeps.
const SCAN_MAX_PATH_BYTES: usize = 64 << 20;
/// Longest GNU long name or PAX header read (Linux paths are at most 4 KiB).
const NAME_CAP: u64 = 64 << 10;
/// Largest `manifest.json` read.
const MANIFEST_CAP: u64 = 4 << 20;

/// Why an image's export could not be looked through. The messages are check details.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    #[error("the image has too many files to look inside")]
    TooManyFiles,
    #[error("the image's export has no manifest.json listing its layers")]
    NoManifest,
    #[error("the image's export has an entry {0:?} whose name or manifest is over {1} bytes")]
    Oversized(String, u64),
    #[error("the image's export could not be read: {0}")]
    Read(#[from] std::io::Error),
}

/// What one layer does to the filesystem below it, in the layer's order, without any content:
/// all paths in one string, each operation a 12-byte record pointing into it.
#[derive(Default)]
struct LayerSummary {
    paths: String,
    ops: Vec<LayerOp>,
}

#[derive(Clone, Copy)]
struct LayerOp {
    start: u32,
    len: u32,
    kind: OpKind,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OpKind {
    /// `.wh.<name>`: the path and everything under it are gone.
    Whiteout,
    /// `.wh..wh..opq`: everything under the directory is gone.
    Opaque,
    /// Something that is not a shell now stands at the path.
    Replaced,
    /// A shell: 0 by its name, `i + 1` by `SHELL_SIGNATURES[i]` in its content.
    Shell(u8),
}

/// Entries and path bytes kept so far by one scan, against [`SCAN_MAX_ENTRIES`] and
/// [`SCAN_MAX_PATH_BYTES`].
struct Budget {
    entries: usize,
    path_bytes: usize,
    max_entries: usize,
    max_path_bytes: usize,
}

impl Budget {
    fn new(max_entries: usize, max_path_bytes: usize) -> Self {
        Budget { entries: 0, path_bytes: 0, max_entries, max_path_bytes }
    }

    fn charge(&mut self, path_len: usize) -> Result<(), ScanError> {
        self.entries += 1;
        self.path_bytes += path_len;
        if self.entries > self.max_entries || self.path_bytes > self.max_path_bytes {
            return Err(ScanError::TooManyFiles);
        }
        Ok(())
    }
}

impl LayerSummary {
    fn push(&mut self, kind: OpKind, path: &str, budget: &mut Budget) -> Result<(), ScanError> {
        budget.charge(path.len())?;
        // The budget keeps all paths under 4 GiB, so these fit.
        let start = self.paths.len() as u32;
        self.paths.push_str(path);
        self.ops.push(LayerOp { start, len: path.len() as u32, kind });
        Ok(())
    }
}

/// Reads at most `cap` bytes of a tar entry that must be smaller (names, PAX records, manifest).
fn read_capped(name: &str, entry: &mut impl Read, size: u64, cap: u64) -> Result<Vec<u8>, ScanError> {
    if size > cap {
        return Err(ScanError::Oversized(name.chars().take(200).collect(), cap));
    }
    let mut data = Vec::with_capacity(size as usize);
    entry.take(cap).read_to_end(&mut data)?;
    Ok(data)
}

/// Calls `f` with each entry of a tar stream (its name, header and content), reading GNU long
/// names and PAX paths itself with a cap: the tar crate's own handling reads them whole into
/// memory, however long an archive says they are.
fn each_entry<R: Read>(
    reader: R,
    mut f: impl FnMut(&str, &tar::Header, &mut tar::Entry<'_, R>) -> Result<(), ScanError>,
) -> Result<(), ScanError> {
    let mut archive = tar::Archive::new(reader);
    let mut long_name: Option<Vec<u8>> = None;
    let mut pax_path: Option<Vec<u8>> = None;
    for entry in archive.entries()?.raw(true) {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        let size = entry.size();
        if kind.is_gnu_longname() {
            long_name = Some(read_capped("GNU long name", &mut entry, size, NAME_CAP)?);
            continue;
        }
        if kind.is_pax_local_extensions() {
            let data = read_capped("PAX header", &mut entry, size, NAME_CAP)?;
            pax_path = tar::PaxExtensions::new(&data).flatten().find(|e| e.key() == Ok("path")).map(|e| e.value_bytes().to_vec());
            continue;
        }
        if kind.is_gnu_longlink() || kind.is_pax_global_extensions() {
            continue;
        }
        let raw = match (pax_path.take(), long_name.take()) {
            (Some(path), _) | (None, Some(path)) => path,
            (None, None) => entry.header().path_bytes().into_owned(),
        };
        let raw = raw.strip_suffix(b"\0").unwrap_or(&raw);
        let name = String::from_utf8_lossy(raw).into_owned();
        let header = entry.header().clone();
        f(&name, &header, &mut entry)?;
    }
    Ok(())
}

/// Which of [`SHELL_SIGNATURES`] starts at each byte value (a quick first-byte filter).
const fn signature_starts() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < SHELL_SIGNATURES.len() {
        t[SHELL_SIGNATURES[i].0[0] as usize] = true;
        i += 1;
    }
    t
}
const SIGNATURE_STARTS: [bool; 256] = signature_starts();
const LONGEST_SIGNATURE: usize = 23;

fn signature_in_window(hay: &[u8]) -> Option<usize> {
    for (i, b) in hay.iter().enumerate() {
        if SIGNATURE_STARTS[*b as usize] {
            if let Some(k) = SHELL_SIGNATURES.iter().position(|(sig, _)| hay[i..].starts_with(sig)) {
                return Some(k);
            }
        }
    }
    None
}

/// For an ELF file's content: which of [`SHELL_SIGNATURES`] it holds in its first
/// [`SIGNATURE_CAP`] bytes, looking at [`SIGNATURE_WINDOW`] bytes at a time and keeping only
/// the tail a signature could start in between windows.
fn signature_in(content: &mut impl Read) -> std::io::Result<Option<usize>> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match content.read(&mut magic[got..])? {
            0 => return Ok(None),
            n => got += n,
        }
    }
    if &magic != b"\x7fELF" {
        return Ok(None);
    }
    let keep = LONGEST_SIGNATURE - 1;
    let mut buf = vec![0u8; keep + SIGNATURE_WINDOW];
    let mut kept = 0;
    let mut content = content.take(SIGNATURE_CAP - 4);
    loop {
        let n = content.read(&mut buf[kept..])?;
        if n == 0 {
            return Ok(None);
        }
        let filled = kept + n;
        if let Some(k) = signature_in_window(&buf[..filled]) {
            return Ok(Some(k));
        }
        kept = filled.min(keep);
        buf.copy_within(filled - kept..filled, 0);
    }
}

/// Reads one layer's tar into its summary; stops quietly at a damaged entry (keeping what came
/// before), but not at the budget.
fn summarize_layer(layer: &mut impl Read, budget: &mut Budget) -> Result<LayerSummary, ScanError> {
    let mut summary = LayerSummary::default();
    let read = each_entry(layer, |name, header, content| {
        let path = name.trim_start_matches("./").trim_end_matches('/');
        let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
        if let Some(removed) = file.strip_prefix(".wh.") {
            if removed == ".wh..opq" {
                return summary.push(OpKind::Opaque, dir, budget);
            }
            let gone = if dir.is_empty() { removed.to_owned() } else { format!("{dir}/{removed}") };
            return summary.push(OpKind::Whiteout, &gone, budget);
        }
        let kind = header.entry_type();
        let executable = header.mode().is_ok_and(|m| m & 0o111 != 0);
        let op = if !(kind.is_file() || kind.is_symlink() || kind.is_hard_link()) {
            OpKind::Replaced
        } else if SHELL_NAMES.contains(&file) {
            OpKind::Shell(0)
        } else if kind.is_file() && executable {
            match signature_in(content)? {
                Some(k) => OpKind::Shell(k as u8 + 1),
                None => OpKind::Replaced,
            }
        } else {
            OpKind::Replaced
        };
        summary.push(op, path, budget)
    });
    match read {
        Ok(()) | Err(ScanError::Read(_)) | Err(ScanError::Oversized(..)) => Ok(summary),
        Err(other) => Err(other),
    }
}

/// Removes every path under `dir` (all of them for the root).
fn remove_under(present: &mut BTreeMap<&str, u8>, dir: &str) {
    if dir.is_empty() {
        present.clear();
        return;
    }
    let prefix = format!("{dir}/");
    let under: Vec<&str> = present.range(prefix.as_str()..).map(|(p, _)| *p).take_while(|p| p.starts_with(&prefix)).collect();
    for p in under {
        present.remove(p);
    }
}

/// Applies the layers' summaries in the manifest's order; the shell left, if any.
fn shell_after(order: &[String], layers: &HashMap<String, LayerSummary>) -> Option<String> {
    // Path → why it is a shell; removed again by later whiteouts or files.
    let mut present: BTreeMap<&str, u8> = BTreeMap::new();
    for layer in order {
        let Some(summary) = layers.get(layer) else { continue };
        for op in &summary.ops {
            let path = &summary.paths[op.start as usize..(op.start + op.len) as usize];
            match op.kind {
                OpKind::Opaque => remove_under(&mut present, path),
                OpKind::Whiteout => {
                    present.remove(path);
                    remove_under(&mut present, path);
                }
                OpKind::Replaced => {
                    present.remove(path);
                }
                OpKind::Shell(why) => {
                    present.insert(path, why);
                }
            }
        }
    }
    // Prefer the usual places in the message.
    let pick = ["bin/sh", "usr/bin/sh", "bin/bash", "bin/busybox"].iter().find_map(|p| present.get_key_value(*p)).or_else(|| present.iter().next());
    pick.map(|(path, why)| match why {
        0 => format!("/{path}"),
        k => format!("/{path} ({})", SHELL_SIGNATURES[*k as usize - 1].1),
    })
}

/// Reads a `docker save` archive as a stream: applies its layers in order, with whiteouts, and
/// says which shell the final filesystem has, if any: a file or link named like a shell anywhere
/// (not only in `/bin`), or an executable whose content is a shell's or BusyBox's whatever its
/// name. `Some("/opt/x/sh")`, or `Some("/usr/local/bin/tool (BusyBox)")`.
///
/// Memory does not grow with the image: no file's content is kept (a signature is looked for a
/// window at a time), each layer is read entry by entry into a summary of paths, and the
/// summaries are capped ([`SCAN_MAX_ENTRIES`], [`SCAN_MAX_PATH_BYTES`]).
pub(crate) fn shell_in_saved_image(saved: impl Read) -> Result<Option<String>, ScanError> {
    shell_in_saved_image_with(saved, Budget::new(SCAN_MAX_ENTRIES, SCAN_MAX_PATH_BYTES))
}

fn shell_in_saved_image_with(saved: impl Read, mut budget: Budget) -> Result<Option<String>, ScanError> {
    let mut layers: HashMap<String, LayerSummary> = HashMap::new();
    let mut order: Option<Vec<String>> = None;
    each_entry(saved, |name, _, content| {
        if name == "manifest.json" {
            let data = read_capped(name, content, content.size(), MANIFEST_CAP)?;
            let manifest: serde_json::Value = serde_json::from_slice(&data).map_err(|_| ScanError::NoManifest)?;
            let list = manifest.get(0).and_then(|m| m.get("Layers")).and_then(|l| l.as_array()).ok_or(ScanError::NoManifest)?;
            let list: Vec<String> = list.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect();
            for name in &list {
                budget.charge(name.len())?;
            }
            // Layers read before the manifest that it does not list are no use.
            layers.retain(|name, _| list.contains(name));
            order = Some(list);
        } else if name.ends_with(".tar") || name.starts_with("blobs/") {
            if order.as_ref().is_some_and(|o| !o.iter().any(|l| l == name)) {
                return Ok(());
            }
            budget.charge(name.len())?;
            let summary = summarize_layer(content, &mut budget)?;
            layers.insert(name.to_owned(), summary);
        }
        Ok(())
    })?;
    let order = order.ok_or(ScanError::NoManifest)?;
    Ok(shell_after(&order, &layers))
}

/// A blocking [`Read`] over chunks sent on a bounded channel: the end of the channel is the end
/// of the stream. Lets a blocking scan read an export as it arrives.
pub(crate) struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl ChunkReader {
    pub(crate) fn new(chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> Self {
        ChunkReader { chunks, current: bytes::Bytes::new() }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// docklab's images for this grader's machine, when its state directory is known.
pub(super) fn known_for(g: &Grader) -> Option<Arc<KnownImages>> {
    super::probe::state_dir_of(g.probe.socket()).map(|dir| known_images(&dir))
}

/// An image's id and layer chain; chains are kept by id (an image's contents never change).
pub(super) async fn id_and_layers(g: &Grader, reference: &str) -> Result<(String, Vec<String>), EngineError> {
    if reference.starts_with("sha256:") {
        if let Some(layers) = lock(&g.state).layers.get(reference).cloned() {
            return Ok((reference.to_owned(), layers));
        }
    }
    let i = g.docker.inspect_image(reference).await?;
    let id = i.id.clone().unwrap_or_default();
    let layers = i.root_fs.and_then(|r| r.layers).unwrap_or_default();
    lock(&g.state).layers.insert(id.clone(), layers.clone());
    Ok((id, layers))
}

/// Whether container `c` (named `container`) runs image `want`: for one of docklab's images,
/// judged by its layers (an image retagged `nginx` is not nginx); for the learner's own, by the
/// reference it was created with or the image that reference names now. `Err` is the detail.
pub(super) async fn created_from(g: &Grader, container: &str, c: &ContainerInspectResponse, want: &str) -> Result<(), String> {
    let typed = c.config.as_ref().and_then(|c| c.image.clone()).unwrap_or_default();
    let id = c.image.clone().unwrap_or_default();
    let same_name = normalize_image(&typed) == normalize_image(want);
    let known = known_for(g);
    let Some(chain) = known.as_ref().and_then(|k| k.chain(want)) else {
        if same_name || g.docker.inspect_image(want).await.is_ok_and(|i| i.id.as_deref() == Some(id.as_str())) {
            return Ok(());
        }
        return Err(format!("container {container} was created from {typed}; it should be from {want}"));
    };
    let layers = match id_and_layers(g, &id).await {
        Ok((_, layers)) => layers,
        Err(_) => return Err(format!("container {container} was created from {typed}, an image that is gone; it should be from {want}")),
    };
    if layers == chain {
        return Ok(());
    }
    if !same_name {
        return Err(format!("container {container} was created from {typed}; it should be from {want}"));
    }
    let what = match known.as_ref().and_then(|k| k.identify(&layers)) {
        Some((name, true)) => format!("it is docklab's {name} under another name"),
        Some((name, false)) => format!("it is an image built on {name}"),
        None => format!("its layers are not those of docklab's {want}"),
    };
    Err(format!("container {container} was created from an image tagged {typed}, but that image is not {want}: {what}"))
}

/// When `reference` names one of docklab's images but `layers` are not that image's: what they
/// are instead, as a detail (`docker tag busybox nginx` does not make nginx).
pub(super) fn impostor(g: &Grader, reference: &str, layers: &[String]) -> Option<String> {
    let known = known_for(g)?;
    let chain = known.chain(reference)?;
    if chain == layers {
        return None;
    }
    let what = match known.identify(layers) {
        Some((name, true)) => format!("it is docklab's {name} under another name"),
        Some((name, false)) => format!("it is an image built on {name}"),
        None => format!("its layers are not those of docklab's {reference}"),
    };
    Some(format!("the image tagged {reference} is not {reference}: {what}"))
}

/// `image_base`: which image the graded image's final stage was built on, by layer chain: the
/// longest chain that starts it among docklab's images and the images in the machine (another
/// name for the same image does not count as a base); no such chain means `FROM scratch`.
pub(super) async fn image_base(g: &Grader, image: &str, base: &str) -> Outcome {
    let (id, layers) = match id_and_layers(g, image).await {
        Ok(found) => found,
        Err(EngineError::DockerResponseServerError { status_code: 404, .. }) => {
            return Outcome::Fail(format!("there is no image {image}"));
        }
        Err(err) => return engine_outcome(err, &format!("image {image}")),
    };
    let known = known_for(g);
    let found = match found_base(g, known.as_deref(), &id, &layers).await {
        Ok(found) => found,
        Err(outcome) => return outcome,
    };
    if normalize_image(base) == "scratch" {
        return match found {
            None => Outcome::Pass(String::new()),
            Some(other) => Outcome::Fail(format!("{image} is built on {other}; its final stage should start FROM scratch")),
        };
    }
    let wanted = match known.as_ref().and_then(|k| k.chain(base)) {
        Some(chain) => Some(chain.to_vec()),
        None => match id_and_layers(g, base).await {
            Ok((base_id, chain)) if base_id != id => Some(chain),
            _ => None,
        },
    };
    if wanted.is_some_and(|chain| !chain.is_empty() && layers.starts_with(&chain)) {
        return Outcome::Pass(String::new());
    }
    Outcome::Fail(match found {
        Some(other) => format!("{image} is built on {other}; it should be built on {base}"),
        None => format!("{image} is built FROM scratch; it should be built on {base}"),
    })
}

/// The longest layer chain that starts `layers`: docklab's images (any length up to the whole),
/// then the machine's tagged images other than `id`: shorter chains, or the same chain in an
/// image made no later (`FROM busybox` with only a new `CMD` adds no layer; an image made later
/// from the same layers, or the same image under another tag, is not its base). docklab's wins
/// a tie.
async fn found_base(g: &Grader, known: Option<&KnownImages>, id: &str, layers: &[String]) -> Result<Option<String>, Outcome> {
    let mut docklab: Option<(usize, &String)> = None;
    for (name, chain) in known.into_iter().flat_map(KnownImages::all) {
        let better = docklab.is_none_or(|(n, b)| chain.len() > n || (chain.len() == n && preferred(name, b)));
        if !chain.is_empty() && layers.starts_with(chain) && better {
            docklab = Some((chain.len(), name));
        }
    }
    let mut best: Option<(usize, String)> = docklab.map(|(n, name)| (n, name.trim_end_matches(":latest").to_owned()));
    let images = list_images(&g.docker).await.map_err(|err| engine_outcome(err, "the images"))?;
    let made = images.iter().find(|o| o.id == id).map(|o| o.created).unwrap_or(i64::MAX);
    let others: Vec<(String, String, i64)> = images
        .iter()
        .filter(|o| o.id != id)
        .filter_map(|o| Some((o.id.clone(), o.repo_tags.iter().find(|t| *t != "<none>:<none>")?.clone(), o.created)))
        .collect();
    let reads = others.into_iter().map(|(other, tag, created)| tagged_chain(g, other, tag, created));
    for (tag, chain, created) in futures::future::join_all(reads).await.into_iter().flatten() {
        let shorter = chain.len() < layers.len() || created <= made;
        if !chain.is_empty() && shorter && layers.starts_with(&chain) && best.as_ref().is_none_or(|(n, _)| chain.len() > *n) {
            best = Some((chain.len(), tag));
        }
    }
    Ok(best.map(|(_, name)| name))
}

async fn tagged_chain(g: &Grader, id: String, tag: String, created: i64) -> Option<(String, Vec<String>, i64)> {
    id_and_layers(g, &id).await.ok().map(|(_, chain)| (tag, chain, created))
}

fn engine_outcome(err: EngineError, what: &str) -> Outcome {
    match err {
        EngineError::DockerResponseServerError { message, .. } => Outcome::Fail(format!("Docker could not look up {what}: {}", message.trim())),
        other => {
            tracing::debug!(error = %other, %what, "engine request failed");
            Outcome::Unknown(super::ENGINE_DOWN.to_owned())
        }
    }
}

/// The instructions of a Dockerfile's last stage after its `FROM` (continuations joined,
/// comments and `ARG` left out: builders record `ARG` differently), and that stage's base.
pub(crate) fn final_stage(text: &str) -> (Option<String>, Vec<String>) {
    let mut base = None;
    let mut out = Vec::new();
    let mut logical = String::new();
    for line in text.lines().take(10_000) {
        let trimmed = line.trim();
        if logical.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(trimmed);
        let instruction = std::mem::take(&mut logical);
        let keyword = instruction.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        match keyword.as_str() {
            "FROM" => {
                base = instruction.split_whitespace().skip(1).find(|a| !a.starts_with("--")).map(str::to_owned);
                out.clear();
            }
            "ARG" | "" => {}
            _ => out.push(instruction),
        }
    }
    (base, out)
}

/// An instruction's keyword, upper case.
fn keyword(instruction: &str) -> String {
    instruction.split_whitespace().next().unwrap_or_default().to_ascii_uppercase()
}

/// A shell-form `RUN`'s command, with spaces squeezed; `None` for the exec form.
fn run_command(instruction: &str) -> Option<String> {
    let rest = instruction.trim().get(3..)?.trim();
    (!rest.starts_with('[')).then(|| rest.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `dockerfile` with `image`: the image's history must end with the instructions of the file's
/// last stage, in order (same keywords; a shell-form `RUN` the same command), and when that
/// stage starts `FROM scratch`, hold nothing else. A right Dockerfile left unbuilt next to an
/// image built another way fails.
pub(super) async fn built_from(g: &Grader, image: &str, path: &str, text: &str) -> Outcome {
    let (base, want) = final_stage(text);
    let history = match g.docker.image_history(image).await {
        Ok(h) => h,
        Err(EngineError::DockerResponseServerError { status_code: 404, .. }) => {
            return Outcome::Fail(format!("there is no image {image} built from {path}"));
        }
        Err(err) => return engine_outcome(err, &format!("image {image}")),
    };
    // Oldest first, as written in a Dockerfile.
    let have: Vec<String> = history
        .iter()
        .rev()
        .map(|h| crate::visuals::instruction(&h.created_by))
        .filter(|i| keyword(i) != "ARG")
        .collect();
    let scratch = base.as_deref().is_some_and(|b| normalize_image(b) == "scratch");
    let tail = &have[have.len().saturating_sub(want.len())..];
    let same = |w: &String, h: &String| {
        keyword(w) == keyword(h)
            && match (run_command(w), keyword(w) == "RUN") {
                (Some(cmd), true) => h.split_whitespace().collect::<Vec<_>>().join(" ").ends_with(&cmd),
                _ => true,
            }
    };
    let matches = tail.len() == want.len() && want.iter().zip(tail).all(|(w, h)| same(w, h)) && (!scratch || have.len() == want.len());
    if matches {
        return Outcome::Pass(String::new());
    }
    let shorten = |i: &String| {
        let one: String = i.chars().take(60).collect();
        if one.len() < i.len() { format!("{one}…") } else { one }
    };
    let list = |v: &[String]| v.iter().map(shorten).collect::<Vec<_>>().join(", ");
    let shown = &have[have.len().saturating_sub(want.len().max(1))..];
    Outcome::Fail(format!(
        "{image} was not built from {path}: the file's last stage is {}, but {image} was made by {}",
        if want.is_empty() { "only a FROM".to_owned() } else { list(&want) },
        if shown.is_empty() { "no instructions".to_owned() } else { list(shown) }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data, mode) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn saved(layers: &[&[(&str, &[u8], u32)]]) -> Vec<u8> {
        let mut outer: Vec<(String, Vec<u8>, u32)> = Vec::new();
        let mut names = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            outer.push((format!("l{i}/layer.tar"), tar_of(layer), 0o644));
            names.push(format!("l{i}/layer.tar"));
        }
        outer.push(("manifest.json".into(), serde_json::json!([{ "Layers": names }]).to_string().into_bytes(), 0o644));
        let refs: Vec<(&str, &[u8], u32)> = outer.iter().map(|(n, d, m)| (n.as_str(), d.as_slice(), *m)).collect();
        tar_of(&refs)
    }

    fn shell(saved: &[u8]) -> Option<String> {
        shell_in_saved_image(saved).unwrap()
    }

    #[test]
    fn a_shell_is_found_wherever_it_is_and_whatever_it_is_called() {
        let busybox: &[u8] = b"\x7fELF....BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) multi-call binary";
        // Copied out of /bin: the name still says it.
        assert_eq!(shell(&saved(&[&[("opt/x/sh", b"\x7fELF", 0o755)]])).as_deref(), Some("/opt/x/sh"));
        // Renamed: its content says it.
        assert_eq!(
            shell(&saved(&[&[("usr/local/bin/tool", busybox, 0o755)]])).as_deref(),
            Some("/usr/local/bin/tool (BusyBox)")
        );
        // Not executable, or not a program: a document that mentions BusyBox is not a shell.
        assert_eq!(shell(&saved(&[&[("doc/busybox.txt", b"BusyBox v1", 0o644)]])), None);
        // Removed by a later layer (a whiteout, or an opaque directory), or replaced.
        assert_eq!(shell(&saved(&[&[("opt/x/sh", b"x", 0o755)], &[("opt/x/.wh.sh", b"", 0o644)]])), None);
        assert_eq!(shell(&saved(&[&[("opt/x/tool", busybox, 0o755)], &[("opt/x/.wh..wh..opq", b"", 0o644)]])), None);
        assert_eq!(shell(&saved(&[&[("app/run", busybox, 0o755)], &[("app/run", b"\x7fELF plain", 0o755)]])), None);
        assert_eq!(shell(&saved(&[&[("bin/sh", b"x", 0o777), ("bin/busybox", busybox, 0o755)]])).as_deref(), Some("/bin/sh"));
    }

    /// A tar header block for `path`.
    fn header(path: &str, size: u64, mode: u32, kind: tar::EntryType) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_size(size);
        h.set_mode(mode);
        h.set_entry_type(kind);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn padding(size: u64) -> Vec<u8> {
        vec![0; ((512 - size % 512) % 512) as usize]
    }

    /// `size` zero bytes, made as they are read.
    struct Zeros(u64);

    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (buf.len() as u64).min(self.0) as usize;
            buf[..n].fill(0);
            self.0 -= n as u64;
            Ok(n)
        }
    }

    /// Hands out at most `max` bytes per read, like a network stream in small chunks.
    struct Trickle<R>(R, usize);

    impl<R: Read> Read for Trickle<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.1);
            self.0.read(&mut buf[..n])
        }
    }

    /// An archive from named parts, the manifest wherever the caller puts it.
    fn archive(parts: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let refs: Vec<(&str, &[u8], u32)> = parts.iter().map(|(n, d)| (*n, d.as_slice(), 0o644)).collect();
        tar_of(&refs)
    }

    fn manifest(layers: &[&str]) -> Vec<u8> {
        serde_json::json!([{ "Config": "c.json", "Layers": layers }]).to_string().into_bytes()
    }

    fn peak_rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn a_signature_across_windows_and_chunks_is_found() {
        let sig: &[u8] = b"BusyBox v1.36.1 multi-call binary";
        // The signature starts at every offset around the first window's end.
        for at in SIGNATURE_WINDOW - LONGEST_SIGNATURE - 2..SIGNATURE_WINDOW + 6 {
            let mut content = b"\x7fELF".to_vec();
            content.resize(at, b'.');
            content.extend_from_slice(sig);
            let saved = saved(&[&[("usr/local/bin/tool", &content, 0o755)]]);
            assert_eq!(
                shell_in_saved_image(Trickle(saved.as_slice(), 7)).unwrap().as_deref(),
                Some("/usr/local/bin/tool (BusyBox)"),
                "signature at {at}"
            );
            // Read a byte at a time too (only near the boundary: slow in a debug build).
            if at == SIGNATURE_WINDOW - 2 {
                assert_eq!(shell_in_saved_image(Trickle(saved.as_slice(), 1)).unwrap().as_deref(), Some("/usr/local/bin/tool (BusyBox)"));
            }
        }
        // A signature cut short at the end of the file is none.
        let mut content = b"\x7fELF".to_vec();
        content.resize(SIGNATURE_WINDOW - 3, b'.');
        content.extend_from_slice(b"BusyBox");
        assert_eq!(shell(&saved(&[&[("usr/local/bin/tool", &content, 0o755)]])), None);
    }

    #[test]
    fn whiteouts_and_opaque_directories_in_later_layers_apply_in_manifest_order() {
        let busybox: &[u8] = b"\x7fELF..BusyBox v1.35.0";
        let base = tar_of(&[("opt/a/sh", b"x", 0o755), ("usr/lib/x/tool", busybox, 0o755), ("etc/zsh", b"x", 0o755)]);
        let removes = tar_of(&[("opt/.wh.a", b"", 0o644), ("usr/lib/x/.wh..wh..opq", b"", 0o644), ("usr/lib/x/other", b"x", 0o644)]);
        let readds = tar_of(&[("opt/a/sh", b"x", 0o755)]);
        let hides_zsh = tar_of(&[("etc/.wh.zsh", b"", 0o644)]);
        // Stored out of order; the manifest's order is what counts.
        let parts = |order: &[&str], manifest_first: bool| {
            let mut parts = vec![("c/layer.tar", readds.clone()), ("a/layer.tar", base.clone()), ("b/layer.tar", removes.clone()), ("d/layer.tar", hides_zsh.clone())];
            let m = ("manifest.json", manifest(order));
            if manifest_first {
                parts.insert(0, m);
            } else {
                parts.push(m);
            }
            archive(&parts)
        };
        for manifest_first in [true, false] {
            let all = parts(&["a/layer.tar", "b/layer.tar", "d/layer.tar"], manifest_first);
            assert_eq!(shell(&all), None, "manifest first: {manifest_first}");
            let readded = parts(&["a/layer.tar", "b/layer.tar", "c/layer.tar", "d/layer.tar"], manifest_first);
            assert_eq!(shell(&readded).as_deref(), Some("/opt/a/sh"), "manifest first: {manifest_first}");
            let removed_too_early = parts(&["b/layer.tar", "a/layer.tar", "d/layer.tar"], manifest_first);
            assert_eq!(shell(&removed_too_early).as_deref(), Some("/opt/a/sh"), "manifest first: {manifest_first}");
            let zsh_kept = parts(&["a/layer.tar", "b/layer.tar"], manifest_first);
            assert_eq!(shell(&zsh_kept).as_deref(), Some("/etc/zsh"), "manifest first: {manifest_first}");
        }
        // No manifest at all: nothing to go by, and the check says so.
        let none = archive(&[("a/layer.tar", base.clone())]);
        assert!(matches!(shell_in_saved_image(none.as_slice()), Err(ScanError::NoManifest)));
    }

    #[test]
    fn an_image_with_too_many_files_is_refused_not_kept() {
        let files: Vec<(String, &[u8], u32)> = (0..50).map(|i| (format!("data/f{i}"), b"x" as &[u8], 0o644)).collect();
        let refs: Vec<(&str, &[u8], u32)> = files.iter().map(|(n, d, m)| (n.as_str(), *d, *m)).collect();
        let layer = tar_of(&refs);
        let saved = archive(&[("l/layer.tar", layer), ("manifest.json", manifest(&["l/layer.tar"]))]);
        assert!(matches!(shell_in_saved_image_with(saved.as_slice(), Budget::new(20, 1 << 20)), Err(ScanError::TooManyFiles)));
        assert!(matches!(shell_in_saved_image_with(saved.as_slice(), Budget::new(1000, 100)), Err(ScanError::TooManyFiles)));
        assert_eq!(ScanError::TooManyFiles.to_string(), "the image has too many files to look inside");
        assert_eq!(shell_in_saved_image_with(saved.as_slice(), Budget::new(1000, 1 << 20)).unwrap(), None);
    }

    #[test]
    fn a_huge_executable_and_a_huge_long_name_are_streamed_not_held() {
        const HUGE: u64 = 400 << 20;
        let busybox: &[u8] = b"\x7fELF..BusyBox v1.35.0";
        // One layer: a 400 MiB ELF of zeros, then a renamed BusyBox after it.
        let layer_head = header("usr/bin/huge", HUGE, 0o755, tar::EntryType::Regular);
        let mut layer_tail = padding(HUGE);
        layer_tail.extend(tar_of(&[("opt/tool", busybox, 0o755)]));
        let layer_size = layer_head.len() as u64 + HUGE + layer_tail.len() as u64;
        let mut head = header("l/layer.tar", layer_size, 0o644, tar::EntryType::Regular);
        head.extend(&layer_head);
        head.extend(b"\x7fELF");
        let mut tail = layer_tail;
        tail.extend(padding(layer_size));
        tail.extend(archive(&[("manifest.json", manifest(&["l/layer.tar"]))]));
        let before = peak_rss_kib();
        let stream = std::io::Cursor::new(head).chain(Zeros(HUGE - 4)).chain(std::io::Cursor::new(tail));
        assert_eq!(shell_in_saved_image(stream).unwrap().as_deref(), Some("/opt/tool (BusyBox)"));
        let grown = peak_rss_kib().saturating_sub(before);
        assert!(grown < 64 << 10, "peak memory grew by {grown} KiB scanning a 400 MiB file");

        // A GNU long name that says it is 300 MiB long is refused without reading it.
        let mut head = header("././@LongLink", 300 << 20, 0o644, tar::EntryType::GNULongName);
        head.extend(b"x");
        let stream = std::io::Cursor::new(head).chain(Zeros((300 << 20) - 1));
        assert!(matches!(shell_in_saved_image(stream), Err(ScanError::Oversized(_, NAME_CAP))));
        let grown = peak_rss_kib().saturating_sub(before);
        assert!(grown < 64 << 10, "peak memory grew by {grown} KiB on a 300 MiB long name");
    }

    #[test]
    fn the_last_stage_of_a_dockerfile_is_what_its_image_was_made_by() {
        let text = "FROM golang:1.19 AS build\nARG V=1\nRUN go build \\\n  -o /hello .\n\n# final\nfrom scratch\nCOPY --from=build /hello /hello\nENTRYPOINT [\"/hello\"]\n";
        let (base, stage) = final_stage(text);
        assert_eq!(base.as_deref(), Some("scratch"));
        assert_eq!(stage, vec!["COPY --from=build /hello /hello".to_owned(), "ENTRYPOINT [\"/hello\"]".to_owned()]);
        assert_eq!(run_command("RUN  go build   -o /x ."), Some("go build -o /x .".to_owned()));
        assert_eq!(run_command("RUN [\"go\", \"build\"]"), None);
    }

    #[test]
    fn an_image_list_without_parent_ids_or_sizes_still_reads() {
        let json = r#"[{"Id":"sha256:aa","RepoTags":["calc:1"],"RepoDigests":null,"Created":5,"Size":1800000,"Labels":null},
                       {"Id":"sha256:bb","RepoTags":null}]"#;
        let images = parse_image_list(json).unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].repo_tags, vec!["calc:1".to_owned()]);
        assert_eq!(images[0].parent_id, "");
        assert_eq!(images[0].size, 1_800_000);
        assert!(images[1].repo_tags.is_empty());
        // What bollard's own type makes of the same answer: the error the scene used to show.
        let strict = serde_json::from_str::<Vec<ImageSummary>>(json).unwrap_err();
        assert!(strict.to_string().contains("missing field `ParentId`"), "{strict}");
    }
}
