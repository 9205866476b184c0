//! X.509-SVID verification against a trust bundle.
//!
//! A peer is accepted only if every one of these holds, checked in this order so that
//! the error names the first real problem: the leaf parses, is not a CA and cannot sign
//! certificates, carries exactly one URI SAN, that URI is a valid SPIFFE ID in our trust
//! domain, and the chain leads to a root in the bundle within its validity period.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::id::{IdError, SpiffeId, TrustDomain};

/// Why a certificate chain is not an acceptable SVID, or a bundle not a usable one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvidError {
    #[error("the peer presented no certificate")]
    EmptyChain,
    #[error("the certificate is not valid X.509 DER: {0}")]
    Malformed(String),
    #[error("the leaf certificate is a CA certificate; an SVID must not be a CA")]
    LeafIsCa,
    #[error("the leaf certificate may sign certificates (keyCertSign); an SVID must not")]
    LeafCanSign,
    #[error("the leaf certificate has no URI SAN; an SVID carries exactly one SPIFFE ID")]
    NoUriSan,
    #[error("the leaf certificate has {0} URI SANs; an SVID carries exactly one SPIFFE ID")]
    MultipleUriSans(usize),
    #[error("the leaf's URI SAN `{uri}` is not a valid SPIFFE ID: {reason}")]
    InvalidSpiffeId { uri: String, reason: IdError },
    #[error(
        "the SPIFFE ID `{id}` is in trust domain `{found}`, but only `{expected}` is accepted"
    )]
    WrongTrustDomain {
        id: String,
        found: String,
        expected: String,
    },
    #[error("the certificate was not issued by a CA in the trust bundle")]
    UntrustedIssuer,
    #[error("the certificate has expired")]
    Expired,
    #[error("the certificate is not valid yet")]
    NotYetValid,
    #[error("the certificate chain was rejected: {0}")]
    Rejected(String),
    #[error("the trust bundle holds no certificate")]
    EmptyBundle,
    #[error("the trust bundle is not valid PEM: {0}")]
    BundlePem(String),
    #[error("root #{index} of the trust bundle is not usable as a trust anchor: {reason}")]
    BadRoot { index: usize, reason: String },
}

/// Which extended key usage the peer must hold: the side it plays in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    Server,
    Client,
}

