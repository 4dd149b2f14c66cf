//! Half-open requests against every listener of a real server (SECURITY-TESTS.md case 30): the
//! API on loopback, and on the session bridge the registry (80, 443) and the package proxy (3142).
//! 500 connections that send half a request head from one address: the server's descriptors stay
//! bounded (at most the per-address cap is accepted), a request from another address is answered
//! meanwhile, and every one of the 500 is closed by the server once the head timeout passes.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use docklab_tests::server::{curl, free_port, start_server_with};

const HALF_OPEN: usize = 500;

/// Open descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// A TCP connection to `to` from the loopback address `from` (the whole of 127/8 is this host).
fn connect_from(rt: &tokio::runtime::Runtime, from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::V4(SocketAddrV4::new(from, 0)))?;
        let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(to)).await.map_err(std::io::Error::other)??;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    })
}

/// Opens `HALF_OPEN` connections from `from`, each sending the start of a request head and
/// never its end (for TLS, the start of a ClientHello).
fn half_open(from: Ipv4Addr, to: SocketAddr, tls: bool) -> Vec<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut held = Vec::new();
    for _ in 0..HALF_OPEN {
        let Ok(mut s) = connect_from(&rt, from, to) else { continue };
        let start: &[u8] = if tls { &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01] } else { b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " };
        let _ = s.write_all(start);
        held.push(s);
    }
    held
}

