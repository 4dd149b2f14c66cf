//! The machines' network: one host bridge, a veth pair per machine, and an nftables table owned
//! by docklab that keeps every machine to itself.
//!
//! From a machine, only docklab's own session-facing services on the host's bridge address are
//! reachable (the image registry on 80 and, over TLS as Docker Hub, 443; the package proxy). Not other machines (their bridge ports
//! are isolated from each other), not the server's own port or any other host service, not
//! 169.254.169.254, and not the internet unless the operator turns egress on. Inside a machine,
//! Docker networking is the machine's own business: its bridges and rules live in its netns.

use std::fs;
use std::net::Ipv4Addr;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Name of docklab's nftables tables (one of family `inet`, one of family `bridge`); nothing else
/// of the host's rules is touched.
pub const NFT_TABLE: &str = "docklab";
/// Host-side veths of machines are named this and their slot ([`NetworkConfig::host_veth`]).
const VETH_PREFIX: &str = "dlv";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("machine slot {slot} has no address left in {subnet}")]
    NoAddress { slot: u32, subnet: String },
}

/// How machines are networked on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub bridge: String,
    /// The host's address on the bridge; machines' gateway and where the registry listens.
    pub host_ip: Ipv4Addr,
    pub prefix_len: u8,
    /// TCP ports on `host_ip` that machines may reach (registry over HTTP and HTTPS, package proxy).
    pub allowed_ports: Vec<u16>,
    /// Whether machines may reach the internet (NAT through the host).
    pub egress: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig { bridge: "dlbr0".into(), host_ip: Ipv4Addr::new(10, 200, 0, 1), prefix_len: 16, allowed_ports: vec![80, 443, 3142], egress: false }
    }
}

impl NetworkConfig {
    pub fn subnet(&self) -> String {
        let mask = if self.prefix_len == 0 { 0 } else { u32::MAX << (32 - self.prefix_len as u32) };
        format!("{}/{}", Ipv4Addr::from(u32::from(self.host_ip) & mask), self.prefix_len)
    }

    /// The address of the machine in uid slot `slot`: the host is .1, machines count from .2.
    pub fn machine_address(&self, slot: u32) -> Result<Ipv4Addr, NetworkError> {
        let host = u32::from(self.host_ip);
        let size = 1u64 << (32 - self.prefix_len as u32);
        let offset = slot as u64 + 1;
        // The host is the subnet's first address; keep clear of the broadcast address at the top.
        if offset + 1 > size - 2 {
            return Err(NetworkError::NoAddress { slot, subnet: self.subnet() });
        }
        Ok(Ipv4Addr::from(host + offset as u32))
    }

    /// Host-side name of the machine's veth (at most 15 characters, as the kernel requires).
    pub fn host_veth(&self, slot: u32) -> String {
        format!("{VETH_PREFIX}{slot}")
    }

    /// The machine address that belongs to a host veth name (the inverse of [`Self::host_veth`]).
    pub fn veth_address(&self, veth: &str) -> Option<Ipv4Addr> {
        let slot = veth.strip_prefix(VETH_PREFIX).filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))?;
        self.machine_address(slot.parse().ok()?).ok()
    }

    /// The nftables ruleset for docklab's table.
    pub fn ruleset(&self) -> String {
        let br = &self.bridge;
        let ports = self.allowed_ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
        let allow_ports = if self.allowed_ports.is_empty() {
            String::new()
        } else {
            format!("        iifname \"{br}\" ip daddr {} tcp dport {{ {ports} }} accept\n", self.host_ip)
        };
        let egress = if self.egress {
            format!(
                "        iifname \"{br}\" oifname != \"{br}\" ip daddr 169.254.0.0/16 drop\n        iifname \"{br}\" oifname != \"{br}\" accept\n"
            )
        } else {
            String::new()
        };
        let nat = if self.egress {
            format!(
                "    chain postrouting {{\n        type nat hook postrouting priority srcnat; policy accept;\n        ip saddr {} oifname != \"{br}\" masquerade\n    }}\n",
                self.subnet()
            )
        } else {
            String::new()
        };
        format!(
            "table inet {NFT_TABLE} {{\n\
             \x20   chain input {{\n\
             \x20       type filter hook input priority filter - 5; policy accept;\n\
             \x20       iifname \"{br}\" ct state established,related accept\n\
             {allow_ports}\
             \x20       iifname \"{br}\" ip daddr {host} icmp type echo-request accept\n\
             \x20       iifname \"{br}\" reject with icmpx admin-prohibited\n\
             \x20   }}\n\
             \x20   chain forward {{\n\
             \x20       type filter hook forward priority filter - 5; policy accept;\n\
             \x20       iifname \"{br}\" oifname \"{br}\" reject with icmpx admin-prohibited\n\
             \x20       oifname \"{br}\" ct state established,related accept\n\
             {egress}\
             \x20       iifname \"{br}\" reject with icmpx admin-prohibited\n\
             \x20       oifname \"{br}\" drop\n\
             \x20   }}\n\
             {nat}\
             }}\n",
            host = self.host_ip,
        )
    }
}

