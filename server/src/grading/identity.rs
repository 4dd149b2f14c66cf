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

/// Most bytes of one file read to look for a shell's signature.
const SIGNATURE_CAP: u64 = 64 << 20;

/// Reads a `docker save` archive: applies its layers in order, with whiteouts, and says which
/// shell the final filesystem has, if any: a file or link named like a shell anywhere (not only
/// in `/bin`), or an executable whose content is a shell's or BusyBox's whatever its name.
/// `Some("/opt/x/sh")`, or `Some("/usr/local/bin/tool (BusyBox)")`.
pub(crate) fn shell_in_saved_image(saved: &[u8]) -> Option<String> {
    let mut layers: HashMap<String, Vec<u8>> = HashMap::new();
    let mut manifest: Option<serde_json::Value> = None;
    let mut archive = tar::Archive::new(saved);
    for mut entry in archive.entries().ok()?.flatten() {
        let name = entry.path().ok()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        if name == "manifest.json" {
            entry.read_to_end(&mut data).ok()?;
            manifest = serde_json::from_slice(&data).ok();
        } else if name.ends_with(".tar") || name.starts_with("blobs/") {
            entry.read_to_end(&mut data).ok()?;
            layers.insert(name, data);
        }
    }
    let order: Vec<String> =
        manifest?.get(0)?.get("Layers")?.as_array()?.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect();
    // Path → why it is a shell; removed again by later whiteouts.
    let mut present: BTreeMap<String, String> = BTreeMap::new();
    for layer in order {
        let Some(data) = layers.get(&layer) else { continue };
        let mut inner = tar::Archive::new(data.as_slice());
        let Ok(entries) = inner.entries() else { continue };
        for mut entry in entries.flatten() {
            let Ok(path) = entry.path() else { continue };
            let path = path.to_string_lossy().trim_start_matches("./").trim_end_matches('/').to_owned();
            let (dir, file) = path.rsplit_once('/').unwrap_or(("", &path));
            if let Some(removed) = file.strip_prefix(".wh.") {
                if removed == ".wh..opq" {
                    present.retain(|p, _| !p.starts_with(&format!("{dir}/")));
                } else {
                    let gone = if dir.is_empty() { removed.to_owned() } else { format!("{dir}/{removed}") };
                    present.retain(|p, _| p != &gone && !p.starts_with(&format!("{gone}/")));
                }
                continue;
            }
            // A later layer's file replaces an earlier one at the same path.
            present.remove(&path);
            let kind = entry.header().entry_type();
            if !(kind.is_file() || kind.is_symlink() || kind.is_hard_link()) {
                continue;
            }
            if SHELL_NAMES.contains(&file) {
                present.insert(path, String::new());
                continue;
            }
            let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
            if kind.is_file() && executable {
                let mut head = Vec::new();
                if entry.by_ref().take(SIGNATURE_CAP).read_to_end(&mut head).is_err() || !head.starts_with(b"\x7fELF") {
                    continue;
                }
                if let Some((_, what)) = SHELL_SIGNATURES.iter().find(|(sig, _)| head.windows(sig.len()).any(|w| w == *sig)) {
                    present.insert(path, format!(" ({what})"));
                }
            }
        }
    }
    // Prefer the usual places in the message.
    let pick = ["bin/sh", "usr/bin/sh", "bin/bash", "bin/busybox"].iter().find_map(|p| present.get_key_value(*p)).or_else(|| present.iter().next());
    pick.map(|(path, why)| format!("/{path}{why}"))
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

    #[test]
    fn a_shell_is_found_wherever_it_is_and_whatever_it_is_called() {
        let busybox: &[u8] = b"\x7fELF....BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) multi-call binary";
        // Copied out of /bin: the name still says it.
        assert_eq!(shell_in_saved_image(&saved(&[&[("opt/x/sh", b"\x7fELF", 0o755)]])).as_deref(), Some("/opt/x/sh"));
        // Renamed: its content says it.
        assert_eq!(
            shell_in_saved_image(&saved(&[&[("usr/local/bin/tool", busybox, 0o755)]])).as_deref(),
            Some("/usr/local/bin/tool (BusyBox)")
        );
        // Not executable, or not a program: a document that mentions BusyBox is not a shell.
        assert_eq!(shell_in_saved_image(&saved(&[&[("doc/busybox.txt", b"BusyBox v1", 0o644)]])), None);
        // Removed by a later layer (a whiteout, or an opaque directory), or replaced.
        assert_eq!(shell_in_saved_image(&saved(&[&[("opt/x/sh", b"x", 0o755)], &[("opt/x/.wh.sh", b"", 0o644)]])), None);
        assert_eq!(shell_in_saved_image(&saved(&[&[("opt/x/tool", busybox, 0o755)], &[("opt/x/.wh..wh..opq", b"", 0o644)]])), None);
        assert_eq!(shell_in_saved_image(&saved(&[&[("app/run", busybox, 0o755)], &[("app/run", b"\x7fELF plain", 0o755)]])), None);
        assert_eq!(shell_in_saved_image(&saved(&[&[("bin/sh", b"x", 0o777), ("bin/busybox", busybox, 0o755)]])).as_deref(), Some("/bin/sh"));
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
