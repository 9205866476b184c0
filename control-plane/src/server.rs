//! The control plane's HTTPS server and its library entry point, [`start`].
//!
//! One listener serves every endpoint over TLS 1.3 (HTTP/2 preferred). Client
//! certificates are optional at the TLS layer because a first issuance has no SVID yet;
//! each endpoint then decides what it requires: `/v1/svid` a join token or an SVID,
//! `/v1/admin/tokens` and `/v1/admin/policy/check` the admin SVID, `/v1/register` and
//! `/v1/watch` any workload SVID.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use palisade_api::policy::Diagnostics;
use palisade_api::wire::{
    codes, ErrorBody, IssueRequest, IssueResponse, PolicyCheckRequest, Registered, Registration,
    TokenRequest, TokenResponse, PATH_ADMIN_POLICY_CHECK, PATH_ADMIN_TOKENS, PATH_REGISTER,
    PATH_SVID, PATH_WATCH,
};
use palisade_spiffe::svid::{shared_bundle, SharedBundle};
use palisade_spiffe::tls::{server_config, svid_info};
use palisade_spiffe::{ClientAuth, SpiffeId, SvidStore, TrustDomain};
use rcgen::KeyPair;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::admin;
use crate::audit::{AuditEntry, AuditLog};
use crate::ca::{CaError, CertificateAuthority, ExtraNames};
use crate::csr::{CheckedCsr, CsrError};
use crate::metrics::{ControlPlaneMetrics, StateView};
use crate::metrics_listener::{self, Observed};
use crate::policy_store::watch::{self as policy_watch, DirWatcher};
use crate::policy_store::{embedded_rules, ActivePolicy};
use crate::registry::{validate_addr, validate_service, Registry, DEFAULT_GRACE};
use crate::state::{self, DataDir, StateError};
use crate::tokens::{TokenError, TokenStore};

/// Shortest SVID lifetime the library accepts (tests renew within seconds); the
/// `serve` command enforces [`MIN_CLI_SVID_TTL`]..=[`MAX_SVID_TTL`].
pub const MIN_LIBRARY_SVID_TTL: Duration = Duration::from_secs(2);
pub const MIN_CLI_SVID_TTL: Duration = Duration::from_secs(60);
pub const MAX_SVID_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default interval of keep-alive snapshots on watch streams.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
/// Largest request body accepted on any endpoint.
const MAX_BODY: usize = 64 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_STREAMS_PER_CONNECTION: u32 = 64;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once; more wait in the accept queue, so a flood of idle
/// connections cannot exhaust memory.
const MAX_CONNECTIONS: usize = 4096;
/// How often the maintenance task sweeps the registry, renews the serving certificate
/// and looks for a CA rotation step in `state.json`.
const MAINTENANCE_TICK: Duration = Duration::from_millis(500);

/// Everything [`start`] needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub trust_domain: String,
    pub svid_ttl: Duration,
    /// Policy resources (authorization policies, the mesh config, WAF policies), loaded at
    /// start and watched; without it every service gets the defaults.
    pub policy_dir: Option<PathBuf>,
    /// An operator-supplied CA `(certificate PEM, PKCS#8 key PEM)` for the first start.
    pub ca: Option<(PathBuf, PathBuf)>,
    /// How long a registered endpoint outlives its last sign of life.
    pub registration_grace: Duration,
    /// Interval of keep-alive snapshots on watch streams.
    pub keepalive: Duration,
    /// Where to serve `/metrics`, `/live` and `/ready` over plain HTTP; off when `None`.
    pub metrics: Option<SocketAddr>,
}

impl ServeConfig {
    /// A config with the defaults: 1 h SVIDs, no policy dir, a generated CA.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr, trust_domain: &str) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen,
            trust_domain: trust_domain.to_owned(),
            svid_ttl: Duration::from_secs(3600),
            policy_dir: None,
            ca: None,
            registration_grace: DEFAULT_GRACE,
            keepalive: DEFAULT_KEEPALIVE,
            metrics: None,
        }
    }
}

