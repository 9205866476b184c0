//! Helpers for the control plane's integration tests: an in-process control plane on
//! 127.0.0.1 and real TLS + HTTP/2 clients built from palisade_spiffe's client config.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_api::wire::{
    ConfigSnapshot, ErrorBody, IssueRequest, IssueResponse, PATH_SVID, PATH_WATCH,
};
use palisade_control_plane::client::{ApiClient, ClientError};
pub use palisade_control_plane::start;
use palisade_control_plane::{RunningControlPlane, ServeConfig};
use palisade_spiffe::svid::{certs_from_pem, shared_bundle, TrustBundle};
use palisade_spiffe::tls::client_config;
use palisade_spiffe::{ServerIdentity, SpiffeId, SvidStore, TrustDomain};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub const TD: &str = "example.org";

pub fn config(dir: &Path, ttl: Duration) -> ServeConfig {
    let mut config = ServeConfig::new(dir, "127.0.0.1:0".parse().unwrap(), TD);
    config.svid_ttl = ttl;
    config
}

pub async fn start_cp(dir: &Path) -> RunningControlPlane {
    start(config(dir, Duration::from_secs(3600))).await.unwrap()
}

pub fn td() -> TrustDomain {
    TrustDomain::new(TD).unwrap()
}

pub fn workload(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::workload(&td(), ns, sa).unwrap()
}

pub fn bundle_of(cp: &RunningControlPlane) -> TrustBundle {
    TrustBundle::from_pem(cp.trust_domain().clone(), cp.bundle_pem().as_bytes()).unwrap()
}

/// A client without an SVID (first issuance), accepting only the control plane's ID.
pub fn anonymous(cp: &RunningControlPlane) -> ApiClient {
    let tls = client_config(
        None,
        shared_bundle(bundle_of(cp)),
        ServerIdentity::OneOf(vec![cp.spiffe_id().clone()]),
    );
    ApiClient::new(&cp.url(), tls).unwrap()
}

/// A client presenting `svid`.
pub fn with_svid(cp: &RunningControlPlane, svid: &Svid) -> ApiClient {
    let store = SvidStore::new();
    store.install(svid.chain.clone(), svid.key_der()).unwrap();
    let tls = client_config(
        Some(store),
        shared_bundle(bundle_of(cp)),
        ServerIdentity::OneOf(vec![cp.spiffe_id().clone()]),
    );
    ApiClient::new(&cp.url(), tls).unwrap()
}

/// A workload's key (in memory) and the chain it obtained.
#[derive(Debug)]
pub struct Svid {
    pub key: KeyPair,
    pub chain: Vec<CertificateDer<'static>>,
    pub response: IssueResponse,
}

impl Svid {
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}

pub fn csr(key: &KeyPair, sans: Vec<SanType>) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans;
    params.serialize_request(key).unwrap().pem().unwrap()
}

pub fn uri_san(id: &str) -> SanType {
    SanType::URI(id.to_owned().try_into().unwrap())
}

/// POSTs `body` and returns the status with the parsed body (JSON value).
pub async fn post(
    client: &ApiClient,
    path: &str,
    body: &impl serde::Serialize,
) -> (StatusCode, serde_json::Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let (status, answer) = client
        .call(Method::POST, path, Bytes::from(bytes))
        .await
        .unwrap();
    let value = serde_json::from_slice(&answer).unwrap_or(serde_json::Value::Null);
    (status, value)
}

/// Asserts an error answer with `status` and `code`, and returns its message.
pub fn assert_error(
    answer: &(StatusCode, serde_json::Value),
    status: StatusCode,
    code: &str,
) -> String {
    let body: ErrorBody = serde_json::from_value(answer.1.clone())
        .unwrap_or_else(|e| panic!("not an ErrorBody ({e}): {answer:?}"));
    assert_eq!(answer.0, status, "{body:?}");
    assert_eq!(body.code, code, "{body:?}");
    body.error
}

pub async fn issue_with(
    client: &ApiClient,
    csr_pem: String,
    token: Option<String>,
) -> Result<IssueResponse, ClientError> {
    client
        .post_json(
            PATH_SVID,
            &IssueRequest {
                csr_pem,
                join_token: token,
            },
        )
        .await
}

/// First issuance for ns/sa with a fresh token.
pub async fn first_svid(cp: &RunningControlPlane, ns: &str, sa: &str) -> Svid {
    let token = cp.create_join_token(ns, sa, None).unwrap().token;
    let key = KeyPair::generate().unwrap();
    let response = issue_with(&anonymous(cp), csr(&key, vec![]), Some(token))
        .await
        .unwrap();
    let chain = certs_from_pem(response.chain_pem.as_bytes()).unwrap();
    Svid {
        key,
        chain,
        response,
    }
}

/// Renewal over mTLS with `current`, with a new key.
pub async fn renew(cp: &RunningControlPlane, current: &Svid) -> Result<Svid, ClientError> {
    let key = KeyPair::generate().unwrap();
    let response = issue_with(&with_svid(cp, current), csr(&key, vec![]), None).await?;
    let chain = certs_from_pem(response.chain_pem.as_bytes()).unwrap();
    Ok(Svid {
        key,
        chain,
        response,
    })
}

/// Waits (bounded) until `check` holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

pub fn root_count(pem: &str) -> usize {
    certs_from_pem(pem.as_bytes()).unwrap().len()
}

/// Opens a watch stream over HTTP/2 with `svid` and returns the body to read lines from.
pub async fn open_watch(
    cp: &palisade_control_plane::RunningControlPlane,
    svid: &Svid,
    service: &str,
) -> (
    StatusCode,
    hyper::body::Incoming,
    tokio::task::JoinHandle<()>,
) {
    let store = SvidStore::new();
    store.install(svid.chain.clone(), svid.key_der()).unwrap();
    let mut tls = client_config(
        Some(store),
        shared_bundle(bundle_of(cp)),
        ServerIdentity::OneOf(vec![cp.spiffe_id().clone()]),
    );
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(cp.local_addr())
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = http::Request::builder()
        .method(Method::GET)
        .uri(format!("{}{PATH_WATCH}?service={service}", cp.url()))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    (response.status(), response.into_body(), driver)
}

/// Reads the next snapshot line (bounded in time).
pub async fn next_snapshot(
    body: &mut hyper::body::Incoming,
    pending: &mut Vec<u8>,
) -> ConfigSnapshot {
    next_snapshot_within(body, pending, Duration::from_secs(5))
        .await
        .expect("a snapshot within 5 s")
}

/// The next snapshot line if one arrives within `limit`.
pub async fn next_snapshot_within(
    body: &mut hyper::body::Incoming,
    pending: &mut Vec<u8>,
    limit: Duration,
) -> Option<ConfigSnapshot> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            return Some(serde_json::from_slice(&line).unwrap());
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .ok()?
            .expect("the stream is open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            pending.extend_from_slice(&data);
        }
    }
}
