//! docklab's base images, for real: the registry serves every image `docklab setup` built, skopeo
//! (a real registry client) pulls them, each image's smoke command runs, and, in a real session
//! machine, Docker pulls them, builds a multi-stage Go image under 5 MB, runs a distroless Python
//! app and apt-installs a package through the package proxy.
//!
//! Needs root and the images built (`docklab setup` or `docklab images build`); a test whose
//! images are missing says so and skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use docklab_tests::{manager, sh, state_dir, unique_id, Cleanup};
use sandbox::images::{ImageStore, StoredImage, CATALOG};
use sandbox::MachineBackend;

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");

fn store() -> ImageStore {
    ImageStore::new(&state_dir())
}

fn built(images: &[StoredImage], name: &str) -> Option<StoredImage> {
    images.iter().find(|i| i.name == name).cloned()
}

/// The registry on a loopback port chosen by the kernel.
async fn registry_on_loopback() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = sandbox::registry::router(store());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

fn skopeo(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("skopeo").args(args).output().expect("skopeo is installed by docklab setup");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_inspects_every_built_image_under_each_of_its_names() {
    let images = store().images();
    if images.is_empty() {
        eprintln!("skipping: no images built (run `docklab setup`)");
        return;
    }
    let addr = registry_on_loopback().await;
    let mut checked = 0;
    for image in &images {
        let info = image.info.as_ref().expect("every built image has docklab.json");
        // Docker Hub names as a mirror is asked for them, and plain ones; gcr.io names in full.
        let mut names = vec![image.name.clone()];
        if !image.name.contains('/') {
            names.push(format!("library/{}", image.name));
        }
        for name in names {
            for tag in &image.tags {
                let reference = format!("docker://{addr}/{name}:{}", tag.tag);
                let (ok, out, err) = tokio::task::spawn_blocking(move || skopeo(&["inspect", "--tls-verify=false", &reference])).await.unwrap();
                assert!(ok, "skopeo inspect {name}:{}: {err}", tag.tag);
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["Digest"], info.manifest_digest.as_str(), "{name}:{}", tag.tag);
                assert_eq!(v["Os"], "linux");
                assert!(v["Labels"]["dev.docklab.built-by"].as_str().unwrap().contains("Debian"), "{name} is labelled as built from Debian packages");
                assert!(!v["Labels"]["dev.docklab.packages"].as_str().unwrap().is_empty());
                checked += 1;
            }
        }
    }
    eprintln!("skopeo inspected {checked} references of {} images", images.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_images_and_every_blob_matches_its_digest() {
    let images = store().images();
    let wanted = ["busybox", "gcr.io/distroless/static-debian12", "golang"];
    let present: Vec<&str> = wanted.iter().copied().filter(|n| built(&images, n).is_some()).collect();
    if present.is_empty() {
        eprintln!("skipping: none of {wanted:?} is built");
        return;
    }
    let addr = registry_on_loopback().await;
    let tmp = tempfile_dir("copy");
    for name in present {
        let image = built(&images, name).unwrap();
        let dest = tmp.join(name.replace('/', "_"));
        let src = format!("docker://{addr}/{name}:{}", image.tags[0].tag);
        let dst = format!("oci:{}:{}", dest.display(), image.tags[0].tag);
        let started = Instant::now();
        let (ok, _, err) = tokio::task::spawn_blocking(move || skopeo(&["copy", "--quiet", "--src-tls-verify=false", &src, &dst])).await.unwrap();
        assert!(ok, "skopeo copy {name}: {err}");
        eprintln!("pull {name}: {:.2} s ({} compressed) with skopeo over loopback", started.elapsed().as_secs_f64(), sandbox::images::human(image.info.as_ref().unwrap().size));
        // skopeo verified each blob's digest as it copied; the copy has the same manifest.
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], image.tags[0].digest.as_str());
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_images_and_pushes_fail_with_messages_that_help() {
    let images = store().images();
    if built(&images, "busybox").is_none() {
        eprintln!("skipping: busybox is not built");
        return;
    }
    let addr = registry_on_loopback().await;
    let a = addr.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || skopeo(&["inspect", "--tls-verify=false", &format!("docker://{a}/library/busybox:9.99")])).await.unwrap();
    assert!(!ok);
    assert!(err.contains("busybox:latest") && err.contains("Images you can pull here"), "the error lists what is available: {err}");
    // Push: copy busybox out, then try to push it back under another name.
    let tmp = tempfile_dir("push");
    let dir = format!("oci:{}:latest", tmp.join("bb").display());
    let (a, d) = (addr.clone(), dir.clone());
    let (ok, _, err) = tokio::task::spawn_blocking(move || skopeo(&["copy", "--quiet", "--src-tls-verify=false", &format!("docker://{a}/busybox:latest"), &d])).await.unwrap();
    assert!(ok, "{err}");
    let a = addr.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || skopeo(&["copy", "--quiet", "--dest-tls-verify=false", &dir, &format!("docker://{a}/mine:1")])).await.unwrap();
    assert!(!ok, "a push must fail");
    assert!(err.contains("read-only") || err.contains("denied"), "the push error says why: {err}");
    let _ = std::fs::remove_dir_all(&tmp);
}

