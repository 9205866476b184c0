//! The proxy's workload identity: obtaining its SPIFFE X.509-SVID from the control
//! plane and keeping it fresh.
//!
//! [`bootstrap`] makes a key in memory, sends a CSR with the join token, checks the
//! answer (chain to the bundle, the ID we asked for, usable as client and server) and
//! installs it. [`Identity::spawn_renewal`] then renews at about half the lifetime with
//! jitter, authenticated by the current SVID, with a fresh key every time. Installing
//! is an atomic swap in the [`SvidStore`] that every TLS config resolves through, so a
//! renewal changes the next handshake and never touches live connections.

mod bundle;
mod csr;
pub mod schedule;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use palisade_api::wire::IssueResponse;
use palisade_spiffe::svid::certs_from_pem;
use palisade_spiffe::{
    IdError, PeerRole, SharedBundle, SpiffeId, SvidError, SvidInfo, SvidStore, TrustBundle,
    TrustDomain,
};
use rustls_pki_types::{PrivateKeyDer, UnixTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::control::backoff::Backoff;
use crate::control::{ControlError, ControlPlaneAddr, ControlPlaneClient, Timeouts};
use schedule::Urgency;

pub use bundle::{apply_bundle_pem, load_bundle_file, BundleFileError};

/// Everything needed to obtain the first SVID.
#[derive(Clone)]
pub struct IdentityConfig {
    pub control_plane: ControlPlaneAddr,
    pub trust_domain: TrustDomain,
    /// The trust bundle, read from `--trust-bundle`; later updated from the control plane.
    pub bundle: SharedBundle,
    pub namespace: String,
    pub service_account: String,
    /// Used once, for the first issuance. Never logged.
    pub join_token: String,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
}

impl IdentityConfig {
    /// A config with the default timeouts and retry policy.
    pub fn new(
        control_plane: ControlPlaneAddr,
        trust_domain: TrustDomain,
        bundle: SharedBundle,
        namespace: &str,
        service_account: &str,
        join_token: String,
    ) -> Self {
        Self {
            control_plane,
            trust_domain,
            bundle,
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            join_token,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
        }
    }
}

impl fmt::Debug for IdentityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityConfig")
            .field("control_plane", &self.control_plane)
            .field("trust_domain", &self.trust_domain)
            .field("namespace", &self.namespace)
            .field("service_account", &self.service_account)
            .field("join_token", &"<redacted>")
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Backoff between failed renewals.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("namespace `{namespace}` / service account `{service_account}` do not form a valid SPIFFE ID: {source}")]
    InvalidId {
        namespace: String,
        service_account: String,
        source: IdError,
    },
    #[error("the trust bundle is for trust domain `{bundle}`, but the proxy is configured for `{configured}`")]
    TrustDomainMismatch { bundle: String, configured: String },
    #[error("could not generate the SVID key or CSR: {0}")]
    Key(rcgen::Error),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(
        "the control plane issued `{got}`, but this proxy asked for `{expected}`; refusing it"
    )]
    WrongId { expected: SpiffeId, got: String },
    #[error("the certificate chain from the control plane is not valid PEM: {0}")]
    ChainPem(String),
    #[error("the trust bundle from the control plane is unusable: {0}")]
    Bundle(SvidError),
    #[error("the SVID issued by the control plane does not verify against the trust bundle: {0}")]
    Unverified(SvidError),
    #[error("the issued SVID could not be installed: {0}")]
    Install(SvidError),
}

/// What the rest of the proxy (admin `/ready`, metrics) needs to know about the SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvidStatus {
    pub info: SvidInfo,
    /// When this proxy installed it (the start of its lifetime as far as renewal goes).
    pub installed_at: SystemTime,
    /// Successful renewals since start.
    pub renewals: u64,
}

impl SvidStatus {
    /// Whether the SVID is still within its validity at `now`.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        let now = unix_secs(now);
        self.info.not_before_unix <= now && now < self.info.not_after_unix
    }
}

