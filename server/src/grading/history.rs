//! History checks: what the engine reported happening, per container instance and in order.
//!
//! Events come from the live stream ([`super::Grader::record_event`]) and, for whatever that did
//! not bring (events before the watcher started, or a grader without a watcher), from the engine's
//! own event history since the session began. A container is known by its id: two containers
//! that bore the same name are two instances with two histories, so a learner who got a step
//! wrong, removed the container and did it again is judged on the new one alone.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as EngineError;
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use lessons::checks::EventObject;
use lessons::{Check, Task};

use super::dockerfile::normalize_image;
use super::{lock, Grader, Outcome, SeenEvent, ENGINE_DOWN};

/// Longest the engine's event history may take to read.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(5);

/// Engine actions that change nothing a check looks at; probes cause some of them (`docker exec`
/// for pings, archive reads, image exports), so reacting to them would grade in a loop.
pub const QUIET_ACTIONS: &[&str] = &[
    "exec_create", "exec_start", "exec_die", "exec_detach", "top", "resize", "attach", "detach",
    "archive-path", "extract-to-dir", "copy", "export", "save", "health_status",
];

/// Reduces an engine event to what history checks match on.
pub fn seen_event(event: &bollard::models::EventMessage) -> Option<SeenEvent> {
    let object = event.typ.as_ref().and_then(|t| serde_json::to_value(t).ok()).and_then(|v| v.as_str().map(str::to_owned))?;
    let action = event.action.clone()?;
    // "kill" events carry the signal in attributes, "exec_start: sh" carries the command: keep the verb.
    let action = action.split(':').next().unwrap_or(&action).trim().to_owned();
    let actor = event.actor.clone().unwrap_or_default();
    let attrs = actor.attributes.unwrap_or_default();
    let id = actor.id.clone().unwrap_or_default();
    let name = match object.as_str() {
        "volume" => id.clone(),
        _ => attrs.get("name").cloned().unwrap_or_else(|| id.clone()),
    };
    let image = if object == "container" { attrs.get("image").cloned() } else { None };
    let time_nano = event.time_nano.unwrap_or_else(|| event.time.unwrap_or(0) * 1_000_000_000);
    Some(SeenEvent { object, action, name, id, image, time_nano })
}

/// Whether an event comes from a container the grader's own checks ran (`docklab.grader=1`):
/// it is remembered, but it does not set off another grading pass.
pub fn from_grader(event: &bollard::models::EventMessage) -> bool {
    event
        .actor
        .as_ref()
        .and_then(|a| a.attributes.as_ref())
        .is_some_and(|attrs| attrs.get("docklab.grader").is_some_and(|v| v == "1"))
}

fn matches_event(e: &SeenEvent, object: EventObject, name: &str, action: &str, image: Option<&str>) -> bool {
    e.object == object.as_str()
        && e.action == action
        && (e.name == name || normalize_image(&e.name) == normalize_image(name) && object == EventObject::Image)
        && image.is_none_or(|want| e.image.as_deref().is_some_and(|have| normalize_image(have) == normalize_image(want)))
}

fn past_tense(action: &str) -> String {
    match action {
        "create" => "created".into(),
        "start" => "started".into(),
        "pause" => "paused".into(),
        "unpause" => "unpaused".into(),
        "stop" => "stopped with docker stop".into(),
        "kill" => "killed".into(),
        "die" => "exited".into(),
        "destroy" | "delete" => "removed".into(),
        "restart" => "restarted".into(),
        "oom" => "killed for running out of memory".into(),
        "rename" => "renamed".into(),
        "connect" => "connected".into(),
        "disconnect" => "disconnected".into(),
        "mount" => "mounted".into(),
        "tag" => "tagged".into(),
        "update" => "updated (docker update)".into(),
        "exec_create" => "sent a docker exec".into(),
        other => format!("through a {other} event"),
    }
}

