//! `apt-get install` in a learner's Dockerfile, for real: a session machine builds the course's
//! Dockerfiles, whose `RUN apt-get install` goes through docklab's package proxy to the Debian
//! mirror. apt percent-encodes `+`, `~` and `:` in file names (`python3-pip_23.0.1%2bdfsg-1_all.deb`),
//! which the proxy once refused with 403; and the course starts `FROM ubuntu:latest`, which
//! docklab serves as a Debian-based stand-in that says so in `/etc/os-release`.
//!
//! Needs root, the images built (`docklab setup`, or `docklab images build debian ubuntu`), the
//! session network, and the host reaching deb.debian.org (the proxy's only upstream). A test whose
//! image is missing says so and skips.

use std::time::{Duration, Instant};

use docklab_tests::{manager, state_dir, unique_id, Cleanup};
use sandbox::images::ImageStore;
use sandbox::{ExecOutput, ExecRequest, MachineBackend};

const HELPER: &str = env!("CARGO_BIN_EXE_docklab-test-helper");

fn built(name: &str, tag: &str) -> bool {
    ImageStore::new(&state_dir()).images().iter().any(|i| i.name == name && i.tags.iter().any(|t| t.tag == tag))
}

/// Runs a script in the machine with a timeout long enough for a real `apt-get install`.
async fn run(m: &dyn MachineBackend, id: &str, script: &str) -> ExecOutput {
    m.exec(id, ExecRequest { cmd: vec!["sh".into(), "-c".into(), script.into()], timeout: Duration::from_secs(900), stdin: None })
        .await
        .unwrap_or_else(|e| panic!("exec {script:?} in {id}: {e}"))
}

/// The lines of a build's output worth showing when it fails.
fn tail(out: &ExecOutput) -> String {
    let all = format!("{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = all.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debian_bookworm_build_apt_installs_python_pip_and_go_through_the_proxy() {
    if !built("debian", "bookworm") {
        eprintln!("skipping: debian:bookworm is not built (run `docklab setup`)");
        return;
    }
    let m = manager(HELPER);
    let id = unique_id("aptdeb");
    let info = m.create(&id).await.expect("create machine");
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    assert!(info.address.is_some(), "the machine has an address on the session network");
    let script = r#"set -e
mkdir -p /tmp/aptdeb && cd /tmp/aptdeb
printf 'FROM debian:bookworm\nRUN apt-get update && apt-get install -y python3 python3-pip golang-go\n' > Dockerfile
docker build -t apt-py-go . 2>&1
echo BUILT
docker run --rm apt-py-go sh -c 'python3 --version; pip3 --version; go version; dpkg-query -W -f="\${Version}\n" python3-pip'
"#;
    let started = Instant::now();
    let out = run(&*m, &id, script).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(out.exit_code, 0, "the build fails:\n{}", tail(&out));
    let after = out.stdout.split("BUILT\n").nth(1).unwrap_or("");
    assert!(!out.stdout.contains("Forbidden"), "no package was refused:\n{}", tail(&out));
    assert!(after.contains("Python 3.11"), "{after}");
    assert!(after.contains("pip 23"), "{after}");
    assert!(after.contains("go1.19"), "{after}");
    // The version with a `+` in it: the file apt asked for as `...%2bdfsg...`.
    assert!(after.lines().last().is_some_and(|v| v.contains('+')), "python3-pip's version has a `+`: {after}");
    eprintln!("FROM debian:bookworm + apt-get install python3 python3-pip golang-go: built and ran in {secs:.0} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_course_ubuntu_dockerfile_builds_on_the_stand_in_which_says_what_it_is() {
    if !built("ubuntu", "latest") {
        eprintln!("skipping: the ubuntu stand-in is not built (run `docklab setup` or `docklab images build ubuntu`)");
        return;
    }
    let m = manager(HELPER);
    let id = unique_id("aptubu");
    let info = m.create(&id).await.expect("create machine");
    let _cleanup = Cleanup { manager: m.clone(), id: id.clone() };
    assert!(info.address.is_some(), "the machine has an address on the session network");
    // The course's first Dockerfile, as the notes give it.
    let script = r#"set -e
mkdir -p /tmp/course && cd /tmp/course
cat > app.py <<'EOF'
import os
print("Hello " + os.environ["NAME"] + " from " + open("/etc/os-release").read().split("PRETTY_NAME=")[1].split("\n")[0])
EOF
cat > Dockerfile <<'EOF'
# Image used is ubuntu
FROM ubuntu:latest
# Set the working directory where we want to place all content
WORKDIR /app
# Copy the content from local to docker image in specific folder
COPY . /app
# Install necessary packages
RUN apt-get update && apt-get install python3 python3-pip -y
# Set env variable
ENV NAME World
# This command should run to start the container
CMD ["python3","app.py"]
EOF
docker build -t course-app . 2>&1
echo BUILT
docker run --rm course-app
docker run --rm course-app pip3 --version
docker run --rm ubuntu:latest cat /etc/os-release
docker image inspect -f '{{index .Config.Labels "dev.docklab.stand-in-for"}}' ubuntu:latest
docker pull -q ubuntu:22.04 >/dev/null && docker pull -q ubuntu >/dev/null
docker image inspect -f '{{.Id}}' ubuntu:22.04 ubuntu:latest | sort -u | wc -l
"#;
    let started = Instant::now();
    let out = run(&*m, &id, script).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(out.exit_code, 0, "the course's Dockerfile fails:\n{}", tail(&out));
    assert!(!out.stdout.contains("Forbidden"), "no package was refused:\n{}", tail(&out));
    let after = out.stdout.split("BUILT\n").nth(1).unwrap_or("");
    let lines: Vec<&str> = after.lines().collect();
    // The app runs, and what it printed from os-release discloses the stand-in.
    assert_eq!(lines.first().copied(), Some("Hello World from \"docklab's Debian-based stand-in for ubuntu (Debian GNU/Linux 12 (bookworm))\""), "{after}");
    assert!(lines.get(1).is_some_and(|l| l.starts_with("pip 23")), "{after}");
    assert!(after.contains("NAME=\"Debian GNU/Linux (docklab's stand-in for ubuntu)\"") && after.contains("ID=debian"), "/etc/os-release says what it is: {after}");
    assert!(after.contains("ubuntu (this is debian:bookworm, Debian bookworm, not ubuntu)"), "the image's label says it too: {after}");
    assert_eq!(lines.last().copied(), Some("1"), "ubuntu:22.04 and ubuntu:latest are the same stand-in: {after}");
    eprintln!("the course's FROM ubuntu:latest Dockerfile (apt-get install python3 python3-pip): built and ran in {secs:.0} s");
}
