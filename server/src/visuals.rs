//! Live visuals: a typed snapshot (the **scene**) of what a session's Docker engine holds, for the
//! pictures days 26 to 28 draw next to the prose: images by size with their layers, volumes and
//! the containers that mount them, networks and who can reach whom.
//!
//! The scene is read with the same bollard client the grader uses (the machine's engine socket,
//! API 1.41). `GET /api/sessions/{id}/scene` answers on demand; while a session's lesson places a
//! live visual, the live grading watcher calls [`SceneFeed::publish`] after every engine event,
//! and a changed scene goes to the terminal's viewers as a `scene` frame.
//!
//! Reachability is worked out from Docker's rules, not probed: on a shared user-defined network,
//! by name (Docker's DNS) and address; on the default bridge only, by address (no DNS there);
//! across bridges or from `none`, not at all; to or from a `host` container, through the machine's
//! own network stack, by address. `tests/tests/scene.rs` checks these rules with real pings.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use bollard::models::{ContainerSummary, ImageSummary, MountPointTypeEnum, Network, Volume};
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions, ListVolumesOptions};
use bollard::Docker;
use lessons::{Catalog, Exercise};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::app::AppState;
use crate::error::AppError;
use crate::extract::Json;
use crate::registry::Session;
use crate::sessions::{authorize, require_ready};
use crate::terminal::protocol::ServerControl;