/// Why the control plane cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the trust domain `{value}` is invalid: {reason}")]
    BadTrustDomain { value: String, reason: String },
    #[error("the SVID lifetime {} is out of range: use {} to {}", humantime::format_duration(*.got), humantime::format_duration(*.min), humantime::format_duration(*.max))]
    BadSvidTtl {
        got: Duration,
        min: Duration,
        max: Duration,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Tokens(#[from] TokenError),
    #[error("cannot issue the control plane's own certificate: {0}")]
    OwnCertificate(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("a start-up task failed: {0}")]
    Task(String),
    #[error("the policy directory {} has {} problem(s); nothing was applied:\n{diagnostics}\nfix them (`palisadectl policy lint {}` lists them) and start again", .dir.display(), .diagnostics.0.len(), .dir.display())]
    Policy {
        dir: PathBuf,
        diagnostics: Diagnostics,
    },
    #[error("the embedded WAF rule set does not load: {0}")]
    WafRules(String),
}

struct Shared {
    dir: DataDir,
    trust_domain: TrustDomain,
    svid_ttl: Duration,
    ca: ArcSwap<CertificateAuthority>,
    bundle: SharedBundle,
    tokens: Mutex<TokenStore>,
    audit: AuditLog,
    registry: Arc<Registry>,
    own: Arc<SvidStore>,
    /// When the serving certificate in `own` was issued: its half-life counts from here,
    /// not from its `notBefore`, which the CA backdates by a minute for clock skew.
    own_issued_at: Mutex<SystemTime>,
    admin_id: SpiffeId,
    control_plane_id: SpiffeId,
    keepalive: Duration,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<ControlPlaneMetrics>,
}

impl Observed for Shared {
    fn metrics_text(&self) -> String {
        let published = self.registry.current();
        let state = StateView {
            open_watches: self.registry.open_watches(),
            policy_version: published.policy.version,
            config_version: published.version,
        };
        self.metrics.encode(state, &self.ca.load())
    }

    fn readiness(&self) -> Result<(), String> {
        let Some(info) = self.own.info() else {
            return Err("the serving certificate is not issued yet".into());
        };
        if info.not_after_unix <= time::OffsetDateTime::now_utc().unix_timestamp() {
            return Err("the serving certificate has expired and could not be renewed".into());
        }
        Ok(())
    }
}

/// A running control plane. Dropping it without [`shutdown`](Self::shutdown) leaves the
/// tasks running until the runtime ends.
pub struct RunningControlPlane {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningControlPlane")
            .field("local_addr", &self.local_addr)
            .field("trust_domain", &self.shared.trust_domain)
            .finish_non_exhaustive()
    }
}

impl RunningControlPlane {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the metrics listener, when `ServeConfig::metrics` asked for one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The Prometheus text `/metrics` serves, without going through the listener.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics_text()
    }

    /// `https://<local addr>`, for clients.
    pub fn url(&self) -> String {
        format!("https://{}", self.local_addr)
    }

    pub fn data_dir(&self) -> &Path {
        self.shared.dir.path()
    }

    pub fn bundle_path(&self) -> PathBuf {
        self.shared.dir.bundle()
    }

    pub fn admin_dir(&self) -> PathBuf {
        self.shared.dir.admin_dir()
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.shared.trust_domain
    }

    /// The control plane's own SPIFFE ID, the only one its clients should accept.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.shared.control_plane_id
    }

    /// The current trust bundle, PEM.
    pub fn bundle_pem(&self) -> String {
        self.shared.bundle.load().to_pem()
    }

    /// The policy set in force (the last good one) and its version, as pushed to proxies.
    pub fn policy(&self) -> Arc<ActivePolicy> {
        Arc::clone(&self.shared.registry.current().policy)
    }

    /// Makes a join token in-process (what `POST /v1/admin/tokens` does for palisadectl).
    pub fn create_join_token(
        &self,
        namespace: &str,
        service_account: &str,
        ttl: Option<Duration>,
    ) -> Result<TokenResponse, TokenError> {
        create_token(&self.shared, namespace, service_account, ttl)
    }

    /// Stops accepting, ends every connection and watch stream, and waits for the tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Opens (or creates) the data directory, issues the serving certificate, binds and