/// The `bridge` family table that pins every machine's port to its own addresses.
///
/// Each machine has one element in the set `ports`: its host-side veth, its hardware address and
/// its IPv4 address. A frame that comes in on a machine's port passes only if it is ARP whose
/// Ethernet source and ARP sender are that machine's hardware address and IP, or IPv4 from that
/// machine's hardware address and IP; anything else (another machine's or the host's address, a
/// gratuitous ARP claiming one, IPv6, VLAN tags, other ethertypes) is counted and dropped before
/// the bridge learns from it. The other way, the host sends IPv4 out of a port only to that
/// machine's hardware address and IP, so a poisoned forwarding or neighbour entry cannot deliver
/// one machine's traffic to another. A port with no element (not yet pinned, or already unpinned)
/// passes nothing but the host's ARP.
pub fn bridge_ruleset(pins: &[(String, Ipv4Addr)]) -> String {
    let elements = if pins.is_empty() {
        String::new()
    } else {
        let list = pins.iter().map(|(veth, addr)| port_element(veth, *addr)).collect::<Vec<_>>().join(", ");
        format!("        elements = {{ {list} }}\n")
    };
    format!(
        "table bridge {NFT_TABLE} {{\n\
         \x20   set ports {{\n\
         \x20       type ifname . ether_addr . ipv4_addr\n\
         {elements}\
         \x20   }}\n\
         \x20   chain prerouting {{\n\
         \x20       type filter hook prerouting priority -200; policy accept;\n\
         \x20       iifname != \"{VETH_PREFIX}*\" accept\n\
         \x20       ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 iifname . ether saddr . arp saddr ip @ports iifname . arp saddr ether . arp saddr ip @ports accept\n\
         \x20       ether type ip iifname . ether saddr . ip saddr @ports accept\n\
         \x20       counter drop\n\
         \x20   }}\n\
         \x20   chain output {{\n\
         \x20       type filter hook output priority -200; policy accept;\n\
         \x20       oifname != \"{VETH_PREFIX}*\" accept\n\
         \x20       ether type arp accept\n\
         \x20       ether type ip oifname . ether daddr . ip daddr @ports accept\n\
         \x20       counter drop\n\
         \x20   }}\n\
         }}\n"
    )
}

/// Brings the bridge table to [`bridge_ruleset`] in one transaction without emptying its set: a
/// machine a launcher pins meanwhile (another process on this host) keeps its element.
fn bridge_update_script(pins: &[(String, Ipv4Addr)]) -> String {
    format!(
        "table bridge {NFT_TABLE} {{\n\
         \x20   chain prerouting {{ type filter hook prerouting priority -200; policy accept; }}\n\
         \x20   chain output {{ type filter hook output priority -200; policy accept; }}\n\
         }}\n\
         flush chain bridge {NFT_TABLE} prerouting\n\
         flush chain bridge {NFT_TABLE} output\n\
         {}",
        bridge_ruleset(pins)
    )
}

/// A machine's element of the `ports` set.
fn port_element(veth: &str, address: Ipv4Addr) -> String {
    format!("\"{veth}\" . {} . {address}", machine_mac(address))
}

