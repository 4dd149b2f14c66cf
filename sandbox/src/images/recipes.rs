//! What each base image is made of: the catalog of recipes.
//!
//! Every image is built from Debian bookworm packages. Names follow the images the course talks
//! about (`golang:1.19`, `gcr.io/distroless/static-debian12`), but nothing is named after a
//! distribution it is not built from: the Java images are `openjdk` (Debian's OpenJDK packages),
//! not `eclipse-temurin`. The one exception is declared as such: `ubuntu` is a stand-in
//! ([`Source::StandIn`]), Debian bookworm with an `/etc/os-release` that says it stands in for
//! ubuntu, so that the course's `FROM ubuntu` Dockerfiles build offline.

/// Bumped when the build steps shared by all recipes change, so every image is rebuilt.
pub const RECIPE_FORMAT: u32 = 2;

/// The Debian release and mirrors images are built from, and which their `sources.list` names.
pub const SUITE: &str = "bookworm";
pub const MIRRORS: &[&str] = &[
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];

/// Where session machines reach docklab's package proxy (the host's address on the session bridge).
pub const APT_PROXY_CONF: &str = "Acquire::http::Proxy \"http://10.200.0.1:3142\";\n";

pub const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Copy)]
pub struct Recipe {
    /// Repository name as `docker pull` spells it (`busybox`, `gcr.io/distroless/base-debian12`).
    pub name: &'static str,
    /// The first tag names the layout directory; all of them are served.
    pub tags: &'static [&'static str],
    pub description: &'static str,
    pub source: Source,
    pub config: Settings,
    /// A command that shows the image works, for tests and `docklab images list` (`docker run IMAGE ...`).
    pub smoke: &'static [&'static str],
}

#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// The host's `busybox-static` binary and a link per applet.
    Busybox,
    /// docklab's own hello program, compiled statically with the host's Debian gcc.
    HelloWorld,
    /// `mmdebstrap --variant=VARIANT --include=PACKAGES`, then `hooks` run with the root as `$1`.
    Debian {
        variant: &'static str,
        packages: &'static [&'static str],
        /// Leave out man pages, docs and translations, as the official `-slim` images do.
        slim: bool,
        /// Files written into the image (path, content).
        files: &'static [(&'static str, &'static str)],
        /// Shell run on the host after the packages are installed, with the root as `$1`.
        hooks: &'static [&'static str],
    },
    /// Another recipe's root filesystem (unpacked from its built layer) with `files` written over
    /// it: an openly labelled stand-in for an image docklab cannot build from Debian (`ubuntu`).
    /// Its `/etc/os-release` must say what it is; with an upstream registry the real image wins
    /// (see [`is_stand_in`]).
    StandIn {
        /// The recipe whose image is the base, as `(name, first tag)`.
        base: (&'static str, &'static str),
        /// What the image stands in for, e.g. `ubuntu`.
        stands_in_for: &'static str,
        files: &'static [(&'static str, &'static str)],
    },
    /// Built the way distroless is: only the files of the listed packages and of what they
    /// depend on (minus shells, package managers and their like), no shell, no package manager.
    Distroless {
        packages: &'static [&'static str],
        /// Files made by maintainer scripts (not listed by any package) to keep. A path ending in
        /// `/**` keeps everything under it.
        extra: &'static [&'static str],
        /// Symbolic links to make (path, target), e.g. what `update-alternatives` would have made.
        links: &'static [(&'static str, &'static str)],
    },
}

/// The image's runtime configuration (the `config` object of an OCI image configuration).
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    pub env: &'static [&'static str],
    pub entrypoint: &'static [&'static str],
    pub cmd: &'static [&'static str],
    pub working_dir: &'static str,
    pub exposed_ports: &'static [&'static str],
    pub volumes: &'static [&'static str],
    pub user: &'static str,
    pub stop_signal: &'static str,
}

impl Recipe {
    /// `name:first-tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tags[0])
    }

    /// The Debian packages asked for (the rest come in as their dependencies).
    pub fn packages(&self) -> Vec<&'static str> {
        match self.source {
            Source::Busybox => vec!["busybox-static"],
            Source::HelloWorld => vec!["gcc", "libc6-dev"],
            Source::Debian { packages, .. } | Source::Distroless { packages, .. } => packages.to_vec(),
            Source::StandIn { .. } => base_of(self).map(Recipe::packages).unwrap_or_default(),
        }
    }

    /// Whether a name given on the command line means this recipe (`golang`, `golang:1.19`,
    /// `gcr.io/distroless/static-debian12`, `static-debian12`).
    pub fn matches(&self, wanted: &str) -> bool {
        let (name, tag) = match wanted.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (wanted, None),
        };
        let name_ok = self.name == name || self.name.rsplit('/').next() == Some(name);
        name_ok && tag.is_none_or(|t| self.tags.contains(&t))
    }
}

