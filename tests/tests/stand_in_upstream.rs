//! docklab's `ubuntu` is a Debian-based stand-in; with `docklab serve --registry-upstream` the
//! upstream's real image of that name and tag is pulled instead, and the stand-in only for a tag
//! the upstream lacks. For real and offline: Debian's `docker-registry` on host loopback plays
//! Docker Hub and holds an "ubuntu:latest" (docklab's hello-world, easy to tell apart), and a real
//! session machine pulls through a real `docklab serve`.
//!
//! Its own test binary: the server must serve the registry itself (with its upstream), so nothing
//! else in this process may take the registry's ports.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use docklab_tests::server::{create_session, curl, exec, free_port, start_server_with};
use docklab_tests::state_dir;
use sandbox::images::ImageStore;

/// Debian's registry on a loopback port, storing in a temporary directory.
struct Upstream {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Upstream {
    fn start() -> Upstream {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("docklab-standin-upstream-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n", dir.join("data").display());
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("Debian's docker-registry is installed (scripts/test.sh installs it: apt-get install docker-registry)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "/v2/"]) != "200" {
            assert!(Instant::now() < deadline, "docker-registry did not start: {}", std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
        Upstream { child, dir, port }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the upstream's `ubuntu` tags from docklab's registry cache, so that no later server
/// (whose upstream may be unreachable, when a cached tag is served however old) hands out the
/// test's fake ubuntu.
struct ForgetCachedUbuntu;

impl Drop for ForgetCachedUbuntu {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(state_dir().join("registry-cache/tags/library/ubuntu"));
    }
}

#[test]
fn with_an_upstream_the_real_ubuntu_is_pulled_and_the_stand_in_only_for_tags_the_upstream_lacks() {
    let images = ImageStore::new(&state_dir()).images();
    let (Some(hello), Some(stand_in)) = (images.iter().find(|i| i.name == "hello-world"), images.iter().find(|i| i.name == "ubuntu")) else {
        eprintln!("skipping: hello-world or the ubuntu stand-in is not built (run `docklab setup`)");
        return;
    };
    let stand_in_digest = stand_in.tags[0].digest.clone();
    // Before (a run that was killed may have left it) and after.
    drop(ForgetCachedUbuntu);
    let _forget = ForgetCachedUbuntu;
    let upstream = Upstream::start();
    let src = format!("oci:{}:{}", hello.layout.display(), hello.tags[0].tag);
    let dst = format!("docker://127.0.0.1:{}/library/ubuntu:latest", upstream.port);
    let out = Command::new("skopeo").args(["copy", "--quiet", "--dest-tls-verify=false", &src, &dst]).output().expect("skopeo is installed by docklab setup");
    assert!(out.status.success(), "pushing into the upstream: {}", String::from_utf8_lossy(&out.stderr));

    let port = free_port();
    let upstream_url = format!("http://127.0.0.1:{}", upstream.port);
    let _server = start_server_with(port, &["--warm-machines", "0", "--end-sessions-on-exit", "--registry-upstream", &upstream_url]);
    // The registry on the bridge must be this server's (a test process may hold its ports for a
    // moment): it is when ubuntu:latest is not the stand-in.
    let probe = "http://10.200.0.1/v2/library/ubuntu/manifests/latest";
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let headers = curl(port, &["-s", "-I", "-H", "Accept: application/vnd.oci.image.manifest.v1+json", probe]).to_ascii_lowercase();
        if headers.starts_with("http/1.1 200") && !headers.contains(&stand_in_digest) {
            break;
        }
        assert!(Instant::now() < deadline, "the registry on 10.200.0.1 is not this server's (another process holds its ports): {headers}");
        std::thread::sleep(Duration::from_millis(500));
    }

    let (id, token) = create_session(port, None);
    let run = |script: &str| {
        let out = exec(port, &id, &token, &format!("{script} 2>&1"));
        (out["exit_code"].as_i64().unwrap_or(-1), out["stdout"].as_str().unwrap_or("").to_string())
    };
    // ubuntu:latest is the upstream's (here: hello-world), not docklab's stand-in.
    let (code, said) = run("docker pull -q ubuntu:latest >/dev/null && docker run --rm ubuntu:latest");
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("Hello from docklab!"), "the upstream's ubuntu:latest is pulled: {said}");
    // A tag the upstream does not have: the stand-in, which says what it is.
    let (code, said) = run("docker pull -q ubuntu:22.04 >/dev/null && docker run --rm ubuntu:22.04 cat /etc/os-release");
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("docklab's Debian-based stand-in for ubuntu"), "the stand-in for a tag the upstream lacks: {said}");
    let _ = curl(port, &["-X", "DELETE", "-H", &format!("Authorization: Bearer {token}"), &format!("/api/sessions/{id}")]);
}
