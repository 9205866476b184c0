//! rustls glue: SPIFFE verifiers for both handshake sides, a certificate resolver fed by
//! an atomically swapped SVID, and config builders with the mesh's safe defaults.
//!
//! The configs are built once per listener or client. Rotation never rebuilds them: the
//! resolver and verifiers read the current SVID and bundle through `ArcSwap`, so a new
//! SVID or bundle applies to the next handshake while live connections stay untouched.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::id::SpiffeId;
use crate::svid::{self, PeerRole, SharedBundle, SvidError};

/// The crypto provider every Palisade TLS config uses (ring).
pub fn provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
}

fn supported_algorithms() -> &'static WebPkiSupportedAlgorithms {
    &provider().signature_verification_algorithms
}

fn to_rustls_error(error: SvidError) -> rustls::Error {
    let cert_error = match error {
        SvidError::Expired => CertificateError::Expired,
        SvidError::NotYetValid => CertificateError::NotValidYet,
        SvidError::UntrustedIssuer => CertificateError::UnknownIssuer,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(cert_error)
}

/// Which servers a client accepts, beyond holding a valid SVID of the trust domain.
#[derive(Debug, Clone)]
pub enum ServerIdentity {
    /// Any workload of the trust domain; the caller checks the peer ID after the handshake.
    AnyInTrustDomain,
    /// Exactly one of these IDs (for example the control plane's own).
    OneOf(Vec<SpiffeId>),
}

/// The handshake signature checks of both verifiers: the same for clients and servers,
/// with the provider's algorithms (what the SVID check is about lives in each verifier).
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, supported_algorithms())
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, supported_algorithms())
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            supported_algorithms().supported_schemes()
        }
    };
}

/// Verifies a server's SVID instead of a DNS name: SPIFFE servers are named by URI SAN.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    bundle: SharedBundle,
    expected: ServerIdentity,
}

impl SpiffeServerVerifier {
    pub fn new(bundle: SharedBundle, expected: ServerIdentity) -> Self {
        Self { bundle, expected }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = chain_of(end_entity, intermediates);
        let id = self
            .bundle
            .load()
            .verify(&chain, PeerRole::Server, now)
            .map_err(to_rustls_error)?;
        match &self.expected {
            ServerIdentity::AnyInTrustDomain => {}
            ServerIdentity::OneOf(allowed) if allowed.contains(&id) => {}
            ServerIdentity::OneOf(_) => {
                return Err(to_rustls_error(SvidError::Rejected(format!(
                    "the server's SPIFFE ID `{id}` is not one this client expects"
                ))))
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

/// Whether a server demands a client SVID. `Optional` exists only for permissive
/// (migration) mode, where the caller then treats a missing ID as unauthenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Optional,
}

/// Verifies a client's SVID against the bundle.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    bundle: SharedBundle,
    auth: ClientAuth,
}

impl SpiffeClientVerifier {
    pub fn new(bundle: SharedBundle, auth: ClientAuth) -> Self {
        Self { bundle, auth }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.auth == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let chain = chain_of(end_entity, intermediates);
        self.bundle
            .load()
            .verify(&chain, PeerRole::Client, now)
            .map_err(to_rustls_error)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

fn chain_of<'a>(
    end_entity: &CertificateDer<'a>,
    intermediates: &[CertificateDer<'a>],
) -> Vec<CertificateDer<'a>> {
    let mut chain = Vec::with_capacity(1 + intermediates.len());
    chain.push(end_entity.clone());
    chain.extend_from_slice(intermediates);
    chain
}

/// What a workload knows about its current SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvidInfo {
    pub id: SpiffeId,
    /// `notBefore` of the leaf, seconds since the Unix epoch.
    pub not_before_unix: i64,
    /// `notAfter` of the leaf, seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// The leaf's serial number, hex.
    pub serial_hex: String,
}

/// The workload's current SVID and private key, swapped atomically on renewal.
///
/// It serves as the certificate resolver of both the server and the client configs, so
/// a renewal applies to the next handshake without rebuilding any config. With no SVID
/// installed it resolves nothing, and handshakes fail: no identity, no traffic.
#[derive(Debug, Default)]
pub struct SvidStore {
    current: ArcSwapOption<InstalledSvid>,
}

#[derive(Debug)]
struct InstalledSvid {
    key: Arc<CertifiedKey>,
    info: SvidInfo,
}

impl SvidStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Installs a chain (leaf first) and its private key after checking the leaf's
    /// shape and that the key belongs to it. Returns what was installed.
    pub fn install(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<SvidInfo, SvidError> {
        let leaf = chain.first().ok_or(SvidError::EmptyChain)?;
        let info = svid_info(leaf)?;
        let certified = CertifiedKey::from_der(chain, key, provider())
            .map_err(|e| SvidError::Rejected(format!("private key does not fit the SVID: {e}")))?;
        self.current.store(Some(Arc::new(InstalledSvid {
            key: Arc::new(certified),
            info: info.clone(),
        })));
        Ok(info)
    }

    pub fn info(&self) -> Option<SvidInfo> {
        self.current
            .load()
            .as_ref()
            .map(|current| current.info.clone())
    }

    /// The current chain, leaf first.
    pub fn chain(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.current
            .load()
            .as_ref()
            .map(|current| current.key.cert.clone())
    }

    fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .load()
            .as_ref()
            .map(|current| current.key.clone())
    }
}

/// Reads the facts of a leaf that renewal and metrics need.
pub fn svid_info(leaf: &CertificateDer<'_>) -> Result<SvidInfo, SvidError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let id = svid::leaf_spiffe_id(leaf)?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    Ok(SvidInfo {
        id,
        not_before_unix: cert.validity().not_before.timestamp(),
        not_after_unix: cert.validity().not_after.timestamp(),
        serial_hex: cert.raw_serial_as_string().replace(':', ""),
    })
}

impl ResolvesServerCert for SvidStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certified_key()
    }
}

impl ResolvesClientCert for SvidStore {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.certified_key()
    }

    fn has_certs(&self) -> bool {
        self.current.load().is_some()
    }
}

/// ALPN for mesh listeners: HTTP/2 preferred, HTTP/1.1 accepted.
pub const ALPN_H2_HTTP11: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A server config for a mesh listener: TLS 1.3 only, the SVID from `svids`, client
/// SVIDs verified against `bundle`, ALPN h2 and http/1.1.
pub fn server_config(
    svids: Arc<SvidStore>,
    bundle: SharedBundle,
    client_auth: ClientAuth,
) -> ServerConfig {
    let mut config = ServerConfig::builder_with_provider(provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .with_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(bundle, client_auth)))
        .with_cert_resolver(svids);
    config.alpn_protocols = ALPN_H2_HTTP11.iter().map(|p| p.to_vec()).collect();
    config
}

/// A client config for mesh connections: TLS 1.3 only, server SVIDs verified against
/// `bundle` and `expected`, and our own SVID presented when `svids` is given (it is not
/// for the very first issuance, which authenticates with a join token instead).
pub fn client_config(
    svids: Option<Arc<SvidStore>>,
    bundle: SharedBundle,
    expected: ServerIdentity,
) -> ClientConfig {
    let builder = ClientConfig::builder_with_provider(provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(bundle, expected)));
    match svids {
        Some(svids) => builder.with_client_cert_resolver(svids),
        None => builder.with_no_client_auth(),
    }
}

/// The SPIFFE ID of a peer whose chain the handshake has already verified.
pub fn peer_spiffe_id(peer_certificates: Option<&[CertificateDer<'_>]>) -> Option<SpiffeId> {
    svid::leaf_spiffe_id(peer_certificates?.first()?).ok()
}
