//! The append-only issuance audit log: one JSON line per issued SVID, synced to disk
//! before the certificate leaves the control plane.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::ca::IssuedSvid;
use crate::fsio::{self, FsError};
use crate::tokens::RESERVED_NAMESPACE;

/// One issuance. Field names are stable: SIEM pipelines key on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub time_unix: i64,
    pub serial: String,
    pub spiffe_id: String,
    pub not_after_unix: i64,
    /// The root that signed the SVID.
    pub issuer: String,
    /// Who asked: `join_token:<first 12 hex of its hash>`, `svid:<serial of the renewing
    /// SVID>`, or `control_plane` for the control plane's own certificates.
    pub credential: String,
}

impl AuditEntry {
    pub fn new(svid: &IssuedSvid, credential: String) -> Self {
        Self {
            time_unix: time::OffsetDateTime::now_utc().unix_timestamp(),
            serial: svid.serial_hex.clone(),
            spiffe_id: svid.spiffe_id.to_string(),
            not_after_unix: svid.not_after_unix,
            issuer: svid.issuer.clone(),
            credential,
        }
    }
}

/// Serialises appends from the server's concurrent issuances.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    lock: Mutex<()>,
}

impl AuditLog {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }

    pub fn append(&self, entry: &AuditEntry) -> Result<(), FsError> {
        append(&self.path, entry, &self.lock)
    }
}

fn append(path: &Path, entry: &AuditEntry, lock: &Mutex<()>) -> Result<(), FsError> {
    let line = serde_json::to_vec(entry).unwrap_or_default();
    let _guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    fsio::append_line_synced(path, &line)
}

/// Appends one entry without a shared [`AuditLog`] (the offline `ca` commands).
pub fn append_once(path: &Path, entry: &AuditEntry) -> Result<(), FsError> {
    append(path, entry, &Mutex::new(()))
}

/// The latest `notAfter` of the workload SVIDs signed by root `issuer`, ignoring the
/// control plane's own identities (a rotation reissues those). Lines that do not parse
/// (a torn last line after a crash) are skipped with a warning: the log is evidence,
/// not state, and one torn line must not block a rotation.
pub fn last_not_after_by_issuer(path: &Path, issuer: &str) -> Result<Option<i64>, FsError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FsError {
                action: "cannot read",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let system_prefix = format!("/ns/{RESERVED_NAMESPACE}/");
    let mut latest = None;
    for (number, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<AuditEntry>(line) {
            Ok(entry) if entry.issuer == issuer && !entry.spiffe_id.contains(&system_prefix) => {
                latest = latest.max(Some(entry.not_after_unix));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                event = "audit_line_unreadable",
                path = %path.display(),
                line = number + 1,
                error = %e,
                "skipping an unreadable audit log line"
            ),
        }
    }
    Ok(latest)
}
