//! Applying a trust bundle received from the control plane.

use std::sync::Arc;

use palisade_spiffe::{SharedBundle, SvidError, TrustBundle};

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
