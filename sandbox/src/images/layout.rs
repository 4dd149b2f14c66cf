//! OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/sha256/...`), written so that the
//! same root filesystem and settings give the same digests: layer tars are sorted, their times
//! clamped, their owners numeric; gzip carries no timestamp; JSON documents have sorted keys.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::ImageError;

/// The annotation an OCI layout's index uses for a tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The media type Docker 20.10 pulls for an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImageError + 'a {
    move |source| ImageError::Io { what, path: path.to_path_buf(), source }
}

/// JSON with keys sorted at every level (serde_json's map may keep insertion order, and oci-spec
/// keeps labels and annotations in `HashMap`s, whose order changes from run to run).
pub fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sort).collect()),
            other => other,
        }
    }
    let value = serde_json::to_value(value).expect("image documents serialize to JSON");
    serde_json::to_vec(&sort(value)).expect("a JSON value serializes")
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Counts and hashes what passes through it.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashWriter<W> {
    fn new(inner: W) -> Self {
        HashWriter { inner, hasher: Sha256::new(), written: 0 }
    }
    fn finish(self) -> (W, String, u64) {
        (self.inner, format!("sha256:{}", hex::encode(self.hasher.finalize())), self.written)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// How a root filesystem becomes a layer.
#[derive(Debug, Clone)]
pub struct TreeOptions {
    /// Every time in the layer is at most this (seconds since 1970).
    pub epoch: u64,
    /// Files changed at or after this moment (the build's start) get `epoch` as their time; older
    /// ones (unpacked from packages) keep theirs, which Python's bytecode checks rely on.
    pub built_after: u64,
    /// Only these paths (relative, no leading `/`) and the directories above them; `None`: all.
    pub only: Option<std::collections::BTreeSet<PathBuf>>,
}

impl TreeOptions {
    pub fn new(epoch: u64) -> Self {
        TreeOptions { epoch, built_after: 0, only: None }
    }
}

/// Directories whose contents never go into an image: the runtime provides them.
const EMPTY_IN_IMAGE: &[&str] = &["dev", "proc", "sys", "run", "tmp", "var/tmp", "var/cache/apt/archives/partial"];

/// What a written layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// Digest of the uncompressed tar (the config's `diff_ids`).
    pub diff_id: String,
    /// Digest of the gzip blob.
    pub digest: String,
    pub size: u64,
    pub unpacked_size: u64,
}

/// Writes `root` as a gzip-compressed, normalised tar into `blobs/sha256/` of `layout`.
pub fn write_layer(root: &Path, layout: &Path, options: &TreeOptions) -> Result<LayerBlob, ImageError> {
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err("creating", &blobs))?;
    let tmp = blobs.join(format!(".layer.{}.tmp", std::process::id()));
    let file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
    let gz = flate2::GzBuilder::new().mtime(0).write(HashWriter::new(io::BufWriter::new(file)), flate2::Compression::new(6));
    let mut builder = tar::Builder::new(HashWriter::new(gz));
    builder.mode(tar::HeaderMode::Deterministic);
    let mut links = HashMap::new();
    append_tree(&mut builder, root, Path::new(""), options, &mut links)?;
    let write_err = io_err("writing the layer", root);
    let tar_hash = builder.into_inner().map_err(write_err)?;
    let (gz, diff_id, unpacked_size) = tar_hash.finish();
    let file_hash = gz.finish().map_err(io_err("compressing the layer", root))?;
    let (mut buf, digest, size) = file_hash.finish();
    buf.flush().map_err(io_err("writing", &tmp))?;
    let path = blobs.join(digest.trim_start_matches("sha256:"));
    fs::rename(&tmp, &path).map_err(io_err("storing", &path))?;
    Ok(LayerBlob { diff_id, digest, size, unpacked_size })
}

