//! Certificate signing requests: parsed, their self-signature verified, and their
//! requested names checked against the identity the credential decided.
//!
//! Only the public key is taken from a CSR. Its subject, key usages, basic constraints
//! and any other requested extension are ignored: the CA builds the leaf itself. Its
//! subject alternative names are not ignored but checked, so that a workload asking for
//! another identity learns it is refused instead of silently receiving its own.

use palisade_spiffe::SpiffeId;
use rcgen::SubjectPublicKeyInfo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateSigningRequestDer;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// Largest CSR accepted, PEM bytes; a P-256 CSR is well under 1 KiB.
pub const MAX_CSR_PEM: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("the CSR is not valid PEM (expected one `CERTIFICATE REQUEST` block): {0}")]
    Pem(String),
    #[error("the CSR is larger than {MAX_CSR_PEM} bytes")]
    TooLarge,
    #[error("the CSR is not a valid PKCS#10 request: {0}")]
    Der(String),
    #[error("the CSR's self-signature does not verify: it was not signed by the key it carries")]
    BadSignature,
    #[error("the CSR's public key type is not supported; use ECDSA P-256 (or P-384, Ed25519)")]
    UnsupportedKey,
    #[error("the CSR asks for `{requested}`, but this credential is for `{decided}`; the control plane decides the identity, leave the CSR's SANs empty or name exactly this identity")]
    IdentityMismatch { requested: String, decided: String },
}

/// A CSR that parsed and whose self-signature verified.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    pub public_key: SubjectPublicKeyInfo,
    /// Every requested SAN, printed (`URI:...`, `DNS:...`, `IP:...`, ...).
    requested_names: Vec<String>,
}

impl CheckedCsr {
    pub fn parse_pem(pem: &str) -> Result<Self, CsrError> {
        if pem.len() > MAX_CSR_PEM {
            return Err(CsrError::TooLarge);
        }
        let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| CsrError::Pem(e.to_string()))?;
        Self::parse_der(der.as_ref())
    }

    pub fn parse_der(der: &[u8]) -> Result<Self, CsrError> {
        let (rest, csr) =
            X509CertificationRequest::from_der(der).map_err(|e| CsrError::Der(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CsrError::Der("trailing bytes after the request".into()));
        }
        csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
        let public_key =
            SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
                .map_err(|_| CsrError::UnsupportedKey)?;
        let mut requested_names = Vec::new();
        for extension in csr.requested_extensions().into_iter().flatten() {
            if let ParsedExtension::SubjectAlternativeName(san) = extension {
                for name in &san.general_names {
                    requested_names.push(match name {
                        GeneralName::URI(uri) => format!("URI:{uri}"),
                        other => other.to_string(),
                    });
                }
            }
        }
        Ok(Self {
            public_key,
            requested_names,
        })
    }

    /// Accepts the CSR for `decided` only if it asks for no name or for exactly that ID.
    pub fn check_identity(&self, decided: &SpiffeId) -> Result<(), CsrError> {
        let expected = format!("URI:{decided}");
        match self.requested_names.as_slice() {
            [] => Ok(()),
            [only] if *only == expected => Ok(()),
            names => Err(CsrError::IdentityMismatch {
                requested: names.join(", "),
                decided: decided.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_spiffe::TrustDomain;
    use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};

    fn csr(sans: Vec<SanType>) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn id() -> SpiffeId {
        SpiffeId::workload(&TrustDomain::new("example.org").unwrap(), "shop", "web").unwrap()
    }

    #[test]
    fn empty_or_exact_sans_pass_and_others_are_refused() {
        let plain = CheckedCsr::parse_pem(&csr(vec![])).unwrap();
        plain.check_identity(&id()).unwrap();
        let exact = CheckedCsr::parse_pem(&csr(vec![SanType::URI(
            id().as_str().to_owned().try_into().unwrap(),
        )]))
        .unwrap();
        exact.check_identity(&id()).unwrap();
        let other = CheckedCsr::parse_pem(&csr(vec![SanType::URI(
            "spiffe://example.org/ns/bank/sa/vault"
                .to_owned()
                .try_into()
                .unwrap(),
        )]))
        .unwrap();
        assert!(matches!(
            other.check_identity(&id()),
            Err(CsrError::IdentityMismatch { .. })
        ));
        let dns = CheckedCsr::parse_pem(&csr(vec![SanType::DnsName(
            "evil.example".try_into().unwrap(),
        )]))
        .unwrap();
        assert!(dns.check_identity(&id()).is_err());
    }

    #[test]
    fn garbage_and_tampered_requests_are_refused() {
        assert!(matches!(
            CheckedCsr::parse_pem("not a csr"),
            Err(CsrError::Pem(_))
        ));
        let pem = csr(vec![]);
        let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap();
        let mut bytes = der.as_ref().to_vec();
        // Flip a bit inside the signed part (the public key), so the signature fails.
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        let err = CheckedCsr::parse_der(&bytes).unwrap_err();
        assert!(
            matches!(err, CsrError::BadSignature | CsrError::Der(_)),
            "{err}"
        );
    }
}