fn run(args: &[&str], input: Option<&str>) -> Result<String, NetworkError> {
    use std::io::Write;
    let command = args.join(" ");
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    if input.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|e| NetworkError::Command { command: command.clone(), detail: e.to_string() })?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(data.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| NetworkError::Command { command: command.clone(), detail: e.to_string() })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetworkError::Command { command, detail: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// Creates the bridge and docklab's nftables table, or brings them back to the configured shape.
/// Idempotent; touches no rule outside docklab's own table.
pub fn ensure_host_network(cfg: &NetworkConfig) -> Result<(), NetworkError> {
    let br = cfg.bridge.as_str();
    if run(&["ip", "link", "show", "dev", br], None).is_err() {
        run(&["ip", "link", "add", "name", br, "type", "bridge"], None)?;
    }
    // A bridge without an address of its own takes the lowest of its ports' addresses, so it
    // changed whenever a machine came or went, and every other machine's cached address for the
    // gateway went dead until its ARP entry expired: pulls from the registry timed out for ~30 s
    // (dial i/o timeout). A fixed address stays.
    let mac = machine_mac(cfg.host_ip);
    let current = std::fs::read_to_string(format!("/sys/class/net/{br}/address")).unwrap_or_default();
    if current.trim() != mac {
        run(&["ip", "link", "set", "dev", br, "address", &mac], None)?;
    }
    let addr = format!("{}/{}", cfg.host_ip, cfg.prefix_len);
    let shown = run(&["ip", "-4", "addr", "show", "dev", br], None)?;
    if !shown.contains(&format!("inet {addr} ")) {
        run(&["ip", "addr", "add", &addr, "dev", br], None)?;
    }
    run(&["ip", "link", "set", "dev", br, "up"], None)?;
    // Replace the whole table atomically: declare it (so delete cannot fail), delete, recreate.
    let script = format!("table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n{}", cfg.ruleset());
    run(&["nft", "-f", "-"], Some(&script))?;
    // The bridge table's rules are rebuilt too, and every machine port already on the bridge is
    // pinned (machines a restarted server adopts keep their network; their addresses follow from
    // their slots, as when they were made).
    let pins: Vec<(String, Ipv4Addr)> = host_veths()
        .into_iter()
        .filter(|v| fs::read_link(format!("/sys/class/net/{v}/master")).is_ok_and(|m| m.file_name().is_some_and(|n| n == br)))
        .filter_map(|v| cfg.veth_address(&v).map(|a| (v, a)))
        .collect();
    run(&["nft", "-f", "-"], Some(&bridge_update_script(&pins)))?;
    for (_, address) in &pins {
        pin_neighbour(br, *address)?;
    }
    if cfg.egress {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| NetworkError::Command { command: "enable ip_forward".into(), detail: e.to_string() })?;
    }
    Ok(())
}

/// Removes docklab's table and bridge (after the last machine is gone).
pub fn remove_host_network(cfg: &NetworkConfig) -> Result<(), NetworkError> {
    let _ = run(&["nft", "delete", "table", "inet", NFT_TABLE], None);
    let _ = run(&["nft", "delete", "table", "bridge", NFT_TABLE], None);
    if run(&["ip", "link", "show", "dev", &cfg.bridge], None).is_ok() {
        run(&["ip", "link", "delete", "dev", &cfg.bridge], None)?;
    }
    Ok(())
}

