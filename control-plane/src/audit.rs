//! The append-only issuance audit log: one JSON line per issued SVID, synced to disk
//! before the certificate leaves the control plane.
//!
//! The log rotates by size, as operators expect of any log that grows with traffic:
//! past `ROTATE_BYTES` the file becomes `audit.log.1` (the older ones move up to
//! `audit.log.KEEP`, the oldest is dropped) and a new one starts. A thousand proxies
//! renewing hourly write about 10 MB a day, so the bound (about 320 MiB) holds weeks of
//! issuances, far more than any SVID lives: the rotation check still sees every SVID that
//! can be valid.

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

/// Size the log does not grow past: it is rotated before a line that would.
const ROTATE_BYTES: u64 = 64 << 20;
/// Rotated files kept (`audit.log.1` is the newest).
const KEEP: usize = 4;

fn append(path: &Path, entry: &AuditEntry, lock: &Mutex<()>) -> Result<(), FsError> {
    append_rotating(path, entry, lock, ROTATE_BYTES)
}

fn append_rotating(
    path: &Path,
    entry: &AuditEntry,
    lock: &Mutex<()>,
    rotate_bytes: u64,
) -> Result<(), FsError> {
    let line = serde_json::to_vec(entry).unwrap_or_default();
    let _guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size > 0 && size + line.len() as u64 + 1 > rotate_bytes {
        rotate(path)?;
    }
    fsio::append_line_synced(path, &line)
}

/// `audit.log.N` for `n` of 1..=KEEP.
fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn rotate(path: &Path) -> Result<(), FsError> {
    for n in (1..KEEP).rev() {
        fsio::rename_if_exists(&rotated(path, n), &rotated(path, n + 1))?;
    }
    fsio::rename_if_exists(path, &rotated(path, 1))?;
    if let Some(dir) = path.parent() {
        fsio::sync_dir(dir)?;
    }
    tracing::info!(
        event = "audit_log_rotated",
        path = %path.display(),
        kept = KEEP,
        "audit log rotated"
    );
    Ok(())
}

/// Appends one entry without a shared [`AuditLog`] (the offline `ca` commands).
pub fn append_once(path: &Path, entry: &AuditEntry) -> Result<(), FsError> {
    append(path, entry, &Mutex::new(()))
}

/// The latest `notAfter` of the workload SVIDs signed by root `issuer`, ignoring the
/// control plane's own identities (a rotation reissues those), in the log and its rotated
/// files. Lines that do not parse (a torn last line after a crash) are skipped with a
/// warning: the log is evidence, not state, and one torn line must not block a rotation.
pub fn last_not_after_by_issuer(path: &Path, issuer: &str) -> Result<Option<i64>, FsError> {
    let mut latest = None;
    for file in std::iter::once(path.to_path_buf()).chain((1..=KEEP).map(|n| rotated(path, n))) {
        latest = latest.max(last_not_after_in(&file, issuer)?);
    }
    Ok(latest)
}

fn last_not_after_in(path: &Path, issuer: &str) -> Result<Option<i64>, FsError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(serial: usize, not_after_unix: i64) -> AuditEntry {
        AuditEntry {
            time_unix: 1_700_000_000,
            serial: format!("{serial:08x}"),
            spiffe_id: "spiffe://palisade.local/ns/shop/sa/payments".into(),
            not_after_unix,
            issuer: "root-1".into(),
            credential: "svid:00".into(),
        }
    }

    #[test]
    fn the_log_rotates_by_size_keeps_the_newest_files_and_loses_no_line_it_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let lock = Mutex::new(());
        let line_len = serde_json::to_vec(&entry(0, 1_000_000)).unwrap().len() as u64 + 1;
        // Three lines a file; enough lines to fill more files than are kept.
        let rotate_bytes = 3 * line_len;
        let total = 3 * (KEEP + 3);
        for serial in 0..total {
            let not_after = 1_000_000 + serial as i64;
            append_rotating(&path, &entry(serial, not_after), &lock, rotate_bytes).unwrap();
        }
        assert!(!rotated(&path, KEEP + 1).exists());
        let mut serials = Vec::new();
        for file in (1..=KEEP)
            .rev()
            .map(|n| rotated(&path, n))
            .chain([path.clone()])
        {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.len() as u64 <= rotate_bytes, "{}", file.display());
            for line in text.lines() {
                let e: AuditEntry = serde_json::from_str(line).unwrap();
                serials.push(usize::from_str_radix(&e.serial, 16).unwrap());
            }
        }
        // The kept files hold the newest lines, each once, in order.
        let kept: Vec<usize> = (total - serials.len()..total).collect();
        assert_eq!(serials, kept);
        assert_eq!(serials.len(), 3 * (KEEP + 1));
    }

    #[test]
    fn the_latest_not_after_is_found_in_rotated_files_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let lock = Mutex::new(());
        let rotate_bytes = 2 * (serde_json::to_vec(&entry(0, 100)).unwrap().len() as u64 + 1);
        // The longest-lived SVID is written first, so it ends up in a rotated file.
        for (serial, not_after) in [(1, 900), (2, 100), (3, 200), (4, 300), (5, 400)] {
            append_rotating(&path, &entry(serial, not_after), &lock, rotate_bytes).unwrap();
        }
        assert!(rotated(&path, 2).exists());
        assert_eq!(
            last_not_after_by_issuer(&path, "root-1").unwrap(),
            Some(900)
        );
        assert_eq!(last_not_after_by_issuer(&path, "root-2").unwrap(), None);
    }
}