/// What a session's engine holds, as the live visuals draw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scene {
    /// Tagged images, largest first (untagged, dangling ones are left out).
    pub images: Vec<SceneImage>,
    /// Named volumes first, then anonymous ones, each by name.
    pub volumes: Vec<SceneVolume>,
    /// Built-in networks (`bridge`, `host`, `none`) first, then the learner's, by name.
    pub networks: Vec<SceneNetwork>,
    /// Every container, running or not, by name.
    pub containers: Vec<SceneContainer>,
    /// Every ordered pair of running containers where `from` can reach `to`; a pair not listed
    /// cannot reach.
    pub reach: Vec<Reach>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneImage {
    /// Short id (12 hex digits), as `docker image ls` shows it.
    pub id: String,
    /// `repo:tag` names, at least one.
    pub tags: Vec<String>,
    /// Unpacked size in bytes, shared layers included (`docker image ls` SIZE).
    pub size: i64,
    /// Unix time the image was built.
    pub created: i64,
    /// Whether it came from the registry (it has a repo digest, or it is one of docklab's base
    /// images, which machines load at start) rather than being built in the machine.
    pub pulled: bool,
    /// The local image it is built on: the tagged image whose layers start its own, longest first.
    /// `None` when it starts from `scratch` or from an image no longer here.
    pub base: Option<String>,
    /// Its history, newest first like `docker history`.
    pub layers: Vec<SceneLayer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneLayer {
    /// The instruction that made it, readable (`RUN go build …`, `CMD ["/app"]`).
    pub instruction: String,
    /// Bytes it added; 0 for instructions that only change metadata.
    pub size: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneVolume {
    pub name: String,
    /// Made by Docker for a `VOLUME` or a bare `-v /path` (its name is a 64-digit id).
    pub anonymous: bool,
    pub driver: String,
    /// Containers that mount it, running or stopped (any of them keeps `docker volume rm` away).
    pub used_by: Vec<String>,
}

/// What kind of network, in the course's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    /// The default `bridge` (`docker0`): addresses only, no DNS.
    Default,
    /// One the learner made with `docker network create`: DNS by container name.
    UserDefined,
    /// The machine's own network stack.
    Host,
    /// No network at all, only `lo`.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneNetwork {
    pub name: String,
    /// Short id (12 hex digits).
    pub id: String,
    pub driver: String,
    pub kind: NetworkKind,
    /// Created with `--internal`: no way out of the machine.
    pub internal: bool,
    pub subnet: Option<String>,
    /// Containers attached, by name.
    pub containers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneContainer {
    /// Short id (12 hex digits).
    pub id: String,
    pub name: String,
    pub image: String,
    /// `created`, `running`, `paused`, `restarting`, `exited`, `removing` or `dead`. (Not Docker's
    /// `Up 3 minutes`: that changes by the second, so an unchanged engine would not give an equal scene.)
    pub state: String,
    pub networks: Vec<Attachment>,
    pub mounts: Vec<SceneMount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    /// Its address on that network, while it runs.
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Volume,
    Bind,
    Tmpfs,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneMount {
    pub kind: MountKind,
    /// The volume's name, or the machine's path for a bind mount.
    pub source: String,
    /// Where it appears in the container.
    pub destination: String,
    pub read_only: bool,
}

/// How one container reaches another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReachBy {
    /// By name or address: they share a user-defined network.
    Name,
    /// By address only: they share only the default bridge.
    Ip,
    /// By address, through the machine's network stack: one of them uses `--network host`.
    Machine,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    pub from: String,
    pub to: String,
    pub by: ReachBy,
    /// The network that carries it (`host` for [`ReachBy::Machine`]).
    pub network: String,
}

/// Why the scene could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    #[error("the Docker engine of session {session} did not list its {what}: {source}")]
    Engine {
        session: String,
        what: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
}

// ---- reading the engine ------------------------------------------------------------------------

/// What is kept per image id between reads (an image's contents never change).
#[derive(Debug, Clone)]
struct ImageDetail {
    /// Its root filesystem's layer digests, oldest first.
    rootfs: Vec<String>,
    layers: Vec<SceneLayer>,
}

/// Image details already read, by image id.
#[derive(Debug, Default)]
pub struct ImageCache(HashMap<String, ImageDetail>);

/// Reads the scene from a session's engine. `cache` saves re-reading images seen before.
#[tracing::instrument(name = "scene", skip_all, fields(session = %session))]
pub async fn read_scene(session: &str, docker: &Docker, cache: &mut ImageCache) -> Result<Scene, SceneError> {
    let engine = |what: &'static str| move |source| SceneError::Engine { session: session.to_owned(), what, source };
    let (images, volumes, networks, containers) = futures::join!(
        // Leniently: some engines' lists lack fields bollard requires ("missing field `ParentId`").
        crate::grading::identity::list_images(docker),
        docker.list_volumes(None::<ListVolumesOptions>),
        docker.list_networks(None::<ListNetworksOptions>),
        docker.list_containers(Some(ListContainersOptions { all: true, ..Default::default() })),
    );
    let images = images.map_err(engine("images"))?;
    let volumes = volumes.map_err(engine("volumes"))?.volumes.unwrap_or_default();
    let networks = networks.map_err(engine("networks"))?;
    let containers = containers.map_err(engine("containers"))?;

    let tagged: Vec<&ImageSummary> = images.iter().filter(|i| !tags_of(i).is_empty()).collect();
    let missing: Vec<&str> = tagged.iter().map(|i| i.id.as_str()).filter(|id| !cache.0.contains_key(*id)).collect();
    let read = futures::future::join_all(missing.iter().map(|id| image_detail(docker, id))).await;
    for (id, detail) in missing.iter().zip(read) {
        // An image removed meanwhile is simply left out this time.
        if let Some(detail) = detail {
            cache.0.insert((*id).to_owned(), detail);
        }
    }
    let present: HashSet<&str> = tagged.iter().map(|i| i.id.as_str()).collect();
    cache.0.retain(|id, _| present.contains(id.as_str()));

    let images = tagged
        .iter()
        .filter_map(|i| cache.0.get(&i.id).map(|d| (*i, d)))
        .map(|(i, d)| (image_of(i, d.layers.clone()), d.rootfs.clone(), i.labels.contains_key(DOCKLAB_BUILT)))
        .collect();
    let containers: Vec<SceneContainer> = containers.iter().map(container_of).collect();
    let networks: Vec<SceneNetwork> = networks.iter().map(network_of).collect();
    let volumes: Vec<SceneVolume> = volumes.iter().map(volume_of).collect();
    Ok(assemble(images, volumes, networks, containers))
}

async fn image_detail(docker: &Docker, id: &str) -> Option<ImageDetail> {
    let (inspect, history) = futures::join!(docker.inspect_image(id), docker.image_history(id));
    let rootfs = inspect.ok()?.root_fs.and_then(|r| r.layers).unwrap_or_default();
    let layers = history.ok()?.iter().map(|h| SceneLayer { instruction: instruction(&h.created_by), size: h.size }).collect();
    Some(ImageDetail { rootfs, layers })
}

/// The label docklab's own base images carry (an image built on one inherits it).
const DOCKLAB_BUILT: &str = "dev.docklab.built-by";

fn tags_of(image: &ImageSummary) -> Vec<String> {
    let mut tags: Vec<String> = image.repo_tags.iter().filter(|t| *t != "<none>:<none>").cloned().collect();
    tags.sort();
    tags
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

fn image_of(image: &ImageSummary, layers: Vec<SceneLayer>) -> SceneImage {
    SceneImage {
        id: short_id(&image.id),
        tags: tags_of(image),
        size: image.size,
        created: image.created,
        pulled: !image.repo_digests.is_empty(),
        base: None,
        layers,
    }
}

fn volume_of(volume: &Volume) -> SceneVolume {
    SceneVolume {
        name: volume.name.clone(),
        anonymous: is_anonymous(&volume.name),
        driver: volume.driver.clone(),
        used_by: Vec::new(),
    }
}

fn network_of(network: &Network) -> SceneNetwork {
    let name = network.name.clone().unwrap_or_default();
    let driver = network.driver.clone().unwrap_or_default();
    let subnet = network
        .ipam
        .as_ref()
        .and_then(|i| i.config.as_ref())
        .and_then(|c| c.iter().find_map(|c| c.subnet.clone()))
        .filter(|s| !s.is_empty());
    SceneNetwork {
        kind: network_kind(&name, &driver),
        id: short_id(network.id.as_deref().unwrap_or_default()),
        name,
        driver,
        internal: network.internal.unwrap_or(false),
        subnet,
        containers: Vec::new(),
    }
}

fn container_of(c: &ContainerSummary) -> SceneContainer {
    let name = c.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_owned()).unwrap_or_default();
    let mut networks: Vec<Attachment> = c
        .network_settings
        .as_ref()
        .and_then(|s| s.networks.as_ref())
        .map(|n| {
            n.iter()
                .map(|(network, e)| Attachment {
                    network: network.clone(),
                    ip: e.ip_address.clone().filter(|ip| !ip.is_empty()),
                })
                .collect()
        })
        .unwrap_or_default();
    networks.sort_by(|a, b| a.network.cmp(&b.network));
    let mut mounts: Vec<SceneMount> = c
        .mounts
        .iter()
        .flatten()
        .map(|m| {
            let kind = match m.typ {
                Some(MountPointTypeEnum::VOLUME) => MountKind::Volume,
                Some(MountPointTypeEnum::BIND) => MountKind::Bind,
                Some(MountPointTypeEnum::TMPFS) => MountKind::Tmpfs,
                _ => MountKind::Other,
            };
            let source = match kind {
                MountKind::Volume => m.name.clone(),
                _ => m.source.clone(),
            };
            SceneMount {
                kind,
                source: source.unwrap_or_default(),
                destination: m.destination.clone().unwrap_or_default(),
                read_only: m.rw == Some(false),
            }
        })
        .collect();
    // Docker lists mounts in no fixed order.
    mounts.sort_by(|a, b| a.destination.cmp(&b.destination));
    SceneContainer {
        id: short_id(c.id.as_deref().unwrap_or_default()),
        name,
        image: c.image.clone().unwrap_or_default(),
        state: c.state.map(|s| s.as_ref().to_owned()).unwrap_or_default(),
        networks,
        mounts,
    }
}

// ---- the logic, on plain data ------------------------------------------------------------------

/// Puts the pieces together: bases, who mounts which volume, who is on which network, who
/// reaches whom, and a stable order (so an unchanged engine gives an equal scene).
/// `images`: each image with its root filesystem's layers and whether it carries docklab's label.
fn assemble(
    images: Vec<(SceneImage, Vec<String>, bool)>,
    mut volumes: Vec<SceneVolume>,
    mut networks: Vec<SceneNetwork>,
    mut containers: Vec<SceneContainer>,
) -> Scene {
    let candidates: Vec<(&str, &[String])> =
        images.iter().filter_map(|(i, layers, _)| Some((i.tags.first()?.as_str(), layers.as_slice()))).collect();
    let mut with_bases: Vec<SceneImage> = images
        .iter()
        .map(|(image, layers, docklab)| {
            let base = base_of(layers, candidates.iter().filter(|(tag, _)| !image.tags.iter().any(|t| t == tag)).copied());
            // A docklab base image built on nothing else here is one the machine was given.
            let pulled = image.pulled || (*docklab && base.is_none());
            SceneImage { base, pulled, ..image.clone() }
        })
        .collect();
    with_bases.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.tags.cmp(&b.tags)));

    containers.sort_by(|a, b| a.name.cmp(&b.name));
    for volume in &mut volumes {
        volume.used_by = containers
            .iter()
            .filter(|c| c.mounts.iter().any(|m| m.kind == MountKind::Volume && m.source == volume.name))
            .map(|c| c.name.clone())
            .collect();
    }
    volumes.sort_by(|a, b| a.anonymous.cmp(&b.anonymous).then_with(|| a.name.cmp(&b.name)));
    for network in &mut networks {
        network.containers = containers
            .iter()
            .filter(|c| c.networks.iter().any(|a| a.network == network.name))
            .map(|c| c.name.clone())
            .collect();
    }
    networks.sort_by(|a, b| (a.kind == NetworkKind::UserDefined, &a.name).cmp(&(b.kind == NetworkKind::UserDefined, &b.name)));
    let reach = reachability(&containers, &networks);
    Scene { images: with_bases, volumes, networks, containers, reach }
}

