//! A small fake control plane for the client's unit tests: real TLS 1.3 with SPIFFE
//! verification and HTTP/2, the wire contract's paths, and knobs to make it misbehave.
//! The real control plane is exercised end to end in `tests/tests/identity.rs`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_api::wire::{
    ErrorBody, IssueRequest, IssueResponse, Registered, Registration, PATH_REGISTER, PATH_SVID,
    PATH_WATCH,
};
use palisade_spiffe::svid::{cert_to_pem, shared_bundle};
use palisade_spiffe::tls::{peer_spiffe_id, server_config};
use palisade_spiffe::{ClientAuth, SharedBundle, SpiffeId, SvidStore, TrustBundle, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::{control_plane_id, ControlPlaneAddr};

pub(crate) const TD: &str = "mesh.test";

/// A test CA.
pub(crate) struct TestCa {
    pub cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn bundle(&self) -> TrustBundle {
        TrustBundle::new(TrustDomain::new(TD).unwrap(), vec![self.cert.clone()]).unwrap()
    }

    /// Signs an SVID for `id` with the public key of `csr` (or a new key), valid `ttl`.
    fn sign(&self, id: &SpiffeId, csr_pem: Option<&str>, ttl: Duration) -> Signed {
        let (mut params, key) = match csr_pem {
            Some(pem) => {
                let csr = CertificateSigningRequestParams::from_pem(pem).unwrap();
                (csr, None)
            }
            None => {
                let key = KeyPair::generate().unwrap();
                let params = CertificateParams::new(Vec::<String>::new()).unwrap();
                let csr = params.serialize_request(&key).unwrap();
                let csr = CertificateSigningRequestParams::from_der(csr.der()).unwrap();
                (csr, Some(key))
            }
        };
        params.params.subject_alt_names = vec![SanType::URI(id.as_str().try_into().unwrap())];
        params.params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.params.not_before = (SystemTime::now() - Duration::from_secs(5)).into();
        params.params.not_after = (SystemTime::now() + ttl).into();
        let cert = params.signed_by(&self.issuer).unwrap();
        Signed {
            cert: cert.der().clone(),
            key: key.map(|k| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.serialize_der()))),
        }
    }
}

struct Signed {
    cert: CertificateDer<'static>,
    key: Option<PrivateKeyDer<'static>>,
}

/// One step of a scripted watch stream.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Send(Bytes),
    /// End the response body.
    End,
}

/// What the fake does, and what it saw.
pub(crate) struct FakeState {
    ca: TestCa,
    pub ttl: Mutex<Duration>,
    /// Join token → the identity it is scoped to; used once.
    pub tokens: Mutex<HashMap<String, SpiffeId>>,
    /// When set, every issuance is for this identity instead (a misbehaving CA).
    pub issue_as: Mutex<Option<SpiffeId>>,
    pub fail_renewals: AtomicBool,
    /// When set, SVIDs are signed by a CA outside the bundle (a forged answer).
    pub sign_with_rogue_ca: AtomicBool,
    /// One script per watch connection, in order; after they run out, each watch
    /// sends one valid snapshot and stays open.
    pub watch_scripts: Mutex<VecDeque<Vec<Step>>>,
    pub watch_connections: AtomicUsize,
    pub registrations: Mutex<Vec<(SpiffeId, Registration)>>,
}

pub(crate) struct FakeControlPlane {
    pub addr: ControlPlaneAddr,
    pub state: Arc<FakeState>,
    task: JoinHandle<()>,
}

impl Drop for FakeControlPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `condition` every 20 ms until it holds or `within` passes.
pub(crate) async fn eventually(within: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

/// A proxy identity bootstrapped from `fake` with a fresh token.
pub(crate) async fn bootstrap_from(
    fake: &FakeControlPlane,
    sa: &str,
) -> Result<crate::identity::Identity, crate::identity::IdentityError> {
    let td = TrustDomain::new(TD).unwrap();
    let token = format!("token-{sa}");
    fake.add_token(&token, SpiffeId::workload(&td, "shop", sa).unwrap());
    crate::identity::bootstrap(identity_config(fake, sa, &token)).await
}

pub(crate) fn identity_config(
    fake: &FakeControlPlane,
    sa: &str,
    token: &str,
) -> crate::identity::IdentityConfig {
    crate::identity::IdentityConfig {
        control_plane: fake.addr.clone(),
        trust_domain: TrustDomain::new(TD).unwrap(),
        bundle: fake.bundle(),
        namespace: "shop".to_owned(),
        service_account: sa.to_owned(),
        join_token: token.to_owned(),
        timeouts: super::Timeouts::default(),
        retry: crate::identity::RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
        },
    }
}

