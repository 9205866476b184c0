//! The harness of the end-to-end tests: a real control plane in-process on 127.0.0.1,
//! join tokens, proxy identities bootstrapped through the real HTTPS API, and mTLS
//! probes between identities, so that a test reads as the behaviour it checks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use palisade_control_plane::{start, RunningControlPlane, ServeConfig};
use palisade_proxy::control::{ControlPlaneAddr, Timeouts};
use palisade_proxy::identity::{
    bootstrap, load_bundle_file, Identity, IdentityConfig, RetryPolicy,
};
use palisade_spiffe::tls::{client_config, peer_spiffe_id, server_config};
use palisade_spiffe::{ClientAuth, ServerIdentity, SharedBundle, SpiffeId, TrustDomain};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The trust domain of every test mesh.
pub const TRUST_DOMAIN: &str = "mesh.test";

/// A control plane running in this process, in its own temporary data directory.
pub struct TestControlPlane {
    running: Option<RunningControlPlane>,
    config: ServeConfig,
    // Declared last: removed after the control plane has stopped.
    _dir: tempfile::TempDir,
}

impl TestControlPlane {
    /// A control plane with 1 h SVIDs.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// A control plane issuing SVIDs that live `ttl` (2 s at least).
    pub async fn with_svid_ttl(ttl: Duration) -> anyhow::Result<Self> {
        Self::start_with(|config| config.svid_ttl = ttl).await
    }

    /// A control plane with the config adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut ServeConfig)) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating the control plane's data dir")?;
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut config = ServeConfig::new(dir.path().join("data"), listen, TRUST_DOMAIN);
        adjust(&mut config);
        let running = start(config.clone())
            .await
            .context("starting the control plane")?;
        // Restarts bind the same port, so that proxies find it again.
        config.listen = running.local_addr();
        Ok(Self {
            running: Some(running),
            config,
            _dir: dir,
        })
    }

    fn running(&self) -> &RunningControlPlane {
        self.running
            .as_ref()
            .expect("the control plane is running (between stop and restart it is not)")
    }

    /// The control plane's `--data-dir`.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.config.data_dir
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.config.listen
    }

    /// The plain-HTTP metrics listener, when started with `config.metrics` set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.running().metrics_addr()
    }

    pub fn addr(&self) -> ControlPlaneAddr {
        ControlPlaneAddr::parse(&format!("https://{}", self.local_addr()))
            .expect("a socket address is a valid control plane address")
    }

    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain::new(TRUST_DOMAIN).expect("the test trust domain is valid")
    }

    /// The trust bundle as `palisade-proxy --trust-bundle` reads it: from the control
    /// plane's `bundle.pem`, its trust domain named by the roots.
    pub fn bundle(&self) -> anyhow::Result<SharedBundle> {
        let (trust_domain, bundle) = load_bundle_file(&self.running().bundle_path(), None)?;
        anyhow::ensure!(
            trust_domain == self.trust_domain(),
            "bundle.pem names trust domain `{trust_domain}`, not `{TRUST_DOMAIN}`"
        );
        Ok(bundle)
    }

    pub fn bundle_pem(&self) -> String {
        self.running().bundle_pem()
    }

    /// A join token for `spiffe://mesh.test/ns/<namespace>/sa/<service_account>`.
    pub fn token(&self, namespace: &str, service_account: &str) -> anyhow::Result<String> {
        self.token_with_ttl(namespace, service_account, None)
    }

    pub fn token_with_ttl(
        &self,
        namespace: &str,
        service_account: &str,
        ttl: Option<Duration>,
    ) -> anyhow::Result<String> {
        Ok(self
            .running()
            .create_join_token(namespace, service_account, ttl)
            .context("creating a join token")?
            .token)
    }

    /// What `palisade-proxy` builds from its flags, with a fresh token and fast retries.
    pub fn identity_config(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> anyhow::Result<IdentityConfig> {
        self.identity_config_with_token(
            namespace,
            service_account,
            &self.token(namespace, service_account)?,
        )
    }

    pub fn identity_config_with_token(
        &self,
        namespace: &str,
        service_account: &str,
        token: &str,
    ) -> anyhow::Result<IdentityConfig> {
        Ok(IdentityConfig {
            control_plane: self.addr(),
            trust_domain: self.trust_domain(),
            bundle: self.bundle()?,
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            join_token: token.to_owned(),
            timeouts: Timeouts {
                connect: Duration::from_secs(2),
                request: Duration::from_secs(5),
            },
            retry: RetryPolicy {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(500),
            },
        })
    }

    /// A proxy identity bootstrapped through the real API with a fresh join token.
    pub async fn identity(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> anyhow::Result<Identity> {
        let config = self.identity_config(namespace, service_account)?;
        Ok(bootstrap(config).await?)
    }

    /// Stops the control plane (its data dir stays).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    /// Stops the control plane if it runs, then starts it again on the same data dir
    /// and port, as an operator's restart would.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        let mut last_error = None;
        // The port was just released; on a busy machine binding it again can take a
        // moment.
        for _ in 0..50 {
            match start(self.config.clone()).await {
                Ok(running) => {
                    self.running = Some(running);
                    return Ok(());
                }
                Err(error) => {
                    last_error = Some(error);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Err(anyhow::anyhow!(
            "restarting the control plane failed: {}",
            last_error.map(|e| e.to_string()).unwrap_or_default()
        ))
    }

    pub async fn shutdown(mut self) {
        self.stop().await;
    }
}

/// An mTLS server holding `identity`'s SVID that, for each connection, writes back the
/// client's SPIFFE ID and a newline, then closes. Handshake failures are counted.
pub struct MtlsProbeServer {
    pub addr: SocketAddr,
    pub failed_handshakes: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for MtlsProbeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MtlsProbeServer {
    pub async fn start(identity: &Identity) -> anyhow::Result<Self> {
        let config = server_config(
            identity.svids.clone(),
            identity.bundle.clone(),
            ClientAuth::Required,
        );
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let failed_handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failed = failed_handshakes.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let failed = failed.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            let peer = peer_spiffe_id(tls.get_ref().1.peer_certificates())
                                .map(|id| id.to_string())
                                .unwrap_or_default();
                            let _ = tls.write_all(format!("{peer}\n").as_bytes()).await;
                            let _ = tls.shutdown().await;
                        }
                        Err(_) => {
                            failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            failed_handshakes,
            task,
        })
    }
}

/// One mTLS round trip from `client` to a [`MtlsProbeServer`] that must hold `server_id`:
/// returns the identity the server saw for us.
pub async fn mtls_probe(
    client: &Identity,
    addr: SocketAddr,
    server_id: &SpiffeId,
) -> anyhow::Result<String> {
    let config = client_config(
        Some(client.svids.clone()),
        client.bundle.clone(),
        ServerIdentity::OneOf(vec![server_id.clone()]),
    );
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.context("connecting")?;
    let name = ServerName::try_from("probe.mesh.test").context("server name")?;
    let mut tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .context("handshake timed out")?
        .context("handshake failed")?;
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_string(&mut seen))
        .await
        .context("reading timed out")?
        .context("reading failed")?;
    Ok(seen.trim_end().to_owned())
}

/// Polls `condition` every 20 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}