/// Which kind a network is, from its name and driver.
pub fn network_kind(name: &str, driver: &str) -> NetworkKind {
    match (name, driver) {
        ("bridge", "bridge") => NetworkKind::Default,
        (_, "host") | ("host", _) => NetworkKind::Host,
        (_, "null") | ("none", _) => NetworkKind::None,
        _ => NetworkKind::UserDefined,
    }
}

/// Docker names anonymous volumes with 64 hex digits.
pub fn is_anonymous(volume: &str) -> bool {
    volume.len() == 64 && volume.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The tag of the image `layers` is built on: the candidate whose layers are the longest proper
/// prefix of its own. None when no candidate's layers start it (built `FROM scratch`).
pub fn base_of<'a>(layers: &[String], candidates: impl Iterator<Item = (&'a str, &'a [String])>) -> Option<String> {
    candidates
        .filter(|(_, other)| !other.is_empty() && other.len() < layers.len() && layers.starts_with(other))
        .max_by(|(ta, a), (tb, b)| a.len().cmp(&b.len()).then_with(|| tb.cmp(ta)))
        .map(|(tag, _)| tag.to_owned())
}

/// A history entry's `created_by`, as the instruction a learner wrote.
pub fn instruction(created_by: &str) -> String {
    let text = created_by.trim();
    let text = text.strip_suffix("# buildkit").unwrap_or(text).trim_end();
    if let Some(rest) = text.strip_prefix("/bin/sh -c #(nop)") {
        return rest.trim().to_owned();
    }
    if let Some(rest) = text.strip_prefix("/bin/sh -c ") {
        return format!("RUN {}", rest.trim());
    }
    text.to_owned()
}

