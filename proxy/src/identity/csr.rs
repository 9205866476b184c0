//! A fresh key pair and a CSR for it, made in memory.
//!
//! The private key exists only in this process: it is generated here, handed to the
//! `SvidStore` as PKCS#8 DER, and never written, logged or sent anywhere. A new key is
//! made for every issuance, so a renewal also rotates the key.

use palisade_spiffe::SpiffeId;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::PrivatePkcs8KeyDer;

use super::IdentityError;

/// A private key and the CSR that asks for `id` with it.
pub(crate) struct KeyAndCsr {
    pub key: PrivatePkcs8KeyDer<'static>,
    pub csr_pem: String,
}

/// Generates an ECDSA P-256 key and a CSR whose only SAN is `id`. The control plane
/// decides the identity from the credential; naming it here lets it refuse a mismatch
/// instead of silently issuing something else.
pub(crate) fn generate(id: &SpiffeId) -> Result<KeyAndCsr, IdentityError> {
    let key_pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(IdentityError::Key)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let uri = id
        .as_str()
        .to_owned()
        .try_into()
        .map_err(IdentityError::Key)?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr_pem = params
        .serialize_request(&key_pair)
        .and_then(|csr| csr.pem())
        .map_err(IdentityError::Key)?;
    Ok(KeyAndCsr {
        key: PrivatePkcs8KeyDer::from(key_pair.serialize_der()),
        csr_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_spiffe::TrustDomain;

    #[test]
    fn csr_carries_the_id_and_keys_are_fresh() {
        let id =
            SpiffeId::workload(&TrustDomain::new("mesh.test").unwrap(), "shop", "orders").unwrap();
        let first = generate(&id).unwrap();
        let second = generate(&id).unwrap();
        assert_ne!(first.key.secret_pkcs8_der(), second.key.secret_pkcs8_der());
        let csr = rcgen::CertificateSigningRequestParams::from_pem(&first.csr_pem).unwrap();
        let uris: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .filter_map(|san| match san {
                SanType::URI(uri) => Some(uri.as_str().to_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(uris, vec![id.to_string()]);
    }
}