impl FakeControlPlane {
    pub async fn start() -> Self {
        let ca = TestCa::new("fake control plane CA");
        let td = TrustDomain::new(TD).unwrap();
        let server_svid = ca.sign(&control_plane_id(&td), None, Duration::from_secs(3600));
        let svids = SvidStore::new();
        svids
            .install(vec![server_svid.cert], server_svid.key.unwrap())
            .unwrap();
        let mut tls = server_config(svids, shared_bundle(ca.bundle()), ClientAuth::Optional);
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local: SocketAddr = listener.local_addr().unwrap();
        let state = Arc::new(FakeState {
            ca,
            ttl: Mutex::new(Duration::from_secs(3600)),
            tokens: Mutex::new(HashMap::new()),
            issue_as: Mutex::new(None),
            fail_renewals: AtomicBool::new(false),
            sign_with_rogue_ca: AtomicBool::new(false),
            watch_scripts: Mutex::new(VecDeque::new()),
            watch_connections: AtomicUsize::new(0),
            registrations: Mutex::new(Vec::new()),
        });
        let served = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = served.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let peer = peer_spiffe_id(tls.get_ref().1.peer_certificates());
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        let peer = peer.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(handle(&state, peer, request).await)
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr: ControlPlaneAddr::parse(&local.to_string()).unwrap(),
            state,
            task,
        }
    }

    /// A fresh shared bundle holding the fake's root, as a proxy would load it.
    pub fn bundle(&self) -> SharedBundle {
        shared_bundle(self.state.ca.bundle())
    }

    pub fn bundle_pem(&self) -> String {
        cert_to_pem(&self.state.ca.cert)
    }

    pub fn add_token(&self, token: &str, id: SpiffeId) {
        self.state
            .tokens
            .lock()
            .unwrap()
            .insert(token.to_owned(), id);
    }

    pub fn script_watch(&self, steps: Vec<Step>) {
        self.state.watch_scripts.lock().unwrap().push_back(steps);
    }

    /// A snapshot line, newline included.
    pub fn snapshot_line(&self, version: u64) -> Bytes {
        let snapshot = palisade_api::wire::ConfigSnapshot {
            version,
            bundle_pem: self.bundle_pem(),
            endpoints: [(
                "payments".to_owned(),
                vec![palisade_api::wire::Endpoint {
                    addr: "127.0.0.1:1".to_owned(),
                    spiffe_id: format!("spiffe://{TD}/ns/shop/sa/payments"),
                }],
            )]
            .into(),
            ..Default::default()
        };
        let mut line = serde_json::to_vec(&snapshot).unwrap();
        line.push(b'\n');
        line.into()
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = Full::new(Bytes::from(serde_json::to_vec(value).unwrap()))
        .map_err(|never| match never {})
        .boxed();
    Response::builder().status(status).body(body).unwrap()
}

fn refuse(status: StatusCode, code: &str, error: &str) -> Response<Body> {
    json(
        status,
        &ErrorBody {
            code: code.to_owned(),
            error: error.to_owned(),
        },
    )
}

async fn handle(
    state: &FakeState,
    peer: Option<SpiffeId>,
    request: Request<Incoming>,
) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    match (method, path.as_str()) {
        (Method::POST, PATH_SVID) => {
            let request: IssueRequest = serde_json::from_slice(&body).unwrap();
            let id = match (&request.join_token, peer) {
                (Some(token), _) => match state.tokens.lock().unwrap().remove(token) {
                    Some(id) => id,
                    None => {
                        return refuse(
                            StatusCode::UNAUTHORIZED,
                            "token_invalid",
                            "unknown or used join token",
                        )
                    }
                },
                (None, Some(peer)) => {
                    if state.fail_renewals.load(Ordering::SeqCst) {
                        return refuse(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "unavailable",
                            "renewals are failing on purpose",
                        );
                    }
                    peer
                }
                (None, None) => {
                    return refuse(
                        StatusCode::UNAUTHORIZED,
                        "no_credential",
                        "no join token and no SVID",
                    )
                }
            };
            let id = state.issue_as.lock().unwrap().clone().unwrap_or(id);
            let ttl = *state.ttl.lock().unwrap();
            let signed = if state.sign_with_rogue_ca.load(Ordering::SeqCst) {
                TestCa::new("rogue").sign(&id, Some(&request.csr_pem), ttl)
            } else {
                state.ca.sign(&id, Some(&request.csr_pem), ttl)
            };
            let not_after = SystemTime::now() + ttl;
            json(
                StatusCode::OK,
                &IssueResponse {
                    spiffe_id: id.to_string(),
                    chain_pem: cert_to_pem(&signed.cert),
                    bundle_pem: cert_to_pem(&state.ca.cert),
                    not_after_unix: not_after
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .as_secs() as i64,
                },
            )
        }
        (Method::POST, PATH_REGISTER) => {
            let Some(peer) = peer else {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "no_svid",
                    "register needs an SVID",
                );
            };
            let registration: Registration = serde_json::from_slice(&body).unwrap();
            state
                .registrations
                .lock()
                .unwrap()
                .push((peer.clone(), registration));
            json(
                StatusCode::OK,
                &Registered {
                    spiffe_id: peer.to_string(),
                },
            )
        }
        (Method::GET, PATH_WATCH) => {
            if peer.is_none() {
                return refuse(StatusCode::UNAUTHORIZED, "no_svid", "watch needs an SVID");
            }
            let n = state.watch_connections.fetch_add(1, Ordering::SeqCst) as u64;
            let steps = state.watch_scripts.lock().unwrap().pop_front();
            let steps = steps.unwrap_or_else(|| {
                let snapshot = palisade_api::wire::ConfigSnapshot {
                    version: 1000 + n,
                    bundle_pem: cert_to_pem(&state.ca.cert),
                    ..Default::default()
                };
                let mut line = serde_json::to_vec(&snapshot).unwrap();
                line.push(b'\n');
                vec![Step::Send(line.into())]
            });
            let (sender, receiver) = tokio::sync::mpsc::channel::<Frame<Bytes>>(4);
            let frames = futures_util::stream::unfold(receiver, |mut receiver| async move {
                let frame = receiver.recv().await?;
                Some((Ok::<_, hyper::Error>(frame), receiver))
            });
            let body = http_body_util::StreamBody::new(frames);
            tokio::spawn(async move {
                for step in steps {
                    match step {
                        Step::Send(bytes) => {
                            if sender.send(Frame::data(bytes)).await.is_err() {
                                return;
                            }
                        }
                        Step::End => return,
                    }
                }
                // Hold the stream open, as a live control plane does.
                let _open = sender;
                std::future::pending::<()>().await;
            });
            Response::new(body.boxed())
        }
        _ => refuse(StatusCode::NOT_FOUND, "not_found", "no such path"),
    }
}