/// Who can reach whom among the running containers, from Docker's rules (see the module doc).
pub fn reachability(containers: &[SceneContainer], networks: &[SceneNetwork]) -> Vec<Reach> {
    let kinds: BTreeMap<&str, NetworkKind> = networks.iter().map(|n| (n.name.as_str(), n.kind)).collect();
    let kind = |network: &str| kinds.get(network).copied().unwrap_or(NetworkKind::UserDefined);
    let running: Vec<&SceneContainer> = containers.iter().filter(|c| c.state == "running").collect();
    let on_host = |c: &SceneContainer| c.networks.iter().any(|a| kind(&a.network) == NetworkKind::Host);
    // Addressable on a bridge-like network (not host, not none).
    let addressable = |c: &SceneContainer| {
        c.networks.iter().any(|a| matches!(kind(&a.network), NetworkKind::Default | NetworkKind::UserDefined) && a.ip.is_some())
    };
    let mut reach = Vec::new();
    for from in &running {
        for to in &running {
            if from.name == to.name {
                continue;
            }
            let by_machine = match (on_host(from), on_host(to)) {
                (true, true) => true,
                (true, false) => addressable(to),
                (false, true) => addressable(from),
                (false, false) => false,
            };
            if by_machine {
                reach.push(Reach { from: from.name.clone(), to: to.name.clone(), by: ReachBy::Machine, network: "host".into() });
                continue;
            }
            let shared: Vec<&str> = from
                .networks
                .iter()
                .filter(|a| a.ip.is_some())
                .filter(|a| to.networks.iter().any(|b| b.network == a.network && b.ip.is_some()))
                .map(|a| a.network.as_str())
                .collect();
            let pick = |wanted: NetworkKind| shared.iter().find(|n| kind(n) == wanted).map(|n| n.to_string());
            if let Some(network) = pick(NetworkKind::UserDefined) {
                reach.push(Reach { from: from.name.clone(), to: to.name.clone(), by: ReachBy::Name, network });
            } else if let Some(network) = pick(NetworkKind::Default) {
                reach.push(Reach { from: from.name.clone(), to: to.name.clone(), by: ReachBy::Ip, network });
            }
        }
    }
    reach
}

