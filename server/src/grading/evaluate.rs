//! One check at a time: ask the engine (or the machine), compare, explain.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::time::Duration;

use bollard::errors::Error as EngineError;
use bollard::models::{ContainerInspectResponse, ImageInspect};
use bollard::query_parameters::{
    DownloadFromContainerOptions, ListContainersOptions, ListImagesOptions, LogsOptions,
};
use futures::StreamExt;
use lessons::checks::{Address, Check, EventObject, MountFlag, MountType};
use serde::Serialize;

use super::dockerfile::{self, normalize_image};
use super::history::event_seen;
use super::{lock, machine_path, shell_quote, Grader, Outcome};

/// Longest a probe inside the machine may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of logs or file content read for a comparison.
const READ_CAP: usize = 256 * 1024;

use super::ENGINE_DOWN;

/// What a failed engine request means for a check.
enum Lookup {
    NotFound,
    Other(Outcome),
}

fn lookup_error(err: EngineError, what: &str) -> Lookup {
    match err {
        EngineError::DockerResponseServerError { status_code: 404, .. } => Lookup::NotFound,
        EngineError::DockerResponseServerError { message, .. } => {
            Lookup::Other(Outcome::Fail(format!("Docker could not look up {what}: {}", message.trim())))
        }
        other => {
            tracing::debug!(error = %other, %what, "engine request failed");
            Lookup::Other(Outcome::Unknown(ENGINE_DOWN.to_owned()))
        }
    }
}

/// `?`-like: unwraps an engine answer or returns the check's outcome.
macro_rules! found {
    ($result:expr, $what:expr, $missing:expr) => {
        match $result {
            Ok(v) => v,
            Err(err) => {
                return match lookup_error(err, &$what) {
                    Lookup::NotFound => $missing,
                    Lookup::Other(outcome) => outcome,
                }
            }
        }
    };
}

fn pass() -> Outcome {
    Outcome::Pass(String::new())
}

fn fail(detail: impl Into<String>) -> Outcome {
    Outcome::Fail(detail.into())
}

fn no_container(name: &str) -> Outcome {
    fail(format!("there is no container named {name}"))
}

fn enum_str<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Most characters of the learner's own output (logs, a file) quoted in a detail.
const QUOTE_CHARS: usize = 400;

/// Quotes the learner's output in a detail line: on one line, and when very long, shortened at
/// a word boundary with an ellipsis (never in the middle of a word). The grader's own sentences
/// are never shortened: the page wraps them.
fn excerpt(text: &str) -> String {
    let one_line = text.trim().replace('\n', " ⏎ ");
    if one_line.chars().count() <= QUOTE_CHARS {
        return one_line;
    }
    let head: String = one_line.chars().take(QUOTE_CHARS).collect();
    let cut = head.rfind(' ').filter(|&i| i > QUOTE_CHARS / 2).unwrap_or(head.len());
    format!("{} …", head[..cut].trim_end())
}