/// The proxy's identity: its SVID store, trust bundle and ID; cheap to clone.
#[derive(Clone)]
pub struct Identity {
    /// The SVID resolver for every rustls config of the proxy.
    pub svids: Arc<SvidStore>,
    /// The trust bundle every verifier reads; updated by renewals and the watch.
    pub bundle: SharedBundle,
    pub id: SpiffeId,
    client: ControlPlaneClient,
    status: Arc<watch::Sender<SvidStatus>>,
    /// Serialises installing a renewed SVID with publishing its status.
    renewing: Arc<Mutex<()>>,
    retry: RetryPolicy,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

/// Obtains the first SVID with the join token and installs it.
pub async fn bootstrap(config: IdentityConfig) -> Result<Identity, IdentityError> {
    let id = SpiffeId::workload(
        &config.trust_domain,
        &config.namespace,
        &config.service_account,
    )
    .map_err(|source| IdentityError::InvalidId {
        namespace: config.namespace.clone(),
        service_account: config.service_account.clone(),
        source,
    })?;
    let bundle_td = config.bundle.load().trust_domain().clone();
    if bundle_td != config.trust_domain {
        return Err(IdentityError::TrustDomainMismatch {
            bundle: bundle_td.to_string(),
            configured: config.trust_domain.to_string(),
        });
    }
    let svids = SvidStore::new();
    let client = ControlPlaneClient::new(
        config.control_plane,
        &config.trust_domain,
        config.bundle.clone(),
        svids.clone(),
        config.timeouts,
    );
    let fresh = csr::generate(&id)?;
    let response = client.issue(fresh.csr_pem, &config.join_token).await?;
    let info = install(&svids, &config.bundle, &id, response, fresh.key.into())?;
    tracing::info!(
        event = "svid_installed",
        spiffe_id = %info.id,
        serial = %info.serial_hex,
        not_after = info.not_after_unix,
        "SVID issued with the join token"
    );
    let (status, _) = watch::channel(SvidStatus {
        info,
        installed_at: SystemTime::now(),
        renewals: 0,
    });
    Ok(Identity {
        svids,
        bundle: config.bundle,
        id,
        client,
        status: Arc::new(status),
        renewing: Arc::new(Mutex::new(())),
        retry: config.retry,
    })
}

/// Checks an issuance answer and installs it: the ID is the one we asked for, the chain
/// verifies against the bundle the answer carries (it came over a channel our current
/// bundle authenticated, and may add a rotated root) for both client and server use,
/// and the key fits. Only then are the SVID and the bundle swapped in; on any error
/// both stay as they were.
fn install(
    svids: &SvidStore,
    bundle: &SharedBundle,
    expected: &SpiffeId,
    response: IssueResponse,
    key: PrivateKeyDer<'static>,
) -> Result<SvidInfo, IdentityError> {
    if response.spiffe_id != expected.as_str() {
        return Err(IdentityError::WrongId {
            expected: expected.clone(),
            got: response.spiffe_id,
        });
    }
    let chain = certs_from_pem(response.chain_pem.as_bytes()).map_err(IdentityError::ChainPem)?;
    let current = bundle.load_full();
    let candidate = TrustBundle::from_pem(
        current.trust_domain().clone(),
        response.bundle_pem.as_bytes(),
    )
    .map_err(IdentityError::Bundle)?;
    let now = UnixTime::now();
    for role in [PeerRole::Client, PeerRole::Server] {
        let id = candidate
            .verify(&chain, role, now)
            .map_err(IdentityError::Unverified)?;
        if &id != expected {
            return Err(IdentityError::WrongId {
                expected: expected.clone(),
                got: id.to_string(),
            });
        }
    }
    let info = svids.install(chain, key).map_err(IdentityError::Install)?;
    if candidate.roots() != current.roots() {
        tracing::info!(
            roots = candidate.roots().len(),
            "trust bundle updated from the issuance answer"
        );
        bundle.store(Arc::new(candidate));
    }
    Ok(info)
}

impl Identity {
    pub fn control_plane(&self) -> &ControlPlaneClient {
        &self.client
    }

