//! docklab's session-facing services on the machines' bridge: the image registry (port 80) and
//! the Debian package proxy (port 3142). They are the only host services a machine can reach.

use std::net::SocketAddr;
use std::path::Path;

use tokio::task::JoinHandle;

use crate::images::ImageStore;
use crate::network::NetworkConfig;
use crate::{package_proxy, registry};

/// Port of the registry on the bridge address (plain HTTP, as `insecure-registries` expects).
pub const REGISTRY_PORT: u16 = 80;
/// Port of the package proxy on the bridge address.
pub const PACKAGE_PROXY_PORT: u16 = 3142;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("listening on {addr} for the {what}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, #[source] source: std::io::Error },
}

/// Binds the registry and the package proxy on the bridge address and serves them in the
/// background. The bridge must exist (see `SessionManager::ensure_network`).
pub async fn spawn(state_dir: &Path, net: &NetworkConfig) -> Result<Vec<JoinHandle<()>>, ServiceError> {
    let mut handles = Vec::new();
    let services = [
        ("image registry", REGISTRY_PORT, registry::router(ImageStore::new(state_dir))),
        ("package proxy", PACKAGE_PROXY_PORT, package_proxy::router(package_proxy::ProxyConfig::new(state_dir))),
    ];
    for (what, port, router) in services {
        let addr = SocketAddr::from((net.host_ip, port));
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServiceError::Bind { what, addr, source })?;
        tracing::info!(%addr, "serving the {what} to session machines");
        handles.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the {what} stopped");
            }
        }));
    }
    Ok(handles)
}