/// A script check's output as its detail: whole sentences, lines joined, never cut.
fn sentence(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

pub async fn check(g: &Grader, check: &Check) -> Outcome {
    match check {
        Check::VolumeExists { volume, driver } => {
            let v = found!(g.docker.inspect_volume(volume).await, format!("volume {volume}"), fail(format!("there is no volume named {volume}")));
            match driver {
                Some(want) if &v.driver != want => {
                    fail(format!("volume {volume} uses the {} driver; it should use {want}", v.driver))
                }
                _ => pass(),
            }
        }
        Check::VolumeAbsent { volume } => {
            let _ = found!(g.docker.inspect_volume(volume).await, format!("volume {volume}"), pass());
            fail(format!("volume {volume} still exists"))
        }
        Check::VolumeMounted { container, path, mount_type, source, flag, read_only } => {
            let c = found!(inspect(g, container).await, format!("container {container}"), no_container(container));
            volume_mounted(&c, container, path, *mount_type, source.as_deref(), *flag, *read_only)
        }
        Check::FileContent { volume, container, path, contains, equals } => {
            let (text, where_) = match (volume, container) {
                (Some(volume), _) => {
                    let v = found!(g.docker.inspect_volume(volume).await, format!("volume {volume}"), fail(format!("there is no volume named {volume}")));
                    let full = format!("{}/{}", v.mountpoint.trim_end_matches('/'), path);
                    match read_machine_file(g, &full).await {
                        Ok(Some(text)) => (text, format!("{path} in volume {volume}")),
                        Ok(None) => return fail(format!("volume {volume} has no file {path}")),
                        Err(outcome) => return outcome,
                    }
                }
                (None, Some(container)) => {
                    let _ = found!(inspect(g, container).await, format!("container {container}"), no_container(container));
                    match read_container_file(g, container, path).await {
                        Ok(Some(text)) => (text, format!("{path} in container {container}")),
                        Ok(None) => return fail(format!("container {container} has no file {path}")),
                        Err(outcome) => return outcome,
                    }
                }
                (None, None) => match read_machine_file(g, &machine_path(path)).await {
                    Ok(Some(text)) => (text, path.clone()),
                    Ok(None) => return fail(format!("there is no file {path}")),
                    Err(outcome) => return outcome,
                },
            };
            if let Some(want) = equals {
                let have = text.strip_suffix('\n').unwrap_or(&text);
                if have == want.strip_suffix('\n').unwrap_or(want) {
                    pass()
                } else {
                    fail(format!("{where_} says “{}”; it should say “{}”", excerpt(have), excerpt(want)))
                }
            } else if let Some(want) = contains {
                if text.contains(want.as_str()) {
                    pass()
                } else {
                    fail(format!("{where_} does not contain “{}” (it says “{}”)", excerpt(want), excerpt(&text)))
                }
            } else {
                pass()
            }
        }
        Check::NetworkExists { network, driver } => {
            let n = found!(
                g.docker.inspect_network(network, None::<bollard::query_parameters::InspectNetworkOptions>).await,
                format!("network {network}"),
                fail(format!("there is no network named {network}"))
            );
            let have = n.driver.unwrap_or_default();
            match driver {
                Some(want) if &have != want => fail(format!("network {network} uses the {have} driver; it should use {want}")),
                _ => pass(),
            }
        }
        Check::ContainerNetworks { container, networks, exactly } => {
            let c = found!(inspect(g, container).await, format!("container {container}"), no_container(container));
            container_networks(&c, container, networks, *exactly)
        }
        Check::Reachable { from, to, by } => reachability(g, from, to, *by, true).await,
        Check::NotReachable { from, to, by } => reachability(g, from, to, *by, false).await,
        Check::PortHttp { port, path, contains, container } => port_http(g, *port, path, contains, container.as_deref()).await,
        Check::ImageExists { image } => {
            match g.docker.inspect_image(image).await {
                Ok(i) => match super::identity::impostor(g, image, &i.root_fs.and_then(|r| r.layers).unwrap_or_default()) {
                    Some(why) => fail(why),
                    None => pass(),
                },
                Err(err) => match lookup_error(err, &format!("image {image}")) {
                    Lookup::NotFound => fail(format!("there is no image {image}{}", images_here(g).await)),
                    Lookup::Other(o) => o,
                },
            }
        }
        Check::ImageSizeBelow { image, mb } => {
            let i = found!(g.docker.inspect_image(image).await, format!("image {image}"), fail(format!("there is no image {image}")));
            let size = i.size.unwrap_or(0) as f64 / 1e6;
            if size < *mb {
                Outcome::Pass(format!("{image} is {size:.1} MB"))
            } else {
                fail(format!("{image} is {size:.1} MB; it should be under {mb} MB"))
            }
        }
        Check::ImageNoShell { image } => {
            let i = found!(g.docker.inspect_image(image).await, format!("image {image}"), fail(format!("there is no image {image}")));
            let id = i.id.clone().unwrap_or_default();
            let cached = lock(&g.state).shells.get(&id).cloned();
            let shell = match cached {
                Some(shell) => shell,
                None => match find_shell(g, &id).await {
                    Ok(shell) => {
                        lock(&g.state).shells.insert(id, shell.clone());
                        shell
                    }
                    Err(outcome) => return outcome,
                },
            };
            match shell {
                None => pass(),
                Some(path) => fail(format!("{image} has a shell at /{path}; an image without one leaves an intruder nothing to run")),
            }
        }
        Check::ImageBase { image, base } => super::identity::image_base(g, image, base).await,
        Check::Dockerfile { path, min_stages, max_stages, copy_from, final_base, image } => {
            let text = match read_machine_file(g, &machine_path(path)).await {
                Ok(Some(text)) => text,
                Ok(None) => return fail(format!("there is no Dockerfile at {path}")),
                Err(outcome) => return outcome,
            };
            let stages = dockerfile::parse(&text);
            let n = stages.stages.len() as u32;
            let count = plural(n as u64, "stage (one FROM)", "stages (FROM lines)");
            if let Some(min) = min_stages {
                if n < *min {
                    return fail(format!("{path} has {count}; it should have at least {min}"));
                }
            }
            if let Some(max) = max_stages {
                if n > *max {
                    return fail(format!("{path} has {count}; it should have at most {max}"));
                }
            }
            match copy_from {
                Some(true) if stages.copy_from == 0 => {
                    return fail(format!("{path} has no COPY --from=… taking files from an earlier stage"))
                }
                Some(false) if stages.copy_from > 0 => return fail(format!("{path} copies from another stage with COPY --from; it should not")),
                _ => {}
            }
            if let Some(want) = final_base {
                let have = stages.final_base().unwrap_or_default();
                if normalize_image(&have) != normalize_image(want) {
                    return fail(format!("the last stage of {path} starts FROM {have}; it should start FROM {want}"));
                }
            }
            if let Some(image) = image {
                return super::identity::built_from(g, image, path, &text).await;
            }
            pass()
        }
        Check::ImageConfig { image, entrypoint, cmd, user, healthcheck, exposed_ports } => {
            let i = found!(g.docker.inspect_image(image).await, format!("image {image}"), fail(format!("there is no image {image}")));
            image_config(&i, image, entrypoint.as_deref(), cmd.as_deref(), user.as_deref(), *healthcheck, exposed_ports.as_deref())
        }
        Check::ContainerState { .. } => {
            let Check::ContainerState { container, oom_killed, .. } = check else { unreachable!() };
            let mut c = found!(inspect(g, container).await, format!("container {container}"), no_container(container));
            if let Some(st) = c.state.as_mut().filter(|st| *oom_killed == Some(true) && st.oom_killed != Some(true) && st.exit_code == Some(137)) {
                // Docker 20.10 on cgroup v1 can record the exit before the kernel's OOM notice and
                // leave OOMKilled false; the engine's `oom` event for the container says it too.
                if matches!(event_seen(g, EventObject::Container, container, "oom", None).await, Outcome::Pass(_)) {
                    st.oom_killed = Some(true);
                }
            }
            let outcome = container_state(&c, check);
            if let (Outcome::Pass(_), Check::ContainerState { image: Some(want), .. }) = (&outcome, check) {
                if let Err(why) = super::identity::created_from(g, container, &c, want).await {
                    return fail(why);
                }
            }
            outcome
        }
        Check::ContainerAbsent { container } => {
            let c = found!(inspect(g, container).await, format!("container {container}"), pass());
            let status = c.state.and_then(|s| s.status).map(|s| enum_str(&s)).unwrap_or_default();
            fail(format!("container {container} still exists ({status}); `docker rm` removes it"))
        }
        Check::ContainerLogs { container, image, contains } => container_logs(g, container.as_deref(), image.as_deref(), contains).await,
        Check::EventSeen { object, name, action, image } => event_seen(g, *object, name, action, image.as_deref()).await,
        Check::Script { run, timeout_s, .. } => match g.shell.sh(run, Duration::from_secs(*timeout_s)).await {
            Ok(out) if out.timed_out => fail(format!("the check did not finish within {timeout_s} s, so it was stopped")),
            Ok(out) => {
                let text = sentence(&format!("{}{}", out.stdout, out.stderr));
                if out.exit_code == 0 {
                    Outcome::Pass(text)
                } else if text.is_empty() {
                    fail(format!("the check script exited with code {}", out.exit_code))
                } else {
                    fail(text)
                }
            }
            Err(err) => machine_down(err),
        },
    }
}

fn machine_down(err: sandbox::SandboxError) -> Outcome {
    tracing::debug!(error = %err, "probe could not run");
    Outcome::Unknown("the session machine is not answering; is it still running?".to_owned())
}

async fn inspect(g: &Grader, container: &str) -> Result<ContainerInspectResponse, EngineError> {
    g.docker.inspect_container(container, None::<bollard::query_parameters::InspectContainerOptions>).await
}

/// `Ok(None)` when the file does not exist.
async fn read_machine_file(g: &Grader, path: &str) -> Result<Option<String>, Outcome> {
    let script = format!("test -f {p} || exit 3; head -c {READ_CAP} -- {p}", p = shell_quote(path));
    match g.shell.sh(&script, PROBE_TIMEOUT).await {
        Ok(out) if out.exit_code == 0 => Ok(Some(out.stdout)),
        Ok(out) if out.exit_code == 3 => Ok(None),
        Ok(out) => Err(fail(format!("{path} could not be read: {}", excerpt(&out.stderr)))),
        Err(err) => Err(machine_down(err)),
    }
}

/// Reads a file from a container's filesystem (running or not) through the archive API.
async fn read_container_file(g: &Grader, container: &str, path: &str) -> Result<Option<String>, Outcome> {
    let options = DownloadFromContainerOptions { path: path.to_owned() };
    let mut stream = g.docker.download_from_container(container, Some(options));
    let mut tar_bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                tar_bytes.extend_from_slice(&bytes);
                if tar_bytes.len() > READ_CAP + 64 * 1024 {
                    break;
                }
            }
            Err(err) => {
                return match lookup_error(err, &format!("{path} in container {container}")) {
                    Lookup::NotFound => Ok(None),
                    Lookup::Other(o) => Err(o),
                }
            }
        }
    }
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let Ok(mut entries) = archive.entries() else { return Ok(None) };
    match entries.next() {
        Some(Ok(mut entry)) if entry.header().entry_type().is_file() => {
            let mut text = String::new();
            let _ = entry.by_ref().take(READ_CAP as u64).read_to_string(&mut text);
            Ok(Some(text))
        }
        Some(Ok(_)) => Err(fail(format!("{path} in container {container} is not a regular file"))),
        _ => Ok(None),
    }
}

