//! TLS for the registry: a certificate authority of docklab's own, and a server certificate it
//! issues for Docker Hub's and gcr.io's names.
//!
//! Inside a machine, `registry-1.docker.io` (and the other Docker Hub names) resolve to the host's
//! bridge address, where the registry answers HTTPS on port 443 with a certificate from this CA.
//! Only the machine's `dockerd` trusts the CA (its `SSL_CERT_FILE` is the system bundle plus the
//! CA, see `init.rs`), so when dockerd falls back from the mirror to "Docker Hub", it still talks
//! to docklab, and the learner reads docklab's answer (what images there are) instead of a DNS
//! error.
//!
//! The CA can only vouch for these domains (name constraints), its key stays on the host
//! (`<state-dir>/registry-ca/ca.key`, mode 0600, never inside a machine), and the CA certificate
//! is kept across restarts so that running machines keep trusting the registry.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Names a machine resolves to the registry (its `/etc/hosts`), all covered by the server
/// certificate: Docker Hub's registry, index and token service, and gcr.io. Each lies in a
/// domain the CA may issue for.
pub const REGISTRY_HOSTS: &[&str] = &["registry-1.docker.io", "index.docker.io", "auth.docker.io", "docker.io", "gcr.io"];
/// The only domains the CA may issue for (an X.509 name constraint, enforced by Go's TLS).
const PERMITTED_DOMAINS: &[&str] = &["docker.io", "gcr.io"];
const CA_NAME: &str = "docklab registry CA (session machines only)";
/// Directory under the state directory.
const CA_DIR: &str = "registry-ca";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error("the registry CA key {path} is unusable: {source}")]
    BadKey { path: PathBuf, #[source] source: rcgen::Error },
    #[error("issuing the registry's certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("the registry's TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the CA certificate is kept: what machines add to their dockerd's trust.
pub fn ca_cert_path(state_dir: &Path) -> PathBuf {
    state_dir.join(CA_DIR).join("ca.crt")
}

fn ca_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(CA_DIR).join("ca.key")
}

/// The registry's TLS identity: the server configuration and the CA it chains to.
pub struct RegistryTls {
    pub server_config: Arc<rustls::ServerConfig>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
}

/// The CA's parameters. They are the same every time, so that a CA certificate made from the
/// stored key now issues certificates that chain to the one machines already trust.
fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p.distinguished_name.push(DnType::OrganizationName, "docklab");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: PERMITTED_DOMAINS.iter().map(|d| GeneralSubtree::DnsName(d.to_string())).collect(),
        excluded_subtrees: Vec::new(),
    });
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(365 * 20);
    p
}