const DEBIAN_FILES: &[(&str, &str)] = &[
    ("etc/apt/apt.conf.d/01docklab-proxy", APT_PROXY_CONF),
    // As Docker's official Debian images do: no package cache left in layers, no translations.
    (
        "etc/apt/apt.conf.d/docker-clean",
        "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\n\
         APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\n\
         Dir::Cache::pkgcache \"\";\nDir::Cache::srcpkgcache \"\";\n",
    ),
    ("etc/apt/apt.conf.d/docker-no-languages", "Acquire::Languages \"none\";\n"),
    ("etc/apt/apt.conf.d/docker-autoremove-suggests", "Apt::AutoRemove::SuggestsImportant \"false\";\n"),
];

const NGINX_SITE: &str = "server {\n\tlisten 80 default_server;\n\tlisten [::]:80 default_server;\n\tserver_name _;\n\troot /usr/share/nginx/html;\n\tindex index.html index.htm;\n\tlocation / {\n\t\ttry_files $uri $uri/ =404;\n\t}\n}\n";

const REGISTRY_CONFIG: &str = "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\nhttp:\n  addr: :5000\n  headers:\n    X-Content-Type-Options: [nosniff]\nhealth:\n  storagedriver:\n    enabled: true\n    interval: 10s\n    threshold: 3\n";

/// `/etc/os-release` of the `ubuntu` stand-in (`/etc/os-release` links to it, as in Debian): it
/// is Debian bookworm and says so; `ID=debian`, so tools that branch on the distribution pick
/// Debian's ways, which are the right ones for its packages.
const UBUNTU_STAND_IN_OS_RELEASE: &str = "PRETTY_NAME=\"docklab's Debian-based stand-in for ubuntu (Debian GNU/Linux 12 (bookworm))\"\n\
NAME=\"Debian GNU/Linux (docklab's stand-in for ubuntu)\"\n\
VERSION_ID=\"12\"\n\
VERSION=\"12 (bookworm)\"\n\
VERSION_CODENAME=bookworm\n\
ID=debian\n\
DOCKLAB_STAND_IN_FOR=ubuntu\n\
HOME_URL=\"https://www.debian.org/\"\n\
SUPPORT_URL=\"https://www.debian.org/support\"\n\
BUG_REPORT_URL=\"https://bugs.debian.org/\"\n";