/// serves until [`RunningControlPlane::shutdown`].
pub async fn start(config: ServeConfig) -> Result<RunningControlPlane, ServeError> {
    let trust_domain =
        TrustDomain::new(&config.trust_domain).map_err(|e| ServeError::BadTrustDomain {
            value: config.trust_domain.clone(),
            reason: e.to_string(),
        })?;
    check_ttl(config.svid_ttl, MIN_LIBRARY_SVID_TTL)?;
    // Policy first: a broken policy directory refuses the start before anything is
    // written to the data directory.
    let policy_watcher = match config.policy_dir.clone() {
        Some(dir) => Some(
            tokio::task::spawn_blocking(move || load_policy(&dir))
                .await
                .map_err(|e| ServeError::Task(e.to_string()))??,
        ),
        None => None,
    };
    let dir = DataDir::new(&config.data_dir);
    let opened = {
        let dir = dir.clone();
        let td = trust_domain.clone();
        let operator = config.ca.clone();
        tokio::task::spawn_blocking(move || open_state(&dir, &td, operator))
            .await
            .map_err(|e| ServeError::Task(e.to_string()))??
    };
    let (ca, tokens) = opened;
    let bundle = shared_bundle(ca.bundle().clone());
    let registry = Registry::new(ca.bundle_pem(), config.registration_grace);
    let policy_watcher = policy_watcher.map(|(active, watcher)| {
        registry.set_policy(Arc::new(active));
        watcher
    });
    let id_error = |e: palisade_spiffe::IdError| ServeError::OwnCertificate(e.to_string());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        admin_id: admin::admin_id(&trust_domain).map_err(id_error)?,
        control_plane_id: admin::control_plane_id(&trust_domain).map_err(id_error)?,
        audit: AuditLog::new(dir.audit()),
        dir,
        trust_domain,
        svid_ttl: config.svid_ttl,
        ca: ArcSwap::from_pointee(ca),
        bundle,
        tokens: Mutex::new(tokens),
        registry,
        own: SvidStore::new(),
        own_issued_at: Mutex::new(SystemTime::now()),
        keepalive: config.keepalive,
        shutdown: shutdown_rx,
        metrics: Arc::new(ControlPlaneMetrics::default()),
    });
    renew_own_certificate(&shared).map_err(|e| ServeError::OwnCertificate(e.to_string()))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let tls = server_config(
        Arc::clone(&shared.own),
        Arc::clone(&shared.bundle),
        ClientAuth::Optional,
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let mut tasks = vec![
        tokio::spawn(accept_loop(Arc::clone(&shared), listener, acceptor)),
        tokio::spawn(maintenance(Arc::clone(&shared))),
    ];
    let mut metrics_addr = None;
    if let Some(addr) = config.metrics {
        let bind_error = |source| ServeError::Bind { addr, source };
        let metrics_listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        metrics_addr = Some(metrics_listener.local_addr().map_err(bind_error)?);
        tasks.push(tokio::spawn(metrics_listener::serve(
            metrics_listener,
            Arc::clone(&shared),
            shared.shutdown.clone(),
        )));
    }
    if let Some(watcher) = policy_watcher {
        tasks.push(tokio::spawn(policy_watch::run(
            watcher,
            Arc::clone(&shared.registry),
            Arc::clone(&shared.metrics),
            shared.shutdown.clone(),
        )));
    }
    tracing::info!(
        event = "control_plane_started",
        addr = %local_addr,
        trust_domain = %shared.trust_domain,
        svid_ttl_secs = shared.svid_ttl.as_secs(),
        metrics_addr = ?metrics_addr,
        "control plane listening"
    );
    Ok(RunningControlPlane {
        shared,
        local_addr,
        metrics_addr,
        shutdown_tx,
        tasks,
    })
}

/// Loads the policy directory for the start: every problem refuses the start.
fn load_policy(dir: &Path) -> Result<(ActivePolicy, DirWatcher), ServeError> {
    let known = embedded_rules().map_err(|e| ServeError::WafRules(e.to_string()))?;
    let (bundle, watcher) = DirWatcher::load(dir, Arc::new(known)).map_err(|diagnostics| {
        policy_watch::log_rejected(dir, &diagnostics, 0);
        ServeError::Policy {
            dir: dir.to_owned(),
            diagnostics,
        }
    })?;
    let active = ActivePolicy::next(bundle, 0);
    policy_watch::log_applied(dir, &active);
    Ok((active, watcher))
}

