//! Every check kind against recorded-style Docker 20.10 answers (API 1.41), served by a fake
//! engine on a real unix socket, so the real client (bollard) parses them; probes inside the
//! machine go to a scripted fake shell.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use lessons::checks::{Address, EventObject, MountFlag, MountType};
use lessons::Check;
use sandbox::{ExecOutput, SandboxError};
use serde_json::{json, Value};

use super::*;

type Routes = Arc<Mutex<HashMap<String, (u16, Vec<u8>, &'static str)>>>;

/// A Docker engine that answers from a table of paths (without the `/v1.41` prefix).
struct FakeEngine {
    routes: Routes,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

async fn answer(State(routes): State<Routes>, request: Request<Body>) -> Response {
    let path = request.uri().path().trim_start_matches("/v1.41").to_owned();
    match routes.lock().unwrap().get(&path) {
        Some((status, body, content_type)) => {
            (StatusCode::from_u16(*status).unwrap(), [("content-type", *content_type)], body.clone()).into_response()
        }
        None => (StatusCode::NOT_FOUND, [("content-type", "application/json")], json!({"message": format!("No such object: {path}")}).to_string())
            .into_response(),
    }
}

impl FakeEngine {
    async fn start() -> FakeEngine {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let routes: Routes = Arc::default();
        let app = Router::new().fallback(answer).with_state(routes.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeEngine { routes, socket, _dir: dir }
    }

    fn json(&self, path: &str, value: Value) {
        self.routes.lock().unwrap().insert(path.into(), (200, value.to_string().into_bytes(), "application/json"));
    }

    fn raw(&self, path: &str, body: Vec<u8>, content_type: &'static str) {
        self.routes.lock().unwrap().insert(path.into(), (200, body, content_type));
    }

    fn remove(&self, path: &str) {
        self.routes.lock().unwrap().remove(path);
    }
}

/// A machine whose scripts answer by the first pattern they contain.
#[derive(Default)]
struct FakeShell {
    answers: Mutex<Vec<(String, ExecOutput)>>,
    ran: Mutex<Vec<String>>,
}

fn out(code: i32, stdout: &str, stderr: &str) -> ExecOutput {
    ExecOutput { exit_code: code, stdout: stdout.into(), stderr: stderr.into(), timed_out: false }
}

impl FakeShell {
    fn on(&self, pattern: &str, output: ExecOutput) {
        self.answers.lock().unwrap().insert(0, (pattern.into(), output));
    }
}

#[async_trait::async_trait]
impl MachineShell for FakeShell {
    async fn sh(&self, script: &str, _timeout: Duration) -> Result<ExecOutput, SandboxError> {
        self.ran.lock().unwrap().push(script.to_owned());
        let answers = self.answers.lock().unwrap();
        Ok(answers.iter().find(|(p, _)| script.contains(p.as_str())).map(|(_, o)| o.clone()).unwrap_or_else(|| out(1, "", "no such file")))
    }
}

struct Lab {
    engine: FakeEngine,
    shell: Arc<FakeShell>,
    grader: Grader,
}

async fn lab() -> Lab {
    let engine = FakeEngine::start().await;
    let shell = Arc::new(FakeShell::default());
    let grader = Grader::connect("s1", &engine.socket, shell.clone(), 1_700_000_000).unwrap();
    engine.raw("/_ping", b"OK".to_vec(), "text/plain");
    Lab { engine, shell, grader }
}

impl Lab {
    async fn check(&self, check: &Check) -> Outcome {
        evaluate::check(&self.grader, check).await
    }

    async fn fails(&self, check: &Check) -> String {
        match self.check(check).await {
            Outcome::Fail(detail) => detail,
            other => panic!("{check:?} should fail, got {other:?}"),
        }
    }

    async fn passes(&self, check: &Check) {
        let outcome = self.check(check).await;
        assert!(matches!(outcome, Outcome::Pass(_)), "{check:?} should pass, got {outcome:?}");
    }
}

/// `docker inspect` of a container as Docker 20.10 answers it (trimmed to what checks read).
fn container(name: &str, status: &str) -> Value {
    json!({
        "Id": format!("{:0<64}", hex::encode(name)),
        "Created": "2026-11-23T20:00:00.000000000Z",
        "Path": "sleep",
        "Args": ["3600"],
        "State": {
            "Status": status, "Running": status == "running", "Paused": status == "paused",
            "Restarting": false, "OOMKilled": false, "Dead": false, "Pid": 0, "ExitCode": 0,
            "Error": "", "StartedAt": "2026-11-23T20:00:01Z", "FinishedAt": "0001-01-01T00:00:00Z"
        },
        "Image": "sha256:b539af69bc01c6c1c1eb5c9f7ac9d6c4c3b2f8a6e43f3e62a8e9b5c0d1e2f3a4",
        "Name": format!("/{name}"),
        "RestartCount": 0,
        "Driver": "overlay2",
        "Platform": "linux",
        "HostConfig": {
            "Binds": null, "NetworkMode": "default", "PortBindings": {},
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "AutoRemove": false, "Memory": 0, "NanoCpus": 0, "CpuPeriod": 0, "CpuQuota": 0,
            "MemorySwap": 0, "Mounts": null
        },
        "Mounts": [],
        "Config": {"Hostname": "abc", "User": "", "Cmd": ["sleep", "3600"], "Image": "busybox", "Entrypoint": null},
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "HairpinMode": false, "Ports": {},
            "Networks": {
                "bridge": {"NetworkID": "n1", "EndpointID": "e1", "Gateway": "172.17.0.1", "IPAddress": "172.17.0.2", "IPPrefixLen": 16}
            }
        }
    })
}

fn image(id: &str, tags: &[&str], layers: &[&str], size: i64) -> Value {
    json!({
        "Id": id, "RepoTags": tags, "RepoDigests": [], "Parent": "", "Comment": "",
        "Created": "2026-11-23T20:00:00.000000000Z", "DockerVersion": "20.10.24+dfsg1",
        "Config": {"User": "", "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"], "Entrypoint": null, "Labels": null},
        "Architecture": "amd64", "Os": "linux", "Size": size, "VirtualSize": size,
        "GraphDriver": {"Data": null, "Name": "overlay2"},
        "RootFS": {"Type": "layers", "Layers": layers},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"}
    })
}

fn image_summary(id: &str, tags: &[&str]) -> Value {
    json!({"Containers": -1, "Created": 1763928000, "Id": id, "Labels": null, "ParentId": "", "RepoDigests": null, "RepoTags": tags, "SharedSize": -1, "Size": 1, "VirtualSize": 1})
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn multiplexed(text: &str) -> Vec<u8> {
    let mut frame = vec![1, 0, 0, 0];
    frame.extend_from_slice(&(text.len() as u32).to_be_bytes());
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// A check written the way `exercise.toml` writes it.
fn chk(value: Value) -> Check {
    let check: Check = serde_json::from_value(value).unwrap();
    check.validate().unwrap();
    check
}

#[tokio::test]
async fn volume_exists_and_absent() {
    let lab = lab().await;
    let exists = Check::VolumeExists { volume: "app-data".into(), driver: Some("local".into()) };
    let absent = Check::VolumeAbsent { volume: "app-data".into() };
    assert_eq!(lab.fails(&exists).await, "there is no volume named app-data");
    lab.passes(&absent).await;
    lab.engine.json(
        "/volumes/app-data",
        json!({"CreatedAt": "2026-11-23T20:00:00Z", "Driver": "local", "Labels": {}, "Mountpoint": "/var/lib/docker/volumes/app-data/_data", "Name": "app-data", "Options": {}, "Scope": "local"}),
    );
    lab.passes(&exists).await;
    assert_eq!(lab.fails(&absent).await, "volume app-data still exists");
    let nfs = Check::VolumeExists { volume: "app-data".into(), driver: Some("nfs".into()) };
    assert_eq!(lab.fails(&nfs).await, "volume app-data uses the local driver; it should use nfs");
}

#[tokio::test]
async fn volume_mounted_by_type_source_and_flag() {
    let lab = lab().await;
    let check = Check::VolumeMounted {
        container: "writer".into(),
        path: "/data".into(),
        mount_type: MountType::Volume,
        source: Some("app-data".into()),
        flag: Some(MountFlag::Mount),
        read_only: None,
    };
    assert_eq!(lab.fails(&check).await, "there is no container named writer");
    let mut c = container("writer", "exited");
    lab.engine.json("/containers/writer/json", c.clone());
    assert_eq!(lab.fails(&check).await, "container writer has nothing mounted at /data (it has no mounts at all)");

    // Mounted with -v: Docker records it in HostConfig.Binds.
    c["Mounts"] = json!([{"Type": "volume", "Name": "app-data", "Source": "/var/lib/docker/volumes/app-data/_data", "Destination": "/data", "Driver": "local", "Mode": "z", "RW": true, "Propagation": ""}]);
    c["HostConfig"]["Binds"] = json!(["app-data:/data"]);
    lab.engine.json("/containers/writer/json", c.clone());
    assert_eq!(lab.fails(&check).await, "container writer got its mount at /data from -v; this task asks for --mount");

    // With --mount: HostConfig.Mounts.
    c["HostConfig"]["Binds"] = Value::Null;
    c["HostConfig"]["Mounts"] = json!([{"Type": "volume", "Source": "app-data", "Target": "/data"}]);
    lab.engine.json("/containers/writer/json", c.clone());
    lab.passes(&check).await;

    let other = chk(json!({"kind": "volume_mounted", "container": "writer", "path": "/data", "as": "volume", "source": "logs"}));
    assert_eq!(lab.fails(&other).await, "container writer mounts volume app-data at /data; it should mount logs");
    let bind = chk(json!({"kind": "volume_mounted", "container": "writer", "path": "/data", "as": "bind"}));
    assert_eq!(lab.fails(&bind).await, "container writer has a volume mount at /data; it should be a bind");
    let ro = chk(json!({"kind": "volume_mounted", "container": "writer", "path": "/data", "as": "volume", "read_only": true}));
    assert_eq!(lab.fails(&ro).await, "container writer's mount at /data is read-write; it should be read-only");
}

#[tokio::test]
async fn file_content_in_a_volume_a_container_and_the_machine() {
    let lab = lab().await;
    let in_volume = Check::FileContent { volume: Some("app-data".into()), container: None, path: "greeting.txt".into(), contains: None, equals: Some("hello".into()) };
    assert_eq!(lab.fails(&in_volume).await, "there is no volume named app-data");
    lab.engine.json("/volumes/app-data", json!({"Driver": "local", "Labels": null, "Mountpoint": "/var/lib/docker/volumes/app-data/_data", "Name": "app-data", "Options": null, "Scope": "local"}));
    lab.shell.on("greeting.txt", out(3, "", ""));
    assert_eq!(lab.fails(&in_volume).await, "volume app-data has no file greeting.txt");
    lab.shell.on("/var/lib/docker/volumes/app-data/_data/greeting.txt", out(0, "hi\n", ""));
    assert_eq!(lab.fails(&in_volume).await, "greeting.txt in volume app-data says “hi”; it should say “hello”");
    lab.shell.on("/var/lib/docker/volumes/app-data/_data/greeting.txt", out(0, "hello\n", ""));
    lab.passes(&in_volume).await;

    let in_container = Check::FileContent { volume: None, container: Some("web".into()), path: "/etc/motd".into(), contains: Some("welcome".into()), equals: None };
    lab.engine.json("/containers/web/json", container("web", "exited"));
    assert_eq!(lab.fails(&in_container).await, "container web has no file /etc/motd");
    lab.engine.raw("/containers/web/archive", tar_of(&[("motd", b"welcome aboard\n")]), "application/x-tar");
    lab.passes(&in_container).await;

    let in_machine = Check::FileContent { volume: None, container: None, path: "~/site/index.html".into(), contains: Some("docklab".into()), equals: None };
    lab.shell.on("/root/site/index.html", out(3, "", ""));
    assert_eq!(lab.fails(&in_machine).await, "there is no file ~/site/index.html");
    lab.shell.on("/root/site/index.html", out(0, "<h1>docklab</h1>", ""));
    lab.passes(&in_machine).await;
}

#[tokio::test]
async fn networks_and_attachments_in_the_learners_words() {
    let lab = lab().await;
    let net = Check::NetworkExists { network: "finance-net".into(), driver: Some("bridge".into()) };
    assert_eq!(lab.fails(&net).await, "there is no network named finance-net");
    lab.engine.json("/networks/finance-net", json!({"Name": "finance-net", "Id": "f1", "Created": "2026-11-23T20:00:00Z", "Scope": "local", "Driver": "bridge", "EnableIPv6": false, "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]}, "Internal": false, "Attachable": false, "Ingress": false, "ConfigFrom": {"Network": ""}, "ConfigOnly": false, "Containers": {}, "Options": {}, "Labels": {}}));
    lab.passes(&net).await;

    let only = Check::ContainerNetworks { container: "finance".into(), networks: vec!["finance-net".into()], exactly: true };
    let mut c = container("finance", "running");
    lab.engine.json("/containers/finance/json", c.clone());
    assert_eq!(lab.fails(&only).await, "container finance is attached to bridge; it should be on finance-net only");
    let at_least = chk(json!({"kind": "container_networks", "container": "finance", "networks": ["finance-net"], "exactly": false}));
    assert_eq!(lab.fails(&at_least).await, "container finance is attached to bridge; it should also be on finance-net");
    c["NetworkSettings"]["Networks"] = json!({"finance-net": {"NetworkID": "f1", "IPAddress": "172.18.0.2", "IPPrefixLen": 16}});
    lab.engine.json("/containers/finance/json", c);
    lab.passes(&only).await;
    lab.passes(&at_least).await;
}

#[tokio::test]
async fn reachability_needs_both_containers_running_and_a_machine_to_probe_in() {
    let lab = lab().await;
    let reach = Check::Reachable { from: "auditor".into(), to: "finance".into(), by: Address::Name };
    let apart = Check::NotReachable { from: "login".into(), to: "finance".into(), by: Address::Ip };
    assert_eq!(lab.fails(&reach).await, "there is no container named auditor to probe from");
    lab.engine.json("/containers/auditor/json", container("auditor", "exited"));
    assert_eq!(lab.fails(&reach).await, "container auditor is not running, so nothing can be probed from it");
    lab.engine.json("/containers/auditor/json", container("auditor", "running"));
    lab.engine.json("/containers/login/json", container("login", "running"));
    assert_eq!(lab.fails(&reach).await, "there is no container named finance");
    let mut finance = container("finance", "running");
    finance["NetworkSettings"]["Networks"] = json!({"finance-net": {"IPAddress": "172.18.0.2"}});
    lab.engine.json("/containers/finance/json", finance);

    // The probe itself is the grader's own, in the containers' network namespaces (real machines:
    // tests/tests/grading_truth.rs). Nothing runs in the machine's shell, not even the learner's
    // `ping`; without a machine behind the engine, nothing can be said.
    lab.shell.on("docker exec", out(0, "1 packets received", ""));
    let outcome = lab.check(&apart).await;
    assert!(matches!(&outcome, Outcome::Unknown(d) if d.starts_with("the grader could not probe from login to finance")), "{outcome:?}");
}

#[tokio::test]
async fn port_http_needs_a_publisher_and_the_text() {
    let lab = lab().await;
    let check = Check::PortHttp { port: 8080, path: "/".into(), contains: "Hello from the bind mount".into(), container: None };
    lab.engine.json("/containers/json", json!([]));
    assert_eq!(lab.fails(&check).await, "no running container publishes port 8080 (docker run -p 8080:…)");
    lab.engine.json("/containers/json", json!([{"Id": "w1", "Names": ["/web"], "Image": "busybox", "ImageID": "sha256:1", "Command": "httpd -f", "Created": 1763928000, "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}], "Labels": {}, "State": "running", "Status": "Up 1 second", "HostConfig": {"NetworkMode": "default"}, "NetworkSettings": {"Networks": {}}, "Mounts": []}]));
    lab.shell.on("curl -sS -m 3 'http://127.0.0.1:8080/'", out(7, "", "curl: (7) Failed to connect to 127.0.0.1 port 8080: Connection refused\n"));
    assert_eq!(lab.fails(&check).await, "web publishes port 8080, but http://localhost:8080/ did not answer: curl: (7) Failed to connect to 127.0.0.1 port 8080: Connection refused");
    lab.shell.on("curl -sS -m 3 'http://127.0.0.1:8080/'", out(0, "<h1>It works</h1>", ""));
    assert_eq!(lab.fails(&check).await, "http://localhost:8080/ answered without “Hello from the bind mount”: it said “<h1>It works</h1>”");
    lab.shell.on("curl -sS -m 3 'http://127.0.0.1:8080/'", out(0, "<h1>Hello from the bind mount</h1>", ""));
    lab.passes(&check).await;
}

#[tokio::test]
async fn images_exist_have_sizes_configs_and_bases() {
    let lab = lab().await;
    let busybox = image("sha256:bb", &["busybox:latest"], &["sha256:l1"], 4_261_550);
    lab.engine.json("/images/busybox/json", busybox.clone());
    lab.engine.json("/images/sha256:bb/json", busybox.clone());
    lab.engine.json("/images/json", json!([image_summary("sha256:bb", &["busybox:latest"])]));

    let exists = Check::ImageExists { image: "greeter:1".into() };
    assert_eq!(lab.fails(&exists).await, "there is no image greeter:1 (the images here are busybox:latest)");
    let mut greeter = image("sha256:gg", &["greeter:1"], &["sha256:l1"], 4_261_550);
    greeter["Config"]["Entrypoint"] = json!(["/bin/sh", "-c", "echo Hello,"]);
    lab.engine.json("/images/greeter:1/json", greeter.clone());
    lab.passes(&exists).await;

    let config = Check::ImageConfig {
        image: "greeter:1".into(),
        entrypoint: Some(vec!["echo".into(), "Hello,".into()]),
        cmd: Some(vec!["world".into()]),
        user: None,
        healthcheck: None,
        exposed_ports: None,
    };
    assert_eq!(lab.fails(&config).await, "greeter:1's ENTRYPOINT is [\"/bin/sh\",\"-c\",\"echo Hello,\"] (shell form); it should be [\"echo\",\"Hello,\"]");
    greeter["Config"]["Entrypoint"] = json!(["echo", "Hello,"]);
    greeter["Config"]["Cmd"] = json!(["world"]);
    lab.engine.json("/images/greeter:1/json", greeter.clone());
    lab.passes(&config).await;
    let more = Check::ImageConfig { image: "greeter:1".into(), entrypoint: None, cmd: None, user: Some("app".into()), healthcheck: Some(true), exposed_ports: Some(vec!["80".into()]) };
    assert_eq!(lab.fails(&more).await, "greeter:1 runs as root (no USER); it should run as app");
    greeter["Config"]["User"] = json!("app");
    lab.engine.json("/images/greeter:1/json", greeter.clone());
    assert_eq!(lab.fails(&more).await, "greeter:1 has no HEALTHCHECK; it should have one");
    greeter["Config"]["Healthcheck"] = json!({"Test": ["CMD-SHELL", "wget -q -O- localhost"]});
    greeter["Config"]["ExposedPorts"] = json!({"80/tcp": {}});
    lab.engine.json("/images/greeter:1/json", greeter.clone());
    lab.passes(&more).await;

    let on_busybox = Check::ImageBase { image: "greeter:1".into(), base: "busybox".into() };
    lab.passes(&on_busybox).await;
    let on_scratch = Check::ImageBase { image: "greeter:1".into(), base: "scratch".into() };
    lab.engine.json("/images/json", json!([image_summary("sha256:bb", &["busybox:latest"]), image_summary("sha256:gg", &["greeter:1"])]));
    assert_eq!(lab.fails(&on_scratch).await, "greeter:1 is built on busybox:latest; its final stage should start FROM scratch");
    lab.engine.json("/images/slim:1/json", image("sha256:ss", &["slim:1"], &["sha256:only-mine"], 6));
    lab.passes(&Check::ImageBase { image: "slim:1".into(), base: "scratch".into() }).await;
    assert_eq!(
        lab.fails(&Check::ImageBase { image: "slim:1".into(), base: "busybox".into() }).await,
        "slim:1 is built FROM scratch; it should be built on busybox"
    );

    let small = Check::ImageSizeBelow { image: "greeter:1".into(), mb: 1.0 };
    assert_eq!(lab.fails(&small).await, "greeter:1 is 4.3 MB; it should be under 1 MB");
    lab.passes(&Check::ImageSizeBelow { image: "slim:1".into(), mb: 1.0 }).await;
}

/// A `docker save` archive (Docker 20.10 layout: `<id>/layer.tar` and `manifest.json`).
fn saved_image(layers: &[&[(&str, &[u8])]]) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut names = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let name = format!("layer{i}/layer.tar");
        files.push((name.clone(), tar_of(layer)));
        names.push(name);
    }
    files.push(("manifest.json".into(), json!([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": names}]).to_string().into_bytes()));
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    tar_of(&refs)
}

#[tokio::test]
async fn image_no_shell_looks_through_the_layers_with_whiteouts() {
    let with_shell = saved_image(&[&[("bin/busybox", b"elf"), ("bin/sh", b"elf")]]);
    assert_eq!(evaluate::shell_in_saved_image(&with_shell).as_deref(), Some("bin/sh"));
    let removed = saved_image(&[&[("bin/sh", b"elf")], &[("bin/.wh.sh", b"")]]);
    assert_eq!(evaluate::shell_in_saved_image(&removed), None);
    let scratch = saved_image(&[&[("app/message.txt", b"hello\n")]]);
    assert_eq!(evaluate::shell_in_saved_image(&scratch), None);

    let lab = lab().await;
    let check = Check::ImageNoShell { image: "fat:1".into() };
    assert_eq!(lab.fails(&check).await, "there is no image fat:1");
    lab.engine.json("/images/fat:1/json", image("sha256:ff", &["fat:1"], &["sha256:l1"], 4_300_000));
    lab.engine.raw("/images/sha256:ff/get", with_shell, "application/x-tar");
    assert_eq!(lab.fails(&check).await, "fat:1 has a shell at /bin/sh; an image without one leaves an intruder nothing to run");
    lab.engine.json("/images/slim:1/json", image("sha256:ss", &["slim:1"], &["sha256:l9"], 6));
    lab.engine.raw("/images/sha256:ss/get", scratch, "application/x-tar");
    lab.passes(&Check::ImageNoShell { image: "slim:1".into() }).await;
    // Image contents never change: the answer is kept by image id.
    lab.engine.remove("/images/sha256:ff/get");
    assert!(lab.fails(&check).await.contains("has a shell"));
}

#[tokio::test]
async fn dockerfile_stages_copy_from_and_final_base() {
    let lab = lab().await;
    let check = Check::Dockerfile { path: "~/slim/Dockerfile".into(), min_stages: Some(2), max_stages: None, copy_from: Some(true), final_base: Some("scratch".into()), image: None };
    lab.shell.on("/root/slim/Dockerfile", out(3, "", ""));
    assert_eq!(lab.fails(&check).await, "there is no Dockerfile at ~/slim/Dockerfile");
    lab.shell.on("/root/slim/Dockerfile", out(0, "FROM busybox\nRUN echo hi > /m\n", ""));
    assert_eq!(lab.fails(&check).await, "~/slim/Dockerfile has 1 stage (one FROM); it should have at least 2");
    lab.shell.on("/root/slim/Dockerfile", out(0, "FROM busybox AS build\nRUN echo hi > /m\nFROM busybox\nCOPY /m /m\n", ""));
    assert_eq!(lab.fails(&check).await, "~/slim/Dockerfile has no COPY --from=… taking files from an earlier stage");
    lab.shell.on("/root/slim/Dockerfile", out(0, "FROM busybox AS build\nRUN echo hi > /m\nFROM busybox\nCOPY --from=build /m /m\n", ""));
    assert_eq!(lab.fails(&check).await, "the last stage of ~/slim/Dockerfile starts FROM busybox; it should start FROM scratch");
    lab.shell.on("/root/slim/Dockerfile", out(0, "FROM busybox AS build\nRUN echo hi > /m\nFROM scratch\nCOPY --from=build /m /m\n", ""));
    lab.passes(&check).await;
}

#[tokio::test]
async fn container_state_exit_oom_restarts_and_limits() {
    let lab = lab().await;
    let mut hog = container("hog", "running");
    lab.engine.json("/containers/hog/json", hog.clone());
    let oom = chk(json!({"kind": "container_state", "container": "hog", "state": "exited", "exit_code": 137, "oom_killed": true, "memory_mb": 16}));
    assert_eq!(lab.fails(&oom).await, "container hog is running; it should be exited");
    hog["State"] = json!({"Status": "exited", "Running": false, "Paused": false, "OOMKilled": false, "ExitCode": 1});
    lab.engine.json("/containers/hog/json", hog.clone());
    assert_eq!(lab.fails(&oom).await, "container hog exited with code 1; it should exit with code 137");
    hog["State"]["ExitCode"] = json!(137);
    lab.engine.json("/containers/hog/json", hog.clone());
    lab.engine.raw("/events", Vec::new(), "application/json");
    assert_eq!(lab.fails(&oom).await, "container hog was not killed for running out of memory (OOMKilled is false)");
    // Docker can record the exit before the kernel's OOM notice: the engine's `oom` event counts.
    let oom_event = event("container", "oom", "hog-id", json!({"name": "hog", "image": "busybox"}));
    lab.engine.raw("/events", format!("{oom_event}\n").into_bytes(), "application/json");
    assert_eq!(lab.fails(&oom).await, "container hog has no memory limit; it should be limited to 16 MB");
    lab.engine.raw("/events", Vec::new(), "application/json");
    hog["State"]["OOMKilled"] = json!(true);
    lab.engine.json("/containers/hog/json", hog.clone());
    assert_eq!(lab.fails(&oom).await, "container hog has no memory limit; it should be limited to 16 MB");
    hog["HostConfig"]["Memory"] = json!(16 * 1024 * 1024);
    lab.engine.json("/containers/hog/json", hog.clone());
    lab.passes(&oom).await;

    let mut resilient = container("resilient", "running");
    resilient["RestartCount"] = json!(1);
    lab.engine.json("/containers/resilient/json", resilient.clone());
    let back = chk(json!({"kind": "container_state", "container": "resilient", "min_restarts": 2, "restart_policy": ["on-failure", "always"]}));
    assert_eq!(lab.fails(&back).await, "container resilient has the restart policy no; it should have on-failure or always");
    resilient["HostConfig"]["RestartPolicy"] = json!({"Name": "on-failure", "MaximumRetryCount": 0});
    lab.engine.json("/containers/resilient/json", resilient.clone());
    assert_eq!(lab.fails(&back).await, "Docker has restarted resilient 1 time; it should have restarted it at least 2 times");
    resilient["RestartCount"] = json!(3);
    lab.engine.json("/containers/resilient/json", resilient);
    lab.passes(&back).await;

    let mut neighbour = container("neighbour", "running");
    neighbour["HostConfig"]["Memory"] = json!(32 * 1024 * 1024);
    lab.engine.json("/containers/neighbour/json", neighbour.clone());
    let limits = chk(json!({"kind": "container_state", "container": "neighbour", "state": "running", "memory_mb": 32, "cpus": 0.5}));
    assert_eq!(lab.fails(&limits).await, "container neighbour has no CPU limit; it should be limited to 0.5 CPUs");
    neighbour["HostConfig"]["NanoCpus"] = json!(500_000_000);
    lab.engine.json("/containers/neighbour/json", neighbour);
    lab.passes(&limits).await;

    let created = chk(json!({"kind": "container_state", "container": "box", "state": "created", "image": "alpine"}));
    assert_eq!(lab.fails(&created).await, "there is no container named box");
    lab.engine.json("/containers/box/json", container("box", "created"));
    assert_eq!(lab.fails(&created).await, "container box was created from busybox; it should be from alpine");
    lab.passes(&chk(json!({"kind": "container_state", "container": "box", "state": "created", "image": "busybox:latest"}))).await;

    let absent = Check::ContainerAbsent { container: "box".into() };
    assert_eq!(lab.fails(&absent).await, "container box still exists (created); `docker rm` removes it");
    lab.engine.remove("/containers/box/json");
    lab.passes(&absent).await;
}

#[tokio::test]
async fn container_logs_by_name_and_by_image() {
    let lab = lab().await;
    let by_name = Check::ContainerLogs { container: Some("reader".into()), image: None, contains: "hello".into() };
    assert_eq!(lab.fails(&by_name).await, "there is no container named reader");
    lab.engine.raw("/containers/reader/logs", multiplexed("bye\n"), "application/vnd.docker.raw-stream");
    assert_eq!(lab.fails(&by_name).await, "container reader has not printed “hello” (it printed “bye”)");
    lab.engine.raw("/containers/reader/logs", multiplexed("hello\n"), "application/vnd.docker.raw-stream");
    lab.passes(&by_name).await;

    let by_image = Check::ContainerLogs { container: None, image: Some("greeter:1".into()), contains: "Hello, world".into() };
    lab.engine.json("/containers/json", json!([]));
    assert_eq!(lab.fails(&by_image).await, "no container has been run from greeter:1 yet");
    lab.engine.json("/containers/json", json!([{"Id": "g1", "Names": ["/eager_turing"], "Image": "greeter:1", "State": "exited", "Ports": [], "Labels": {}, "Mounts": []}]));
    lab.engine.raw("/containers/g1/logs", multiplexed("Hello, docker\n"), "application/vnd.docker.raw-stream");
    assert_eq!(lab.fails(&by_image).await, "no container of greeter:1 has printed “Hello, world” yet");
    // An exited container prints nothing more until it is started again: its answer is kept
    // (with hundreds of containers, a grade reads no logs at all), until the engine says it was
    // started since.
    lab.engine.raw("/events", Vec::new(), "application/json");
    lab.engine.raw("/containers/g1/logs", multiplexed("Hello, world\n"), "application/vnd.docker.raw-stream");
    assert_eq!(lab.fails(&by_image).await, "no container of greeter:1 has printed “Hello, world” yet");
    let mut start = event("container", "start", "g1", json!({"name": "eager_turing", "image": "greeter:1"}));
    start["timeNano"] = json!(4_000_000_000_000_000_000i64);
    lab.engine.raw("/events", format!("{start}\n").into_bytes(), "application/json");
    lab.passes(&by_image).await;
}

fn event(typ: &str, action: &str, id: &str, attrs: Value) -> Value {
    json!({"status": action, "id": id, "Type": typ, "Action": action, "Actor": {"ID": id, "Attributes": attrs}, "scope": "local", "time": 1_700_000_100, "timeNano": 1_700_000_100_000_000_000i64})
}

#[tokio::test]
async fn event_seen_from_the_live_stream_or_the_engines_history() {
    let lab = lab().await;
    let paused = Check::EventSeen { object: EventObject::Container, name: "box".into(), action: "pause".into(), image: None };
    lab.engine.raw("/events", Vec::new(), "application/json");
    assert_eq!(lab.fails(&paused).await, "container box has not been paused since the lab started");

    let history = [
        event("container", "create", "c1", json!({"name": "box", "image": "busybox"})),
        event("container", "pause", "c1", json!({"name": "box", "image": "busybox"})),
        event("volume", "destroy", "app-data", json!({"driver": "local"})),
    ];
    let body: String = history.iter().map(|e| format!("{e}\n")).collect();
    lab.engine.raw("/events", body.into_bytes(), "application/json");
    lab.passes(&paused).await;
    lab.passes(&Check::EventSeen { object: EventObject::Volume, name: "app-data".into(), action: "destroy".into(), image: None }).await;
    lab.passes(&Check::EventSeen { object: EventObject::Container, name: "box".into(), action: "create".into(), image: Some("busybox:latest".into()) }).await;
    let wrong_image = Check::EventSeen { object: EventObject::Container, name: "box".into(), action: "create".into(), image: Some("alpine".into()) };
    assert_eq!(lab.fails(&wrong_image).await, "container box (from alpine) has not been created since the lab started");

    // From the live stream: `kill` events carry the signal in attributes; the verb is what counts.
    let live: bollard::models::EventMessage =
        serde_json::from_value(event("container", "kill", "c2", json!({"name": "sleeper", "signal": "9"}))).unwrap();
    assert!(lab.grader.note_event(&live));
    lab.passes(&Check::EventSeen { object: EventObject::Container, name: "sleeper".into(), action: "kill".into(), image: None }).await;
}

#[tokio::test]
async fn script_checks_pass_on_exit_zero_and_say_why_not() {
    let lab = lab().await;
    let script = Check::Script { run: "test -f ~/done && echo all good".into(), timeout_s: 5, on_tick: true };
    lab.shell.on("test -f ~/done", out(1, "", ""));
    assert_eq!(lab.fails(&script).await, "the check script exited with code 1");
    lab.shell.on("test -f ~/done", out(1, "no ~/done yet\n", ""));
    assert_eq!(lab.fails(&script).await, "no ~/done yet");
    lab.shell.on("test -f ~/done", ExecOutput { exit_code: 124, stdout: String::new(), stderr: String::new(), timed_out: true });
    assert_eq!(lab.fails(&script).await, "the check did not finish within 5 s, so it was stopped");
    lab.shell.on("test -f ~/done", out(0, "all good\n", ""));
    assert_eq!(lab.check(&script).await, Outcome::Pass("all good".into()));
}

fn exercise(tasks: Vec<(&str, Vec<Check>)>) -> Exercise {
    let text = tasks
        .iter()
        .map(|(id, _)| format!("[[tasks]]\nid = \"{id}\"\ntitle = \"Task {id}\"\nchecks = [{{ kind = \"volume_exists\", volume = \"x\" }}]\n"))
        .collect::<String>();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("day-24-a/exercises/e")).unwrap();
    std::fs::write(dir.path().join("day-24-a/lesson.md"), "+++\nday = 24\ntitle = \"t\"\nsummary = \"s\"\n+++\n").unwrap();
    std::fs::write(dir.path().join("day-24-a/exercises/e/exercise.toml"), format!("title = \"E\"\nbrief = \"B\"\n{text}")).unwrap();
    let catalog = lessons::Catalog::load(dir.path()).unwrap();
    let mut exercise = catalog.exercise("day-24/e").unwrap().clone();
    for (task, (_, checks)) in exercise.tasks.iter_mut().zip(tasks) {
        task.checks = checks;
    }
    exercise
}

#[tokio::test]
async fn state_tasks_hold_only_while_true_and_the_tick_only_reruns_file_checks() {
    let lab = lab().await;
    let ex = exercise(vec![
        ("create", vec![Check::VolumeExists { volume: "app-data".into(), driver: None }]),
        ("file", vec![Check::FileContent { volume: None, container: None, path: "/root/note".into(), contains: Some("hi".into()), equals: None }]),
    ]);
    assert!(!ex.tasks[0].history, "a task of state checks is a state task");
    let reports = lab.grader.grade(&ex, Scope::All).await;
    assert_eq!(reports[0], TaskReport { id: "create".into(), title: "Task create".into(), status: TaskStatus::Failed, detail: "there is no volume named app-data".into() });
    assert_eq!(reports[1].status, TaskStatus::Failed);

    // The volume appears, but a tick does not ask the engine again: only file checks rerun.
    lab.engine.json("/volumes/app-data", json!({"Driver": "local", "Labels": null, "Mountpoint": "/m", "Name": "app-data", "Options": null, "Scope": "local"}));
    lab.shell.on("/root/note", out(0, "hi\n", ""));
    let reports = lab.grader.grade(&ex, Scope::Tick).await;
    assert_eq!((reports[0].status, reports[1].status), (TaskStatus::Failed, TaskStatus::Passed));
    let reports = lab.grader.grade(&ex, Scope::All).await;
    assert_eq!(reports[0].status, TaskStatus::Passed);
    assert_eq!(serde_json::to_value(&reports[0]).unwrap(), json!({"id": "create", "title": "Task create", "status": "passed", "detail": ""}));

    // Undoing the work undoes the task: a state task is true of the machine now.
    lab.engine.remove("/volumes/app-data");
    let reports = lab.grader.grade(&ex, Scope::All).await;
    assert_eq!(reports[0].status, TaskStatus::Failed);
    assert_eq!(reports[0].detail, "there is no volume named app-data");
}

#[tokio::test]
async fn history_tasks_count_once_the_engine_settled_and_then_stay_done() {
    let lab = lab().await;
    let mut ex = exercise(vec![("create", vec![Check::VolumeExists { volume: "app-data".into(), driver: None }])]);
    ex.tasks[0].history = true;
    lab.engine.json("/volumes/app-data", json!({"Driver": "local", "Labels": null, "Mountpoint": "/m", "Name": "app-data", "Options": null, "Scope": "local"}));
    // An event just arrived (the learner's command may still be running): not counted yet.
    let live: bollard::models::EventMessage = serde_json::from_value(event("volume", "create", "app-data", json!({"driver": "local"}))).unwrap();
    assert!(lab.grader.note_event(&live));
    let reports = lab.grader.grade(&ex, Scope::All).await;
    assert_eq!(reports[0].status, TaskStatus::Pending, "{}", reports[0].detail);
    // A container labelled as the grader's own does not set off grading (no loop), but it is a
    // change all the same (the label could be on a learner's image).
    let own: bollard::models::EventMessage = serde_json::from_value(event("container", "start", "p1", json!({"name": "x", "docklab.grader": "1"}))).unwrap();
    assert!(!lab.grader.note_event(&own));
    assert_eq!(lab.grader.grade(&ex, Scope::All).await[0].status, TaskStatus::Pending);
    // Quiet actions (probes, exec) are no change at all.
    let exec: bollard::models::EventMessage = serde_json::from_value(event("container", "exec_start: ping", "p1", json!({"name": "x"}))).unwrap();
    assert!(!lab.grader.note_event(&exec));
    tokio::time::sleep(SETTLE).await;
    assert_eq!(lab.grader.grade(&ex, Scope::All).await[0].status, TaskStatus::Passed);
    // Done: undoing it later does not undo a history task.
    lab.engine.remove("/volumes/app-data");
    assert_eq!(lab.grader.grade(&ex, Scope::All).await[0].status, TaskStatus::Passed);
}

#[tokio::test]
async fn a_state_seen_between_two_events_of_one_command_never_counts() {
    let lab = lab().await;
    let mut ex = exercise(vec![("create", vec![Check::ContainerState {
        container: "box".into(), state: Some(lessons::checks::ContainerStatus::Created), exit_code: None, oom_killed: None,
        image: None, min_restarts: None, restart_policy: None, memory_mb: None, cpus: None,
    }])]);
    ex.tasks[0].history = true;
    let created = json!({"Id": "c1", "Name": "/box", "State": {"Status": "created", "Running": false}, "Config": {"Image": "busybox"}, "HostConfig": {}});
    let note = |action: &str| {
        let e: bollard::models::EventMessage = serde_json::from_value(event("container", action, "c1", json!({"name": "box"}))).unwrap();
        assert!(lab.grader.note_event(&e));
    };
    // `docker run -d`: create, a grade that sees "created", then start half a second later.
    lab.engine.json("/containers/box/json", created.clone());
    note("create");
    assert_eq!(lab.grader.grade(&ex, Scope::All).await[0].status, TaskStatus::Pending);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut running = created.clone();
    running["State"] = json!({"Status": "running", "Running": true});
    lab.engine.json("/containers/box/json", running);
    note("start");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(lab.grader.grade(&ex, Scope::All).await[0].status, TaskStatus::Failed);
    // `docker create`, then nothing for a while: it counts, even if the next grade comes after
    // the learner has moved on.
    lab.engine.json("/containers/box/json", created);
    note("create");
    assert_eq!(lab.grader.grade(&ex, Scope::All).await[0].status, TaskStatus::Pending);
    tokio::time::sleep(SETTLE).await;
    note("start");
    assert_eq!(lab.grader.grade(&ex, Scope::All).await[0].status, TaskStatus::Passed);
}

#[tokio::test]
async fn a_tasks_container_events_must_come_from_one_instance_in_order() {
    let lab = lab().await;
    let step = |action: &str| Check::EventSeen { object: EventObject::Container, name: "box".into(), action: action.into(), image: None };
    let mut ex = exercise(vec![("start-pause", vec![step("start"), step("pause"), step("unpause")])]);
    ex.tasks[0].history = true;
    // c1 was started and paused, then removed; c2, a new box, was only unpaused: no one box did it all.
    let history = [
        event("container", "start", "c1", json!({"name": "box"})),
        event("container", "pause", "c1", json!({"name": "box"})),
        event("container", "destroy", "c1", json!({"name": "box"})),
        event("container", "unpause", "c2", json!({"name": "box"})),
    ];
    let body: String = history.iter().map(|e| format!("{e}\n")).collect();
    lab.engine.raw("/events", body.into_bytes(), "application/json");
    let reports = lab.grader.grade(&ex, Scope::All).await;
    assert_eq!(reports[0].status, TaskStatus::Failed);
    assert_eq!(
        reports[0].detail,
        "container box has not been unpaused since it was paused (no one container did every step; each is judged on its own history)"
    );
}

#[tokio::test]
async fn a_dead_engine_outranks_every_other_detail() {
    let lab = lab().await;
    let ex = exercise(vec![("capped", vec![Check::Script { run: "docker inspect capped || echo there is no container named capped".into(), timeout_s: 5, on_tick: true }])]);
    lab.shell.on("docker inspect capped", out(1, "there is no container named capped\n", ""));
    assert_eq!(lab.grader.grade(&ex, Scope::All).await[0].detail, "there is no container named capped");
    lab.engine.remove("/_ping");
    let report = lab.grader.grade(&ex, Scope::All).await.remove(0);
    assert_eq!((report.status, report.detail.as_str()), (TaskStatus::Pending, ENGINE_DOWN));
}

#[tokio::test]
async fn an_engine_that_does_not_answer_leaves_tasks_pending_not_failed() {
    let shell = Arc::new(FakeShell::default());
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    // A socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let grader = Grader::connect("s1", &socket, shell, 0).unwrap();
    let ex = exercise(vec![("create", vec![Check::VolumeExists { volume: "app-data".into(), driver: None }])]);
    let reports = grader.grade(&ex, Scope::All).await;
    assert_eq!(reports[0].status, TaskStatus::Pending);
    assert_eq!(reports[0].detail, ENGINE_DOWN);
    assert!(matches!(Grader::connect("s1", &dir.path().join("nope.sock"), Arc::new(FakeShell::default()), 0), Err(GradingError::Connect { .. })));
}