/// How many of `held` the server has closed (EOF or reset) within `within`.
fn closed_within(held: &mut [TcpStream], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut closed = vec![false; held.len()];
    while Instant::now() < deadline && closed.iter().any(|c| !c) {
        for (s, c) in held.iter_mut().zip(closed.iter_mut()) {
            if *c {
                continue;
            }
            s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(0) => *c = true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => *c = true,
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    closed.iter().filter(|c| **c).count()
}

/// The pid of the process listening on `port` (on any address), from `ss`.
fn listener_pid(port: u16) -> Option<u32> {
    let out = std::process::Command::new("ss").args(["-Hltnp", &format!("sport = :{port}")]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("pid=")? + 4;
    text[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// One listener under attack: descriptors bounded, others still served, all closed in time.
fn attack(what: &str, pid: u32, to: SocketAddr, tls: bool, cap: usize, timeout: Duration, still_served: &dyn Fn() -> bool) {
    let before = fds(pid);
    let started = Instant::now();
    let mut held = half_open(Ipv4Addr::new(127, 0, 0, 2), to, tls);
    assert!(held.len() >= HALF_OPEN - 10, "{what}: only {} connections opened", held.len());
    std::thread::sleep(Duration::from_millis(500));
    let during = fds(pid);
    eprintln!("{what}: {} half-open connections from one address: server descriptors {before} -> {during}", held.len());
    assert!(
        during <= before + cap + 16,
        "{what}: {} half-open connections from one address took the server from {before} to {during} descriptors (cap {cap})",
        held.len()
    );
    assert!(still_served(), "{what}: a request from another address was not answered while one address held {HALF_OPEN}");
    let closed = closed_within(&mut held, timeout + Duration::from_secs(10));
    eprintln!("{what}: {closed} of {} closed by the server after {:?}", held.len(), started.elapsed());
    assert_eq!(closed, held.len(), "{what}: connections left open past the {timeout:?} head timeout");
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    let after = fds(pid);
    assert!(after <= before + 16, "{what}: the server holds {after} descriptors after the attack, {before} before");
}

#[test]
fn half_open_requests_cost_bounded_descriptors_on_every_listener_and_are_closed() {
    let port = free_port();
    // No machines: the listeners are what is attacked.
    let server = start_server_with(port, &["--warm-machines", "0", "--end-sessions-on-exit"]);
    let pid = server.0.id();

    let api = SocketAddr::from(([127, 0, 0, 1], port));
    let healthy = || curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "/healthz"]) == "200";
    attack("API", pid, api, false, sandbox::listen::Limits::API.per_client, sandbox::listen::Limits::API.header_timeout, &healthy);

    // The bridge services: whoever serves them on this host (the server above, or another test
    // process's, which runs the same code).
    let bridge = Ipv4Addr::new(10, 200, 0, 1);
    let limits = sandbox::listen::Limits::BRIDGE;
    let cases: [(&str, u16, bool, &str); 3] = [
        ("registry (80)", 80, false, "http://10.200.0.1/v2/"),
        ("registry over TLS (443)", 443, true, "https://10.200.0.1/v2/"),
        ("package proxy (3142)", 3142, false, "http://10.200.0.1:3142/debian/dists/bookworm/Release.gpg-not-here"),
    ];
    for (what, service_port, tls, probe) in cases {
        let owner = listener_pid(service_port).unwrap_or_else(|| panic!("nothing listens on {bridge}:{service_port}"));
        let answered = || {
            // From the host's loopback: another address than the attacker's.
            let out = std::process::Command::new("curl")
                .args(["-sk", "-m", "10", "--interface", "127.0.0.1", "-o", "/dev/null", "-w", "%{http_code}", probe])
                .output()
                .unwrap();
            let code = String::from_utf8_lossy(&out.stdout).to_string();
            code != "000" && !code.is_empty()
        };
        attack(what, owner, SocketAddr::from((bridge, service_port)), tls, limits.per_client, limits.header_timeout.max(limits.handshake_timeout), &answered);
    }
}

/// The finding as reported: a machine's root opens 500 half-open requests to the package proxy
/// and the registry from inside its machine. The server keeps at most the per-machine cap of
/// them, another machine is served meanwhile, and they are all gone after the head timeout.
#[test]
fn a_machine_holding_half_open_requests_gets_its_cap_and_another_machine_is_served() {
    use docklab_tests::server::{create_session, exec};
    let port = free_port();
    let server = start_server_with(port, &["--warm-machines", "0", "--end-sessions-on-exit"]);
    let (attacker, attacker_token) = create_session(port, None);
    let (other, other_token) = create_session(port, None);
    // Whoever serves the bridge on this host (this test's server, or another test process's).
    let pid = listener_pid(3142).expect("the package proxy listens");
    let _ = &server;
    let before = fds(pid);

    // In the background, so the exec returns while the connections stay open for 60 s.
    let script = r#"nohup bash -c '
        for i in $(seq 250); do exec {fd}<>/dev/tcp/10.200.0.1/3142 && printf "GET / HTTP/1.1\r\nHost: x\r\n" >&$fd; done
        for i in $(seq 250); do exec {fd}<>/dev/tcp/10.200.0.1/80 && printf "GET /v2/ HTTP/1.1\r\nHost: x\r\n" >&$fd; done
        sleep 60' >/dev/null 2>&1 &
        sleep 5; ls /proc/$!/fd | wc -l"#;
    let out = exec(port, &attacker, &attacker_token, script);
    let opened: usize = out["stdout"].as_str().unwrap_or("0").trim().parse().unwrap_or(0);
    let during = fds(pid);
    eprintln!("a machine opened {opened} descriptors of half-open requests; server descriptors {before} -> {during}");
    assert!(opened >= 400, "the machine could not open its connections: {out}");
    // 64 per machine on each listener: the proxy's and the registry's.
    let cap = sandbox::listen::Limits::BRIDGE.per_client;
    assert!(during <= before + 2 * cap + 16, "500 half-open requests from one machine took the server from {before} to {during} descriptors");

    let probe = exec(
        port,
        &other,
        &other_token,
        r#"bash -c 'exec 3<>/dev/tcp/10.200.0.1/80 && printf "GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" >&3 && timeout 10 head -1 <&3'"#,
    );
    let said = probe["stdout"].as_str().unwrap_or("");
    assert!(said.starts_with("HTTP/1.1 200"), "another machine was not served by the registry meanwhile: {probe}");

    let timeout = sandbox::listen::Limits::BRIDGE.header_timeout;
    std::thread::sleep(timeout + Duration::from_secs(3));
    let after = fds(pid);
    eprintln!("after the {timeout:?} head timeout: server descriptors {after}");
    assert!(after <= before + 8, "the server still holds {after} descriptors ({before} before) past the head timeout");
}