fn wanted(rel: &Path, options: &TreeOptions) -> bool {
    match &options.only {
        None => true,
        // A path is kept when it is listed, lies under a listed directory prefix, or is a
        // directory on the way to a listed path.
        Some(only) => {
            only.contains(rel)
                || rel.ancestors().skip(1).any(|a| !a.as_os_str().is_empty() && only.contains(&a.join("**")))
                || only.range(rel.to_path_buf()..).next().is_some_and(|p| p.starts_with(rel) && p != rel)
        }
    }
}

fn append_tree<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    options: &TreeOptions,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), ImageError> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir).map_err(io_err("reading", &dir))?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>().map_err(io_err("reading", &dir))?;
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let rel = rel.join(&name);
        if !wanted(&rel, options) {
            continue;
        }
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
        let ft = meta.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        let mtime = meta.mtime().max(0) as u64;
        h.set_mtime(if mtime >= options.built_after { options.epoch } else { mtime.min(options.epoch) });
        h.set_size(0);
        let e = io_err("adding to the layer", &path);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, &rel, io::empty()).map_err(e)?;
            let keep_empty = EMPTY_IN_IMAGE.iter().any(|d| Path::new(d) == rel);
            if !keep_empty {
                append_tree(b, root, &rel, options, links)?;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err("reading the link", &path))?;
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, &rel, &target).map_err(e)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    b.append_link(&mut h, &rel, first).map_err(e)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), rel.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            let f = File::open(&path).map_err(io_err("opening", &path))?;
            b.append_data(&mut h, &rel, f).map_err(e)?;
        } else if ft.is_fifo() {
            h.set_entry_type(tar::EntryType::Fifo);
            b.append_data(&mut h, &rel, io::empty()).map_err(e)?;
        }
        // Device nodes and sockets are left out: the container runtime provides /dev.
    }
    Ok(())
}

/// Unpacks a gzip layer blob written by [`write_layer`] into the directory `root`, with its
/// owners, modes and times (for an image built on another image's files: `Source::StandIn`).
pub fn unpack_layer(blob: &Path, root: &Path) -> Result<(), ImageError> {
    let file = File::open(blob).map_err(io_err("opening", blob))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.unpack(root).map_err(io_err("unpacking the layer", blob))
}

/// Writes a JSON document as a blob; returns its descriptor.
fn write_json_blob<T: Serialize>(layout: &Path, media: MediaType, value: &T) -> Result<Descriptor, ImageError> {
    let bytes = canonical_json(value);
    let digest = sha256_digest(&bytes);
    let path = layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    fs::create_dir_all(path.parent().expect("blob path has a parent")).map_err(io_err("creating", &path))?;
    fs::write(&path, &bytes).map_err(io_err("writing", &path))?;
    Ok(Descriptor::new(media, bytes.len() as u64, parse_digest(&digest)))
}

fn parse_digest(d: &str) -> oci_spec::image::Digest {
    d.parse().expect("a sha256 digest we computed parses")
}

/// Writes the config, the manifest and `index.json` (one entry per tag) for a one-layer image.
/// Returns the manifest's digest.
pub fn write_image(layout: &Path, layer: &LayerBlob, config: &ImageConfiguration, tags: &[&str]) -> Result<(String, String), ImageError> {
    let config_desc = write_json_blob(layout, MediaType::ImageConfig, config)?;
    let layer_desc = Descriptor::new(MediaType::ImageLayerGzip, layer.size, parse_digest(&layer.digest));
    let manifest: ImageManifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc.clone())
        .layers(vec![layer_desc])
        .build()
        .expect("manifest fields are all set");
    let manifest_desc = write_json_blob(layout, MediaType::ImageManifest, &manifest)?;
    let manifests: Vec<Descriptor> = tags
        .iter()
        .map(|t| {
            let mut d = manifest_desc.clone();
            d.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), t.to_string())])));
            d
        })
        .collect();
    let index: ImageIndex = ImageIndexBuilder::default().schema_version(2u32).media_type(MediaType::ImageIndex).manifests(manifests).build().expect("index fields are all set");
    let index_path = layout.join("index.json");
    fs::write(&index_path, canonical_json(&index)).map_err(io_err("writing", &index_path))?;
    let marker = layout.join("oci-layout");
    fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err("writing", &marker))?;
    Ok((manifest_desc.digest().to_string(), config_desc.digest().to_string()))
}