/// Refuses an SVID lifetime outside `min..=24h`.
pub fn check_ttl(ttl: Duration, min: Duration) -> Result<(), ServeError> {
    if ttl < min || ttl > MAX_SVID_TTL {
        return Err(ServeError::BadSvidTtl {
            got: ttl,
            min,
            max: MAX_SVID_TTL,
        });
    }
    Ok(())
}

fn open_state(
    dir: &DataDir,
    trust_domain: &TrustDomain,
    operator: Option<(PathBuf, PathBuf)>,
) -> Result<(CertificateAuthority, TokenStore), ServeError> {
    let operator = operator
        .as_ref()
        .map(|(cert, key)| (cert.as_path(), key.as_path()));
    let (ca, opened) = state::open(dir, trust_domain, operator)?;
    let tokens = TokenStore::load(&dir.tokens())?;
    admin::ensure_credential(dir, &ca)?;
    tracing::info!(
        event = "ca_loaded",
        first_start = opened == state::Opened::FirstStart,
        signing_root = %ca.signing_root().name,
        roots = ca.roots().len(),
        data_dir = %dir.path().display(),
        "certificate authority ready"
    );
    Ok((ca, tokens))
}

/// Issues a fresh serving certificate (new in-memory key) and installs it.
fn renew_own_certificate(shared: &Shared) -> Result<(), String> {
    let issued_at = SystemTime::now();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let ca = shared.ca.load();
    let svid = ca
        .issue(
            &shared.control_plane_id,
            &key,
            shared.svid_ttl,
            ExtraNames::Loopback,
        )
        .map_err(|e| e.to_string())?;
    shared
        .audit
        .append(&AuditEntry::new(&svid, "control_plane".into()))
        .map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    shared
        .own
        .install(svid.chain.clone(), der)
        .map_err(|e| e.to_string())?;
    *shared
        .own_issued_at
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = issued_at;
    tracing::info!(
        event = "svid_issued",
        spiffe_id = %svid.spiffe_id,
        serial = %svid.serial_hex,
        not_after_unix = svid.not_after_unix,
        issuer = %svid.issuer,
        credential = "control_plane",
        "serving certificate renewed"
    );
    Ok(())
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let mut shutdown = shared.shutdown.clone();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => match accepted {
                Ok((tcp, addr)) => {
                    connections.spawn(serve_connection(Arc::clone(&shared), acceptor.clone(), tcp, addr));
                }
                Err(e) => {
                    tracing::warn!(event = "accept_failed", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    connections.shutdown().await;
}

/// What the handshake established about the caller.
#[derive(Debug, Clone)]
struct Peer {
    addr: SocketAddr,
    id: Option<SpiffeId>,
    serial: Option<String>,
}

async fn serve_connection(
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(event = "tls_handshake_failed", peer_addr = %addr, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(event = "tls_handshake_failed", peer_addr = %addr, error = "timeout", "TLS handshake timed out");
            return;
        }
    };
    let leaf_info = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| svid_info(leaf).ok());
    let peer = Peer {
        addr,
        id: leaf_info.as_ref().map(|info| info.id.clone()),
        serial: leaf_info.map(|info| info.serial_hex),
    };
    let service = hyper::service::service_fn(move |req| {
        let shared = Arc::clone(&shared);
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(route(shared, peer, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // HTTP/2 pings find dead peers, so that a vanished proxy's watch stream (and with it
    // its registration) ends instead of lingering.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
        tracing::debug!(event = "connection_closed", peer_addr = %addr, error = %e, "connection ended with an error");
    }
}

type ResponseBody = BoxBody<Bytes, Infallible>;

/// An error answer: status, stable code, message for a person.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, message)
    }
}

impl From<CsrError> for ApiError {
    fn from(e: CsrError) -> Self {
        let code = match e {
            CsrError::IdentityMismatch { .. } => codes::CSR_IDENTITY_MISMATCH,
            _ => codes::CSR_MALFORMED,
        };
        Self::new(StatusCode::BAD_REQUEST, code, e.to_string())
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        let (status, code) = match e {
            TokenError::Unknown => (StatusCode::UNAUTHORIZED, codes::TOKEN_UNKNOWN),
            TokenError::Expired { .. } => (StatusCode::UNAUTHORIZED, codes::TOKEN_EXPIRED),
            TokenError::AlreadyUsed { .. } => (StatusCode::UNAUTHORIZED, codes::TOKEN_USED),
            TokenError::ReservedNamespace => (StatusCode::BAD_REQUEST, codes::RESERVED_NAMESPACE),
            TokenError::BadIdentity { .. } | TokenError::BadTtl(_) => {
                (StatusCode::BAD_REQUEST, codes::INVALID_ARGUMENT)
            }
            TokenError::Corrupt { .. } | TokenError::Fs(_) => {
                tracing::error!(event = "state_write_failed", error = %e, "token store failure");
                return Self::internal(
                    "the control plane could not update its token store; retry later",
                );
            }
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<CaError> for ApiError {
    fn from(e: CaError) -> Self {
        tracing::error!(event = "signing_failed", error = %e, "the CA could not sign");
        Self::internal("the control plane could not sign the certificate; retry later")
    }
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<ResponseBody> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(error: ApiError) -> Response<ResponseBody> {
    json_response(
        error.status,
        &ErrorBody {
            code: error.code.to_owned(),
            error: error.message,
        },
    )
}

async fn route(shared: Arc<Shared>, peer: Peer, req: Request<Incoming>) -> Response<ResponseBody> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let result = match (path.as_str(), &method) {
        (PATH_SVID, &Method::POST) => handle_issue(&shared, &peer, req).await,
        (PATH_ADMIN_TOKENS, &Method::POST) => handle_token(&shared, &peer, req).await,
        (PATH_REGISTER, &Method::POST) => handle_register(&shared, &peer, req).await,
        (PATH_WATCH, &Method::GET) => return handle_watch(&shared, &peer, &req),
        (PATH_ADMIN_POLICY_CHECK, &Method::POST) => handle_policy_check(&shared, &peer, req).await,
        (
            PATH_SVID | PATH_ADMIN_TOKENS | PATH_REGISTER | PATH_WATCH | PATH_ADMIN_POLICY_CHECK,
            _,
        ) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("no endpoint {path}"),
        )),
    };
    result.unwrap_or_else(error_response)
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    codes::BODY_TOO_LARGE,
                    format!("the request body is larger than {MAX_BODY} bytes"),
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                )
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_REQUEST,
            format!("the request body is not the expected JSON: {e}"),
        )
    })
}