fn tempfile_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("docklab-images-test-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Unpacks an image's single layer into a fresh directory.
fn unpack(image: &StoredImage) -> PathBuf {
    let info = image.info.as_ref().unwrap();
    let dir = tempfile_dir(&image.name.replace('/', "_"));
    let blob = image.layout.join("blobs/sha256").join(info.layer_digest.trim_start_matches("sha256:"));
    let st = Command::new("tar").arg("-xzf").arg(&blob).arg("-C").arg(&dir).arg("--numeric-owner").status().unwrap();
    assert!(st.success(), "unpacking {}", image.name);
    // The few device nodes a container runtime would provide.
    std::fs::create_dir_all(dir.join("dev")).unwrap();
    std::fs::create_dir_all(dir.join("proc")).unwrap();
    for (name, minor) in [("null", "3"), ("zero", "5"), ("urandom", "9")] {
        let _ = Command::new("mknod").args(["-m", "666"]).arg(dir.join("dev").join(name)).args(["c", "1", minor]).status();
    }
    dir
}

/// Runs a command in an unpacked image with its configured environment: chroot, with its own
/// /proc in a private mount and pid namespace (the JVM finds its libraries through /proc).
fn run_in(root: &Path, env: &[&str], argv: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("/usr/bin/unshare");
    cmd.args(["--mount", "--pid", "--fork", "--propagation", "private"]).arg(format!("--mount-proc={}", root.join("proc").display()));
    // Docker sets HOME for the container's user; so do we.
    cmd.arg("/usr/sbin/chroot").arg(root).args(argv).env_clear().env("HOME", "/root");
    for e in env {
        let (k, v) = e.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn each_image_does_what_it_says_offline() {
    let images = store().images();
    let mut ran = Vec::new();
    for recipe in CATALOG {
        let Some(image) = images.iter().find(|i| i.name == recipe.name && i.tags.iter().any(|t| t.tag == recipe.tags[0])) else {
            eprintln!("not built, not checked: {}", recipe.reference());
            continue;
        };
        let root = unpack(image);
        let env = recipe.config.env;
        let distroless = matches!(recipe.source, sandbox::images::Source::Distroless { .. });
        if distroless {
            for shell in ["bin/sh", "bin/bash", "usr/bin/dpkg", "usr/bin/apt"] {
                assert!(!root.join(shell).exists(), "{} must have no {shell}", recipe.reference());
            }
            assert!(root.join("etc/ssl/certs/ca-certificates.crt").is_file());
            assert!(std::fs::read_to_string(root.join("etc/passwd")).unwrap().contains("nonroot:x:65532"));
            if !recipe.name.contains("static") {
                // glibc's loader and libc, through the merged-/usr links.
                assert!(root.join("lib64/ld-linux-x86-64.so.2").exists() && root.join("lib/x86_64-linux-gnu/libc.so.6").exists(), "{} has glibc", recipe.reference());
            }
        } else if !matches!(recipe.source, sandbox::images::Source::HelloWorld) {
            if !recipe.name.starts_with("busybox") {
                let proxy = std::fs::read_to_string(root.join("etc/apt/apt.conf.d/01docklab-proxy")).unwrap();
                assert!(proxy.contains("http://10.200.0.1:3142"), "{}", recipe.reference());
            }
        }
        let mut argv: Vec<&str> = recipe.config.entrypoint.to_vec();
        argv.extend(if recipe.smoke.is_empty() { recipe.config.cmd } else { recipe.smoke });
        let check = match recipe.name {
            "hello-world" => Some("Hello from docklab!"),
            "busybox" => Some("hello from busybox"),
            "python" | "gcr.io/distroless/python3-debian12" => Some("hello from python"),
            "node" => Some("hello from node"),
            "golang" => Some("go1.19"),
            "gcc" => Some("gcc"),
            "nginx" => Some("syntax is ok"),
            "maven" => Some("Apache Maven"),
            "openjdk" => Some("openjdk version \"17"),
            _ => None,
        };
        if let Some(want) = check {
            let started = Instant::now();
            let (ok, out) = run_in(&root, env, &argv);
            assert!(ok && out.contains(want), "{} {argv:?}: {out}", recipe.reference());
            ran.push(format!("{} {:.1}s", recipe.reference(), started.elapsed().as_secs_f64()));
        }
        if recipe.name == "gcr.io/distroless/java17-debian12" {
            let (ok, out) = run_in(&root, env, &["/usr/bin/java", "-version"]);
            assert!(ok && out.contains("17"), "java17-debian12: {out}");
        }
        if recipe.name == "golang" {
            // `go build` of a standard-library program works offline and gives a static binary.
            std::fs::create_dir_all(root.join("src/app")).unwrap();
            std::fs::write(root.join("src/app/main.go"), "package main\nimport (\"fmt\"; \"net/http\")\nfunc main() { fmt.Println(\"built offline\", http.StatusOK) }\n").unwrap();
            std::fs::write(root.join("src/app/go.mod"), "module app\ngo 1.19\n").unwrap();
            let started = Instant::now();
            let (ok, out) = run_in(&root, env, &["sh", "-c", "cd /src/app && go build -o /app . && /app"]);
            assert!(ok && out.contains("built offline 200"), "go build: {out}");
            let file = Command::new("file").arg(root.join("app")).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            assert!(file.is_empty() || file.contains("statically linked"), "the Go binary runs on scratch: {file}");
            eprintln!("go build of a net/http program: {:.1} s", started.elapsed().as_secs_f64());
        }
        if recipe.name == "nginx" {
            let conf = std::fs::read_to_string(root.join("etc/nginx/sites-available/default")).unwrap();
            assert!(conf.contains("root /usr/share/nginx/html"));
            assert!(root.join("usr/share/nginx/html/index.html").is_file());
            assert_eq!(std::fs::read_link(root.join("var/log/nginx/access.log")).unwrap(), Path::new("/dev/stdout"));
        }
        if recipe.name == "registry" {
            assert!(root.join("usr/bin/docker-registry").is_file());
            assert!(std::fs::read_to_string(root.join("etc/docker/registry/config.yml")).unwrap().contains("rootdirectory: /var/lib/registry"));
        }
        let _ = std::fs::remove_dir_all(&root);
    }
    eprintln!("smoke commands ran: {}", ran.join(", "));
}

/// In a real machine: pulls (timed), multi-stage Go under 5 MB, distroless Python without a
/// shell, apt through the proxy. Needs the session network (bridge dlbr0, host 10.200.0.1): the
/// test says so and stops when a machine gets no address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pulls_builds_and_runs_the_course_images() {
    let images = store().images();
    for n in ["busybox", "golang", "gcr.io/distroless/python3-debian12", "debian"] {
        if built(&images, n).is_none() {
            eprintln!("skipping: {n} is not built (run `docklab setup`)");
            return;
        }
    }
    let m = manager(HELPER);
    let id = unique_id("img");
    let info = m.create(&id).await.expect("create machine");
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    if info.address.is_none() {
        eprintln!("skipping: this machine has no network address yet (the session network is not there)");
        return;
    }
    let timed = |what: &'static str, script: String| {
        let m = m.clone();
        let id = id.clone();
        async move {
            let started = Instant::now();
            let out = sh(&*m, &id, &script).await;
            assert_eq!(out.exit_code, 0, "{what}: {out:?}");
            let secs = started.elapsed().as_secs_f64();
            eprintln!("{what}: {secs:.2} s");
            (out, secs)
        }
    };
    // Docker's own preloaded busybox would hide a pull: remove it first.
    sh(&*m, &id, "docker rmi -f busybox:latest >/dev/null 2>&1; true").await;
    let (_, busybox) = timed("pull busybox into a fresh session", "docker pull -q busybox".into()).await;
    let (_, golang) = timed("pull golang:1.19 into a fresh session", "docker pull -q golang:1.19".into()).await;
    eprintln!("BENCH pull busybox {busybox:.2} s (target < 0.5 s), golang:1.19 {golang:.2} s (target < 5 s)");

    // Each image runs its smoke command through Docker.
    for recipe in CATALOG {
        if recipe.smoke.is_empty() || built(&images, recipe.name).is_none() {
            continue;
        }
        let args: Vec<String> = recipe.smoke.iter().map(|a| format!("'{}'", a.replace('\'', r"'\''"))).collect();
        let run = format!("docker run --rm {} {}", recipe.reference(), args.join(" "));
        let out = sh(&*m, &id, &run).await;
        if out.exit_code != 0 {
            // dockerd falls back from the mirror to Docker Hub and reports only that: show why.
            let log = sh(&*m, &id, "grep -i 'mirror\\|next endpoint\\|error' /var/log/dockerd.log | tail -5").await;
            panic!("{run}: {out:?}\ndockerd: {}", log.stdout);
        }
        assert!(!out.stdout.is_empty() || !out.stderr.is_empty(), "{}", recipe.reference());
    }
    let out = sh(&*m, &id, "docker run --rm hello-world").await;
    assert!(out.stdout.contains("Hello from docklab!"), "{out:?}");

    // A pull of an image docklab does not have fails with docklab's list of what it has.
    let out = sh(&*m, &id, "docker pull alpine:3.19 2>&1").await;
    assert_ne!(out.exit_code, 0);
    assert!(out.stdout.contains("no image called alpine") && out.stdout.contains("golang:1.19"), "{}", out.stdout);

    // Multi-stage Go: the final image is under 5 MB and runs; the single-stage one is hundreds.
    let script = r#"set -e
mkdir -p /tmp/go && cd /tmp/go
printf 'package main\nimport "fmt"\nfunc main() { fmt.Println("hello from a scratch image") }\n' > main.go
printf 'module hello\ngo 1.19\n' > go.mod
printf 'FROM golang:1.19 AS build\nWORKDIR /src\nCOPY go.mod main.go ./\nRUN go build -o /hello .\nFROM scratch\nCOPY --from=build /hello /hello\nENTRYPOINT ["/hello"]\n' > Dockerfile
printf 'FROM golang:1.19\nWORKDIR /src\nCOPY go.mod main.go ./\nRUN go build -o /hello .\nCMD ["/hello"]\n' > Dockerfile.single
docker build -q -t hello-multi . >/dev/null
docker build -q -t hello-single -f Dockerfile.single . >/dev/null
docker run --rm hello-multi
docker image inspect -f '{{.Size}}' hello-multi
docker image inspect -f '{{.Size}}' hello-single
"#;
    let (out, _) = timed("multi-stage and single-stage Go builds", script.into()).await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "hello from a scratch image");
    let (multi, single): (u64, u64) = (lines[1].parse().unwrap(), lines[2].parse().unwrap());
    assert!(multi < 5_000_000, "multi-stage image is {multi} bytes");
    assert!(single > 200_000_000, "single-stage image is only {single} bytes");
    eprintln!("multi-stage Go image {multi} bytes, single-stage {single} bytes");

    // An interpreted app on distroless Python runs, and the image has no shell.
    let script = r#"set -e
mkdir -p /tmp/py && cd /tmp/py
printf 'print("hello from distroless")\n' > app.py
printf 'FROM gcr.io/distroless/python3-debian12\nCOPY app.py /app/app.py\nWORKDIR /app\nCMD ["app.py"]\n' > Dockerfile
docker build -q -t py-distroless . >/dev/null
docker run --rm py-distroless
if docker run --rm --entrypoint sh py-distroless -c true 2>/dev/null; then echo HAS-SHELL; else echo no-shell; fi
"#;
    let (out, _) = timed("distroless Python app", script.into()).await;
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), ["hello from distroless", "no-shell"]);

    // A Dockerfile that apt-installs a package through the proxy builds.
    let script = r#"set -e