/// One tag of a layout's `index.json`.
#[derive(Debug, Clone)]
pub struct TaggedManifest {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// The tags an OCI layout's `index.json` names.
pub fn read_tags(layout: &Path) -> Result<Vec<TaggedManifest>, ImageError> {
    let path = layout.join("index.json");
    let index = ImageIndex::from_file(&path).map_err(|e| ImageError::Layout { path: path.clone(), detail: e.to_string() })?;
    Ok(index
        .manifests()
        .iter()
        .filter_map(|d| {
            let tag = d.annotations().as_ref()?.get(REF_NAME)?.clone();
            Some(TaggedManifest { tag, digest: d.digest().to_string(), media_type: d.media_type().to_string(), size: d.size() })
        })
        .collect())
}

/// Path of a blob in a layout, if the digest is a well-formed sha256 digest.
pub fn blob_path(layout: &Path, digest: &str) -> Option<PathBuf> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())).then(|| layout.join("blobs/sha256").join(hex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("dev")).unwrap();
        fs::write(root.join("dev/null-ish"), b"").unwrap();
        fs::write(root.join("usr/bin/hello"), b"#!/bin/sh\necho hello\n").unwrap();
        fs::hard_link(root.join("usr/bin/hello"), root.join("usr/bin/hello2")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        fs::write(root.join("etc-file"), b"x").unwrap();
    }

    #[test]
    fn same_tree_gives_the_same_layer_digest_whenever_it_was_made() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        tree(&a);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        tree(&b);
        let opts = TreeOptions { epoch: 1_700_000_000, built_after: 0, only: None };
        let la = write_layer(&a, &tmp.path().join("la"), &opts).unwrap();
        let lb = write_layer(&b, &tmp.path().join("lb"), &opts).unwrap();
        assert_eq!(la, lb, "same files made a second later must give the same layer");
        // The layer lists entries sorted, with the hard link as a link and /dev left empty.
        let gz = File::open(blob_path(&tmp.path().join("la"), &la.digest).unwrap()).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(gz));
        let entries: Vec<(String, tar::EntryType, u64)> =
            ar.entries().unwrap().map(|e| e.unwrap()).map(|e| (e.path().unwrap().display().to_string(), e.header().entry_type(), e.header().mtime().unwrap())).collect();
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["bin", "dev", "etc-file", "usr", "usr/bin", "usr/bin/hello", "usr/bin/hello2"]);
        assert_eq!(entries[6].1, tar::EntryType::Link);
        assert!(entries.iter().all(|e| e.2 == 1_700_000_000));
    }

    #[test]
    fn only_keeps_listed_paths_and_their_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("r");
        tree(&root);
        fs::create_dir_all(root.join("usr/lib/py/enc")).unwrap();
        fs::write(root.join("usr/lib/py/enc/a.pyc"), b"c").unwrap();
        let only = ["usr/bin/hello", "usr/lib/py/**"].iter().map(PathBuf::from).collect();
        let opts = TreeOptions { epoch: 1, built_after: 0, only: Some(only) };
        let l = write_layer(&root, &tmp.path().join("l"), &opts).unwrap();
        let gz = File::open(blob_path(&tmp.path().join("l"), &l.digest).unwrap()).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(gz));
        let names: Vec<String> = ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["usr", "usr/bin", "usr/bin/hello", "usr/lib", "usr/lib/py", "usr/lib/py/enc", "usr/lib/py/enc/a.pyc"]);
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let v: HashMap<&str, u32> = [("b", 1), ("a", 2), ("c", 3)].into();
        assert_eq!(canonical_json(&v), br#"{"a":2,"b":1,"c":3}"#);
    }
}