async fn handle_issue(
    shared: &Arc<Shared>,
    peer: &Peer,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let result = match read_json::<IssueRequest>(req).await {
        Ok(request) => {
            let shared = Arc::clone(shared);
            let peer_for_task = peer.clone();
            tokio::task::spawn_blocking(move || issue(&shared, &peer_for_task, request))
                .await
                .unwrap_or_else(|e| Err(ApiError::internal(format!("issuance task failed: {e}"))))
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(response) => {
            shared.metrics.svid_issued();
            Ok(json_response(StatusCode::OK, &response))
        }
        Err(error) => {
            shared.metrics.svid_refused(error.code);
            tracing::warn!(
                event = "svid_refused",
                code = error.code,
                reason = %error.message,
                peer_addr = %peer.addr,
                peer_spiffe_id = peer.id.as_ref().map(|id| id.as_str()).unwrap_or(""),
                "SVID refused"
            );
            Err(error)
        }
    }
}

/// The issuance decision: identity from the credential, CSR checked against it, token
/// spent and persisted, leaf signed and audited.
fn issue(shared: &Shared, peer: &Peer, request: IssueRequest) -> Result<IssueResponse, ApiError> {
    let csr = CheckedCsr::parse_pem(&request.csr_pem)?;
    let (id, credential) = match (&peer.id, &request.join_token) {
        // Renewal: the SVID the handshake verified decides; a join token sent along is
        // neither needed nor spent.
        (Some(id), _) => {
            csr.check_identity(id)?;
            let serial = peer.serial.clone().unwrap_or_default();
            (id.clone(), format!("svid:{serial}"))
        }
        (None, Some(token)) => {
            let mut tokens = shared.tokens.lock().unwrap_or_else(|p| p.into_inner());
            let grant = tokens.check(token, &shared.trust_domain)?;
            csr.check_identity(&grant.spiffe_id)?;
            tokens.consume(&grant)?;
            (grant.spiffe_id, format!("join_token:{}", grant.hash_prefix))
        }
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::CREDENTIAL_MISSING,
                "no credential: send a join token for the first SVID, or renew over mTLS with the current SVID",
            ))
        }
    };
    let ca = shared.ca.load();
    let svid = ca.issue(&id, &csr.public_key, shared.svid_ttl, ExtraNames::None)?;
    shared
        .audit
        .append(&AuditEntry::new(&svid, credential.clone()))
        .map_err(|e| {
            tracing::error!(event = "audit_write_failed", error = %e, "cannot append to the audit log");
            ApiError::internal("the control plane could not record the issuance; retry later")
        })?;
    tracing::info!(
        event = "svid_issued",
        spiffe_id = %svid.spiffe_id,
        serial = %svid.serial_hex,
        not_after_unix = svid.not_after_unix,
        issuer = %svid.issuer,
        credential = %credential,
        peer_addr = %peer.addr,
        "SVID issued"
    );
    Ok(IssueResponse {
        spiffe_id: svid.spiffe_id.to_string(),
        chain_pem: svid.chain_pem,
        bundle_pem: ca.bundle_pem(),
        not_after_unix: svid.not_after_unix,
    })
}