// ---- pushing and serving ----------------------------------------------------------------------

/// Follows one session's scene for its viewers; inert unless the session's lesson shows a live
/// visual. Owned by the session's live grading watcher.
pub struct SceneFeed {
    enabled: bool,
    cache: ImageCache,
    last: Option<Scene>,
}

impl SceneFeed {
    pub fn for_exercise(catalog: &Catalog, exercise: &Exercise) -> SceneFeed {
        let enabled = catalog.lesson(&exercise.lesson).is_some_and(|l| !l.visuals.is_empty());
        SceneFeed { enabled, cache: ImageCache::default(), last: None }
    }

    /// Reads the scene and sends it to the session's viewers when it changed.
    pub async fn publish(&mut self, session: &Session, docker: &Docker) {
        if !self.enabled {
            return;
        }
        match read_scene(&session.id, docker, &mut self.cache).await {
            Ok(scene) if self.last.as_ref() != Some(&scene) => {
                self.last = Some(scene.clone());
                session.terminal.publish_control(ServerControl::Scene { scene });
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, "no scene this time"),
        }
    }
}

/// `GET /api/sessions/{id}/scene` (token-authorised like the other session routes).
pub fn router() -> Router<AppState> {
    Router::new().route("/api/sessions/{id}/scene", get(scene))
}

