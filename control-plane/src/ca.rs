//! The certificate authority: root keys, the trust bundle, and leaf signing.
//!
//! This module is pure (no files): [`crate::state`] loads and persists the roots. A CA
//! holds one or more roots, all in the trust bundle, and signs with exactly one of them,
//! which is what makes a rotation without outage possible: a new root is trusted
//! everywhere before anything is signed with it.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use palisade_spiffe::svid::{cert_to_pem, TrustBundle};
use palisade_spiffe::{SpiffeId, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Lifetime of a root the control plane generates itself.
pub const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far back a leaf's `notBefore` is set, so that a peer whose clock runs a little
/// behind does not reject a certificate issued a moment ago.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// Why the CA cannot load a root or sign a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("the CA certificate is not valid X.509: {0}")]
    BadCertificate(String),
    #[error("the CA certificate is not a CA (basicConstraints CA:TRUE is missing)")]
    NotACa,
    #[error(
        "the CA private key is not a usable PKCS#8 key (ECDSA P-256/P-384, Ed25519 or RSA): {0}"
    )]
    BadKey(String),
    #[error("the CA private key does not belong to the CA certificate")]
    KeyMismatch,
    #[error("the CA has no root to sign with")]
    NoSigningRoot,
    #[error("the trust bundle cannot be built from the roots: {0}")]
    Bundle(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// One root: its certificate and private key.
pub struct Root {
    pub name: String,
    pub cert: CertificateDer<'static>,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is deliberately left out: keys never appear in logs.
        f.debug_struct("Root")
            .field("name", &self.name)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Root {
    /// Generates a new self-signed ECDSA P-256 root for `trust_domain`.
    pub fn generate(name: &str, trust_domain: &TrustDomain) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::Signing(e.to_string()))?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Palisade");
        dn.push(
            DnType::CommonName,
            format!("Palisade root CA {trust_domain} {name}"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - BACKDATE;
        params.not_after = now + ROOT_LIFETIME;
        params.serial_number = Some(random_serial().0);
        let spiffe_uri = format!("spiffe://{trust_domain}");
        params.subject_alt_names =
            vec![SanType::URI(spiffe_uri.try_into().map_err(
                |e: rcgen::Error| CaError::Signing(e.to_string()),
            )?)];
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError::Signing(e.to_string()))?;
        let key_pem = key.serialize_pem();
        Self::from_parts(name, cert.der().clone(), &key_pem)
    }

    /// Loads a root from its DER certificate and PEM (PKCS#8) key, checking that the
    /// certificate is a CA and that the key is its key.
    pub fn from_parts(
        name: &str,
        cert: CertificateDer<'static>,
        key_pem: &str,
    ) -> Result<Self, CaError> {
        let (_, parsed) = X509Certificate::from_der(cert.as_ref())
            .map_err(|e| CaError::BadCertificate(e.to_string()))?;
        let is_ca = parsed
            .basic_constraints()
            .map_err(|e| CaError::BadCertificate(e.to_string()))?
            .map(|bc| bc.value.ca)
            .unwrap_or(false);
        if !is_ca {
            return Err(CaError::NotACa);
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::BadKey(e.to_string()))?;
        if key.subject_public_key_info() != parsed.public_key().raw {
            return Err(CaError::KeyMismatch);
        }
        let not_after = parsed.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&cert, key)
            .map_err(|e| CaError::BadCertificate(e.to_string()))?;
        Ok(Self {
            name: name.to_owned(),
            cert,
            key_pem: key_pem.to_owned(),
            issuer,
            not_after,
        })
    }

    pub fn cert_pem(&self) -> String {
        cert_to_pem(&self.cert)
    }

    /// The private key, PEM; only for writing it to its owner-only file.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

/// A signed leaf, ready to send back.
#[derive(Debug, Clone)]
pub struct IssuedSvid {
    pub spiffe_id: SpiffeId,
    /// Leaf first. Roots are not included: peers hold them in their bundle.
    pub chain: Vec<CertificateDer<'static>>,
    pub chain_pem: String,
    /// Lower-case hex of the serial number, as `palisade_spiffe::tls::svid_info` reports it.
    pub serial_hex: String,
    pub not_after_unix: i64,
    /// Name of the root that signed it.
    pub issuer: String,
}

/// Extra names for the control plane's own serving certificate, which clients reach by
/// `localhost` or `127.0.0.1` as well as verify by SPIFFE ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraNames {
    None,
    Loopback,
}