fn create_token(
    shared: &Shared,
    namespace: &str,
    service_account: &str,
    ttl: Option<Duration>,
) -> Result<TokenResponse, TokenError> {
    let made = shared
        .tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .create(&shared.trust_domain, namespace, service_account, ttl)?;
    tracing::info!(
        event = "join_token_created",
        spiffe_id = %made.spiffe_id,
        expires_at_unix = made.expires_at_unix,
        "join token created"
    );
    Ok(TokenResponse {
        token: made.token,
        spiffe_id: made.spiffe_id.to_string(),
        expires_at_unix: made.expires_at_unix,
    })
}

/// Refuses any caller but the admin credential.
fn require_admin(shared: &Shared, peer: &Peer) -> Result<(), ApiError> {
    match &peer.id {
        Some(id) if *id == shared.admin_id => Ok(()),
        Some(id) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            codes::ADMIN_REQUIRED,
            format!(
                "`{id}` is not the admin identity; use the admin credential in DATA_DIR/admin/"
            ),
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::ADMIN_REQUIRED,
            "this endpoint needs the admin credential over mTLS (DATA_DIR/admin/)",
        )),
    }
}

async fn handle_token(
    shared: &Arc<Shared>,
    peer: &Peer,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    require_admin(shared, peer)?;
    let request: TokenRequest = read_json(req).await?;
    let shared = Arc::clone(shared);
    let response = tokio::task::spawn_blocking(move || {
        create_token(
            &shared,
            &request.namespace,
            &request.service_account,
            request.ttl_secs.map(Duration::from_secs),
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("token task failed: {e}")))??;
    Ok(json_response(StatusCode::OK, &response))
}

/// Explains a request against the policy in force (the last good set).
async fn handle_policy_check(
    shared: &Arc<Shared>,
    peer: &Peer,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    require_admin(shared, peer)?;
    let request: PolicyCheckRequest = read_json(req).await?;
    let policy = Arc::clone(&shared.registry.current().policy);
    let answer = policy
        .bundle
        .explain(&shared.trust_domain, &request, policy.version)
        .map_err(|message| {
            ApiError::new(StatusCode::BAD_REQUEST, codes::INVALID_ARGUMENT, message)
        })?;
    Ok(json_response(StatusCode::OK, &answer))
}

fn require_svid(peer: &Peer) -> Result<&SpiffeId, ApiError> {
    peer.id.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::SVID_REQUIRED,
            "this endpoint needs the caller's SVID over mTLS",
        )
    })
}

