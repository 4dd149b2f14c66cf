//! The machines' network, for real: what a machine can and cannot reach, and Docker networking
//! inside a machine working fully. SECURITY-TESTS.md cases 4, 12 and 13.

use std::net::TcpListener;

use docklab_tests::{manager, sh, traces_after_removal, unique_id, Cleanup};
use sandbox::MachineBackend;

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");

/// The host's rules outside docklab's own tables, to check a session changes none of them.
fn host_rules_outside_docklab() -> String {
    let out = std::process::Command::new("nft").args(["list", "ruleset"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut keep = Vec::new();
    let mut skipping = false;
    for l in text.lines() {
        if l.starts_with("table inet docklab") || l.starts_with("table bridge docklab") {
            skipping = true;
        } else if skipping && l == "}" {
            skipping = false;
            continue;
        }
        if !skipping {
            keep.push(l);
        }
    }
    keep.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reachability_matrix_from_a_machine_and_from_a_container_inside_it() {
    let m = manager(HELPER);
    let bridge_mac = || std::fs::read_to_string("/sys/class/net/dlbr0/address").unwrap_or_default();
    let mac_before = bridge_mac();
    let (a, b) = (unique_id("neta"), unique_id("netb"));
    let ia = m.create(&a).await.expect("create a");
    let _ca = Cleanup { manager: m.clone(), id: a.clone() };
    let ib = m.create(&b).await.expect("create b");
    let _cb = Cleanup { manager: m.clone(), id: b.clone() };
    let rules_before = host_rules_outside_docklab();
    // Machines coming and going never change the gateway's hardware address (machines cache it).
    assert_eq!(bridge_mac(), mac_before, "the bridge's address changed when machines joined it");
    let third = unique_id("netc");
    m.create(&third).await.expect("create c");
    m.destroy(&third).await.expect("destroy c");
    assert_eq!(bridge_mac(), mac_before, "the bridge's address changed when a machine left it");

    let (addr_a, addr_b) = (ia.address.unwrap(), ib.address.unwrap());
    assert_ne!(addr_a, addr_b);
    let gw = m.config().network.host_ip;

    // A host service that is not docklab's: listening on every address, port chosen by the kernel.
    let host_service = TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port = host_service.local_addr().unwrap().port();
    // A docklab session-facing port (the package proxy's), if no real proxy holds it right now.
    let allowed = TcpListener::bind((gw, 3142)).ok();
    std::thread::spawn(move || {
        for s in host_service.incoming().flatten() {
            drop(s);
        }
    });
    if let Some(l) = allowed {
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                drop(s);
            }
        });
    }

    // `nc -z` connects and closes: exit 0 means the port was reachable.
    let probe = |target: String| format!("if timeout 3 nc -z -w 2 {target}; then echo open; else echo closed; fi");
    let cases = [
        (format!("{gw} {host_port}"), "closed", "a host service on the bridge address"),
        (format!("127.0.0.1 {host_port}"), "closed", "the host's loopback (it is the machine's own here)"),
        (format!("{addr_b} 22"), "closed", "another machine"),
        ("169.254.169.254 80".to_string(), "closed", "the cloud metadata address"),
        ("1.1.1.1 443".to_string(), "closed", "the internet"),
        (format!("{gw} 3142"), "open", "docklab's package proxy port"),
    ];
    for (target, want, what) in &cases {
        if *want == "open" && TcpListener::bind((gw, 3142)).is_ok() {
            continue; // nobody listens there: nothing to reach
        }
        let out = sh(&*m, &a, &probe(target.clone())).await;
        assert_eq!(out.stdout.trim(), *want, "from machine a to {what} ({target}): {out:?}");
    }
    // Machine b cannot be pinged either, from the machine or from a container inside it.
    let out = sh(&*m, &a, &format!("ping -c1 -W1 {addr_b} >/dev/null 2>&1 && echo reached || echo blocked")).await;
    assert_eq!(out.stdout.trim(), "blocked");
    let out = sh(&*m, &a, &format!("docker run --rm busybox sh -c 'ping -c1 -W1 {addr_b} >/dev/null 2>&1 && echo reached || echo blocked; nc -w 2 {gw} {host_port} </dev/null && echo reached || echo blocked'")).await;
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), vec!["blocked", "blocked"], "from a container in a: {out:?}");
    // The gateway answers pings: the machine is on the network, not cut off.
    let out = sh(&*m, &a, &format!("ping -c1 -W1 {gw} >/dev/null && echo up")).await;
    assert_eq!(out.stdout.trim(), "up");

    assert_eq!(rules_before, host_rules_outside_docklab(), "a session changed the host's firewall rules");
    m.destroy(&a).await.unwrap();
    m.destroy(&b).await.unwrap();
    assert!(traces_after_removal(&a, ia.uid_base).is_empty());
    // The machine's veth went with it.
    let links = String::from_utf8_lossy(&std::process::Command::new("ip").args(["-o", "link"]).output().unwrap().stdout).to_string();
    assert!(!links.contains(&format!("dlv{}:", (ia.uid_base - 200_000) / 65536)), "veth left behind: {links}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_networking_inside_a_machine_works_fully() {
    let m = manager(HELPER);
    let id = unique_id("dnet");
    let info = m.create(&id).await.expect("create");
    let _c = Cleanup { manager: m.clone(), id: id.clone() };
    let script = r#"
set -e
docker network create secure-network >/dev/null
docker run -d --name login --network secure-network busybox sleep 300 >/dev/null
docker run -d --name finance --network secure-network busybox sleep 300 >/dev/null
docker run -d --name logout busybox sleep 300 >/dev/null
# DNS by name on a user-defined bridge
docker exec login ping -c1 -W2 finance >/dev/null && echo dns-ok
# no DNS by name on the default bridge
docker exec logout ping -c1 -W1 finance >/dev/null 2>&1 && echo leak || echo no-dns-on-default
# isolation between bridges, even by IP
FIN=$(docker inspect -f '{{(index .NetworkSettings.Networks "secure-network").IPAddress}}' finance)
docker exec logout ping -c1 -W1 $FIN >/dev/null 2>&1 && echo leak || echo isolated
# host and none
docker run --rm --network host busybox ip -o link | grep -q eth0 && echo host-ok
docker run --rm --network none busybox ip -o link | grep -c -v ': lo' | grep -qx 0 && echo none-ok
# a published port answers on the machine's address
mkdir -p /tmp/www && echo hello-port > /tmp/www/index.html
docker run -d --name web -p 8080:80 -v /tmp/www:/www busybox httpd -f -p 80 -h /www >/dev/null
sleep 1
"#;
    let out = sh(&*m, &id, script).await;
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        vec!["dns-ok", "no-dns-on-default", "isolated", "host-ok", "none-ok"],
        "{out:?}"
    );
    // From the host (as the port preview proxy will), the published port answers.
    let addr = info.address.unwrap();
    let body = std::process::Command::new("curl").args(["-s", "-m", "5", &format!("http://{addr}:8080/")]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&body.stdout).trim(), "hello-port");
    m.destroy(&id).await.unwrap();
}
