//! The trust bundle: loading it from `--trust-bundle` and applying updates received from
//! the control plane.

use std::path::Path;
use std::sync::Arc;

use palisade_spiffe::svid::{certs_from_pem, shared_bundle};
use palisade_spiffe::{SharedBundle, SpiffeId, SvidError, TrustBundle, TrustDomain};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Why the trust bundle file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BundleFileError {
    #[error("cannot read the trust bundle {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the trust bundle {path} is unusable: {source}")]
    Invalid { path: String, source: SvidError },
    #[error("the trust bundle {path} does not name its trust domain (no root carries a `spiffe://<trust-domain>` URI SAN); configure the trust domain explicitly")]
    NoTrustDomain { path: String },
    #[error("the roots of the trust bundle {path} name different trust domains ({first} and {second}); a bundle holds the roots of one trust domain")]
    MixedTrustDomains {
        path: String,
        first: String,
        second: String,
    },
    #[error(
        "the trust bundle {path} is for trust domain `{found}`, not the configured `{configured}`"
    )]
    WrongTrustDomain {
        path: String,
        found: String,
        configured: String,
    },
}

/// Reads the trust bundle file. The trust domain is `configured` if given, else the one
/// the roots name in their `spiffe://<trust-domain>` URI SAN (as the control plane's own
/// roots do); roots that name another trust domain are refused either way.
pub fn load_bundle_file(
    path: &Path,
    configured: Option<&TrustDomain>,
) -> Result<(TrustDomain, SharedBundle), BundleFileError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| BundleFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let invalid = |source| BundleFileError::Invalid {
        path: shown.clone(),
        source,
    };
    let roots = certs_from_pem(&pem)
        .map_err(SvidError::BundlePem)
        .map_err(invalid)?;
    let mut named: Option<TrustDomain> = None;
    for root in &roots {
        let Some(td) = root_trust_domain(root.as_ref()) else {
            continue;
        };
        match &named {
            Some(first) if *first != td => {
                return Err(BundleFileError::MixedTrustDomains {
                    path: shown,
                    first: first.to_string(),
                    second: td.to_string(),
                })
            }
            _ => named = Some(td),
        }
    }
    let trust_domain = match (configured, named) {
        (Some(configured), Some(found)) if *configured != found => {
            return Err(BundleFileError::WrongTrustDomain {
                path: shown,
                found: found.to_string(),
                configured: configured.to_string(),
            })
        }
        (Some(configured), _) => configured.clone(),
        (None, Some(found)) => found,
        (None, None) => return Err(BundleFileError::NoTrustDomain { path: shown }),
    };
    let bundle = TrustBundle::new(trust_domain.clone(), roots).map_err(invalid)?;
    Ok((trust_domain, shared_bundle(bundle)))
}

/// The trust domain a root names in a `spiffe://<trust-domain>` URI SAN, if any.
fn root_trust_domain(der: &[u8]) -> Option<TrustDomain> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => SpiffeId::parse(uri)
            .ok()
            .filter(|id| id.path().is_empty())
            .map(|id| id.trust_domain()),
        _ => None,
    })
}

/// Replaces the shared bundle with the roots in `pem`, if they differ from the current
/// ones. The new bundle must parse as a bundle of the same trust domain first; on any
/// error the current bundle stays in force, so a broken update never leaves the proxy
/// unable to verify peers. Returns whether the bundle changed.
pub fn apply_bundle_pem(shared: &SharedBundle, pem: &str) -> Result<bool, SvidError> {
    let current = shared.load();
    let candidate = TrustBundle::from_pem(current.trust_domain().clone(), pem.as_bytes())?;
    if candidate.roots() == current.roots() {
        return Ok(false);
    }
    tracing::info!(
        trust_domain = %candidate.trust_domain(),
        roots = candidate.roots().len(),
        "trust bundle updated"
    );
    shared.store(Arc::new(candidate));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

    fn root_pem(san: Option<&str>) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        if let Some(san) = san {
            params.subject_alt_names = vec![SanType::URI(san.try_into().unwrap())];
        }
        params.self_signed(&key).unwrap().pem()
    }

    fn write(pem: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), pem).unwrap();
        file
    }

    #[test]
    fn the_trust_domain_comes_from_the_roots_or_the_configuration() {
        let file = write(&root_pem(Some("spiffe://mesh.test")));
        let (td, bundle) = load_bundle_file(file.path(), None).unwrap();
        assert_eq!(td.as_str(), "mesh.test");
        assert_eq!(bundle.load().roots().len(), 1);

        let operator = write(&root_pem(None));
        let error = load_bundle_file(operator.path(), None).unwrap_err();
        assert!(
            matches!(error, BundleFileError::NoTrustDomain { .. }),
            "{error}"
        );
        let td = TrustDomain::new("corp.example").unwrap();
        let (found, _) = load_bundle_file(operator.path(), Some(&td)).unwrap();
        assert_eq!(found, td);

        let error = load_bundle_file(file.path(), Some(&td)).unwrap_err();
        assert!(
            matches!(error, BundleFileError::WrongTrustDomain { .. }),
            "{error}"
        );
    }

    #[test]
    fn broken_or_mixed_bundle_files_are_refused_clearly() {
        let mixed =
            write(&(root_pem(Some("spiffe://a.test")) + &root_pem(Some("spiffe://b.test"))));
        let error = load_bundle_file(mixed.path(), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("different trust domains"), "{error}");

        let broken = write("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n");
        let error = load_bundle_file(broken.path(), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unusable"), "{error}");

        let error = load_bundle_file(Path::new("/nonexistent/bundle.pem"), None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cannot read the trust bundle /nonexistent/bundle.pem"),
            "{error}"
        );
    }

    #[test]
    fn a_bundle_update_applies_only_when_valid_and_different() {
        let td = TrustDomain::new("mesh.test").unwrap();
        let first = root_pem(Some("spiffe://mesh.test"));
        let shared = shared_bundle(TrustBundle::from_pem(td, first.as_bytes()).unwrap());
        assert!(!apply_bundle_pem(&shared, &first).unwrap());
        assert!(apply_bundle_pem(&shared, "not pem at all").is_err());
        assert!(
            apply_bundle_pem(&shared, "").is_err(),
            "an empty bundle would trust no one"
        );
        assert_eq!(shared.load().roots().len(), 1);
        let two = first + &root_pem(Some("spiffe://mesh.test"));
        assert!(apply_bundle_pem(&shared, &two).unwrap());
        assert_eq!(shared.load().roots().len(), 2);
    }
}