/// A workload speaks for exactly one service: the one its service account names
/// (`spiffe://TD/ns/NS/sa/payments` registers and watches `payments`). Without this
/// binding any workload holding any SVID could register itself as an endpoint of another
/// service, and callers' proxies, which check the destination against the registered
/// identity, would send it that service's traffic.
fn require_owned_service(id: &SpiffeId, service: &str) -> Result<(), ApiError> {
    let Some(account) = id.service_account() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            codes::NOT_A_WORKLOAD,
            format!(
                "`{id}` is not a workload identity (spiffe://TD/ns/NS/sa/SA); only proxies register and watch"
            ),
        ));
    };
    if account != service {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            codes::SERVICE_NOT_OWNED,
            format!(
                "`{id}` may only register and watch service `{account}`, not `{service}`; \
                 start the proxy with --service {account} or give the workload the service account `{service}`"
            ),
        ));
    }
    Ok(())
}

async fn handle_register(
    shared: &Arc<Shared>,
    peer: &Peer,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let id = require_svid(peer)?;
    let registration: Registration = read_json(req).await?;
    require_owned_service(id, &registration.service)?;
    shared
        .registry
        .register(&registration.service, &registration.inbound_addr, id)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::INVALID_ARGUMENT,
                e.to_string(),
            )
        })?;
    Ok(json_response(
        StatusCode::OK,
        &Registered {
            spiffe_id: id.to_string(),
        },
    ))
}

fn handle_watch(
    shared: &Arc<Shared>,
    peer: &Peer,
    req: &Request<Incoming>,
) -> Response<ResponseBody> {
    let id = match require_svid(peer) {
        Ok(id) => id.clone(),
        Err(e) => return error_response(e),
    };
    // The namespace comes from the verified identity, never from the request: a proxy
    // cannot ask for another namespace's policies.
    let Some(namespace) = id.namespace().map(str::to_owned) else {
        return error_response(ApiError::new(
            StatusCode::FORBIDDEN,
            codes::NOT_A_WORKLOAD,
            format!(
                "`{id}` is not a workload identity (spiffe://TD/ns/NS/sa/SA); only proxies watch"
            ),
        ));
    };
    let query = req.uri().query().unwrap_or("");
    let param = |key: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .filter(|s| !s.is_empty())
    };
    let service = param("service");
    let Some(service) = service.map(str::to_owned) else {
        return error_response(ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_REQUEST,
            "the watch needs ?service=<the caller's service name>",
        ));
    };
    if let Err(e) = validate_service(&service) {
        return error_response(ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_ARGUMENT,
            e.to_string(),
        ));
    }
    if let Err(e) = require_owned_service(&id, &service) {
        return error_response(e);
    }
    // The address the proxy registered: its watch keeps that endpoint alive, and only it.
    let addr = match param("addr").map(|a| percent_encoding::percent_decode_str(a).decode_utf8()) {
        None => None,
        Some(Ok(addr)) if validate_addr(&addr).is_ok() => Some(addr.into_owned()),
        Some(_) => {
            return error_response(ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::INVALID_ARGUMENT,
                "`addr` must be the host:port the proxy registered, percent-encoded",
            ))
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let registry = Arc::clone(&shared.registry);
    let keepalive = shared.keepalive;
    let metrics = Arc::clone(&shared.metrics);
    let mut shutdown = shared.shutdown.clone();
    tracing::info!(event = "watch_opened", spiffe_id = %id, service = %service, peer_addr = %peer.addr, "config watch opened");
    tokio::spawn(async move {
        let _guard = registry.watching(&id, addr.as_deref());
        let mut snapshots = registry.subscribe();
        // The first snapshot of a stream is not a push of a change, nor is a keep-alive.
        let mut last_sent = None;
        loop {
            let published = snapshots.borrow_and_update().clone();
            let snapshot = published.snapshot_for(&namespace, &service);
            let mut line = serde_json::to_vec(&snapshot).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Bytes::from(line)).await.is_err() {
                break;
            }
            if last_sent.is_some_and(|version| version != published.version) {
                if let Some(at) = published.published_at {
                    metrics.pushed(at.elapsed());
                }
            }
            last_sent = Some(published.version);
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(keepalive) => {}
                _ = tx.closed() => break,
                _ = shutdown.changed() => break,
            }
        }
        tracing::info!(event = "watch_closed", spiffe_id = %id, service = %service, "config watch closed");
    });
    let mut response = Response::new(LinesBody { rx }.boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// A streaming body fed line by line by the watch task; it ends when the task does.
struct LinesBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for LinesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|line| line.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Sweeps the registry, renews the serving certificate at half its life, and applies a
/// CA rotation step written to `state.json` by the `ca` commands.
async fn maintenance(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut tick = tokio::time::interval(MAINTENANCE_TICK);
    let mut last_state = state::state_bytes(&shared.dir).ok();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {}
        }
        shared.registry.sweep(Instant::now());
        let shared_for_task = Arc::clone(&shared);
        let previous = last_state.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let current = state::state_bytes(&shared_for_task.dir).ok();
            let ca_changed = current.is_some() && current != previous;
            if ca_changed {
                reload_ca(&shared_for_task);
            }
            if ca_changed || own_certificate_due(&shared_for_task) {
                if let Err(e) = renew_own_certificate(&shared_for_task) {
                    tracing::error!(event = "own_certificate_renewal_failed", error = %e, "cannot renew the serving certificate; retrying");
                }
            }
            current
        })
        .await;
        if let Ok(Some(current)) = outcome {
            last_state = Some(current);
        }
    }
}

