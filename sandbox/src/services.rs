//! docklab's session-facing services on the machines' bridge: the image registry (port 80, and
//! HTTPS on 443 as Docker Hub and gcr.io) and the Debian package proxy (port 3142). They are the
//! only host services a machine can reach. Each is served through [`crate::listen`]: at most
//! 64 connections per machine, 15 s to send a request's head (and at most that idle between
//! requests), so a machine holding half-open requests costs the host a bounded number of
//! descriptors.

use std::net::SocketAddr;
use std::path::Path;

use tokio::task::JoinHandle;

use crate::images::ImageStore;
use crate::network::NetworkConfig;
use crate::{package_proxy, registry};

/// Port of the registry on the bridge address (plain HTTP, as `insecure-registries` expects).
pub const REGISTRY_PORT: u16 = 80;
/// Port of the registry's HTTPS side, where machines reach it as `registry-1.docker.io` (see
/// `registry::tls`).
pub const REGISTRY_TLS_PORT: u16 = 443;
/// Port of the package proxy on the bridge address.
pub const PACKAGE_PROXY_PORT: u16 = 3142;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("listening on {addr} for the {what}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, #[source] source: std::io::Error },
    #[error("the registry's TLS identity: {0}")]
    Tls(#[from] registry::tls::TlsError),
    #[error("the registry's upstream: {0}")]
    Upstream(#[from] registry::upstream::UpstreamError),
}

/// Operator choices for the services.
#[derive(Debug, Clone, Default)]
pub struct ServiceOptions {
    /// Makes the registry a pull-through cache of this registry (e.g. `https://registry-1.docker.io`).
    pub registry_upstream: Option<String>,
}

/// Binds the registry and the package proxy on the bridge address and serves them in the
/// background. The bridge must exist (see `SessionManager::ensure_network`).
pub async fn spawn(state_dir: &Path, net: &NetworkConfig) -> Result<Vec<JoinHandle<()>>, ServiceError> {
    spawn_with(state_dir, net, &ServiceOptions::default()).await
}

/// [`spawn`], with the operator's options.
pub async fn spawn_with(state_dir: &Path, net: &NetworkConfig, options: &ServiceOptions) -> Result<Vec<JoinHandle<()>>, ServiceError> {
    let mut handles = Vec::new();
    // The CA first: machines created from now on find its certificate and trust it.
    let tls = registry::tls::load_or_create(state_dir)?;
    let upstream = match &options.registry_upstream {
        Some(url) => {
            let up = registry::upstream::Upstream::new(url, state_dir)?;
            tracing::info!(upstream = %up.url(), "the registry is a pull-through cache of its upstream");
            Some(up)
        }
        None => None,
    };
    let registry = registry::router_with_upstream(ImageStore::new(state_dir), upstream);
    // Every port is bound before anything is served, so that a failure (another process serves
    // them) leaves nothing of ours listening and the caller may simply try again later.
    let bind = |what: &'static str, port: u16| async move {
        let addr = SocketAddr::from((net.host_ip, port));
        tokio::net::TcpListener::bind(addr).await.map(|l| (what, addr, l)).map_err(|source| ServiceError::Bind { what, addr, source })
    };
    let plain = [
        (bind("image registry", REGISTRY_PORT).await?, registry.clone()),
        (bind("package proxy", PACKAGE_PROXY_PORT).await?, package_proxy::router(package_proxy::ProxyConfig::new(state_dir))),
    ];
    let (_, tls_addr, tls_listener) = bind("image registry (HTTPS)", REGISTRY_TLS_PORT).await?;
    for ((what, addr, listener), router) in plain {
        tracing::info!(%addr, "serving the {what} to session machines");
        handles.push(tokio::spawn(crate::listen::serve(listener, router, crate::listen::Limits::BRIDGE, None, std::future::pending())));
    }
    tracing::info!(addr = %tls_addr, "serving the image registry over HTTPS (as Docker Hub and gcr.io) to session machines");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config);
    handles.push(tokio::spawn(crate::listen::serve(tls_listener, registry, crate::listen::Limits::BRIDGE, Some(acceptor), std::future::pending())));
    Ok(handles)
}
