//! `container_logs` by image, fast with many containers: logs are read 16 at a time, and what a
//! container has printed is remembered while it cannot print more.
//!
//! A container's logs only grow, so "it printed X" stays true for as long as that container
//! exists. "It has not printed X" stays true while it is not running and has not been started
//! again: the engine's own `start`/`restart` events since the answer was read (one query, not a
//! read per container) say which answers are stale. With 300 exited containers, a grade reads
//! no logs at all after the first.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use bollard::errors::Error as EngineError;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{EventsOptions, LogsOptions};
use futures::StreamExt;

use super::{lock, Grader};

/// Logs read at once.
const PARALLEL: usize = 16;
/// Most bytes of one container's logs searched.
const READ_CAP: usize = 256 * 1024;

/// What is known of containers' logs: (container id, text) → (printed it, read at, ns).
#[derive(Default)]
pub struct LogMemory(Mutex<HashMap<(String, String), (bool, i64)>>);

fn now_nano() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    now.unix_timestamp() * 1_000_000_000 + i64::from(now.nanosecond())
}

fn nano_arg(nano: i64) -> String {
    format!("{}.{:09}", nano.div_euclid(1_000_000_000), nano.rem_euclid(1_000_000_000))
}

/// Whether any of `containers` has printed `contains`.
pub async fn any_printed(g: &Grader, containers: &[ContainerSummary], contains: &str) -> Result<bool, EngineError> {
    let memory = &g.logs;
    let mut unknown: Vec<&str> = Vec::new();
    let mut oldest_no: Option<i64> = None;
    {
        let known = lock(&memory.0);
        for c in containers {
            let Some(id) = c.id.as_deref() else { continue };
            let stopped = c.state.as_ref().is_some_and(|s| matches!(enum_text(s).as_str(), "exited" | "dead" | "created"));
            match known.get(&(id.to_owned(), contains.to_owned())) {
                Some((true, _)) => return Ok(true),
                Some((false, at)) if stopped => {
                    oldest_no = Some(oldest_no.map_or(*at, |o: i64| o.min(*at)));
                }
                _ => unknown.push(id),
            }
        }
    }
    // Stopped containers answered "no" before: ask again only those started since.
    if let Some(since) = oldest_no {
        let started = started_since(g, since).await?;
        let known = lock(&memory.0);
        for c in containers {
            let Some(id) = c.id.as_deref() else { continue };
            if let Some((false, at)) = known.get(&(id.to_owned(), contains.to_owned())) {
                if started.iter().any(|(sid, t)| sid == id && t >= at) && !unknown.contains(&id) {
                    unknown.push(id);
                }
            }
        }
    }
    let ids: Vec<String> = unknown.into_iter().map(str::to_owned).collect();
    let mut reads = futures::stream::iter(ids.into_iter().map(|id| read_one(g, id, contains.to_owned()))).buffer_unordered(PARALLEL);
    let mut found = false;
    while let Some((id, at, result)) = reads.next().await {
        match result {
            Ok(yes) => {
                lock(&memory.0).insert((id, contains.to_owned()), (yes, at));
                if yes {
                    found = true;
                    break;
                }
            }
            // Removed meanwhile: it printed nothing that counts any more.
            Err(EngineError::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(err) => return Err(err),
        }
    }
    // Forget containers that are gone.
    let present: HashSet<&str> = containers.iter().filter_map(|c| c.id.as_deref()).collect();
    lock(&memory.0).retain(|(id, text), _| text != contains || present.contains(id.as_str()));
    Ok(found)
}

fn enum_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

async fn read_one(g: &Grader, id: String, contains: String) -> (String, i64, Result<bool, EngineError>) {
    let at = now_nano();
    let result = printed(g, &id, &contains).await;
    (id, at, result)
}

async fn printed(g: &Grader, id: &str, contains: &str) -> Result<bool, EngineError> {
    let options = LogsOptions { stdout: true, stderr: true, tail: "500".into(), ..Default::default() };
    let mut stream = g.docker.logs(id, Some(options));
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        text.push_str(&item?.to_string());
        if text.contains(contains) {
            return Ok(true);
        }
        if text.len() > READ_CAP {
            break;
        }
    }
    Ok(false)
}

/// Containers (id, when, ns) the engine started or restarted since `since` (ns).
async fn started_since(g: &Grader, since: i64) -> Result<Vec<(String, i64)>, EngineError> {
    let filters = HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        ("event".to_owned(), vec!["start".to_owned(), "restart".to_owned()]),
    ]);
    let options = EventsOptions { since: Some(nano_arg(since)), until: Some(nano_arg(now_nano())), filters: Some(filters) };
    let mut stream = g.docker.events(Some(options));
    let mut out = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event?;
        let id = event.actor.and_then(|a| a.id).unwrap_or_default();
        out.push((id, event.time_nano.unwrap_or(i64::MAX)));
    }
    Ok(out)
}