fn volume_mounted(
    c: &ContainerInspectResponse,
    container: &str,
    path: &str,
    want_type: MountType,
    source: Option<&str>,
    flag: Option<MountFlag>,
    read_only: Option<bool>,
) -> Outcome {
    let mounts = c.mounts.clone().unwrap_or_default();
    let describe = |m: &bollard::models::MountPoint| {
        let kind = m.typ.as_ref().map(enum_str).unwrap_or_default();
        let what = m.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| m.source.clone().unwrap_or_default());
        format!("{kind} {what} at {}", m.destination.clone().unwrap_or_default())
    };
    let Some(m) = mounts.iter().find(|m| m.destination.as_deref().map(|d| d.trim_end_matches('/')) == Some(path.trim_end_matches('/'))) else {
        let others: Vec<String> = mounts.iter().map(describe).collect();
        let found = if others.is_empty() { "no mounts at all".to_owned() } else { others.join(", ") };
        return fail(format!("container {container} has nothing mounted at {path} (it has {found})"));
    };
    let have_type = m.typ.as_ref().map(enum_str).unwrap_or_default();
    let want = match want_type {
        MountType::Volume => "volume",
        MountType::Bind => "bind",
    };
    if have_type != want {
        return fail(format!("container {container} has a {have_type} mount at {path}; it should be a {want}"));
    }
    if let Some(source) = source {
        let (have, ok) = match want_type {
            MountType::Volume => {
                let name = m.name.clone().unwrap_or_default();
                let ok = name == source;
                (format!("volume {}", if name.len() == 64 { format!("{} (an anonymous volume)", &name[..12]) } else { name }), ok)
            }
            MountType::Bind => {
                let have = m.source.clone().unwrap_or_default();
                let ok = have.trim_end_matches('/') == machine_path(source).trim_end_matches('/');
                (have, ok)
            }
        };
        if !ok {
            return fail(format!("container {container} mounts {have} at {path}; it should mount {source}"));
        }
    }
    if let Some(want_flag) = flag {
        let host = c.host_config.clone().unwrap_or_default();
        let by_mount = host.mounts.unwrap_or_default().iter().any(|mt| mt.target.as_deref().map(|t| t.trim_end_matches('/')) == Some(path.trim_end_matches('/')));
        let by_v = host.binds.unwrap_or_default().iter().any(|b| b.split(':').nth(1).map(|t| t.trim_end_matches('/')) == Some(path.trim_end_matches('/')));
        let used = if by_mount { "--mount" } else if by_v { "-v" } else { "the image's VOLUME instruction" };
        let want_str = match want_flag {
            MountFlag::Mount => "--mount",
            MountFlag::V => "-v",
        };
        if used != want_str {
            return fail(format!("container {container} got its mount at {path} from {used}; this task asks for {want_str}"));
        }
    }
    if let Some(ro) = read_only {
        let rw = m.rw.unwrap_or(true);
        if ro == rw {
            let (have, want) = if rw { ("read-write", "read-only") } else { ("read-only", "read-write") };
            return fail(format!("container {container}'s mount at {path} is {have}; it should be {want}"));
        }
    }
    pass()
}