/// Reads the engine's own event history of `object` since the session began into the grader's
/// memory. `Err` when the engine does not answer.
async fn fetch(g: &Grader, object: EventObject, action: Option<&str>) -> Result<(), Outcome> {
    // With nanoseconds: an event from this very second must count.
    let now = time::OffsetDateTime::now_utc();
    let now = format!("{}.{:09}", now.unix_timestamp(), now.nanosecond());
    let mut filters = HashMap::from([("type".to_owned(), vec![object.as_str().to_owned()])]);
    if let Some(action) = action {
        filters.insert("event".to_owned(), vec![action.to_owned()]);
    }
    let options = EventsOptions { since: Some(g.since.to_string()), until: Some(now), filters: Some(filters) };
    let mut stream = g.docker.events(Some(options));
    let history = tokio::time::timeout(HISTORY_TIMEOUT, async {
        let mut got = Vec::new();
        while let Some(item) = stream.next().await {
            got.push(item?);
        }
        Ok::<_, EngineError>(got)
    })
    .await;
    match history {
        Ok(Ok(events)) => {
            let mut state = lock(&g.state);
            state.remember(events.iter().filter_map(seen_event));
            Ok(())
        }
        // The engine answered with an error: judge on what the live stream brought.
        Ok(Err(EngineError::DockerResponseServerError { .. })) => Ok(()),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "the engine's event history could not be read");
            Err(Outcome::Unknown(ENGINE_DOWN.to_owned()))
        }
        Err(_) => Err(Outcome::Unknown(ENGINE_DOWN.to_owned())),
    }
}

/// `event_seen` on its own: any object of that name (for containers, any instance).
pub async fn event_seen(g: &Grader, object: EventObject, name: &str, action: &str, image: Option<&str>) -> Outcome {
    let seen = |g: &Grader| lock(&g.state).events.iter().any(|e| matches_event(e, object, name, action, image));
    if seen(g) {
        return Outcome::Pass(String::new());
    }
    // Not seen live (yet): ask the engine's own event history since the session began.
    if let Err(outcome) = fetch(g, object, Some(action)).await {
        return outcome;
    }
    if seen(g) {
        return Outcome::Pass(String::new());
    }
    let what = match (object, image) {
        (EventObject::Container, Some(image)) => format!("container {name} (from {image})"),
        _ => format!("{} {name}", object.as_str()),
    };
    Outcome::Fail(format!("{what} has not been {} since the lab started", past_tense(action)))
}

/// A task's container event checks about one container, decided together.
#[derive(Debug, Clone)]
pub struct EventGroup {
    pub container: String,
    /// Indexes of the checks in the task, in the order written.
    pub checks: Vec<usize>,
    /// (action, image) for each, in the same order.
    steps: Vec<(String, Option<String>)>,
    /// The task also inspects this container now: the events must be the current instance's.
    current: bool,
}

/// Groups a task's container `event_seen` checks by container name.
pub fn event_groups(task: &Task) -> Vec<EventGroup> {
    let mut groups: Vec<EventGroup> = Vec::new();
    for (i, check) in task.checks.iter().enumerate() {
        let Check::EventSeen { object: EventObject::Container, name, action, image } = check else { continue };
        let step = (action.clone(), image.clone());
        match groups.iter_mut().find(|g| &g.container == name) {
            Some(group) => {
                group.checks.push(i);
                group.steps.push(step);
            }
            None => groups.push(EventGroup {
                container: name.clone(),
                checks: vec![i],
                steps: vec![step],
                current: task.checks.iter().any(|c| c.current_container() == Some(name.as_str())),
            }),
        }
    }
    groups
}

/// How many of `steps` one instance's events (oldest first) did, in order.
fn matched_steps(events: &[&SeenEvent], steps: &[(String, Option<String>)]) -> usize {
    let mut done = 0;
    for e in events {
        let Some((action, image)) = steps.get(done) else { break };
        let image_ok = image.as_deref().is_none_or(|want| e.image.as_deref().is_some_and(|have| normalize_image(have) == normalize_image(want)));
        if &e.action == action && image_ok {
            done += 1;
        }
    }
    done
}

