//! Wrong answers that used to fool the grader, made for real in session machines (as root): each
//! must leave its check red, and the right answer next to it must turn it green.

use std::sync::Arc;
use std::time::Instant;

use docklab_server::grading::{BackendShell, Grader, Scope, TaskStatus};
use docklab_tests::{manager, sh, unique_id, Cleanup};
use lessons::{Catalog, Exercise};
use sandbox::{MachineBackend, SessionManager};

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");

/// A one-task exercise holding `checks`, written as in `exercise.toml`.
fn exercise(checks: &str) -> Exercise {
    let dir = std::env::temp_dir().join(unique_id("truth-content"));
    std::fs::create_dir_all(dir.join("day-24-a/exercises/e")).unwrap();
    std::fs::write(dir.join("day-24-a/lesson.md"), "+++\nday = 24\ntitle = \"t\"\nsummary = \"s\"\n+++\n").unwrap();
    let text = format!("title = \"E\"\nbrief = \"B\"\n[[tasks]]\nid = \"t\"\ntitle = \"T\"\nchecks = [\n{checks}\n]\n");
    std::fs::write(dir.join("day-24-a/exercises/e/exercise.toml"), text).unwrap();
    let catalog = Catalog::load(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    catalog.exercise("day-24/e").unwrap().clone()
}

struct Lab {
    m: Arc<SessionManager>,
    id: String,
    socket: std::path::PathBuf,
    _cleanup: Cleanup,
}

impl Lab {
    async fn new(prefix: &str) -> Lab {
        let m = manager(HELPER);
        m.health().await.expect("host ready for machines (run `docklab setup` first)");
        let id = unique_id(prefix);
        let info = m.create(&id).await.expect("create machine");
        let cleanup = Cleanup { manager: m.clone(), id: id.clone() };
        Lab { m, id, socket: info.docker_socket.clone(), _cleanup: cleanup }
    }

    async fn run(&self, script: &str) {
        let out = sh(&*self.m, &self.id, script).await;
        assert_eq!(out.exit_code, 0, "{script}: {out:?}");
    }

    /// Grades one check from a fresh grader (no memory of earlier passes).
    async fn grade(&self, check: &str) -> (TaskStatus, String) {
        let backend: Arc<dyn MachineBackend> = self.m.clone();
        let shell = Arc::new(BackendShell { backend, id: self.id.clone() });
        let g = Grader::connect(&self.id, &self.socket, shell, 0).expect("connect to the machine's engine");
        let started = Instant::now();
        let report = g.grade(&exercise(check), Scope::All).await.remove(0);
        println!("{:>5} ms  {check} -> {:?}: {}", started.elapsed().as_millis(), report.status, report.detail);
        (report.status, report.detail)
    }

    async fn fails(&self, check: &str) -> String {
        let (status, detail) = self.grade(check).await;
        assert_eq!(status, TaskStatus::Failed, "{check} should fail: {detail}");
        detail
    }

    async fn passes(&self, check: &str) {
        let (status, detail) = self.grade(check).await;
        assert_eq!(status, TaskStatus::Passed, "{check} should pass: {detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_is_probed_with_the_graders_own_tools_at_every_address() {
    let lab = Lab::new("truth-net").await;
    let apart = r#"{ kind = "not_reachable", from = "login", to = "finance", by = "ip" }"#;
    let reach = r#"{ kind = "reachable", from = "login", to = "finance", by = "ip" }"#;
    lab.run("docker run -d --name finance busybox sleep 3600 && docker run -d --name login busybox sleep 3600").await;
    let why = lab.fails(apart).await;
    assert!(why.starts_with("login reaches finance at 172.17.") && why.ends_with("they should be kept apart"), "{why}");
    lab.passes(reach).await;

    // The learner's container's ping is replaced by one that always fails (and the machine's own
    // ping too): the grader does not use either, so the two are still not kept apart.
    lab.run("docker exec login sh -c 'rm -f /bin/ping && printf \"#!/bin/sh\\nexit 1\\n\" > /bin/ping && chmod +x /bin/ping' && cp /bin/false /usr/bin/ping").await;
    let out = sh(&*lab.m, &lab.id, "docker exec login ping -c 1 -W 1 finance").await;
    assert_ne!(out.exit_code, 0, "the fake ping fails");
    let why = lab.fails(apart).await;
    assert!(why.ends_with("they should be kept apart"), "{why}");

    // finance moves to a network of its own, but stays on the default bridge too: its address
    // on a-net (first in name order) is out of reach, the one on bridge is not.
    lab.run("docker network create a-net && docker network connect a-net finance").await;
    let why = lab.fails(apart).await;
    assert!(why.contains("(its address on bridge)") && why.ends_with("they should be kept apart"), "{why}");

    // The right answer: off the bridge. Every address is out of reach now.
    lab.run("docker network disconnect bridge finance").await;
    lab.passes(apart).await;
    let why = lab.fails(reach).await;
    assert!(why.starts_with("login cannot reach finance: no answer from 172."), "{why}");

    // By name: resolved by the container's own resolver (Docker's DNS on a-net), and only
    // counted when the name means finance.
    let by_name = r#"{ kind = "reachable", from = "auditor", to = "finance" }"#;
    lab.run("docker run -d --name auditor --network a-net busybox sleep 3600").await;
    lab.passes(by_name).await;
    // On the default bridge, names do not resolve (its resolver is Docker's default, outside).
    let why = lab.fails(r#"{ kind = "reachable", from = "login", to = "auditor" }"#).await;
    assert!(why.starts_with("login cannot reach auditor by name: the name auditor does not resolve in login"), "{why}");
    // A name that means another container does not reach finance.
    lab.run("docker run -d --name decoy --network a-net busybox sleep 3600 && docker run -d --name spy --network a-net --add-host finance:$(docker inspect -f '{{(index .NetworkSettings.Networks \"a-net\").IPAddress}}' decoy) busybox sleep 3600").await;
    let why = lab.fails(r#"{ kind = "reachable", from = "spy", to = "finance" }"#).await;
    assert!(why.starts_with("in spy the name finance means 172.") && why.contains("which is not container finance"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_port_counts_only_for_the_container_named() {
    let lab = Lab::new("truth-port").await;
    let check = r#"{ kind = "port_http", port = 8080, container = "site", contains = "hello" }"#;
    // The container the task names runs without -p; another one publishes 8080 with the text.
    lab.run("mkdir -p /root/www && echo hello > /root/www/index.html && docker run -d --name site -v /root/www:/www busybox httpd -f -p 80 -h /www && docker run -d --name other -p 8080:80 -v /root/www:/www busybox httpd -f -p 80 -h /www && sleep 1").await;
    let why = lab.fails(check).await;
    assert_eq!(why, "container site does not publish port 8080 (other does) (docker run -p 8080:…)");
    lab.run("docker rm -f other site && docker run -d --name site -p 8080:80 -v /root/www:/www busybox httpd -f -p 80 -h /www && sleep 1").await;
    lab.passes(check).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_known_by_their_content_not_their_names() {
    let lab = Lab::new("truth-img").await;
    // busybox retagged as nginx is not nginx, whatever `docker ps` calls it.
    let nginx = r#"{ kind = "container_state", container = "hostweb", state = "running", image = "nginx" }"#;
    lab.run("docker pull -q busybox && docker tag busybox nginx && docker run -d --name hostweb nginx sleep 3600").await;
    let why = lab.fails(nginx).await;
    assert_eq!(why, "container hostweb was created from an image tagged nginx, but that image is not nginx: it is docklab's busybox under another name");
    let why = lab.fails(r#"{ kind = "image_exists", image = "nginx" }"#).await;
    assert_eq!(why, "the image tagged nginx is not nginx: it is docklab's busybox under another name");
    lab.run("docker rm -f hostweb && docker rmi nginx && docker pull -q nginx && docker run -d --name hostweb nginx").await;
    lab.passes(nginx).await;
    lab.passes(r#"{ kind = "image_exists", image = "nginx" }"#).await;

    // A shell copied out of /bin, or renamed, still makes an image with a shell.
    lab.run(
        "mkdir -p /root/sh && cd /root/sh \
         && printf 'FROM busybox AS src\\nFROM scratch\\nCOPY --from=src /bin/busybox /opt/x/sh\\n' > Dockerfile.copied \
         && docker build -q -t hidden:1 -f Dockerfile.copied . \
         && printf 'FROM busybox AS src\\nFROM scratch\\nCOPY --from=src /bin/busybox /usr/local/bin/tool\\n' > Dockerfile.renamed \
         && docker build -q -t hidden:2 -f Dockerfile.renamed . \
         && printf 'FROM scratch\\nCOPY Dockerfile.copied /note.txt\\n' > Dockerfile.clean \
         && docker build -q -t clean:1 -f Dockerfile.clean .",
    )
    .await;
    let why = lab.fails(r#"{ kind = "image_no_shell", image = "hidden:1" }"#).await;
    assert!(why.starts_with("hidden:1 has a shell at /opt/x/sh;"), "{why}");
    let why = lab.fails(r#"{ kind = "image_no_shell", image = "hidden:2" }"#).await;
    assert!(why.starts_with("hidden:2 has a shell at /usr/local/bin/tool (BusyBox);"), "{why}");
    lab.passes(r#"{ kind = "image_no_shell", image = "clean:1" }"#).await;

    // The base, by layers: FROM scratch whatever else is tagged; a base under another name is
    // still that base; an image retagged as golang is not golang.
    lab.run(
        "docker tag clean:1 other:1 && docker tag busybox mybox \
         && printf 'FROM mybox\\nCMD [\"echo\", \"hi\"]\\n' | docker build -q -t onbox:1 - \
         && docker tag busybox golang:1.19 \
         && printf 'FROM golang:1.19\\nRUN echo built > /b\\n' | docker build -q -t fake-go:1 -",
    )
    .await;
    lab.passes(r#"{ kind = "image_base", image = "clean:1", base = "scratch" }"#).await;
    lab.passes(r#"{ kind = "image_base", image = "onbox:1", base = "busybox" }"#).await;
    let why = lab.fails(r#"{ kind = "image_base", image = "onbox:1", base = "scratch" }"#).await;
    assert_eq!(why, "onbox:1 is built on busybox; its final stage should start FROM scratch");
    let why = lab.fails(r#"{ kind = "image_base", image = "fake-go:1", base = "golang:1.19" }"#).await;
    assert_eq!(why, "fake-go:1 is built on busybox; it should be built on golang:1.19");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dockerfile_counts_only_with_the_image_it_built() {
    let lab = Lab::new("truth-df").await;
    let check = r#"{ kind = "dockerfile", path = "~/shrink/Dockerfile", min_stages = 2, copy_from = true, image = "slim:1" }"#;
    // A right multi-stage Dockerfile, left unbuilt; the image comes single-stage from another file.
    lab.run(
        "docker pull -q busybox && mkdir -p /root/shrink && cd /root/shrink \
         && printf 'FROM busybox AS build\\nRUN echo hi > /msg\\n\\nFROM scratch\\nCOPY --from=build /msg /msg\\n' > Dockerfile \
         && printf 'FROM busybox\\nRUN echo hi > /msg\\n' > Dockerfile.single \
         && docker build -q -t slim:1 -f Dockerfile.single .",
    )
    .await;
    let why = lab.fails(check).await;
    assert_eq!(why, "slim:1 was not built from ~/shrink/Dockerfile: the file's last stage is COPY --from=build /msg /msg, but slim:1 was made by RUN echo hi > /msg");
    lab.run("cd /root/shrink && docker build -q -t slim:1 .").await;
    lab.passes(check).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_that_outlived_its_container_is_read_in_the_volume() {
    let lab = Lab::new("truth-vol").await;
    // day 29 keep-data, "read-back".
    let read_back = r#"{ kind = "volume_mounted", container = "reader", path = "/data", as = "volume", source = "guestbook" },
  { kind = "container_logs", container = "reader", contains = "first entry" },
  { kind = "file_content", volume = "guestbook", path = "entries.txt", contains = "first entry" }"#;
    // The writer's volume is thrown away and recreated empty; the reader only prints the line.
    lab.run(
        "docker run --name writer -v guestbook:/data busybox sh -c 'echo first entry >> /data/entries.txt' \
         && docker rm writer && docker volume rm guestbook && docker volume create guestbook \
         && docker run --name reader -v guestbook:/data busybox echo first entry",
    )
    .await;
    let why = lab.fails(read_back).await;
    assert_eq!(why, "volume guestbook has no file entries.txt");
    lab.run(
        "docker rm reader && docker run --name writer -v guestbook:/data busybox sh -c 'echo first entry >> /data/entries.txt' \
         && docker rm writer && docker run --name reader -v guestbook:/data busybox cat /data/entries.txt",
    )
    .await;
    lab.passes(read_back).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_networking_exercise_is_graded_in_one_probe_deadline() {
    let lab = Lab::new("truth-matrix").await;
    lab.run(
        "docker network create frontend-net >/dev/null && docker network create backend-net >/dev/null \
         && docker run -d --name frontend --network frontend-net busybox sleep 3600 >/dev/null \
         && docker run -d --name db --network backend-net busybox sleep 3600 >/dev/null \
         && docker run -d --name backend --network frontend-net busybox sleep 3600 >/dev/null \
         && docker network connect backend-net backend",
    )
    .await;
    let matrix = r#"{ kind = "reachable", from = "frontend", to = "backend", by = "name" },
  { kind = "reachable", from = "backend", to = "frontend", by = "name" },
  { kind = "reachable", from = "backend", to = "db", by = "name" },
  { kind = "reachable", from = "db", to = "backend", by = "name" },
  { kind = "not_reachable", from = "frontend", to = "db", by = "ip" },
  { kind = "not_reachable", from = "frontend", to = "db", by = "name" },
  { kind = "not_reachable", from = "db", to = "frontend", by = "ip" }"#;
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        lab.passes(matrix).await;
        times.push(started.elapsed());
    }
    times.sort();
    println!("three tiers, seven probes: fastest {:?}, slowest {:?}", times[0], times[4]);
}