fn container_networks(c: &ContainerInspectResponse, container: &str, want: &[String], exactly: bool) -> Outcome {
    let have: BTreeSet<String> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    let want_set: BTreeSet<String> = want.iter().cloned().collect();
    let have_list = if have.is_empty() { "no network".to_owned() } else { have.iter().cloned().collect::<Vec<_>>().join(" and ") };
    let want_list = want.join(" and ");
    if exactly && have != want_set {
        return fail(format!("container {container} is attached to {have_list}; it should be on {want_list} only"));
    }
    let missing: Vec<String> = want_set.difference(&have).cloned().collect();
    if !missing.is_empty() {
        return fail(format!("container {container} is attached to {have_list}; it should also be on {}", missing.join(" and ")));
    }
    pass()
}

/// The container's addresses by network, sorted by network name.
fn addresses(c: &ContainerInspectResponse) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| {
            n.iter()
                .filter_map(|(name, e)| e.ip_address.clone().filter(|ip| !ip.is_empty()).map(|ip| (name.clone(), ip)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false) && !c.state.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

/// Reachability, probed by the grader itself from inside `from`'s network namespace (see
/// [`super::probe`]): by IP, every address `to` has; by name, what `from`'s own resolver makes of
/// the name, counted only when it is one of `to`'s addresses.
async fn reachability(g: &Grader, from: &str, to: &str, by: Address, want_reachable: bool) -> Outcome {
    let (source, target) = futures::join!(inspect(g, from), inspect(g, to));
    let source = found!(source, format!("container {from}"), fail(format!("there is no container named {from} to probe from")));
    if !is_running(&source) {
        return fail(format!("container {from} is not running, so nothing can be probed from it"));
    }
    let target = found!(target, format!("container {to}"), no_container(to));
    if !is_running(&target) {
        return fail(format!("container {to} is not running"));
    }
    let by_name = match by {
        Address::Ip => None,
        Address::Name => {
            let pid = source.state.as_ref().and_then(|s| s.pid).unwrap_or(0);
            // Through the container's root (fast); through the engine's archive API if refused.
            let direct = match g.probe.read_files(from, pid, &["/etc/hosts", "/etc/resolv.conf"]) {
                Ok(files) if files.iter().all(Option::is_some) => Some(files),
                _ => None,
            };
            let (hosts, resolv_conf) = match direct {
                Some(files) => (Ok(files[0].clone()), Ok(files[1].clone())),
                None => futures::join!(read_container_file(g, from, "/etc/hosts"), read_container_file(g, from, "/etc/resolv.conf")),
            };
            let (hosts, resolv_conf) = match (hosts, resolv_conf) {
                (Ok(h), Ok(r)) => (h.unwrap_or_default(), r.unwrap_or_default()),
                (Err(o), _) | (_, Err(o)) => return o,
            };
            Some(super::probe::ByName { name: to.to_owned(), hosts, resolv_conf })
        }
    };
    let pid = |c: &ContainerInspectResponse| c.state.as_ref().and_then(|s| s.pid).unwrap_or(0);
    let probed = match (g.probe.netns(from, pid(&source)), g.probe.netns(to, pid(&target))) {
        (Ok(s), Ok(t)) => super::probe::reach(s, t, by_name).await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let probe = match probed {
        Ok(probe) => probe,
        Err(err) => {
            tracing::warn!(error = %err, "reachability probe could not be made");
            return Outcome::Unknown(format!("the grader could not probe from {from} to {to} ({err})"));
        }
    };
    let networks = address_networks(&target);
    let on = |ip: &std::net::Ipv4Addr| match networks.get(&ip.to_string()) {
        Some(net) => format!("{ip} (its address on {net})"),
        None => ip.to_string(),
    };
    let list = |ips: &[std::net::Ipv4Addr]| ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ");
    let reached: Vec<std::net::Ipv4Addr> =
        probe.answered.iter().filter(|(ip, ok)| *ok && probe.target_addresses.contains(ip)).map(|(ip, _)| *ip).collect();
    match (by, &probe.lookup) {
        (Address::Ip, _) => match (want_reachable, reached.first()) {
            (true, Some(ip)) => Outcome::Pass(format!("{from} reaches {to} at {}", on(ip))),
            (false, Some(ip)) => fail(format!("{from} reaches {to} at {}; they should be kept apart", on(ip))),
            (false, None) if probe.target_addresses.is_empty() => Outcome::Pass(format!("{to} has no address {from} could reach")),
            (false, None) => Outcome::Pass(format!("{from} cannot reach {to} at {}", list(&probe.target_addresses))),
            (true, None) if probe.target_addresses.is_empty() => fail(format!("container {to} has no IP address")),
            (true, None) => {
                let all: Vec<String> = probe.target_addresses.iter().map(on).collect();
                fail(format!("{from} cannot reach {to}: no answer from {}", all.join(" or ")))
            }
        },
        (Address::Name, Some(super::probe::Lookup::NotFound { asked, skipped })) => {
            let mut why: Vec<String> = asked.iter().map(|(server, said)| format!("its nameserver {server} {said}")).collect();
            why.extend(skipped.iter().map(|s| format!("its nameserver {s} is outside the machine")));
            let why = if why.is_empty() { "it has no nameserver".to_owned() } else { why.join("; ") };
            if want_reachable {
                fail(format!("{from} cannot reach {to} by name: the name {to} does not resolve in {from} ({why})"))
            } else {
                Outcome::Pass(format!("{from} cannot reach {to} by name: the name does not resolve there"))
            }
        }
        (Address::Name, lookup) => {
            let resolved = lookup.as_ref().map(|l| l.addresses().to_vec()).unwrap_or_default();
            match (want_reachable, reached.first()) {
                (true, Some(ip)) => Outcome::Pass(format!("{from} reaches {to} by name ({to} is {ip} there)")),
                (false, Some(ip)) => fail(format!("{from} reaches {to} by name ({to} is {ip} there); they should be kept apart")),
                (false, None) => Outcome::Pass(format!("{from} cannot reach {to} by name")),
                (true, None) => {
                    let theirs: Vec<&std::net::Ipv4Addr> = resolved.iter().filter(|ip| probe.target_addresses.contains(ip)).collect();
                    if theirs.is_empty() {
                        fail(format!(
                            "in {from} the name {to} means {}, which is not container {to} (its addresses: {})",
                            list(&resolved),
                            if probe.target_addresses.is_empty() { "none".to_owned() } else { list(&probe.target_addresses) }
                        ))
                    } else {
                        fail(format!("{from} cannot reach {to} by name: {to} is {} there, and it does not answer", list(&resolved)))
                    }
                }
            }
        }
    }
}

/// Each address of a container, as text, → the network it has it on.
fn address_networks(c: &ContainerInspectResponse) -> HashMap<String, String> {
    addresses(c).into_iter().map(|(network, ip)| (ip, network)).collect()
}

async fn port_http(g: &Grader, port: u16, path: &str, contains: &str, container: Option<&str>) -> Outcome {
    // Who publishes the port: the named container itself (its own bindings, not any container's),
    // or, when the task names none, whichever running container does.
    let (name, host_ip) = match container {
        Some(container) => {
            let c = found!(inspect(g, container).await, format!("container {container}"), no_container(container));
            if !is_running(&c) {
                return fail(format!("container {container} is not running, so nothing answers on its port {port}"));
            }
            let bindings = c.network_settings.as_ref().and_then(|n| n.ports.clone()).unwrap_or_default();
            let mine = bindings
                .values()
                .flat_map(|b| b.iter().flatten())
                .find(|b| b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()) == Some(port));
            let Some(binding) = mine else {
                let others = publishers_of(g, port).await;
                let also = match others.iter().find(|o| o.as_str() != container) {
                    Some(other) => format!(" ({other} does)"),
                    None => String::new(),
                };
                return fail(format!("container {container} does not publish port {port}{also} (docker run -p {port}:…)"));
            };
            let ip = binding.host_ip.clone().filter(|ip| !ip.is_empty() && ip != "0.0.0.0" && ip != "::").unwrap_or_else(|| "127.0.0.1".into());
            (container.to_owned(), ip)
        }
        None => match publishers_of(g, port).await.into_iter().next() {
            Some(name) => (name, "127.0.0.1".to_owned()),
            None => return fail(format!("no running container publishes port {port} (docker run -p {port}:…)")),
        },
    };
    let host = if host_ip.contains(':') { format!("[{host_ip}]") } else { host_ip };
    let url = format!("http://{host}:{port}{path}");
    let script = format!("curl -sS -m 3 {}", shell_quote(&url));
    let out = match g.shell.sh(&script, PROBE_TIMEOUT).await {
        Ok(out) => out,
        Err(err) => return machine_down(err),
    };
    let shown = format!("http://localhost:{port}{path}");
    if out.exit_code != 0 {
        return fail(format!("{name} publishes port {port}, but {shown} did not answer: {}", excerpt(&out.stderr)));
    }
    if out.stdout.contains(contains) {
        Outcome::Pass(format!("{shown} answers with “{}”", excerpt(contains)))
    } else {
        fail(format!("{shown} answered without “{}”: it said “{}”", excerpt(contains), excerpt(&out.stdout)))
    }
}

/// Names of the running containers that publish `port` on the machine.
async fn publishers_of(g: &Grader, port: u16) -> Vec<String> {
    let filters = HashMap::from([("publish".to_owned(), vec![port.to_string()])]);
    let options = ListContainersOptions { all: false, filters: Some(filters), ..Default::default() };
    let Ok(list) = g.docker.list_containers(Some(options)).await else { return Vec::new() };
    list.iter()
        .filter(|c| c.ports.iter().flatten().any(|p| p.public_port == Some(port)))
        .filter_map(|c| c.names.iter().flatten().next().map(|n| n.trim_start_matches('/').to_owned()))
        .collect()
}

/// ", the images here are a, b" for a missing image.
async fn images_here(g: &Grader) -> String {
    let Ok(images) = g.docker.list_images(None::<ListImagesOptions>).await else { return String::new() };
    let mut tags: Vec<String> = images.into_iter().flat_map(|i| i.repo_tags).filter(|t| t != "<none>:<none>").collect();
    tags.sort();
    if tags.is_empty() {
        " (there are no tagged images yet)".to_owned()
    } else {
        format!(" (the images here are {})", tags.join(", "))
    }
}

/// Image scans running at once, server-wide: each holds a few MiB at most, but reads a whole
/// export and may keep up to 1,000,000 paths (see [`super::identity::shell_in_saved_image`]).
static SCANS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// Longest one shell scan may take, waiting for its turn included.
const SCAN_TIMEOUT: Duration = Duration::from_secs(120);
/// Export chunks waiting for the scan: the only part of the export in memory.
const SCAN_QUEUE: usize = 8;

/// Looks through an image's layers for a shell. `Ok(Some(path))` when one is there.
///
/// The export streams through a bounded channel into a blocking scan that keeps no file
/// content, so an image of any size costs the server the same few MiB.
#[tracing::instrument(skip(g), fields(session = %g.session))]
async fn find_shell(g: &Grader, image_id: &str) -> Result<Option<String>, Outcome> {
    match tokio::time::timeout(SCAN_TIMEOUT, scan_export(g, image_id)).await {
        Ok(found) => found,
        Err(_) => Err(fail(format!("looking inside the image took over {} s", SCAN_TIMEOUT.as_secs()))),
    }
}

async fn scan_export(g: &Grader, image_id: &str) -> Result<Option<String>, Outcome> {
    // The permit goes with the scan: released when the blocking scan has ended, not before.
    let permit = SCANS.acquire().await.map_err(|_| fail("the server is shutting down"))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(SCAN_QUEUE);
    let scan = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        super::identity::shell_in_saved_image(super::identity::ChunkReader::new(rx))
    });
    let mut stream = g.docker.export_image(image_id);
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => {
                if tx.send(b).await.is_err() {
                    // The scan has ended early (an error, or too many files): its answer stands.
                    break;
                }
            }
            Err(err) => {
                // Dropping the sender ends the scan's input; its answer on a cut export is not used.
                return Err(match lookup_error(err, "the image's contents") {
                    Lookup::NotFound => fail("the image disappeared while being looked at"),
                    Lookup::Other(o) => o,
                });
            }
        }
    }
    drop(tx);
    match scan.await {
        Ok(Ok(shell)) => Ok(shell.map(|p| p.trim_start_matches('/').to_owned())),
        Ok(Err(err)) => {
            tracing::info!(image = image_id, error = %err, "image scan gave up");
            Err(fail(err.to_string()))
        }
        Err(err) => Err(fail(format!("looking inside the image failed: {err}"))),
    }
}

