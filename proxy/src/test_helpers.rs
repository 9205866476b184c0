//! In-process fixtures for the proxy's tests and the workspace's end-to-end tests: a test
//! CA that issues real SVIDs into [`SvidStore`]s, and a small application server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use palisade_spiffe::svid::shared_bundle;
use palisade_spiffe::{SharedBundle, SvidStore, TrustBundle, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::body::{self, ProxyBody};
use crate::run::ProxyIdentity;

/// A certificate authority for one trust domain: an ECDSA P-256 root that signs SVIDs.
pub struct TestCa {
    trust_domain: String,
    root: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(trust_domain: &str) -> Self {
        let key = KeyPair::generate().expect("generating a P-256 key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.distinguished_name.push(
            DnType::CommonName,
            format!("{trust_domain} test root {:08x}", rand::random::<u32>()),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root = params
            .self_signed(&key)
            .expect("self-signing the test root");
        Self {
            trust_domain: trust_domain.to_owned(),
            root: root.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn trust_bundle(&self) -> TrustBundle {
        let td = TrustDomain::new(&self.trust_domain).expect("a valid test trust domain");
        TrustBundle::new(td, vec![self.root.clone()]).expect("the test root is a trust anchor")
    }

    pub fn bundle(&self) -> SharedBundle {
        shared_bundle(self.trust_bundle())
    }

    /// An SVID for `spiffe://TD/ns/NS/sa/SA` (both EKUs), chain and key.
    pub fn issue(
        &self,
        ns: &str,
        sa: &str,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        self.issue_uri(&format!("spiffe://{}/ns/{ns}/sa/{sa}", self.trust_domain))
    }

    /// An SVID whose single URI SAN is `uri`.
    pub fn issue_uri(&self, uri: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("generating a P-256 key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.subject_alt_names = vec![SanType::URI(uri.try_into().expect("an IA5 URI"))];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing the SVID");
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    /// A store holding a fresh SVID for `ns`/`sa`.
    pub fn svid_store(&self, ns: &str, sa: &str) -> Arc<SvidStore> {
        let store = SvidStore::new();
        let (chain, key) = self.issue(ns, sa);
        store.install(chain, key).expect("installing the test SVID");
        store
    }

    /// A proxy identity for `ns`/`sa`, trusting this CA.
    pub fn identity(&self, ns: &str, sa: &str) -> ProxyIdentity {
        ProxyIdentity {
            svids: self.svid_store(ns, sa),
            bundle: self.bundle(),
        }
    }
}

/// A tiny application behind the inbound proxy (HTTP/1.1 and h2c prior knowledge):
/// - `/slow?ms=N`: answers after N milliseconds (default 500).
/// - `/count`: counts request body bytes as they arrive (see [`TestApp::bytes_seen`]) and
///   answers with the total.
/// - `/grpc…` (any path starting so): echoes every request data frame as soon as it arrives, then the trailers
///   `grpc-status: 0` and `grpc-message: ok`: a bidirectional streaming RPC.
/// - `/ws`: accepts an HTTP/1.1 upgrade (any protocol) and echoes the upgraded bytes.
/// - anything else: a JSON echo of method, path, version, headers and body length.
pub struct TestApp {
    pub addr: SocketAddr,
    stats: Arc<AppStats>,
}

#[derive(Default)]
struct AppStats {
    requests: AtomicU64,
    bytes_seen: AtomicU64,
    progress: Notify,
}

impl TestApp {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the test app");
        let addr = listener.local_addr().expect("the test app's address");
        let stats = Arc::new(AppStats::default());
        let shared = stats.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let stats = shared.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request| handle(request, stats.clone()));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self { addr, stats }
    }

    /// Requests the app has received.
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Body bytes `/count` has received so far.
    pub fn bytes_seen(&self) -> u64 {
        self.stats.bytes_seen.load(Ordering::SeqCst)
    }

    /// Waits until `/count` has seen at least `bytes`, or `within` passes.
    pub async fn wait_for_bytes(&self, bytes: u64, within: Duration) -> bool {
        let waiting = async {
            loop {
                let notified = self.stats.progress.notified();
                if self.bytes_seen() >= bytes {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(within, waiting).await.is_ok()
    }
}

async fn handle(
    mut request: Request<Incoming>,
    stats: Arc<AppStats>,
) -> Result<Response<ProxyBody>, Infallible> {
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let response = match request.uri().path() {
        "/slow" => {
            let ms = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(500);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(body::boxed(Full::new(Bytes::from_static(b"slow done"))))
        }
        "/count" => {
            let mut body = request.into_body();
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(data) = frame.data_ref() {
                    total += data.len() as u64;
                    stats
                        .bytes_seen
                        .fetch_add(data.len() as u64, Ordering::SeqCst);
                    stats.progress.notify_waiters();
                }
            }
            Response::new(body::boxed(Full::new(Bytes::from(total.to_string()))))
        }
        path if path.starts_with("/grpc") => grpc_echo(request.into_body()),
        "/ws" => upgrade_echo(&mut request),
        _ => echo(request).await,
    };
    Ok(response)
}

fn upgrade_echo(request: &mut Request<Incoming>) -> Response<ProxyBody> {
    let Some(protocol) = request.headers().get(header::UPGRADE).cloned() else {
        let mut response = Response::new(body::empty());
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let on_upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        }
    });
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response.headers_mut().insert(header::UPGRADE, protocol);
    response
}

fn grpc_echo(mut body: Incoming) -> Response<ProxyBody> {
    let (mut sender, channel) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if sender.send(Frame::data(data)).await.is_err() {
                    return;
                }
            }
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("ok"));
        let _ = sender.send_trailers(trailers).await;
    });
    let mut response = Response::new(body::boxed(channel));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

async fn echo(request: Request<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = request.into_parts();
    let mut headers = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers.insert(
            name.as_str().to_owned(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        );
    }
    let body_len = match body.collect().await {
        Ok(collected) => collected.to_bytes().len(),
        Err(_) => {
            let mut response = Response::new(body::empty());
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let echo = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": body_len,
    });
    let mut response = Response::new(body::boxed(Full::new(Bytes::from(echo.to_string()))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