/// The roots that SVIDs of one trust domain chain to. It may hold several roots so that
/// the CA can be rotated without an outage: old and new leaves verify side by side.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl TrustBundle {
    pub fn new(
        trust_domain: TrustDomain,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, SvidError> {
        if roots.is_empty() {
            return Err(SvidError::EmptyBundle);
        }
        let anchors = roots
            .iter()
            .enumerate()
            .map(|(index, root)| {
                webpki::anchor_from_trusted_cert(root)
                    .map(|anchor| anchor.to_owned())
                    .map_err(|e| SvidError::BadRoot {
                        index,
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            trust_domain,
            roots,
            anchors,
        })
    }

    /// Reads a bundle from PEM text holding one or more `CERTIFICATE` blocks.
    pub fn from_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, SvidError> {
        let roots = certs_from_pem(pem).map_err(SvidError::BundlePem)?;
        Self::new(trust_domain, roots)
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    pub fn to_pem(&self) -> String {
        self.roots.iter().map(cert_to_pem).collect()
    }

    /// Verifies `chain` (leaf first) as an SVID of this trust domain held by a peer in
    /// `role`, at time `now`, and returns the peer's SPIFFE ID.
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        role: PeerRole,
        now: UnixTime,
    ) -> Result<SpiffeId, SvidError> {
        let (leaf, intermediates) = chain.split_first().ok_or(SvidError::EmptyChain)?;
        let id = leaf_spiffe_id(leaf)?;
        if id.trust_domain_name() != self.trust_domain.as_str() {
            return Err(SvidError::WrongTrustDomain {
                id: id.to_string(),
                found: id.trust_domain_name().to_owned(),
                expected: self.trust_domain.to_string(),
            });
        }
        let leaf = webpki::EndEntityCert::try_from(leaf).map_err(map_webpki_error)?;
        let usage = match role {
            PeerRole::Server => webpki::KeyUsage::server_auth(),
            PeerRole::Client => webpki::KeyUsage::client_auth(),
        };
        leaf.verify_for_usage(
            signature_algorithms(),
            &self.anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(map_webpki_error)?;
        Ok(id)
    }
}

/// Checks the leaf's own shape (not a CA, cannot sign, one URI SAN that is a SPIFFE ID)
/// and returns that ID. It does not check the signature chain: see [`TrustBundle::verify`].
pub fn leaf_spiffe_id(leaf: &CertificateDer<'_>) -> Result<SpiffeId, SvidError> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    let malformed = |e: x509_parser::error::X509Error| SvidError::Malformed(e.to_string());
    if let Some(constraints) = cert.basic_constraints().map_err(malformed)? {
        if constraints.value.ca {
            return Err(SvidError::LeafIsCa);
        }
    }
    if let Some(key_usage) = cert.key_usage().map_err(malformed)? {
        if key_usage.value.key_cert_sign() || key_usage.value.crl_sign() {
            return Err(SvidError::LeafCanSign);
        }
    }
    let san = cert.subject_alternative_name().map_err(malformed)?;
    let mut uris = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let uri = uris.next().ok_or(SvidError::NoUriSan)?;
    let extra = uris.count();
    if extra > 0 {
        return Err(SvidError::MultipleUriSans(extra + 1));
    }
    SpiffeId::parse(uri).map_err(|reason| SvidError::InvalidSpiffeId {
        uri: uri.to_owned(),
        reason,
    })
}

/// The leaf's `notAfter`, in seconds since the Unix epoch.
pub fn not_after_unix(leaf: &CertificateDer<'_>) -> Result<i64, SvidError> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp())
}

fn map_webpki_error(error: webpki::Error) -> SvidError {
    match error {
        webpki::Error::UnknownIssuer => SvidError::UntrustedIssuer,
        webpki::Error::CertExpired { .. } => SvidError::Expired,
        webpki::Error::CertNotValidYet { .. } => SvidError::NotYetValid,
        webpki::Error::CaUsedAsEndEntity => SvidError::LeafIsCa,
        other => SvidError::Rejected(format!("{other:?}")),
    }
}

/// The signature algorithms a chain may use: those of the process's crypto provider.
pub(crate) fn signature_algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    crate::tls::provider().signature_verification_algorithms.all
}

/// Every `CERTIFICATE` block of a PEM text, in order.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// One certificate as a PEM block.
pub fn cert_to_pem(cert: &CertificateDer<'_>) -> String {
    pem_block("CERTIFICATE", cert.as_ref())
}

/// A DER document as a PEM block with the given label, wrapped at 64 columns.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 64 + 64);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// When a certificate obtained at `obtained_at` and expiring at `not_after` is due for
/// renewal: after `fraction` (clamped to 0..=1) of its life. The life counts from when
/// it was obtained, not from `notBefore`, which issuers backdate for clock skew (the CA
/// by 60 s: counted from there, a one-minute certificate is due as soon as it is issued).
pub fn renewal_due(
    obtained_at: std::time::SystemTime,
    not_after: std::time::SystemTime,
    fraction: f64,
) -> std::time::SystemTime {
    let lifetime = not_after
        .duration_since(obtained_at)
        .unwrap_or(std::time::Duration::ZERO);
    obtained_at + lifetime.mul_f64(fraction.clamp(0.0, 1.0))
}

/// A shared, atomically replaceable bundle: a CA rotation swaps it in without touching
/// live connections.
pub type SharedBundle = Arc<arc_swap::ArcSwap<TrustBundle>>;

pub fn shared_bundle(bundle: TrustBundle) -> SharedBundle {
    Arc::new(arc_swap::ArcSwap::from_pointee(bundle))
}