/// Which shell (if any) a `docker save` archive's final filesystem has: a path without its
/// leading `/`, and why when the name does not say it (see [`super::identity::shell_in_saved_image`]).
#[cfg(test)]
pub(super) fn shell_in_saved_image(saved: &[u8]) -> Option<String> {
    super::identity::shell_in_saved_image(saved).ok().flatten().map(|p| p.trim_start_matches('/').to_owned())
}

fn image_config(
    i: &ImageInspect,
    image: &str,
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
    user: Option<&str>,
    healthcheck: Option<bool>,
    exposed: Option<&[String]>,
) -> Outcome {
    let config = i.config.clone().unwrap_or_default();
    let shell_form = |v: &[String]| {
        if v.len() == 3 && v[0] == "/bin/sh" && v[1] == "-c" {
            " (shell form)"
        } else {
            ""
        }
    };
    for (what, want, have) in [("ENTRYPOINT", entrypoint, config.entrypoint.clone()), ("CMD", cmd, config.cmd.clone())] {
        let Some(want) = want else { continue };
        let have = have.unwrap_or_default();
        if have.as_slice() != want {
            return if have.is_empty() {
                fail(format!("{image} has no {what}; it should be {}", json_list(want)))
            } else {
                fail(format!("{image}'s {what} is {}{}; it should be {}", json_list(&have), shell_form(&have), json_list(want)))
            };
        }
    }
    if let Some(want) = user {
        let have = config.user.clone().unwrap_or_default();
        if have != want {
            let shown = if have.is_empty() { "root (no USER)".to_owned() } else { have };
            return fail(format!("{image} runs as {shown}; it should run as {want}"));
        }
    }
    if let Some(want) = healthcheck {
        let test = config.healthcheck.as_ref().and_then(|h| h.test.clone()).unwrap_or_default();
        let has = test.first().is_some_and(|t| t != "NONE");
        if has != want {
            return fail(if want {
                format!("{image} has no HEALTHCHECK; it should have one")
            } else {
                format!("{image} has a HEALTHCHECK; it should not")
            });
        }
    }
    if let Some(want) = exposed {
        let norm = |p: &str| if p.contains('/') { p.to_owned() } else { format!("{p}/tcp") };
        let want: BTreeSet<String> = want.iter().map(|p| norm(p)).collect();
        let have: BTreeSet<String> = config.exposed_ports.clone().unwrap_or_default().keys().cloned().collect();
        if want != have {
            let list = |s: &BTreeSet<String>| if s.is_empty() { "no ports".to_owned() } else { s.iter().cloned().collect::<Vec<_>>().join(", ") };
            return fail(format!("{image} exposes {}; it should expose {}", list(&have), list(&want)));
        }
    }
    pass()
}