mkdir -p /tmp/apt && cd /tmp/apt
printf 'FROM debian:bookworm\nRUN apt-get update && apt-get install -y --no-install-recommends hello\nCMD ["hello"]\n' > Dockerfile
docker build -q -t apt-hello . >/dev/null
docker run --rm apt-hello
"#;
    let (out, _) = timed("apt-get install through the package proxy", script.into()).await;
    assert_eq!(out.stdout.trim(), "Hello, world!");
    m.destroy(&id).await.unwrap();
}

/// In a real machine: pulling an image docklab does not have, under a Docker Hub name or a
/// gcr.io one, fails with docklab's list of images (dockerd's fallback from the mirror to "Docker
/// Hub" reaches docklab over TLS), and pushing to Docker Hub reaches docklab's refusal. Only the
/// machine's dockerd trusts docklab's CA: the learner's curl does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pulling_an_image_docklab_lacks_is_told_what_there_is_and_a_push_is_refused() {
    let images = store().images();
    if built(&images, "busybox").is_none() {
        eprintln!("skipping: busybox is not built (run `docklab setup`)");
        return;
    }
    let m = manager(HELPER);
    let id = unique_id("imgmiss");
    let info = m.create(&id).await.expect("create machine");
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    assert!(info.address.is_some(), "the machine has an address on the session network");
    for (pull, shown) in [
        ("docker pull nosuchimage", "no image called nosuchimage."),
        ("docker pull library/nosuch:1", "no image called nosuch."),
        ("docker pull busybox:9.99", "no image busybox:9.99"),
        ("docker pull gcr.io/distroless/nosuch-debian12", "no image called gcr.io/distroless/nosuch-debian12."),
    ] {
        let started = Instant::now();
        let out = sh(&*m, &id, &format!("{pull} 2>&1")).await;
        let said = out.stdout.trim();
        eprintln!("{pull} ({:.2} s): {said}", started.elapsed().as_secs_f64());
        assert_ne!(out.exit_code, 0, "{pull} must fail");
        assert!(said.contains("Images you can pull here") && said.contains("busybox:latest") && said.contains(shown), "{pull} lists what docklab has: {said}");
        assert!(!said.contains("lookup") && !said.contains("no such host"), "{pull} never tries the internet: {said}");
    }
    // `docker push busybox` targets docker.io: it reaches docklab, which refuses and says how to push.
    let out = sh(&*m, &id, "docker pull -q busybox >/dev/null && docker push busybox 2>&1").await;
    assert_ne!(out.exit_code, 0);
    assert!(out.stdout.contains("read-only") && out.stdout.contains("registry:2"), "push is refused with a way forward: {}", out.stdout);
    eprintln!("docker push busybox: {}", out.stdout.lines().last().unwrap_or(""));
    // `docker login` reaches docklab as Docker Hub and is told why not, instead of "Login Succeeded".
    let out = sh(&*m, &id, "docker login -u me -p secret 2>&1").await;
    assert_ne!(out.exit_code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("no Docker Hub account") && out.stdout.contains("registry:2"), "login is refused with a way forward: {}", out.stdout);
    // Docker Hub's own name, straight over TLS with an anonymous token (no mirror in between).
    let out = sh(&*m, &id, "docker pull -q registry-1.docker.io/library/hello-world && docker run --rm registry-1.docker.io/library/hello-world 2>&1").await;
    assert!(out.exit_code == 0 && out.stdout.contains("Hello from docklab!"), "a pull as registry-1.docker.io: {out:?}");
    // The CA is dockerd's alone: curl in the learner's shell does not trust it.
    let out = sh(&*m, &id, "curl -sS -o /dev/null https://registry-1.docker.io/v2/ 2>&1; echo rc=$?").await;
    assert!(out.stdout.contains("certificate") && !out.stdout.contains("rc=0"), "curl must refuse docklab's certificate: {}", out.stdout);
    let out = sh(&*m, &id, "curl -sS --cacert /etc/docklab/registry-ca.crt https://gcr.io/v2/library/busybox/tags/list").await;
    assert!(out.stdout.contains("\"latest\""), "with the CA named, the registry answers as Docker Hub: {out:?}");
}