fn own_certificate_due(shared: &Shared) -> bool {
    let Some(info) = shared.own.info() else {
        return true;
    };
    let issued_at = *shared
        .own_issued_at
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    half_life_passed(issued_at, info.not_after_unix, SystemTime::now())
}

/// Whether `now` is past the middle of a certificate's life from `issued_at` to
/// `not_after_unix`. Counting from the backdated `notBefore` instead put the middle of a
/// one-minute certificate at its issuance, and the control plane renewed (and audited) its
/// serving certificate on every maintenance tick.
fn half_life_passed(issued_at: SystemTime, not_after_unix: i64, now: SystemTime) -> bool {
    let not_after = UNIX_EPOCH + Duration::from_secs(u64::try_from(not_after_unix).unwrap_or(0));
    now >= palisade_spiffe::svid::renewal_due(issued_at, not_after, 0.5)
}

fn reload_ca(shared: &Shared) {
    match state::load(&shared.dir) {
        Ok((_, ca)) if ca.trust_domain() == &shared.trust_domain => {
            tracing::info!(
                event = "ca_reloaded",
                signing_root = %ca.signing_root().name,
                roots = ca.roots().len(),
                "CA state changed on disk; now signing with the root it names"
            );
            shared.bundle.store(Arc::new(ca.bundle().clone()));
            shared.registry.set_bundle(ca.bundle_pem());
            shared.ca.store(Arc::new(ca));
        }
        Ok(_) => tracing::error!(
            event = "ca_reload_refused",
            "state.json now names another trust domain; keeping the CA in memory"
        ),
        Err(e) => tracing::error!(
            event = "ca_reload_failed",
            error = %e,
            "cannot load the changed CA state; keeping the CA in memory"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_minute_serving_certificate_is_renewed_after_thirty_seconds_not_at_once() {
        let issued_at = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let not_after = 1_000_060;
        let at = |secs| issued_at + Duration::from_secs(secs);
        assert!(!half_life_passed(issued_at, not_after, at(0)));
        assert!(!half_life_passed(issued_at, not_after, at(29)));
        assert!(half_life_passed(issued_at, not_after, at(30)));
        assert!(half_life_passed(issued_at, not_after, at(61)));
    }

    #[test]
    fn a_certificate_expiring_before_its_issuance_time_is_due() {
        let issued_at = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(half_life_passed(issued_at, 999_000, issued_at));
        assert!(half_life_passed(issued_at, -5, issued_at));
    }
}