/// Writes `data` to `path` only if nothing is there yet (another process may be doing the same):
/// a temporary file, then a hard link, which fails when the name exists.
fn create_new(path: &Path, data: &[u8], mode: u32) -> Result<bool, TlsError> {
    let dir = path.parent().expect("a file under a directory");
    let tmp = dir.join(format!(".{}.{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("tmp"), std::process::id()));
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(|source| TlsError::Io { what: "creating", path: tmp.clone(), source })?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(|source| TlsError::Io { what: "writing", path: tmp.clone(), source })?;
    let linked = match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(TlsError::Io { what: "installing", path: path.to_path_buf(), source }),
    };
    let _ = fs::remove_file(&tmp);
    linked
}

/// Loads the CA from `<state-dir>/registry-ca` (creating it the first time) and issues a fresh
/// server certificate for [`REGISTRY_HOSTS`].
pub fn load_or_create(state_dir: &Path) -> Result<RegistryTls, TlsError> {
    let dir = state_dir.join(CA_DIR);
    fs::create_dir_all(&dir).map_err(|source| TlsError::Io { what: "creating", path: dir.clone(), source })?;
    let (key_path, cert_path) = (ca_key_path(state_dir), ca_cert_path(state_dir));
    if !key_path.exists() {
        let key = KeyPair::generate()?;
        if create_new(&key_path, key.serialize_pem().as_bytes(), 0o600)? {
            let cert = ca_params().self_signed(&key)?;
            // A stale certificate of an earlier key would not verify anything: replace it.
            let _ = fs::remove_file(&cert_path);
            create_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
            tracing::info!(path = %cert_path.display(), "created the registry's certificate authority");
        }
    }
    let key_pem = fs::read_to_string(&key_path).map_err(|source| TlsError::Io { what: "reading", path: key_path.clone(), source })?;
    let ca_key = KeyPair::from_pem(&key_pem).map_err(|source| TlsError::BadKey { path: key_path.clone(), source })?;
    let ca = ca_params().self_signed(&ca_key)?;
    let ca_pem = match fs::read_to_string(&cert_path) {
        Ok(pem) => pem,
        Err(_) => {
            // The key is there but its certificate went missing: write it again.
            create_new(&cert_path, ca.pem().as_bytes(), 0o644)?;
            fs::read_to_string(&cert_path).map_err(|source| TlsError::Io { what: "reading", path: cert_path.clone(), source })?
        }
    };

    let mut leaf = CertificateParams::new(REGISTRY_HOSTS.iter().map(|h| h.to_string()).collect::<Vec<_>>())?;
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CommonName, "docklab registry");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(825);
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca, &ca_key)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(leaf_cert.der().to_vec())], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(RegistryTls { server_config: Arc::new(config), ca_pem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn client_config(ca_pem: &str) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    /// Handshakes with a server using `server` as a client that trusts only `ca_pem`.
    async fn handshake(server: Arc<rustls::ServerConfig>, ca_pem: &str, name: &str) -> Result<String, std::io::Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let _ = tls.write_all(b"hello over tls").await;
                let _ = tls.shutdown().await;
            }
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_pem)));
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut tls = connector.connect(ServerName::try_from(name.to_string()).unwrap(), tcp).await?;
        let mut s = String::new();
        tls.read_to_string(&mut s).await?;
        Ok(s)
    }

    #[tokio::test]
    async fn the_certificate_chains_to_the_kept_ca_for_docker_hub_names_only() {
        let tmp = tempfile::tempdir().unwrap();
        let first = load_or_create(tmp.path()).unwrap();
        assert!(first.ca_pem.contains("BEGIN CERTIFICATE"));
        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(ca_key_path(tmp.path())).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "the CA key is root's alone");
        for name in ["registry-1.docker.io", "index.docker.io", "gcr.io"] {
            assert_eq!(handshake(first.server_config.clone(), &first.ca_pem, name).await.unwrap(), "hello over tls", "{name}");
        }
        // A name the certificate does not carry is refused by a client that checks.
        assert!(handshake(first.server_config.clone(), &first.ca_pem, "quay.io").await.is_err());
        // After a restart: the same CA, a new server certificate that still chains to it.
        let second = load_or_create(tmp.path()).unwrap();
        assert_eq!(second.ca_pem, first.ca_pem, "the CA machines trust is kept");
        assert_eq!(handshake(second.server_config.clone(), &first.ca_pem, "registry-1.docker.io").await.unwrap(), "hello over tls");
        // A client that trusts another CA refuses it.
        let other = tempfile::tempdir().unwrap();
        let stranger = load_or_create(other.path()).unwrap();
        assert!(handshake(second.server_config.clone(), &stranger.ca_pem, "registry-1.docker.io").await.is_err());
    }

    #[test]
    fn the_ca_may_only_issue_for_docker_hub_and_gcr() {
        let tmp = tempfile::tempdir().unwrap();
        let tls = load_or_create(tmp.path()).unwrap();
        let out = std::process::Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(ca_cert_path(tmp.path())).output();
        let Ok(out) = out else {
            eprintln!("openssl is not installed: not checked");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Name Constraints") && text.contains("DNS:docker.io") && text.contains("DNS:gcr.io"), "{text}");
        assert!(text.contains("CA:TRUE"), "{text}");
        assert!(!tls.ca_pem.contains("PRIVATE KEY"));
    }
}
