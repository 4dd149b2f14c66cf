//! The session bridge pins every port to its machine's addresses: a machine that takes another
//! machine's IP (and even its hardware address) and announces it with gratuitous ARP does not get
//! that machine's traffic from the host, and packets it sends from an address not its own are
//! dropped. SECURITY-TESTS.md case 29 (finding 6 of the hardening issue).

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use docklab_tests::{manager, sh, unique_id, Cleanup};
use sandbox::network::machine_mac;
use sandbox::MachineBackend;

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");
const PORT: u16 = 7777;

fn nft(args: &[&str]) -> String {
    let out = std::process::Command::new("nft").args(args).output().expect("nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn host_neighbour(addr: Ipv4Addr) -> String {
    let out = std::process::Command::new("ip").args(["neigh", "show", &addr.to_string(), "dev", "dlbr0"]).output().expect("ip neigh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What answers on `addr`:PORT when the host connects (the host's own view, as the port preview has).
fn ask(addr: Ipv4Addr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::from((addr, PORT)), Duration::from_secs(3)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3))).map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(text.trim().to_string())
}

/// Up to `n` answers from `addr` (connection errors between two of the server's loops are retried).
fn answers(addr: Ipv4Addr, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..n * 4 {
        match ask(addr) {
            Ok(a) if !a.is_empty() => got.push(a),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
        if got.len() == n {
            break;
        }
    }
    got
}

/// Serves `name` on PORT in the machine, in the background, one connection after another.
async fn serve_name(m: &dyn MachineBackend, id: &str, name: &str) {
    let out = sh(m, id, &format!("setsid sh -c 'while true; do echo {name} | nc -N -l {PORT}; done' </dev/null >/dev/null 2>&1 & echo started")).await;
    assert_eq!(out.stdout.trim(), "started", "{out:?}");
}

/// Sends gratuitous ARP (a request and a reply, three of each, as `arping -U` and `arping -A` do)
/// on eth0 from Ethernet source `eth_src`, saying `ip` is at `mac`. The node image has perl; raw
/// AF_PACKET needs nothing more.
fn garp_script(eth_src: &str, mac: &str, ip: Ipv4Addr) -> String {
    let perl = r#"
my ($ethsrc, $mac, $ip) = @ARGV;
sub hw { pack "H12", join "", split /:/, shift }
sub v4 { pack "C4", split /\./, shift }
open my $f, "<", "/sys/class/net/eth0/ifindex" or die "ifindex: $!";
my $ifindex = <$f> + 0;
socket(my $s, 17, 3, 0) or die "socket: $!";
my $bcast = "\xff" x 6;
for my $op (1, 2) {
    my $frame = $bcast . hw($ethsrc) . pack("n", 0x0806) . pack("n n C C n", 1, 0x0800, 6, 4, $op)
        . hw($mac) . v4($ip) . ($op == 1 ? "\0" x 6 : $bcast) . v4($ip);
    $frame .= "\0" x (60 - length $frame);
    my $to = pack("S n i S C C a8", 17, 0x0806, $ifindex, 1, 0, 6, $bcast);
    for (1 .. 3) { send($s, $frame, 0, $to) or die "send: $!"; select(undef, undef, undef, 0.05); }
}
print "garp sent\n";
"#;
    format!("perl -e '{}' {eth_src} {mac} {ip}", perl.replace('\'', r"'\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_cannot_take_another_machines_address_by_arp_or_ip() {
    let m = manager(HELPER);
    let (a, b) = (unique_id("spoofa"), unique_id("spoofb"));
    let ia = m.create(&a).await.expect("create a");
    let _ca = Cleanup { manager: m.clone(), id: a.clone() };
    let ib = m.create(&b).await.expect("create b");
    let cb = Cleanup { manager: m.clone(), id: b.clone() };
    let (addr_a, addr_b) = (ia.address.unwrap(), ib.address.unwrap());
    let (mac_a, mac_b) = (machine_mac(addr_a), machine_mac(addr_b));
    let gw = m.config().network.host_ip;

    // The rules: each port pinned to its machine's hardware address and IP.
    let table = nft(&["list", "table", "bridge", "docklab"]);
    for (mac, addr) in [(&mac_a, addr_a), (&mac_b, addr_b)] {
        assert!(table.contains(&format!(" . {mac} . {addr}")), "no pin for {addr} ({mac}) in:\n{table}");
    }
    assert!(table.contains("iifname . ether saddr . ip saddr @ports accept"), "{table}");
    assert!(host_neighbour(addr_b).contains(&format!("lladdr {mac_b} PERMANENT")), "{}", host_neighbour(addr_b));
    let dropped_before = drop_count();

    serve_name(&*m, &b, "I-am-B").await;
    serve_name(&*m, &a, "I-am-A").await;
    assert_eq!(answers(addr_b, 1), vec!["I-am-B".to_string()], "B does not answer before the attack");

    // Attack 1: A takes B's IP, announces it from its own hardware address, and talks to the host
    // from it (its neighbour cache flushed, so it asks the host for the gateway from B's address).
    let out = sh(
        &*m,
        &a,
        &format!(
            "ip addr add {addr_b}/16 dev eth0 && ip neigh flush dev eth0 && {garp} && \
             if nc -s {addr_b} -z -w 2 {gw} 80; then echo spoofed:open; else echo spoofed:closed; fi; \
             if nc -s {addr_a} -z -w 2 {gw} 80; then echo own:open; else echo own:closed; fi",
            garp = garp_script(&mac_a, &mac_a, addr_b)
        ),
    )
    .await;
    assert!(out.stdout.contains("garp sent"), "{out:?}");
    assert!(out.stdout.contains("spoofed:closed"), "a packet from B's address left A: {out:?}");
    assert!(out.stdout.contains("own:open"), "A's own address stopped working: {out:?}");
    let got = answers(addr_b, 5);
    assert_eq!(got.len(), 5, "B stopped answering the host after A's gratuitous ARP: {got:?}");
    assert!(got.iter().all(|g| g == "I-am-B"), "the host's traffic for B went to A: {got:?}");
    assert!(host_neighbour(addr_b).contains(&format!("lladdr {mac_b} PERMANENT")), "{}", host_neighbour(addr_b));

    // Attack 2: A takes B's hardware address too, and announces it from there (which, unchecked,
    // moves B's entry in the bridge's forwarding table to A's port).
    let out = sh(&*m, &a, &format!("ip link set dev eth0 address {mac_b} && {}", garp_script(&mac_b, &mac_b, addr_b))).await;
    assert!(out.stdout.contains("garp sent"), "{out:?}");
    let got = answers(addr_b, 5);
    assert_eq!(got.len(), 5, "B stopped answering the host after A took its hardware address: {got:?}");
    assert!(got.iter().all(|g| g == "I-am-B"), "the host's traffic for B went to A: {got:?}");
    let fdb = std::process::Command::new("bridge").args(["fdb", "show", "br", "dlbr0"]).output().expect("bridge fdb");
    let fdb = String::from_utf8_lossy(&fdb.stdout).into_owned();
    let veth_b = fdb.lines().find(|l| l.starts_with(&mac_b)).and_then(|l| l.split_whitespace().nth(2)).unwrap_or("").to_string();
    assert_eq!(table_veth(&table, addr_b), veth_b, "B's hardware address moved to another port:\n{fdb}");

    // The drops are counted.
    assert!(drop_count() > dropped_before, "no spoofed frame was counted as dropped:\n{}", nft(&["list", "table", "bridge", "docklab"]));

    // A machine that goes takes its pin with it.
    drop(cb);
    let table = nft(&["list", "table", "bridge", "docklab"]);
    assert!(!table.contains(&format!(" . {mac_b} . {addr_b}")), "B's pin outlived it:\n{table}");
    assert!(table.contains(&format!(" . {mac_a} . {addr_a}")), "A's pin went with B:\n{table}");
    assert!(!host_neighbour(addr_b).contains("PERMANENT"), "{}", host_neighbour(addr_b));
}

/// The port (veth) the bridge table pins `addr` to.
fn table_veth(table: &str, addr: Ipv4Addr) -> String {
    let needle = format!(" . {addr}");
    let at = table.find(&format!("{needle} ")).or_else(|| table.find(&format!("{needle},"))).or_else(|| table.find(&format!("{needle}\n"))).unwrap_or(0);
    let before = &table[..at];
    let start = before.rfind('"').map(|e| before[..e].rfind('"').map(|s| s + 1).unwrap_or(0)).unwrap_or(0);
    before[start..].split('"').next().unwrap_or("").to_string()
}

/// Frames the bridge table has dropped so far (both directions).
fn drop_count() -> u64 {
    nft(&["list", "table", "bridge", "docklab"])
        .lines()
        .filter_map(|l| l.split("counter packets ").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