async fn scene(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Result<Json<Scene>, AppError> {
    let session = authorize(&state, &id, &headers, None)?;
    require_ready(&session)?;
    let unavailable = |reason: String| AppError::EngineUnavailable { id: session.id.clone(), reason };
    let live = state.grading.get(&session.id).ok_or_else(|| unavailable("no connection to it was made".into()))?;
    let span = tracing::info_span!("session", id = %session.id);
    let scene = read_scene(&session.id, live.grader.docker(), &mut ImageCache::default()).instrument(span.clone()).await;
    match scene {
        Ok(scene) => Ok(Json(scene)),
        Err(err) => {
            span.in_scope(|| tracing::warn!(error = %err, "no scene"));
            let SceneError::Engine { what, source, .. } = err;
            // The engine's own answer is the learner's to see; a connection error may name host paths.
            Err(unavailable(match source {
                bollard::errors::Error::DockerResponseServerError { message, .. } => format!("listing its {what}: {}", message.trim()),
                _ => format!("listing its {what} failed"),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::config::ServerConfig;
    use crate::testing::{fake_state, ready_session};

    fn container(name: &str, state: &str, networks: &[(&str, Option<&str>)]) -> SceneContainer {
        SceneContainer {
            id: format!("{name:0>12}"),
            name: name.into(),
            image: "busybox".into(),
            state: state.into(),
            networks: networks.iter().map(|(n, ip)| Attachment { network: (*n).into(), ip: ip.map(Into::into) }).collect(),
            mounts: Vec::new(),
        }
    }

    fn network(name: &str, driver: &str) -> SceneNetwork {
        SceneNetwork {
            name: name.into(),
            id: String::new(),
            driver: driver.into(),
            kind: network_kind(name, driver),
            internal: false,
            subnet: None,
            containers: Vec::new(),
        }
    }

    fn builtins_and(extra: &[&str]) -> Vec<SceneNetwork> {
        let mut n = vec![network("bridge", "bridge"), network("host", "host"), network("none", "null")];
        n.extend(extra.iter().map(|e| network(e, "bridge")));
        n
    }

    /// from → to → how, for easy comparison.
    fn table(reach: &[Reach]) -> Vec<(String, String, ReachBy, String)> {
        let mut t: Vec<_> = reach.iter().map(|r| (r.from.clone(), r.to.clone(), r.by, r.network.clone())).collect();
        t.sort();
        t
    }

    fn row(from: &str, to: &str, by: ReachBy, network: &str) -> (String, String, ReachBy, String) {
        (from.into(), to.into(), by, network.into())
    }

    #[test]
    fn default_bridge_reaches_by_address_only_and_a_user_network_by_name() {
        let networks = builtins_and(&["secure"]);
        let containers = vec![
            container("login", "running", &[("bridge", Some("172.17.0.2"))]),
            container("logout", "running", &[("bridge", Some("172.17.0.3"))]),
            container("finance", "running", &[("secure", Some("172.18.0.2"))]),
            container("auditor", "running", &[("secure", Some("172.18.0.3"))]),
        ];
        assert_eq!(
            table(&reachability(&containers, &networks)),
            vec![
                row("auditor", "finance", ReachBy::Name, "secure"),
                row("finance", "auditor", ReachBy::Name, "secure"),
                row("login", "logout", ReachBy::Ip, "bridge"),
                row("logout", "login", ReachBy::Ip, "bridge"),
            ],
            "nothing crosses from one bridge to another"
        );
    }

    #[test]
    fn a_container_on_two_networks_reaches_both_sides_and_a_shared_user_network_wins() {
        let networks = builtins_and(&["front", "back"]);
        let containers = vec![
            container("web", "running", &[("front", Some("10.1.0.2"))]),
            container("api", "running", &[("back", Some("10.2.0.3")), ("bridge", Some("172.17.0.4")), ("front", Some("10.1.0.3"))]),
            container("db", "running", &[("back", Some("10.2.0.2")), ("bridge", Some("172.17.0.5"))]),
        ];
        let t = table(&reachability(&containers, &networks));
        assert!(t.contains(&row("web", "api", ReachBy::Name, "front")), "{t:?}");
        assert!(t.contains(&row("api", "db", ReachBy::Name, "back")), "by name, although they also share the default bridge: {t:?}");
        assert!(!t.iter().any(|r| (r.0.as_str(), r.1.as_str()) == ("web", "db") || (r.0.as_str(), r.1.as_str()) == ("db", "web")), "{t:?}");
        assert_eq!(t.len(), 4, "{t:?}");
    }

    #[test]
    fn none_reaches_nothing_host_goes_through_the_machine_and_stopped_containers_are_out() {
        let networks = builtins_and(&["secure"]);
        let containers = vec![
            container("alone", "running", &[("none", None)]),
            container("hosted", "running", &[("host", None)]),
            container("web", "running", &[("bridge", Some("172.17.0.2"))]),
            container("vault", "running", &[("secure", Some("172.18.0.2"))]),
            container("old", "exited", &[("secure", None)]),
        ];
        let t = table(&reachability(&containers, &networks));
        assert_eq!(
            t,
            vec![
                row("hosted", "vault", ReachBy::Machine, "host"),
                row("hosted", "web", ReachBy::Machine, "host"),
                row("vault", "hosted", ReachBy::Machine, "host"),
                row("web", "hosted", ReachBy::Machine, "host"),
            ]
        );
    }

    #[test]
    fn network_kinds_and_anonymous_volumes_are_told_apart() {
        assert_eq!(network_kind("bridge", "bridge"), NetworkKind::Default);
        assert_eq!(network_kind("host", "host"), NetworkKind::Host);
        assert_eq!(network_kind("none", "null"), NetworkKind::None);
        assert_eq!(network_kind("secure-net", "bridge"), NetworkKind::UserDefined);
        assert_eq!(network_kind("my-bridge", "macvlan"), NetworkKind::UserDefined);
        assert!(is_anonymous("3f1c0a1be8f64b5e2b3ce1d7d0c4d2af6b0b1a7a0f83e9b19ac1c1d31e0a4c5d"));
        assert!(!is_anonymous("app-data"));
        assert!(!is_anonymous("3F1C0A1BE8F64B5E2B3CE1D7D0C4D2AF6B0B1A7A0F83E9B19AC1C1D31E0A4C5D"));
        assert!(!is_anonymous("3f1c0a1be8f64b5e2b3ce1d7d0c4d2af6b0b1a7a0f83e9b19ac1c1d31e0a4c5"));
    }

    #[test]
    fn an_image_is_built_on_the_image_whose_layers_start_its_own() {
        let l = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let golang = l(&["a", "b"]);
        let busybox = l(&["x"]);
        let tool = l(&["a", "b", "c"]);
        let single = l(&["a", "b", "c", "d"]);
        let candidates = [("golang:1.19", golang.as_slice()), ("busybox:latest", busybox.as_slice()), ("tool:1", tool.as_slice())];
        assert_eq!(base_of(&single, candidates.iter().copied()), Some("tool:1".into()), "the longest prefix wins");
        assert_eq!(base_of(&l(&["a", "b", "z"]), candidates.iter().copied()), Some("golang:1.19".into()));
        assert_eq!(base_of(&l(&["q"]), candidates.iter().copied()), None, "FROM scratch");
        assert_eq!(base_of(&golang, candidates.iter().copied()), None, "an image is not built on itself under another tag");
    }

    #[test]
    fn history_reads_as_the_instructions_that_were_written() {
        assert_eq!(instruction("/bin/sh -c #(nop)  CMD [\"/calculator\"]"), "CMD [\"/calculator\"]");
        assert_eq!(instruction("/bin/sh -c go build -o /calc ."), "RUN go build -o /calc .");
        assert_eq!(instruction("RUN /bin/sh -c apk add curl # buildkit"), "RUN /bin/sh -c apk add curl");
        assert_eq!(instruction("/bin/sh -c #(nop) COPY file:abc in /app "), "COPY file:abc in /app");
    }

    #[test]
    fn the_scene_says_who_mounts_what_and_who_is_where_in_a_stable_order() {
        let mut db = container("db", "exited", &[("secure", None)]);
        db.mounts.push(SceneMount { kind: MountKind::Volume, source: "app-data".into(), destination: "/data".into(), read_only: false });
        let mut web = container("web", "running", &[("secure", Some("172.18.0.3"))]);
        web.mounts.push(SceneMount { kind: MountKind::Bind, source: "/root/site".into(), destination: "/usr/share/nginx/html".into(), read_only: true });
        web.mounts.push(SceneMount { kind: MountKind::Volume, source: "app-data".into(), destination: "/srv".into(), read_only: false });
        let anon = "a".repeat(64);
        let volumes = vec![
            SceneVolume { name: anon.clone(), anonymous: true, driver: "local".into(), used_by: vec![] },
            SceneVolume { name: "app-data".into(), anonymous: false, driver: "local".into(), used_by: vec![] },
            SceneVolume { name: "spare".into(), anonymous: false, driver: "local".into(), used_by: vec![] },
        ];
        let image = |tag: &str, size: i64| SceneImage {
            id: tag.into(),
            tags: vec![tag.into()],
            size,
            created: 0,
            pulled: false,
            base: None,
            layers: vec![],
        };
        let images = vec![
            (image("calc:multi", 2_000_000), vec!["m".to_string()], false),
            (image("golang:1.19", 550_000_000), vec!["g".to_string()], true),
            (image("calc:single", 560_000_000), vec!["g".to_string(), "s".to_string()], true),
        ];
        let scene = assemble(images, volumes, builtins_and(&["secure"]), vec![web, db]);
        let sizes: Vec<(&str, Option<&str>, bool)> = scene.images.iter().map(|i| (i.tags[0].as_str(), i.base.as_deref(), i.pulled)).collect();
        assert_eq!(
            sizes,
            vec![("calc:single", Some("golang:1.19"), false), ("golang:1.19", None, true), ("calc:multi", None, false)],
            "largest first; golang is docklab's, the calculators were built here (single-stage inherits golang's label)"
        );
        let used: Vec<(&str, Vec<String>)> = scene.volumes.iter().map(|v| (v.name.as_str(), v.used_by.clone())).collect();
        assert_eq!(used, vec![("app-data", vec!["db".to_string(), "web".to_string()]), ("spare", vec![]), (anon.as_str(), vec![])]);
        let names: Vec<&str> = scene.networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, vec!["bridge", "host", "none", "secure"], "built-in networks first");
        assert_eq!(scene.networks[3].containers, vec!["db".to_string(), "web".to_string()]);
        assert!(scene.reach.is_empty(), "db is stopped, so web has nobody to reach");
    }

    #[test]
    fn the_scene_frame_has_the_documented_shape() {
        let control = ServerControl::Scene { scene: Scene::default() };
        assert_eq!(
            control.to_json(),
            r#"{"type":"scene","scene":{"images":[],"volumes":[],"networks":[],"containers":[],"reach":[]}}"#
        );
    }

    #[test]
    fn only_lessons_with_a_live_visual_get_scene_frames() {
        let catalog = Catalog::embedded().unwrap();
        let feed = |id: &str| SceneFeed::for_exercise(&catalog, catalog.exercise(id).unwrap()).enabled;
        assert!(feed("day-28/custom-bridge"));
        assert!(feed("day-27/volumes-lifecycle"));
        assert!(!feed("day-24/lifecycle"));
    }

    #[tokio::test]
    async fn lessons_with_a_live_visual_place_it_and_load_its_script_and_others_do_not() {
        let (state, _backend) = fake_state(ServerConfig::default());
        let router = crate::app::app(state);
        let page = |uri: &'static str| {
            let router = router.clone();
            async move {
                let response = router.oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap()).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK, "{uri}");
                String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
            }
        };
        let day28 = page("/lessons/day-28?exercise=custom-bridge").await;
        assert!(day28.contains(r#"<figure class="live-visual" data-visual="networks">"#), "{day28}");
        assert!(day28.contains(r#"<script src="/static/visuals.js"></script>"#));
        assert!(page("/lessons/day-26").await.contains(r#"data-visual="images""#));
        assert!(page("/lessons/day-27").await.contains(r#"data-visual="volumes""#));
        let day24 = page("/lessons/day-24").await;
        assert!(!day24.contains("visuals.js") && !day24.contains("live-visual"), "day 24 has no live visual");
        assert!(page("/static/visuals.js").await.contains("docklab:control"));
    }

    #[tokio::test]
    async fn the_scene_route_needs_the_token_and_says_when_the_engine_is_not_answering() {
        let (state, backend) = fake_state(ServerConfig::default());
        let (id, token) = ready_session(&state, &backend).await;
        let router = crate::app::app(state);
        let get = |token: Option<&str>| {
            let mut r = Request::builder().uri(format!("/api/sessions/{id}/scene"));
            if let Some(t) = token {
                r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            r.body(Body::empty()).unwrap()
        };
        let response = router.clone().oneshot(get(None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let response = router.clone().oneshot(get(Some("not-the-token"))).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        // The fake machines have no Docker engine.
        let response = router.clone().oneshot(get(Some(&token))).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["code"], "engine_unavailable");
        assert!(body["error"].as_str().unwrap().contains(&id), "{body}");
    }
}
