//! The admin client credential under `DATA_DIR/admin/`: an SVID for
//! `spiffe://<td>/ns/palisade-system/sa/admin`, its key and a copy of the trust bundle.
//! `palisadectl` presents it to call admin endpoints.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use palisade_spiffe::svid::{certs_from_pem, shared_bundle, TrustBundle};
use palisade_spiffe::tls::{client_config, svid_info};
use palisade_spiffe::{ServerIdentity, SpiffeId, SvidStore, TrustDomain};
use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, UnixTime};

use crate::audit::{self, AuditEntry};
use crate::ca::{CertificateAuthority, ExtraNames};
use crate::fsio::{self, PRIVATE_FILE, PUBLIC_FILE};
use crate::state::{DataDir, StateError};
use crate::tokens::RESERVED_NAMESPACE;

pub const CERT_FILE: &str = "admin.crt.pem";
pub const KEY_FILE: &str = "admin.key.pem";
pub const BUNDLE_FILE: &str = "bundle.pem";
pub const ADMIN_SA: &str = "admin";
pub const CONTROL_PLANE_SA: &str = "control-plane";

/// Lifetime of the admin credential; it is reissued at start when less than
/// [`ADMIN_RENEW_BEFORE`] remains, and by `ca rotate`.
pub const ADMIN_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
pub const ADMIN_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why the admin credential cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Fs(#[from] fsio::FsError),
    #[error("{}: {reason}", path.display())]
    Bad {
        path: std::path::PathBuf,
        reason: String,
    },
}

pub fn admin_id(trust_domain: &TrustDomain) -> Result<SpiffeId, palisade_spiffe::IdError> {
    SpiffeId::workload(trust_domain, RESERVED_NAMESPACE, ADMIN_SA)
}

pub fn control_plane_id(trust_domain: &TrustDomain) -> Result<SpiffeId, palisade_spiffe::IdError> {
    SpiffeId::workload(trust_domain, RESERVED_NAMESPACE, CONTROL_PLANE_SA)
}

/// Keeps the admin credential usable: writes it when absent, unreadable, not signed by
/// the current signing root, or close to expiry.
pub fn ensure_credential(dir: &DataDir, ca: &CertificateAuthority) -> Result<(), StateError> {
    let cert_path = dir.admin_dir().join(CERT_FILE);
    let current = std::fs::read(&cert_path).ok().and_then(|pem| {
        let chain = certs_from_pem(&pem).ok()?;
        let signing_only = TrustBundle::new(
            ca.trust_domain().clone(),
            vec![ca.signing_root().cert.clone()],
        )
        .ok()?;
        signing_only
            .verify(&chain, palisade_spiffe::PeerRole::Client, UnixTime::now())
            .ok()?;
        svid_info(chain.first()?).ok()
    });
    let renew_after = time::OffsetDateTime::now_utc().unix_timestamp()
        + i64::try_from(ADMIN_RENEW_BEFORE.as_secs()).unwrap_or(0);
    match current {
        Some(info) if info.not_after_unix > renew_after => crate::state::write_bundle(dir, ca),
        _ => write_credential(dir, ca),
    }
}

/// Issues a fresh admin credential (new key) and writes it with the bundle copy.
pub fn write_credential(dir: &DataDir, ca: &CertificateAuthority) -> Result<(), StateError> {
    let admin_dir = dir.admin_dir();
    fsio::create_private_dir(&admin_dir)?;
    let id = admin_id(ca.trust_domain()).map_err(|e| StateError::Rotation(e.to_string()))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| crate::ca::CaError::Signing(e.to_string()))?;
    let svid = ca.issue(&id, &key, ADMIN_LIFETIME, ExtraNames::None)?;
    fsio::write_atomic(
        &admin_dir.join(KEY_FILE),
        key.serialize_pem().as_bytes(),
        PRIVATE_FILE,
    )?;
    fsio::write_atomic(
        &admin_dir.join(CERT_FILE),
        svid.chain_pem.as_bytes(),
        PUBLIC_FILE,
    )?;
    fsio::write_atomic(
        &admin_dir.join(BUNDLE_FILE),
        ca.bundle_pem().as_bytes(),
        PUBLIC_FILE,
    )?;
    audit::append_once(
        &dir.audit(),
        &AuditEntry::new(&svid, "control_plane".into()),
    )?;
    tracing::info!(
        event = "svid_issued",
        spiffe_id = %svid.spiffe_id,
        serial = %svid.serial_hex,
        not_after_unix = svid.not_after_unix,
        issuer = %svid.issuer,
        credential = "control_plane",
        "admin credential written"
    );
    Ok(())
}

/// A TLS client config presenting the admin credential of `admin_dir` and accepting only
/// the control plane's own identity; also returns the trust domain, read from the cert.
pub fn client_config_from_dir(
    admin_dir: &Path,
) -> Result<(rustls::ClientConfig, TrustDomain), AdminError> {
    let bad = |path: &Path, reason: String| AdminError::Bad {
        path: path.to_path_buf(),
        reason,
    };
    let cert_path = admin_dir.join(CERT_FILE);
    let key_path = admin_dir.join(KEY_FILE);
    let bundle_path = admin_dir.join(BUNDLE_FILE);
    let chain = certs_from_pem(&fsio::read(&cert_path)?).map_err(|e| bad(&cert_path, e))?;
    let leaf = chain
        .first()
        .ok_or_else(|| bad(&cert_path, "holds no certificate".into()))?;
    let info = svid_info(leaf).map_err(|e| bad(&cert_path, e.to_string()))?;
    let trust_domain = info.id.trust_domain();
    let key = PrivateKeyDer::from_pem_slice(&fsio::read(&key_path)?)
        .map_err(|e| bad(&key_path, e.to_string()))?;
    let bundle = TrustBundle::from_pem(trust_domain.clone(), &fsio::read(&bundle_path)?)
        .map_err(|e| bad(&bundle_path, e.to_string()))?;
    let store = SvidStore::new();
    store
        .install(chain, key)
        .map_err(|e| bad(&key_path, e.to_string()))?;
    let expected = control_plane_id(&trust_domain).map_err(|e| bad(&cert_path, e.to_string()))?;
    let config = client_config(
        Some(Arc::clone(&store)),
        shared_bundle(bundle),
        ServerIdentity::OneOf(vec![expected]),
    );
    Ok((config, trust_domain))
}
