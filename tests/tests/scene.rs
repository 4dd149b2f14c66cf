//! The live visuals' scene of a real session, through a real server: what the learner made
//! (volumes named and anonymous, a bind mount, networks, containers in every network mode, an
//! image they built) shows in `GET /api/sessions/{id}/scene` and arrives as `scene` frames on the
//! terminal socket; and the reachability the scene claims matches real pings between the
//! containers, pair by pair.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use docklab_server::visuals::{MountKind, NetworkKind, ReachBy, Scene};
use docklab_tests::server::{create_session, curl, exec, free_port, start_server};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

fn run(port: u16, id: &str, token: &str, script: &str) -> String {
    // Blocking (curl): keep it off the worker that reads the terminal socket.
    let out = tokio::task::block_in_place(|| exec(port, id, token, script));
    assert_eq!(out["exit_code"], 0, "{script}\n{out}");
    out["stdout"].as_str().unwrap_or_default().to_owned()
}

/// Reads the terminal socket all along (so its pings are answered while the test waits on
/// commands) and hands over every `scene` frame.
fn follow_scenes(mut ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>) -> mpsc::UnboundedReceiver<Scene> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Text(text) = message {
                let msg: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                if msg["type"] == "scene" && tx.send(serde_json::from_value(msg["scene"].clone()).unwrap()).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Waits for a `scene` frame that satisfies `want`.
async fn next_scene(scenes: &mut mpsc::UnboundedReceiver<Scene>, want: impl Fn(&Scene) -> bool) -> Scene {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), scenes.recv()).await {
            Ok(Some(scene)) if want(&scene) => return scene,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the terminal socket closed"),
            Err(_) => panic!("no scene frame as wanted within 60 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scene_shows_the_learners_session_and_its_reachability_matches_real_pings() {
    let port = free_port();
    let _server = start_server(port);
    let (id, token) = create_session(port, Some("day-28/custom-bridge"));
    let url = format!("ws://127.0.0.1:{port}/api/sessions/{id}/terminal?token={token}");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("terminal websocket");
    let mut scenes = follow_scenes(ws);

    // The exercise's own setup may have made things; ours all start with `sc-`.
    run(
        port,
        &id,
        &token,
        "set -e
         docker volume create sc-data >/dev/null
         docker network create sc-net >/dev/null
         mkdir -p /root/site && echo hello > /root/site/index.html
         docker run -d --name sc-a --network sc-net -v sc-data:/data busybox sleep 600 >/dev/null
         docker run -d --name sc-b --network sc-net busybox sleep 600 >/dev/null
         docker run -d --name sc-c busybox sleep 600 >/dev/null
         docker run -d --name sc-d -v /cache -v /root/site:/site:ro busybox sleep 600 >/dev/null
         docker run -d --name sc-h --network host busybox sleep 600 >/dev/null
         docker run -d --name sc-n --network none busybox sleep 600 >/dev/null
         docker create --name sc-stopped -v sc-data:/data busybox true >/dev/null
         mkdir -p /root/sc-img && cd /root/sc-img
         printf 'FROM busybox\\nRUN echo built-here > /message\\nCMD [\"cat\", \"/message\"]\\n' > Dockerfile
         docker build -q -t sc-img:1 . >/dev/null",
    );

    // Pushed: a scene frame with all of it arrives without asking.
    let pushed = next_scene(&mut scenes, |s| {
        s.containers.iter().filter(|c| c.name.starts_with("sc-")).count() == 7 && s.images.iter().any(|i| i.tags.contains(&"sc-img:1".into()))
    })
    .await;

    // On demand: the route answers the same.
    let auth = format!("Authorization: Bearer {token}");
    let body = tokio::task::block_in_place(|| curl(port, &["-H", &auth, &format!("/api/sessions/{id}/scene")]));
    let scene: Scene = serde_json::from_str(&body).unwrap_or_else(|e| panic!("scene answer {body:?}: {e}"));
    assert_eq!(scene, pushed, "the pushed scene and the route's agree while nothing changes");
    let no_token = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", &format!("/api/sessions/{id}/scene")]);
    assert_eq!(no_token, "401");

    // Volumes: who holds sc-data (a stopped container too), the anonymous one, the bind mount.
    let data = scene.volumes.iter().find(|v| v.name == "sc-data").expect("sc-data in the scene");
    assert!(!data.anonymous);
    assert_eq!(data.used_by, vec!["sc-a".to_string(), "sc-stopped".to_string()]);
    let container = |name: &str| scene.containers.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("{name} in the scene"));
    let d = container("sc-d");
    let cache = d.mounts.iter().find(|m| m.destination == "/cache").expect("sc-d's /cache mount");
    assert_eq!(cache.kind, MountKind::Volume);
    let anonymous = scene.volumes.iter().find(|v| v.name == cache.source).expect("the anonymous volume in the list");
    assert!(anonymous.anonymous && anonymous.used_by == vec!["sc-d".to_string()], "{anonymous:?}");
    let site = d.mounts.iter().find(|m| m.destination == "/site").expect("sc-d's bind mount");
    assert_eq!((site.kind, site.source.as_str(), site.read_only), (MountKind::Bind, "/root/site", true));
    assert_eq!(container("sc-stopped").state, "created");
    assert_eq!(container("sc-a").state, "running");

    // Networks: each container where it was put.
    let network = |name: &str| scene.networks.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("network {name}"));
    let ours = |names: &[String]| names.iter().filter(|n| n.starts_with("sc-")).cloned().collect::<Vec<_>>();
    assert_eq!(network("sc-net").kind, NetworkKind::UserDefined);
    assert!(network("sc-net").subnet.is_some());
    assert_eq!(ours(&network("sc-net").containers), vec!["sc-a", "sc-b"]);
    assert_eq!(network("bridge").kind, NetworkKind::Default);
    assert_eq!(ours(&network("bridge").containers), vec!["sc-c", "sc-d", "sc-stopped"]);
    assert_eq!(ours(&network("host").containers), vec!["sc-h"]);
    assert_eq!(ours(&network("none").containers), vec!["sc-n"]);

    // Images: the one built here, on busybox, with its RUN layer; busybox is one it was given.
    let image = |tag: &str| scene.images.iter().find(|i| i.tags.iter().any(|t| t == tag)).unwrap_or_else(|| panic!("image {tag}"));
    let built = image("sc-img:1");
    assert_eq!((built.base.as_deref(), built.pulled), (Some("busybox:latest"), false), "{built:?}");
    assert!(built.layers.iter().any(|l| l.instruction == "RUN echo built-here > /message" && l.size > 0), "{:?}", built.layers);
    assert_eq!(built.layers[0].instruction, r#"CMD ["cat" "/message"]"#, "newest first, as docker history: {:?}", built.layers);
    assert!(image("busybox:latest").pulled);
    assert!(built.size > image("busybox:latest").size);

    // Reachability: what the scene claims, against real pings, for every ordered pair.
    let running = ["sc-a", "sc-b", "sc-c", "sc-d", "sc-h", "sc-n"];
    let claims: BTreeMap<(&str, &str), ReachBy> =
        scene.reach.iter().filter_map(|r| Some(((*running.iter().find(|n| **n == r.from)?, *running.iter().find(|n| **n == r.to)?), r.by))).collect();
    let mut checked = 0;
    for from in running {
        // One exec per source: for each target, try its name, then its addresses (a host-networked
        // target is tried at the source's gateways, where the machine answers for it).
        let mut script = String::from("set +e\nping1() { docker exec \"$1\" timeout 3 ping -c 1 -W 1 \"$2\" >/dev/null 2>&1 && echo yes || echo no; }\n");
        script.push_str(&format!("gw=$(docker inspect -f '{{{{range .NetworkSettings.Networks}}}}{{{{.Gateway}}}} {{{{end}}}}' {from})\n"));
        for to in running.iter().filter(|t| **t != from) {
            script.push_str(&format!(
                "ips=$(docker inspect -f '{{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}} {{{{end}}}}' {to})\n\
                 [ {to} = sc-h ] && ips=$gw\n\
                 ip=no; for a in $ips; do [ \"$(ping1 {from} $a)\" = yes ] && ip=yes; done\n\
                 echo \"{to} $(ping1 {from} {to}) $ip\"\n"
            ));
        }
        let out = run(port, &id, &token, &script);
        for line in out.lines() {
            let [to, by_name, by_ip] = line.split_whitespace().collect::<Vec<_>>()[..] else { panic!("{line:?}") };
            let claim = claims.get(&(from, to)).copied();
            let real = match (by_name, by_ip) {
                ("yes", "yes") => Some(ReachBy::Name),
                ("no", "yes") if from == "sc-h" || to == "sc-h" => Some(ReachBy::Machine),
                ("no", "yes") => Some(ReachBy::Ip),
                ("no", "no") => None,
                other => panic!("{from} → {to}: the name answers but no address does: {other:?}"),
            };
            assert_eq!(claim, real, "{from} → {to}: the scene says {claim:?}, pings say name {by_name}, address {by_ip}");
            checked += 1;
        }
    }
    assert_eq!(checked, running.len() * (running.len() - 1));

    // A change arrives as a new frame: time from sending the command (exec round trip included).
    let started = Instant::now();
    run(port, &id, &token, "docker network create sc-late >/dev/null");
    next_scene(&mut scenes, |s| s.networks.iter().any(|n| n.name == "sc-late")).await;
    println!("`docker network create` through the exec API → scene frame: {} ms", started.elapsed().as_millis());

    let code = curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H", &auth, &format!("/api/sessions/{id}")]);
    assert_eq!(code, "204");
}