    /// Follows the SVID status (not-after, serial, renewals) for metrics and `/ready`.
    pub fn subscribe(&self) -> watch::Receiver<SvidStatus> {
        self.status.subscribe()
    }

    pub fn status(&self) -> SvidStatus {
        self.status.borrow().clone()
    }

    /// Ready means holding an SVID that is valid right now.
    pub fn is_ready(&self) -> bool {
        self.status.borrow().is_valid_at(SystemTime::now())
    }

    /// Renews once, now: fresh key, CSR authenticated by the current SVID, checked and
    /// installed like the first one.
    pub async fn renew_now(&self) -> Result<SvidInfo, IdentityError> {
        let fresh = csr::generate(&self.id)?;
        let response = self.client.renew(fresh.csr_pem).await?;
        // Installing and publishing the status happen together, so that two renewals
        // racing each other leave the store and the status agreeing.
        let _serial = self
            .renewing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let info = install(
            &self.svids,
            &self.bundle,
            &self.id,
            response,
            fresh.key.into(),
        )?;
        self.status.send_modify(|status| {
            status.info = info.clone();
            status.installed_at = SystemTime::now();
            status.renewals += 1;
        });
        Ok(info)
    }

    /// Starts the renewal task; it ends when `shutdown` completes.
    pub fn spawn_renewal<S>(&self, shutdown: S) -> JoinHandle<()>
    where
        S: Future<Output = ()> + Send + 'static,
    {
        let identity = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = identity.renewal_loop() => {}
                () = shutdown => {}
            }
        })
    }

    async fn renewal_loop(&self) {
        loop {
            let status = self.status();
            let not_after = from_unix_secs(status.info.not_after_unix);
            let fraction = schedule::renewal_fraction(&mut rand::rng());
            let delay = schedule::renewal_delay(
                status.installed_at,
                not_after,
                SystemTime::now(),
                fraction,
            );
            tracing::debug!(spiffe_id = %self.id, renew_in = ?delay, "next SVID renewal scheduled");
            tokio::time::sleep(delay).await;
            self.renew_with_retries(&status, not_after).await;
        }
    }

    /// Retries until a renewal succeeds, with backoff bounded so that several attempts
    /// fit before the current SVID expires, complaining louder as expiry nears.
    async fn renew_with_retries(&self, status: &SvidStatus, not_after: SystemTime) {
        let mut backoff = Backoff::new(self.retry.initial, self.retry.max);
        loop {
            let error = match self.renew_now().await {
                Ok(info) => {
                    tracing::info!(
                        event = "svid_renewed",
                        spiffe_id = %info.id,
                        serial = %info.serial_hex,
                        not_after = info.not_after_unix,
                        "SVID renewed"
                    );
                    return;
                }
                Err(error) => error,
            };
            let now = SystemTime::now();
            let delay = schedule::retry_delay(backoff.next_delay(), not_after, now);
            let left = not_after.duration_since(now).unwrap_or(Duration::ZERO);
            match schedule::urgency(status.installed_at, not_after, now) {
                Urgency::Warn => tracing::warn!(
                    event = "svid_renewal_failed", urgency = "warn", spiffe_id = %self.id, %error, expires_in = ?left, retry_in = ?delay,
                    "SVID renewal failed; the current SVID is still valid, retrying"
                ),
                Urgency::Error => tracing::error!(
                    event = "svid_renewal_failed", urgency = "error", spiffe_id = %self.id, %error, expires_in = ?left, retry_in = ?delay,
                    "SVID renewal failed and the SVID expires soon; check that the control plane is reachable"
                ),
                Urgency::Expired => tracing::error!(
                    event = "svid_renewal_failed", urgency = "expired", spiffe_id = %self.id, %error, retry_in = ?delay,
                    "the SVID has EXPIRED: this proxy has no valid identity and mTLS traffic fails; it keeps retrying, but renewal authenticates with the SVID, so a restart with a new join token may be needed"
                ),
            }
            tokio::time::sleep(delay).await;
        }
    }
}

fn unix_secs(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn from_unix_secs(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}