/// The hardware address of the machine whose address is `addr`: always the same for the same
/// address (locally administered, unicast). A machine started in a slot another left moments
/// ago then matches whatever the host still has cached for that address: with a new random
/// address, the host kept sending to the old one (an ARP update within `locktime` of the last is
/// ignored) and the new machine lost its registry until the host's entry expired.
pub fn machine_mac(addr: Ipv4Addr) -> String {
    let [a, b, c, d] = addr.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Gives the machine whose init is `pid` its end of a veth pair (`eth0` inside, with
/// [`machine_mac`] of `address`) and plugs the host end into the bridge as an isolated port
/// (isolated ports cannot talk to each other).
pub fn attach_machine(bridge: &str, veth: &str, pid: i32, address: Ipv4Addr) -> Result<(), NetworkError> {
    // A stale host end from a machine that died in this slot would block the name.
    if run(&["ip", "link", "show", "dev", veth], None).is_ok() {
        let _ = run(&["ip", "link", "delete", "dev", veth], None);
    }
    let mac = machine_mac(address);
    run(&["ip", "link", "add", "name", veth, "type", "veth", "peer", "name", "eth0", "address", &mac, "netns", &pid.to_string()], None)?;
    // Pinned before the port comes up, so not one frame from it passes unchecked.
    pin_port(bridge, veth, address)?;
    run(&["ip", "link", "set", "dev", veth, "master", bridge], None)?;
    run(&["bridge", "link", "set", "dev", veth, "isolated", "on"], None)?;
    run(&["ip", "link", "set", "dev", veth, "up"], None)?;
    Ok(())
}

/// Pins a machine's port: its element in the bridge table's `ports` set (see [`bridge_ruleset`])
/// and a permanent neighbour entry on the host, which no ARP reply can change.
pub fn pin_port(bridge: &str, veth: &str, address: Ipv4Addr) -> Result<(), NetworkError> {
    // `add element` of an element already there is not an error (a machine restarted in its slot).
    let element = port_element(veth, address);
    run(&["nft", "-f", "-"], Some(&format!("add element bridge {NFT_TABLE} ports {{ {element} }}\n")))?;
    pin_neighbour(bridge, address)
}

fn pin_neighbour(bridge: &str, address: Ipv4Addr) -> Result<(), NetworkError> {
    let (addr, mac) = (address.to_string(), machine_mac(address));
    run(&["ip", "neigh", "replace", &addr, "lladdr", &mac, "dev", bridge, "nud", "permanent"], None).map(drop)
}

/// Removes what [`pin_port`] added; quiet when it is already gone.
pub fn unpin_port(bridge: &str, veth: &str, address: Ipv4Addr) {
    let element = port_element(veth, address);
    let _ = run(&["nft", "-f", "-"], Some(&format!("delete element bridge {NFT_TABLE} ports {{ {element} }}\n")));
    let _ = run(&["ip", "neigh", "del", &address.to_string(), "dev", bridge], None);
}

/// Deletes a machine's host-side veth if it is still there.
pub fn remove_veth(veth: &str) {
    if run(&["ip", "link", "show", "dev", veth], None).is_ok() {
        let _ = run(&["ip", "link", "delete", "dev", veth], None);
    }
}

/// Host-side veths of docklab machines (for the start-up sweep).
pub fn host_veths() -> Vec<String> {
    run(&["ip", "-o", "link", "show"], None)
        .map(|out| {
            out.lines()
                .filter_map(|l| l.split(": ").nth(1))
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
                .filter(|n| n.strip_prefix(VETH_PREFIX).is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_from_two_and_stay_in_the_subnet() {
        let c = NetworkConfig::default();
        assert_eq!(c.machine_address(0).unwrap(), Ipv4Addr::new(10, 200, 0, 2));
        assert_eq!(machine_mac(Ipv4Addr::new(10, 200, 1, 46)), "02:42:0a:c8:01:2e");
        assert_eq!(c.machine_address(300).unwrap(), Ipv4Addr::new(10, 200, 1, 46));
        assert!(c.machine_address(65_533).is_err());
        assert_eq!(c.subnet(), "10.200.0.0/16");
        assert!(c.host_veth(4095).len() <= 15);
    }

    #[test]
    fn ruleset_allows_only_the_listed_host_ports_and_no_egress_by_default() {
        let c = NetworkConfig::default();
        let r = c.ruleset();
        assert!(r.contains("ip daddr 10.200.0.1 tcp dport { 80, 443, 3142 } accept"));
        // 443 (the registry as Docker Hub) is allowed to the host's address and nowhere else.
        assert_eq!(r.matches("443").count(), 1, "{r}");
        assert!(r.contains("iifname \"dlbr0\" oifname \"dlbr0\" reject"));
        assert!(!r.contains("masquerade"));
        // The catch-all drop comes after the allow rule.
        assert!(r.find("dport").unwrap() < r.find("iifname \"dlbr0\" reject").unwrap());
        let e = NetworkConfig { egress: true, ..c }.ruleset();
        assert!(e.contains("masquerade") && e.contains("169.254.0.0/16 drop"));
    }

    #[test]
    fn bridge_table_pins_each_port_to_its_machine() {
        let c = NetworkConfig::default();
        assert_eq!(c.veth_address("dlv3"), Some(Ipv4Addr::new(10, 200, 0, 5)));
        assert_eq!(c.veth_address(&c.host_veth(300)), c.machine_address(300).ok());
        assert_eq!(c.veth_address("dlv"), None);
        assert_eq!(c.veth_address("dlbr0"), None);
        let r = bridge_ruleset(&[("dlv3".into(), Ipv4Addr::new(10, 200, 0, 5))]);
        assert!(r.contains("elements = { \"dlv3\" . 02:42:0a:c8:00:05 . 10.200.0.5 }"), "{r}");
        // From a port: ARP and IPv4 only from the pinned pair, everything else dropped.
        let pre = &r[r.find("chain prerouting").unwrap()..r.find("chain output").unwrap()];
        assert!(pre.contains("iifname . ether saddr . arp saddr ip @ports iifname . arp saddr ether . arp saddr ip @ports accept"), "{pre}");
        assert!(pre.contains("ether type ip iifname . ether saddr . ip saddr @ports accept"));
        assert!(pre.trim_end().trim_end_matches('}').trim_end().ends_with("counter drop"), "{pre}");
        assert!(!pre.contains("ip6"));
        let out = &r[r.find("chain output").unwrap()..];
        assert!(out.contains("oifname . ether daddr . ip daddr @ports accept"));
        assert!(!bridge_ruleset(&[]).contains("elements"));
    }
}