fn container_state(c: &ContainerInspectResponse, check: &Check) -> Outcome {
    let Check::ContainerState { container, state, exit_code, oom_killed, image, min_restarts, restart_policy, memory_mb, cpus } = check else {
        return pass();
    };
    let st = c.state.clone().unwrap_or_default();
    let status = st.status.as_ref().map(enum_str).unwrap_or_default();
    if let Some(want) = state {
        if status != want.as_str() {
            return fail(format!("container {container} is {status}; it should be {}", want.as_str()));
        }
    }
    // `image` is judged by content, after these (super::identity::created_from).
    let _ = image;
    if let Some(want) = exit_code {
        if status != "exited" && status != "dead" {
            return fail(format!("container {container} is {status}; it should have exited with code {want}"));
        }
        let have = st.exit_code.unwrap_or(0);
        if have != *want {
            return fail(format!("container {container} exited with code {have}; it should exit with code {want}"));
        }
    }
    if let Some(want) = oom_killed {
        let have = st.oom_killed.unwrap_or(false);
        if have != *want {
            return fail(if *want {
                format!("container {container} was not killed for running out of memory (OOMKilled is false)")
            } else {
                format!("container {container} was killed for running out of memory; it should have been stopped another way")
            });
        }
    }
    let host = c.host_config.clone().unwrap_or_default();
    if let Some(want) = restart_policy {
        let have = host.restart_policy.as_ref().and_then(|p| p.name.as_ref()).map(enum_str).unwrap_or_default();
        let have = if have.is_empty() { "no".to_owned() } else { have };
        let allowed = want.to_vec();
        if !allowed.contains(&have) {
            return fail(format!("container {container} has the restart policy {have}; it should have {}", allowed.join(" or ")));
        }
    }
    if let Some(want) = min_restarts {
        let have = c.restart_count.unwrap_or(0).max(0) as u64;
        if have < *want {
            return fail(format!(
                "Docker has restarted {container} {}; it should have restarted it at least {}",
                plural(have, "time", "times"),
                plural(*want, "time", "times")
            ));
        }
    }
    if let Some(want) = memory_mb {
        let have = host.memory.unwrap_or(0);
        if have == 0 {
            return fail(format!("container {container} has no memory limit; it should be limited to {want} MB"));
        }
        if have != (*want as i64) * 1024 * 1024 {
            return fail(format!("container {container} is limited to {} MB of memory; it should be {want} MB", have as f64 / 1048576.0));
        }
    }
    if let Some(want) = cpus {
        let nano = host.nano_cpus.unwrap_or(0);
        let have = if nano > 0 {
            nano as f64 / 1e9
        } else {
            match (host.cpu_quota.unwrap_or(0), host.cpu_period.unwrap_or(0)) {
                (q, p) if q > 0 && p > 0 => q as f64 / p as f64,
                _ => 0.0,
            }
        };
        if have == 0.0 {
            return fail(format!("container {container} has no CPU limit; it should be limited to {want} CPUs"));
        }
        if (have - want).abs() > 0.01 {
            return fail(format!("container {container} is limited to {have} CPUs; it should be {want}"));
        }
    }
    pass()
}