const DISTROLESS_ENV: &[&str] = &[PATH, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"];

/// Every image docklab builds, in build order (quick ones first).
pub const CATALOG: &[Recipe] = &[
    Recipe {
        name: "busybox",
        tags: &["latest", "1.35", "stable"],
        description: "BusyBox from Debian's busybox-static",
        source: Source::Busybox,
        config: Settings { env: &[PATH], cmd: &["sh"], ..EMPTY },
        smoke: &["echo", "hello from busybox"],
    },
    Recipe {
        name: "hello-world",
        tags: &["latest"],
        description: "docklab's hello program, statically linked with Debian's glibc",
        source: Source::HelloWorld,
        config: Settings { env: &[PATH], cmd: &["/hello"], ..EMPTY },
        smoke: &[],
    },
    Recipe {
        name: "gcr.io/distroless/static-debian12",
        tags: &["latest"],
        description: "distroless static: CA certificates, time zones, /etc/passwd; no shell, no package manager",
        source: Source::Distroless { packages: &["base-files", "netbase", "tzdata"], extra: &["etc/ssl/certs/ca-certificates.crt"], links: &[] },
        config: Settings { env: DISTROLESS_ENV, working_dir: "/", user: "0", ..EMPTY },
        smoke: &[],
    },
    Recipe {
        name: "gcr.io/distroless/base-debian12",
        tags: &["latest"],
        description: "distroless base: static plus glibc and OpenSSL; no shell, no package manager",
        source: Source::Distroless {
            packages: &["base-files", "netbase", "tzdata", "libc6", "libssl3", "openssl"],
            extra: &["etc/ssl/certs/ca-certificates.crt"],
            links: &[],
        },
        config: Settings { env: DISTROLESS_ENV, working_dir: "/", user: "0", ..EMPTY },
        smoke: &[],
    },
    Recipe {
        name: "debian",
        tags: &["bookworm-slim", "12-slim", "stable-slim"],
        description: "Debian bookworm, minimal, without man pages, docs and translations",
        source: Source::Debian { variant: "minbase", packages: &[], slim: true, files: DEBIAN_FILES, hooks: &[] },
        config: Settings { env: &[PATH], cmd: &["bash"], ..EMPTY },
        smoke: &["cat", "/etc/debian_version"],
    },
    Recipe {
        name: "debian",
        tags: &["bookworm", "12", "latest", "stable"],
        description: "Debian bookworm, minimal (the essential packages and apt)",
        source: Source::Debian { variant: "minbase", packages: &[], slim: false, files: DEBIAN_FILES, hooks: &[] },
        config: Settings { env: &[PATH], cmd: &["bash"], ..EMPTY },
        smoke: &["cat", "/etc/debian_version"],
    },
    Recipe {
        name: "ubuntu",
        tags: &["latest", "24.04", "noble", "22.04", "jammy"],
        description: "docklab's Debian-based stand-in for ubuntu: debian:bookworm with an /etc/os-release that says so, for Dockerfiles that start FROM ubuntu; apt installs Debian bookworm's packages",
        source: Source::StandIn { base: ("debian", "bookworm"), stands_in_for: "ubuntu", files: &[("usr/lib/os-release", UBUNTU_STAND_IN_OS_RELEASE)] },
        config: Settings { env: &[PATH], cmd: &["/bin/bash"], ..EMPTY },
        smoke: &["cat", "/etc/os-release"],
    },
    Recipe {
        name: "gcr.io/distroless/python3-debian12",
        tags: &["latest"],
        description: "distroless Python 3.11: base plus Debian's python3.11; no shell, no package manager",
        source: Source::Distroless {
            packages: &["base-files", "netbase", "tzdata", "libc6", "libssl3", "python3.11-minimal", "libpython3.11-stdlib", "python3-minimal"],
            extra: &["etc/ssl/certs/ca-certificates.crt", "usr/lib/python3.11/**"],
            links: &[],
        },
        config: Settings { env: &[PATH, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "LANG=C.UTF-8"], entrypoint: &["/usr/bin/python3.11"], working_dir: "/", user: "0", ..EMPTY },
        smoke: &["-c", "print('hello from python')"],
    },
    Recipe {
        name: "python",
        tags: &["3.11-slim", "3.11-slim-bookworm", "3-slim", "slim"],
        description: "Python 3.11 with pip, from Debian's python3 packages",
        source: Source::Debian {
            variant: "minbase",
            packages: &["python3", "python3-pip", "python3-venv", "ca-certificates"],
            slim: true,
            files: DEBIAN_FILES,
            hooks: &[
                // Like the official image: `python` and `pip` work, and pip installs system-wide.
                "ln -sf python3 \"$1/usr/bin/python\"",
                "ln -sf pip3 \"$1/usr/bin/pip\"",
                "rm -f \"$1\"/usr/lib/python3.*/EXTERNALLY-MANAGED",
            ],
        },
        config: Settings { env: &[PATH, "LANG=C.UTF-8", "PYTHON_VERSION=3.11"], cmd: &["python3"], ..EMPTY },
        smoke: &["python", "-c", "print('hello from python')"],
    },
    Recipe {
        name: "nginx",
        tags: &["latest", "1.22", "stable"],
        description: "nginx from Debian, serving /usr/share/nginx/html on port 80, logging to stdout and stderr",
        source: Source::Debian {
            variant: "minbase",
            packages: &["nginx", "ca-certificates"],
            slim: true,
            files: &[
                ("etc/apt/apt.conf.d/01docklab-proxy", APT_PROXY_CONF),
                ("etc/nginx/sites-available/default", NGINX_SITE),
            ],
            hooks: &[
                "ln -sf /dev/stdout \"$1/var/log/nginx/access.log\"",
                "ln -sf /dev/stderr \"$1/var/log/nginx/error.log\"",
                "test -f \"$1/usr/share/nginx/html/index.html\"",
            ],
        },
        config: Settings { env: &[PATH], cmd: &["nginx", "-g", "daemon off;"], exposed_ports: &["80/tcp"], stop_signal: "SIGQUIT", ..EMPTY },
        smoke: &["nginx", "-t"],
    },
    Recipe {
        name: "registry",
        tags: &["2", "latest"],
        description: "Distribution registry from Debian's docker-registry, listening on :5000, storing in /var/lib/registry",
        source: Source::Debian {
            variant: "minbase",
            packages: &["docker-registry", "ca-certificates"],
            slim: true,
            files: &[("etc/docker/registry/config.yml", REGISTRY_CONFIG), ("etc/apt/apt.conf.d/01docklab-proxy", APT_PROXY_CONF)],
            hooks: &["mkdir -p \"$1/var/lib/registry\""],
        },
        config: Settings {
            env: &[PATH],
            entrypoint: &["/usr/bin/docker-registry"],
            cmd: &["serve", "/etc/docker/registry/config.yml"],
            exposed_ports: &["5000/tcp"],
            volumes: &["/var/lib/registry"],
            ..EMPTY
        },
        smoke: &[],
    },
    Recipe {
        name: "golang",
        tags: &["1.19", "1.19-bookworm"],
        description: "Go 1.19 from Debian's golang-1.19 (cgo off: binaries are static and run on scratch)",
        source: Source::Debian {
            variant: "minbase",
            packages: &["golang-1.19-go", "ca-certificates"],
            slim: true,
            files: DEBIAN_FILES,
            hooks: &[
                "mkdir -p \"$1/go/src\" \"$1/go/bin\" && chmod 1777 \"$1/go\" \"$1/go/src\" \"$1/go/bin\"",
                // Rebuild the standard library once for CGO_ENABLED=0, so learners' builds take a
                // second instead of ten, then drop the build cache that made.
                "chroot \"$1\" env -i HOME=/root PATH=/usr/lib/go-1.19/bin:/usr/bin:/bin CGO_ENABLED=0 GOCACHE=/tmp/gocache go install std && rm -rf \"$1/tmp/gocache\"",
                // What building programs never reads, so pulls unpack less (145 MB and 4,700
                // files fewer): the compiled packages of the Go tools themselves (the tools are
                // prebuilt binaries in pkg/tool), and the standard library's own tests and their
                // test data.
                "rm -rf \"$1/usr/lib/go-1.19/pkg/linux_amd64/cmd\" && find \"$1/usr/share/go-1.19/src\" -type d -name testdata -prune -exec rm -rf {} + && find \"$1/usr/share/go-1.19/src\" -type f -name '*_test.go' -delete",
            ],
        },
        config: Settings {
            env: &[
                "PATH=/go/bin:/usr/lib/go-1.19/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "GOPATH=/go",
                "GOLANG_VERSION=1.19",
                "CGO_ENABLED=0",
                "GOTOOLCHAIN=local",
                "GOFLAGS=-buildvcs=false",
            ],
            cmd: &["bash"],
            working_dir: "/go",
            ..EMPTY
        },
        smoke: &["go", "version"],
    },
    Recipe {
        name: "gcc",
        tags: &["12", "latest"],
        description: "GCC 12 with glibc headers and make, from Debian",
        source: Source::Debian { variant: "minbase", packages: &["gcc", "libc6-dev", "make"], slim: true, files: DEBIAN_FILES, hooks: &[] },
        config: Settings { env: &[PATH], cmd: &["bash"], ..EMPTY },
        smoke: &["gcc", "--version"],
    },
    Recipe {
        name: "node",
        tags: &["18", "18-bookworm-slim", "18-slim"],
        description: "Node.js 18 and npm from Debian",
        source: Source::Debian { variant: "minbase", packages: &["nodejs", "npm", "ca-certificates"], slim: true, files: DEBIAN_FILES, hooks: &[] },
        config: Settings { env: &[PATH, "NODE_VERSION=18"], cmd: &["node"], ..EMPTY },
        smoke: &["node", "-e", "console.log('hello from node')"],
    },
    Recipe {
        name: "gcr.io/distroless/java17-debian12",
        tags: &["latest"],
        description: "distroless Java 17: base plus Debian's openjdk-17-jre-headless; no shell, no package manager",
        source: Source::Distroless {
            packages: &["base-files", "netbase", "tzdata", "libc6", "libssl3", "openjdk-17-jre-headless"],
            extra: &["etc/ssl/certs/ca-certificates.crt", "etc/ssl/certs/java/cacerts", "usr/lib/jvm/java-17-openjdk-amd64/lib/server/classes.jsa"],
            links: &[("usr/bin/java", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java")],
        },
        config: Settings {
            env: &[PATH, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "LANG=C.UTF-8", "JAVA_VERSION=17"],
            entrypoint: &["/usr/bin/java", "-jar"],
            working_dir: "/",
            user: "0",
            ..EMPTY
        },
        smoke: &[],
    },
    Recipe {
        name: "openjdk",
        tags: &["17-jre", "17-jre-slim", "17-jre-bookworm"],
        description: "Java 17 runtime from Debian's openjdk-17-jre-headless",
        source: Source::Debian { variant: "minbase", packages: &["openjdk-17-jre-headless", "ca-certificates"], slim: true, files: DEBIAN_FILES, hooks: &[] },
        config: Settings { env: &[PATH, "LANG=C.UTF-8", "JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64"], cmd: &["jshell"], ..EMPTY },
        smoke: &["java", "-version"],
    },
    Recipe {
        name: "maven",
        tags: &["3-openjdk-17", "3.8-openjdk-17"],
        description: "Maven 3.8 and the Java 17 JDK, from Debian's maven and openjdk-17-jdk-headless",
        source: Source::Debian {
            variant: "minbase",
            packages: &["maven", "openjdk-17-jdk-headless", "ca-certificates"],
            slim: true,
            files: DEBIAN_FILES,
            hooks: &["mkdir -p \"$1/root/.m2\""],
        },
        config: Settings {
            env: &[PATH, "LANG=C.UTF-8", "JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64", "MAVEN_HOME=/usr/share/maven", "MAVEN_CONFIG=/root/.m2"],
            cmd: &["mvn"],
            ..EMPTY
        },
        smoke: &["mvn", "--version"],
    },
];

const EMPTY: Settings = Settings {
    env: &[],
    entrypoint: &[],
    cmd: &[],
    working_dir: "",
    exposed_ports: &[],
    volumes: &[],
    user: "",
    stop_signal: "",
};

/// What a stored image of this name stands in for (`ubuntu`), if it is a stand-in: a registry
/// with an upstream serves the real image before it.
pub fn is_stand_in(name: &str) -> Option<&'static str> {
    CATALOG.iter().find_map(|r| match r.source {
        Source::StandIn { stands_in_for, .. } if r.name == name => Some(stands_in_for),
        _ => None,
    })
}

/// The recipe a stand-in is built on.
pub fn base_of(recipe: &Recipe) -> Option<&'static Recipe> {
    let Source::StandIn { base: (name, tag), .. } = recipe.source else { return None };
    CATALOG.iter().find(|r| r.name == name && r.tags[0] == tag)
}

/// The recipes a list of names selects (all of them for an empty list).
pub fn select(names: &[String]) -> Result<Vec<&'static Recipe>, super::ImageError> {
    if names.is_empty() {
        return Ok(CATALOG.iter().collect());
    }
    let mut out: Vec<&'static Recipe> = Vec::new();
    for n in names {
        let found: Vec<&'static Recipe> = CATALOG.iter().filter(|r| r.matches(n)).collect();
        if found.is_empty() {
            return Err(super::ImageError::UnknownImage { name: n.clone(), known: CATALOG.iter().map(Recipe::reference).collect::<Vec<_>>().join(", ") });
        }
        for r in found {
            if !out.iter().any(|o| std::ptr::eq(*o, r)) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_select_recipes() {
        assert!(CATALOG[0].matches("busybox"));
        assert!(CATALOG[0].matches("busybox:latest"));
        assert!(!CATALOG[0].matches("busybox:9"));
        let static_ = CATALOG.iter().find(|r| r.name.ends_with("static-debian12")).unwrap();
        assert!(static_.matches("gcr.io/distroless/static-debian12"));
        assert!(static_.matches("static-debian12:latest"));
        assert_eq!(select(&["debian".into()]).unwrap().len(), 2);
        assert_eq!(select(&["debian:bookworm".into()]).unwrap().len(), 1);
        assert!(select(&["alpine".into()]).unwrap_err().to_string().contains("busybox:latest"));
    }

    #[test]
    fn every_reference_is_unique_and_every_image_is_labelled_debian() {
        let mut seen = std::collections::BTreeSet::new();
        for r in CATALOG {
            for t in r.tags {
                assert!(seen.insert(format!("{}:{t}", r.name)), "{}:{t} twice", r.name);
            }
            // A stand-in may carry another distribution's name only if it says so everywhere.
            if let Source::StandIn { stands_in_for, files, .. } = r.source {
                assert!(r.description.contains(&format!("stand-in for {stands_in_for}")), "{}", r.name);
                let os_release = files.iter().find(|(p, _)| *p == "usr/lib/os-release").map(|(_, c)| *c).unwrap_or("");
                assert!(os_release.contains(&format!("PRETTY_NAME=\"docklab's Debian-based stand-in for {stands_in_for}")) && os_release.contains("ID=debian\n"), "{}", r.name);
                assert!(base_of(r).is_some(), "{}: its base is in the catalog", r.name);
                assert_eq!(is_stand_in(r.name), Some(stands_in_for));
                continue;
            }
            assert!(!r.name.contains("temurin") && !r.name.contains("alpine") && !r.name.contains("ubuntu"), "{} is named after something it is not", r.name);
        }
        assert_eq!(is_stand_in("debian"), None);
        assert_eq!(select(&["ubuntu:22.04".into()]).unwrap()[0].name, "ubuntu");
    }
}
