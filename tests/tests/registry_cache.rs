//! docklab's registry as a pull-through cache, for real and offline: Debian's `docker-registry`
//! on host loopback stands in for Docker Hub, skopeo pushes an image into it that docklab does not
//! build, and a real `docklab serve --registry-upstream` serves a real session machine, which
//! pulls that image through the cache, then pulls it again with the upstream stopped.
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
        let dir = std::env::temp_dir().join(format!("docklab-upstream-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
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

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(port: u16, id: &str, token: &str, script: &str) -> (i64, String) {
    let out = exec(port, id, token, &format!("{script} 2>&1"));
    (out["exit_code"].as_i64().unwrap_or(-1), out["stdout"].as_str().unwrap_or("").to_string())
}

#[test]
fn a_session_pulls_an_image_docklab_lacks_through_the_cache_and_again_with_the_upstream_gone() {
    let images = ImageStore::new(&state_dir()).images();
    let Some(hello) = images.iter().find(|i| i.name == "hello-world") else {
        eprintln!("skipping: hello-world is not built (run `docklab setup`)");
        return;
    };
    // An image docklab does not have, in the upstream: docklab's hello-world under another name.
    let name = format!("cachedemo{}", std::process::id());
    let mut upstream = Upstream::start();
    let src = format!("oci:{}:{}", hello.layout.display(), hello.tags[0].tag);
    let dst = format!("docker://127.0.0.1:{}/library/{name}:1", upstream.port);
    let out = Command::new("skopeo").args(["copy", "--quiet", "--dest-tls-verify=false", &src, &dst]).output().expect("skopeo is installed by docklab setup");
    assert!(out.status.success(), "pushing into the upstream: {}", String::from_utf8_lossy(&out.stderr));

    let port = free_port();
    let upstream_url = format!("http://127.0.0.1:{}", upstream.port);
    let _server = start_server_with(port, &["--warm-machines", "0", "--end-sessions-on-exit", "--registry-upstream", &upstream_url]);
    // The registry on the bridge must be this server's (a test process may hold its ports for a
    // moment): it is when it answers for the image only the upstream has.
    let probe = format!("http://10.200.0.1/v2/library/{name}/manifests/1");
    let deadline = Instant::now() + Duration::from_secs(120);
    while curl(port, &["-o", "/dev/null", "-w", "%{http_code}", &probe]) != "200" {
        assert!(Instant::now() < deadline, "the registry on 10.200.0.1 is not this server's (another process holds its ports)");
        std::thread::sleep(Duration::from_millis(500));
    }

    let (id, token) = create_session(port, None);
    let started = Instant::now();
    let (code, said) = run(port, &id, &token, &format!("docker pull {name}:1 && docker run --rm {name}:1"));
    assert_eq!(code, 0, "first pull, through the cache: {said}");
    assert!(said.contains("Hello from docklab!"), "{said}");
    eprintln!("pull through the cache: {:.2} s", started.elapsed().as_secs_f64());
    // An image neither has: docklab's list, and the upstream's word.
    let (code, said) = run(port, &id, &token, "docker pull nosuchimage:1");
    assert_ne!(code, 0);
    assert!(said.contains("Images you can pull here") && said.contains("has none either"), "{said}");

    // The upstream goes away; the image is removed from the machine and pulled again.
    upstream.stop();
    let (code, said) = run(port, &id, &token, &format!("docker rmi {name}:1 && docker pull {name}:1 && docker run --rm {name}:1"));
    assert_eq!(code, 0, "second pull, from the cache alone: {said}");
    assert!(said.contains("Hello from docklab!"), "{said}");
    let cache = state_dir().join("registry-cache");
    let layer = &hello.info.as_ref().expect("docklab.json").layer_digest;
    assert!(cache.join("blobs/sha256").join(layer.trim_start_matches("sha256:")).is_file(), "the layer is kept in {}", cache.display());
    let (code, said) = run(port, &id, &token, "docker pull nosuchimage:1");
    assert_ne!(code, 0);
    assert!(said.contains("Images you can pull here") && said.contains("could not be asked"), "{said}");
    let _ = curl(port, &["-X", "DELETE", "-H", &format!("Authorization: Bearer {token}"), &format!("/api/sessions/{id}")]);
    let _ = std::fs::remove_dir_all(cache.join("tags/library").join(&name));
}