/// The instances (ids, oldest first) that bore `name`, each with its events in order.
fn instances(g: &Grader, name: &str) -> Vec<(String, Vec<SeenEvent>)> {
    let state = lock(&g.state);
    let mut ids: Vec<String> = Vec::new();
    for e in state.events.iter().filter(|e| e.object == "container" && e.name == name) {
        if !ids.contains(&e.id) {
            ids.push(e.id.clone());
        }
    }
    ids.into_iter()
        .map(|id| {
            let events = state.events.iter().filter(|e| e.object == "container" && e.id == id).cloned().collect();
            (id, events)
        })
        .collect()
}

/// Decides an [`EventGroup`]: one instance of the container did every step, in order.
pub async fn container_history(g: &Grader, group: &EventGroup) -> Outcome {
    let name = group.container.as_str();
    let current_id = if group.current {
        match g.docker.inspect_container(name, None::<bollard::query_parameters::InspectContainerOptions>).await {
            Ok(c) => c.id,
            Err(EngineError::DockerResponseServerError { .. }) => None,
            Err(_) => return Outcome::Unknown(ENGINE_DOWN.to_owned()),
        }
    } else {
        None
    };
    let best = |g: &Grader| -> (usize, usize) {
        let all = instances(g, name);
        let considered = all.iter().filter(|(id, _)| current_id.as_ref().is_none_or(|c| c == id));
        let best = considered.map(|(_, events)| matched_steps(&events.iter().collect::<Vec<_>>(), &group.steps)).max().unwrap_or(0);
        (best, all.len())
    };
    let (mut matched, mut count) = best(g);
    if matched < group.steps.len() {
        if let Err(outcome) = fetch(g, EventObject::Container, None).await {
            return outcome;
        }
        (matched, count) = best(g);
    }
    if matched == group.steps.len() {
        return Outcome::Pass(String::new());
    }
    let (action, image) = &group.steps[matched];
    let what = match image {
        Some(image) => format!("container {name} (from {image})"),
        None => format!("container {name}"),
    };
    let since = match matched {
        0 => "since the lab started".to_owned(),
        n => format!("since it was {}", past_tense(&group.steps[n - 1].0)),
    };
    let which = match (current_id.is_some(), count) {
        (true, n) if n > 1 => " (the one there now; each container is judged on its own history)",
        (false, n) if n > 1 && matched > 0 => " (no one container did every step; each is judged on its own history)",
        _ => "",
    };
    Outcome::Fail(format!("{what} has not been {} {since}{which}", past_tense(action)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, action: &str, image: Option<&str>) -> SeenEvent {
        SeenEvent { object: "container".into(), action: action.into(), name: "box".into(), id: id.into(), image: image.map(Into::into), time_nano: 0 }
    }

    #[test]
    fn steps_match_in_order_within_one_instance() {
        let steps: Vec<(String, Option<String>)> = ["start", "pause", "unpause"].iter().map(|a| (a.to_string(), None)).collect();
        let a = [ev("a", "create", None), ev("a", "start", None), ev("a", "pause", None), ev("a", "unpause", None)];
        assert_eq!(matched_steps(&a.iter().collect::<Vec<_>>(), &steps), 3);
        // Out of order: unpause before pause does not count.
        let b = [ev("b", "start", None), ev("b", "unpause", None), ev("b", "pause", None)];
        assert_eq!(matched_steps(&b.iter().collect::<Vec<_>>(), &steps), 2);
        let image = vec![("create".to_string(), Some("busybox".to_string()))];
        assert_eq!(matched_steps(&[&ev("c", "create", Some("busybox:latest"))], &image), 1);
        assert_eq!(matched_steps(&[&ev("c", "create", Some("alpine"))], &image), 0);
    }
}
