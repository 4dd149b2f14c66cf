//! `hello-world`: docklab's own small program, compiled statically on the host with Debian's gcc
//! and glibc, alone in an image.

use std::path::Path;
use std::process::Command;

use super::ImageError;

pub const SOURCE: &str = r#"/* docklab's hello-world: printed by a static program, alone in its image. */
#include <unistd.h>
#include <string.h>

static const char message[] =
"\n"
"Hello from docklab!\n"
"This message shows that your Docker installation appears to be working.\n"
"\n"
"To generate this message, Docker took the following steps:\n"
" 1. The Docker client contacted the Docker daemon.\n"
" 2. The Docker daemon pulled the \"hello-world\" image from docklab's registry\n"
"    (built from Debian packages: this program is linked with Debian's glibc).\n"
" 3. The Docker daemon created a new container from that image which runs the\n"
"    executable that produced the output you are currently reading.\n"
" 4. The Docker daemon streamed that output to the Docker client, which sent it\n"
"    to your terminal.\n"
"\n"
"To try something more ambitious, you can run a Debian container with:\n"
" $ docker run -it debian:bookworm bash\n"
"\n";

int main(void) {
    const char *p = message;
    size_t left = sizeof(message) - 1;
    while (left > 0) {
        ssize_t n = write(1, p, left);
        if (n <= 0) return 1;
        p += n;
        left -= (size_t)n;
    }
    return 0;
}
"#;

/// Compiles the program into `root/hello`.
pub fn write_tree(root: &Path, work: &Path) -> Result<(), ImageError> {
    let src = work.join("hello.c");
    std::fs::write(&src, SOURCE).map_err(|source| ImageError::Io { what: "writing", path: src.clone(), source })?;
    let out = root.join("hello");
    let result = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-ffile-prefix-map=/=", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .map_err(|e| ImageError::Command { image: "hello-world".into(), command: "gcc", detail: format!("{e} (install gcc and libc6-dev)") })?;
    if !result.status.success() {
        return Err(ImageError::Command { image: "hello-world".into(), command: "gcc", detail: String::from_utf8_lossy(&result.stderr).into_owned() });
    }
    Ok(())
}
