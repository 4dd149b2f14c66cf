//! Whether this host can hold a class's machines: the free session slots, and the memory the host
//! has available now divided by what one machine takes (measured: about 120 MiB for an idle
//! machine, budgeted at [`crate::config::SESSION_MEMORY_BUDGET`]), after keeping some for the host.

use serde::Serialize;

/// Memory the host keeps for itself when sizing a class.
pub const HOST_RESERVE: u64 = 2 << 30;

/// How many more machines this host can start now, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostCapacity {
    /// Session machines the host can start now: the smaller of the two limits below.
    pub machines: usize,
    /// Free session slots (the server's `--max-sessions` minus the sessions running).
    pub slots_free: usize,
    pub max_sessions: usize,
    /// `MemAvailable` of the host, if it could be read.
    pub memory_available_bytes: Option<u64>,
    /// What one machine is counted at.
    pub per_machine_bytes: u64,
    /// Machines the available memory holds (after the host's reserve).
    pub memory_machines: Option<usize>,
}

impl HostCapacity {
    /// From the server's session limit, the sessions running, and the host's available memory.
    pub fn of(max_sessions: usize, running: usize, memory_available: Option<u64>, per_machine: u64) -> Self {
        let slots_free = max_sessions.saturating_sub(running);
        let memory_machines = memory_available.map(|m| (m.saturating_sub(HOST_RESERVE) / per_machine.max(1)) as usize);
        HostCapacity {
            machines: memory_machines.map_or(slots_free, |m| m.min(slots_free)),
            slots_free,
            max_sessions,
            memory_available_bytes: memory_available,
            per_machine_bytes: per_machine,
            memory_machines,
        }
    }

    /// This host now, as the server sees it.
    pub fn now(max_sessions: usize, running: usize) -> Self {
        Self::of(max_sessions, running, memory_available(), crate::config::SESSION_MEMORY_BUDGET)
    }

    /// One sentence an instructor can act on.
    pub fn sentence(&self) -> String {
        let mut text = format!(
            "this host can start {} more session machines now ({} of its {} session slots are free",
            self.machines, self.slots_free, self.max_sessions
        );
        if let (Some(available), Some(fits)) = (self.memory_available_bytes, self.memory_machines) {
            text.push_str(&format!(
                "; {:.1} GiB of memory available, {} GiB kept for the host, about {} MiB per machine: room for {fits}",
                available as f64 / (1u64 << 30) as f64,
                HOST_RESERVE >> 30,
                self.per_machine_bytes >> 20
            ));
        }
        text.push(')');
        text
    }

    /// `Err` with the sentence when `seats` machines do not fit.
    pub fn check(&self, seats: u32) -> Result<(), String> {
        if seats as usize <= self.machines {
            Ok(())
        } else {
            Err(format!("a class of {seats} does not fit: {}. Make the class smaller or end other sessions first.", self.sentence()))
        }
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn memory_available() -> Option<u64> {
    parse_mem_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_of_slots_and_memory_decides() {
        // 10 GiB available, 2 kept: 8 GiB at 200 MiB is 40 machines.
        let c = HostCapacity::of(112, 2, Some(10 << 30), 200 << 20);
        assert_eq!((c.slots_free, c.memory_machines, c.machines), (110, Some(40), 40));
        assert!(c.check(40).is_ok());
        let refusal = c.check(41).unwrap_err();
        assert!(refusal.contains("a class of 41 does not fit"), "{refusal}");
        assert!(refusal.contains("can start 40 more"), "{refusal}");
        assert!(refusal.contains("10.0 GiB of memory available"), "{refusal}");

        let c = HostCapacity::of(4, 1, Some(64 << 30), 200 << 20);
        assert_eq!(c.machines, 3);
        assert!(c.check(4).unwrap_err().contains("3 of its 4 session slots are free"));
        // Less memory than the reserve: nothing fits.
        assert_eq!(HostCapacity::of(100, 0, Some(1 << 30), 200 << 20).machines, 0);
        // Unknown memory: the slots decide.
        assert_eq!(HostCapacity::of(100, 0, None, 200 << 20).machines, 100);
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        let meminfo = "MemTotal:       24588208 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(20_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }
}