async fn logs_of(g: &Grader, container: &str) -> Result<String, EngineError> {
    let options = LogsOptions { stdout: true, stderr: true, tail: "500".into(), ..Default::default() };
    let mut stream = g.docker.logs(container, Some(options));
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        text.push_str(&item?.to_string());
        if text.len() > READ_CAP {
            break;
        }
    }
    Ok(text)
}

async fn container_logs(g: &Grader, container: Option<&str>, image: Option<&str>, contains: &str) -> Outcome {
    if let Some(container) = container {
        let text = found!(logs_of(g, container).await, format!("container {container}"), no_container(container));
        return if text.contains(contains) {
            pass()
        } else if text.trim().is_empty() {
            fail(format!("container {container} has printed nothing; it should print “{}”", excerpt(contains)))
        } else {
            fail(format!("container {container} has not printed “{}” (it printed “{}”)", excerpt(contains), excerpt(&text)))
        };
    }
    let image = image.unwrap_or_default();
    let filters = HashMap::from([("ancestor".to_owned(), vec![image.to_owned()])]);
    let list = found!(
        g.docker.list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() })).await,
        format!("the containers of {image}"),
        fail(format!("there is no image {image}"))
    );
    if list.is_empty() {
        return fail(format!("no container has been run from {image} yet"));
    }
    match super::logscan::any_printed(g, &list, contains).await {
        Ok(true) => pass(),
        Ok(false) => fail(format!("no container of {image} has printed “{}” yet", excerpt(contains))),
        Err(err) => match lookup_error(err, &format!("the logs of {image}'s containers")) {
            Lookup::NotFound => fail(format!("no container of {image} has printed “{}” yet", excerpt(contains))),
            Lookup::Other(o) => o,
        },
    }
}