/// The roots in force and the one that signs.
#[derive(Debug)]
pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    roots: Vec<Root>,
    signing: usize,
    bundle: TrustBundle,
}

impl CertificateAuthority {
    /// `roots` in bundle order; `signing` names the one that signs.
    pub fn new(
        trust_domain: TrustDomain,
        roots: Vec<Root>,
        signing: &str,
    ) -> Result<Self, CaError> {
        let signing = roots
            .iter()
            .position(|root| root.name == signing)
            .ok_or(CaError::NoSigningRoot)?;
        let bundle = TrustBundle::new(
            trust_domain.clone(),
            roots.iter().map(|root| root.cert.clone()).collect(),
        )
        .map_err(|e| CaError::Bundle(e.to_string()))?;
        Ok(Self {
            trust_domain,
            roots,
            signing,
            bundle,
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    pub fn bundle_pem(&self) -> String {
        self.bundle.to_pem()
    }

    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    pub fn signing_root(&self) -> &Root {
        &self.roots[self.signing]
    }

    /// Signs a leaf SVID for `id` over `public_key`, valid for `ttl` (cut at the signing
    /// root's own expiry). The identity comes from the caller, never from a CSR.
    pub fn issue(
        &self,
        id: &SpiffeId,
        public_key: &impl PublicKeyData,
        ttl: Duration,
        extra: ExtraNames,
    ) -> Result<IssuedSvid, CaError> {
        let root = self.signing_root();
        let now = OffsetDateTime::now_utc();
        let not_after = (now + ttl).min(root.not_after);
        let mut params = CertificateParams::default();
        // An empty subject makes rcgen mark the SAN extension critical, as RFC 5280
        // requires; the SPIFFE ID lives in the URI SAN alone.
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        let (serial, serial_hex) = random_serial();
        params.serial_number = Some(serial);
        let uri = id
            .as_str()
            .to_owned()
            .try_into()
            .map_err(|e: rcgen::Error| CaError::Signing(e.to_string()))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        if extra == ExtraNames::Loopback {
            params.subject_alt_names.push(SanType::DnsName(
                "localhost"
                    .try_into()
                    .map_err(|e: rcgen::Error| CaError::Signing(e.to_string()))?,
            ));
            params
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        let cert = params
            .signed_by(public_key, &root.issuer)
            .map_err(|e| CaError::Signing(e.to_string()))?;
        let leaf = cert.der().clone();
        Ok(IssuedSvid {
            spiffe_id: id.clone(),
            chain_pem: cert_to_pem(&leaf),
            chain: vec![leaf],
            serial_hex,
            not_after_unix: not_after.unix_timestamp(),
            issuer: root.name.clone(),
        })
    }
}

/// A random positive 128-bit serial (RFC 5280 allows up to 20 octets) and its hex form.
fn random_serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    // A non-zero, positive first octet keeps the DER encoding exactly these 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
    (SerialNumber::from_slice(&bytes), hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_spiffe::tls::svid_info;
    use palisade_spiffe::PeerRole;
    use rustls_pki_types::UnixTime;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    #[test]
    fn issued_leaf_verifies_and_has_the_right_shape() {
        let ca = CertificateAuthority::new(
            td(),
            vec![Root::generate("root-1", &td()).unwrap()],
            "root-1",
        )
        .unwrap();
        let key = KeyPair::generate().unwrap();
        let id = SpiffeId::workload(&td(), "shop", "web").unwrap();
        let svid = ca
            .issue(&id, &key, Duration::from_secs(3600), ExtraNames::None)
            .unwrap();
        let verified = ca
            .bundle()
            .verify(&svid.chain, PeerRole::Client, UnixTime::now())
            .unwrap();
        assert_eq!(verified, id);
        let info = svid_info(&svid.chain[0]).unwrap();
        assert_eq!(info.serial_hex, svid.serial_hex);
        assert_eq!(info.not_after_unix, svid.not_after_unix);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let root = Root::generate("a", &td()).unwrap();
        let other = Root::generate("b", &td()).unwrap();
        let err = Root::from_parts("a", root.cert.clone(), other.key_pem()).unwrap_err();
        assert!(matches!(err, CaError::KeyMismatch), "{err}");
    }
}
