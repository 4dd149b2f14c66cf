//! The warm pool: machines started before anyone asks, so a learner's session starts in the time
//! it takes to hand one over and prepare its exercise, not in the second or more a cold machine
//! needs (namespaces, disk, `dockerd`). Ten learners opening a lesson at once on a 2-core host
//! would otherwise wait for ten `dockerd`s starting side by side.
//!
//! The pool holds machines with the server's default limits only (a class with its own limits gets
//! cold machines). It refills one machine at a time, so refilling never crowds out learners, and
//! only while sessions plus pooled machines stay under the server's capacity. Pooled machines are
//! not sessions: they keep no session facts, so a server that restarts reaps them with the other
//! machines it cannot adopt, and a server that stops destroys them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use sandbox::MachineInfo;
use tokio::sync::Notify;
use tracing::{info, warn, Instrument};

use crate::app::AppState;

/// Machines ready to become sessions.
#[derive(Debug, Default)]
pub struct WarmPool {
    target: usize,
    ready: Mutex<VecDeque<MachineInfo>>,
    /// The machine being started now, if any (so stopping the server removes it too).
    starting: Mutex<Option<String>>,
    /// Woken when a machine is claimed (time to refill) or when the pool should stop.
    wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WarmPool {
    /// A pool that keeps `target` machines ready (0: no pool, every session starts cold).
    pub fn new(target: usize) -> Self {
        WarmPool { target, ..WarmPool::default() }
    }

    pub fn target(&self) -> usize {
        self.target
    }

    /// Machines ready right now.
    pub fn len(&self) -> usize {
        lock(&self.ready).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a ready machine, oldest first, and asks for a replacement.
    pub fn claim(&self) -> Option<MachineInfo> {
        let machine = lock(&self.ready).pop_front();
        if machine.is_some() {
            self.wake.notify_one();
        }
        machine
    }

    /// Puts back a machine that was claimed but could not become a session.
    pub fn give_back(&self, machine: MachineInfo) {
        lock(&self.ready).push_front(machine);
    }

    /// Whether the pool should start one more machine, given the sessions that exist now.
    fn wants_one(&self, sessions: usize, max_sessions: usize) -> bool {
        let pooled = self.len();
        pooled < self.target && sessions + pooled < max_sessions
    }

    /// Empties the pool (the caller destroys what it returns).
    pub fn drain(&self) -> Vec<MachineInfo> {
        lock(&self.ready).drain(..).collect()
    }
}

/// Keeps the pool filled until the returned task is aborted. One machine at a time; after a
/// failure it waits before trying again, so a broken host does not spin.
pub fn spawn_filler(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pool = state.warm.clone();
        if pool.target() == 0 {
            return;
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            if !pool.wants_one(state.sessions.len(), state.config.max_sessions) {
                // Refill when a machine is claimed, or look again soon (sessions end too).
                let _ = tokio::time::timeout(Duration::from_secs(5), pool.wake.notified()).await;
                continue;
            }
            let id = crate::token::new_session_id();
            let span = tracing::info_span!("warm_machine", id = %id);
            *lock(&pool.starting) = Some(id.clone());
            let created = state.backend.create(&id).instrument(span.clone()).await;
            *lock(&pool.starting) = None;
            match created {
                Ok(info) => {
                    span.in_scope(|| info!(ms = info.start_duration.as_millis() as u64, pooled = pool.len() + 1, "warm machine ready"));
                    lock(&pool.ready).push_back(info);
                    backoff = Duration::from_secs(1);
                }
                Err(err) => {
                    span.in_scope(|| warn!(error = %err, retry_in = ?backoff, "could not start a warm machine"));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    })
}

/// Takes a pooled machine that is still ready. One that died while it waited (its init or Docker
/// gone) is removed instead of handed out, and the next is tried; `None` means start cold.
pub async fn claim_ready(state: &AppState) -> Option<MachineInfo> {
    while let Some(machine) = state.warm.claim() {
        if state.backend.state(&machine.id).await == sandbox::MachineState::Ready {
            return Some(machine);
        }
        warn!(id = %machine.id, "a warm machine stopped while it waited; removing it");
        if let Err(err) = state.backend.destroy(&machine.id).await {
            warn!(id = %machine.id, error = %err, "could not remove a warm machine");
        }
    }
    None
}

/// Destroys every pooled machine, and the one being started (the server is stopping and its
/// filler task has been aborted).
pub async fn destroy_all(state: &AppState) {
    let mut machines: Vec<String> = state.warm.drain().into_iter().map(|m| m.id).collect();
    machines.extend(lock(&state.warm.starting).take());
    for id in &machines {
        if let Err(err) = state.backend.destroy(id).await {
            warn!(%id, error = %err, "could not remove a warm machine");
        }
    }
    if !machines.is_empty() {
        info!(count = machines.len(), "warm machines removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(id: &str) -> MachineInfo {
        MachineInfo {
            id: id.into(),
            uid_base: 0,
            init_pid: 1,
            docker_socket: "/nonexistent".into(),
            address: None,
            start_duration: Duration::ZERO,
        }
    }

    #[test]
    fn claims_oldest_first_and_gives_back_to_the_front() {
        let pool = WarmPool::new(3);
        lock(&pool.ready).extend([machine("a"), machine("b")]);
        assert_eq!(pool.claim().unwrap().id, "a");
        pool.give_back(machine("a"));
        assert_eq!(pool.claim().unwrap().id, "a");
        assert_eq!(pool.claim().unwrap().id, "b");
        assert!(pool.claim().is_none());
    }

    #[test]
    fn fills_only_up_to_its_target_and_within_capacity() {
        let pool = WarmPool::new(2);
        assert!(pool.wants_one(0, 10));
        lock(&pool.ready).push_back(machine("a"));
        assert!(pool.wants_one(0, 10));
        lock(&pool.ready).push_back(machine("b"));
        assert!(!pool.wants_one(0, 10), "target reached");
        assert!(!WarmPool::new(2).wants_one(10, 10), "capacity taken by sessions");
        let pool = WarmPool::new(5);
        lock(&pool.ready).push_back(machine("a"));
        assert!(!pool.wants_one(9, 10), "sessions plus pooled machines stay within capacity");
        assert!(!WarmPool::new(0).wants_one(0, 10), "no pool");
        assert_eq!(pool.drain().len(), 1);
        assert!(pool.is_empty());
    }
}
