//! The data directory: where the CA, the token hashes and the audit log live, how a
//! first start creates them, how every later start loads them, and the CA rotation steps.
//!
//! ```text
//! DATA_DIR/            0700
//!   state.json         0600  the marker of an initialised directory: trust domain, roots, signing root
//!   ca/<root>.crt.pem  0644  each root certificate
//!   ca/<root>.key.pem  0600  each root key
//!   bundle.pem         0644  the trust bundle (every root in state.json), derived from it
//!   tokens.json        0600  join-token hashes (see `tokens`)
//!   audit.log          0600  one JSON line per issued SVID (see `audit`)
//!   admin/             0700  the admin client credential (see `admin`)
//! ```
//!
//! `state.json` is written last on a first start, so its presence is what tells a later
//! start from a first one. A later start never creates a CA: a missing or corrupted state
//! file, or a root file that does not match it, is an error naming the file.

use std::path::{Path, PathBuf};

use palisade_spiffe::svid::certs_from_pem;
use palisade_spiffe::TrustDomain;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ca::{CaError, CertificateAuthority, Root};
use crate::fsio::{self, FsError, PRIVATE_FILE, PUBLIC_FILE};

pub const STATE_FILE: &str = "state.json";
pub const BUNDLE_FILE: &str = "bundle.pem";
pub const TOKENS_FILE: &str = "tokens.json";
pub const AUDIT_FILE: &str = "audit.log";
pub const CA_DIR: &str = "ca";
pub const ADMIN_DIR: &str = "admin";

const FORMAT: u32 = 1;

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("the state file {} is missing, but {} holds earlier state ({found}); refusing to create a new CA over it. Restore {} from a backup, or, if a first start was interrupted, empty the directory", path.display(), dir.display(), path.display())]
    StateMissing {
        path: PathBuf,
        dir: PathBuf,
        found: String,
    },
    #[error("{} is not an initialised data directory (no {}); start `palisade-control-plane serve --data-dir {}` once first", dir.display(), path.display(), dir.display())]
    NotInitialised { path: PathBuf, dir: PathBuf },
    #[error("the state file {} is corrupted ({reason}); refusing to start and never creating a new CA over it. Restore it from a backup", path.display())]
    StateCorrupt { path: PathBuf, reason: String },
    #[error("{} is missing; the CA state in {} refers to it. Restore it from a backup", path.display(), state.display())]
    FileMissing { path: PathBuf, state: PathBuf },
    #[error("{} is corrupted or was replaced ({reason}). Restore it from a backup", path.display())]
    FileCorrupt { path: PathBuf, reason: String },
    #[error("the data directory {} belongs to trust domain `{found}`, but `{configured}` was configured", dir.display())]
    TrustDomainMismatch {
        dir: PathBuf,
        found: String,
        configured: String,
    },
    #[error("the operator CA {} differs from the CA already in {}; to change the CA, use `ca prepare-rotation --ca-cert --ca-key`, then `ca rotate`", cert.display(), dir.display())]
    OperatorCaDiffers { cert: PathBuf, dir: PathBuf },
    #[error("the operator CA ({}, {}) is not usable: {source}", cert.display(), key.display())]
    OperatorCa {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: CaError,
    },
    #[error("{0}")]
    Rotation(String),
    #[error("the CA cannot be built: {0}")]
    Ca(#[from] CaError),
}

/// Contents of `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    pub format: u32,
    pub trust_domain: String,
    /// Every root in the bundle, oldest first.
    pub roots: Vec<RootEntry>,
    /// The root that signs.
    pub signing: String,
    /// The root signing stopped with at the last `ca rotate`, until `ca retire-old`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootEntry {
    pub name: String,
    /// SHA-256 of the certificate's DER, hex: detects a replaced certificate file.
    pub cert_sha256: String,
    pub created_unix: i64,
    /// `generated` or `operator`.
    pub origin: String,
}

/// The paths of one data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn path(&self) -> &Path {
        &self.root
    }
    pub fn state(&self) -> PathBuf {
        self.root.join(STATE_FILE)
    }
    pub fn bundle(&self) -> PathBuf {
        self.root.join(BUNDLE_FILE)
    }
    pub fn tokens(&self) -> PathBuf {
        self.root.join(TOKENS_FILE)
    }
    pub fn audit(&self) -> PathBuf {
        self.root.join(AUDIT_FILE)
    }
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join(CA_DIR)
    }
    pub fn admin_dir(&self) -> PathBuf {
        self.root.join(ADMIN_DIR)
    }
    pub fn root_cert(&self, name: &str) -> PathBuf {
        self.ca_dir().join(format!("{name}.crt.pem"))
    }
    pub fn root_key(&self, name: &str) -> PathBuf {
        self.ca_dir().join(format!("{name}.key.pem"))
    }

    /// Removes temp files a crash mid-write left behind.
    fn clean_temps(&self) -> Result<(), StateError> {
        for dir in [self.root.clone(), self.ca_dir(), self.admin_dir()] {
            let removed = fsio::remove_stale_temps(&dir)?;
            if removed > 0 {
                tracing::warn!(
                    event = "stale_temp_removed",
                    dir = %dir.display(),
                    count = removed,
                    "removed temp files left by an interrupted write"
                );
            }
        }
        Ok(())
    }

    /// Files whose presence shows that the directory was used before.
    fn leftovers(&self) -> Vec<String> {
        [CA_DIR, BUNDLE_FILE, TOKENS_FILE, AUDIT_FILE, ADMIN_DIR]
            .iter()
            .filter(|name| self.root.join(name).exists())
            .map(|name| name.to_string())
            .collect()
    }
}

/// Whether `open` created the CA or loaded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    FirstStart,
    LaterStart,
}

/// Opens the data directory: on a first start creates the CA (generated, or the
/// operator's `(cert, key)` PEM files) and the empty token store; on a later start loads
/// it. Returns the CA and which of the two happened.
pub fn open(
    dir: &DataDir,
    trust_domain: &TrustDomain,
    operator_ca: Option<(&Path, &Path)>,
) -> Result<(CertificateAuthority, Opened), StateError> {
    fsio::create_private_dir(dir.path())?;
    dir.clean_temps()?;
    if dir.state().exists() {
        let (state, ca) = load(dir)?;
        if state.trust_domain != trust_domain.as_str() {
            return Err(StateError::TrustDomainMismatch {
                dir: dir.path().to_path_buf(),
                found: state.trust_domain,
                configured: trust_domain.to_string(),
            });
        }
        if let Some((cert, key)) = operator_ca {
            let root = read_operator_root(cert, key, "operator")?;
            if !ca.roots().iter().any(|r| r.cert == root.cert) {
                return Err(StateError::OperatorCaDiffers {
                    cert: cert.to_path_buf(),
                    dir: dir.path().to_path_buf(),
                });
            }
        }
        write_bundle(dir, &ca)?;
        return Ok((ca, Opened::LaterStart));
    }
    let found = dir.leftovers();
    if !found.is_empty() {
        return Err(StateError::StateMissing {
            path: dir.state(),
            dir: dir.path().to_path_buf(),
            found: found.join(", "),
        });
    }
    fsio::restrict_dir(dir.path())?;
    let (root, origin) = match operator_ca {
        Some((cert, key)) => (read_operator_root(cert, key, "root-1")?, "operator"),
        None => (Root::generate("root-1", trust_domain)?, "generated"),
    };
    fsio::create_private_dir(&dir.ca_dir())?;
    write_root(dir, &root)?;
    let state = StateFile {
        format: FORMAT,
        trust_domain: trust_domain.to_string(),
        roots: vec![root_entry(&root, origin)],
        signing: root.name.clone(),
        previous: None,
    };
    let ca = CertificateAuthority::new(trust_domain.clone(), vec![root], &state.signing)?;
    write_bundle(dir, &ca)?;
    crate::tokens::TokenStore::create_empty(&dir.tokens())?;
    fsio::write_atomic(&dir.audit(), b"", PRIVATE_FILE)?;
    write_state(dir, &state)?;
    Ok((ca, Opened::FirstStart))
}

/// Loads an initialised data directory, checking every root file against the state.
pub fn load(dir: &DataDir) -> Result<(StateFile, CertificateAuthority), StateError> {
    let state = read_state(dir)?;
    let trust_domain =
        TrustDomain::new(&state.trust_domain).map_err(|e| StateError::StateCorrupt {
            path: dir.state(),
            reason: format!("trust domain: {e}"),
        })?;
    let roots = state
        .roots
        .iter()
        .map(|entry| load_root(dir, entry))
        .collect::<Result<Vec<_>, _>>()?;
    let ca = CertificateAuthority::new(trust_domain, roots, &state.signing).map_err(|e| {
        StateError::StateCorrupt {
            path: dir.state(),
            reason: e.to_string(),
        }
    })?;
    Ok((state, ca))
}

/// The raw bytes of `state.json`, so a running server can notice a rotation step.
pub fn state_bytes(dir: &DataDir) -> Result<Vec<u8>, StateError> {
    Ok(fsio::read(&dir.state())?)
}

fn read_state(dir: &DataDir) -> Result<StateFile, StateError> {
    let path = dir.state();
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let found = dir.leftovers();
            let dir = dir.path().to_path_buf();
            return Err(if found.is_empty() {
                StateError::NotInitialised { path, dir }
            } else {
                StateError::StateMissing {
                    path,
                    dir,
                    found: found.join(", "),
                }
            });
        }
        Err(source) => {
            return Err(FsError {
                action: "cannot read",
                path,
                source,
            }
            .into())
        }
    };
    let state: StateFile =
        serde_json::from_slice(&bytes).map_err(|e| StateError::StateCorrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if state.format != FORMAT {
        return Err(StateError::StateCorrupt {
            path,
            reason: format!("format {} is not the supported {FORMAT}", state.format),
        });
    }
    if state.roots.is_empty() {
        return Err(StateError::StateCorrupt {
            path,
            reason: "it lists no root".into(),
        });
    }
    Ok(state)
}

fn write_state(dir: &DataDir, state: &StateFile) -> Result<(), StateError> {
    let mut json = serde_json::to_vec_pretty(state).map_err(|e| StateError::StateCorrupt {
        path: dir.state(),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    fsio::write_atomic(&dir.state(), &json, PRIVATE_FILE)?;
    Ok(())
}

fn load_root(dir: &DataDir, entry: &RootEntry) -> Result<Root, StateError> {
    let cert_path = dir.root_cert(&entry.name);
    let key_path = dir.root_key(&entry.name);
    let cert_pem = read_referenced(dir, &cert_path)?;
    let cert = single_cert(&cert_path, &cert_pem)?;
    if sha256_hex(cert.as_ref()) != entry.cert_sha256 {
        return Err(StateError::FileCorrupt {
            path: cert_path,
            reason: "its SHA-256 does not match the one recorded in state.json".into(),
        });
    }
    let key_pem = read_referenced(dir, &key_path)?;
    let key_pem = String::from_utf8(key_pem).map_err(|_| StateError::FileCorrupt {
        path: key_path.clone(),
        reason: "not UTF-8 PEM".into(),
    })?;
    Root::from_parts(&entry.name, cert, &key_pem).map_err(|e| StateError::FileCorrupt {
        path: key_path,
        reason: e.to_string(),
    })
}

fn read_referenced(dir: &DataDir, path: &Path) -> Result<Vec<u8>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StateError::FileMissing {
            path: path.to_path_buf(),
            state: dir.state(),
        }),
        Err(source) => Err(FsError {
            action: "cannot read",
            path: path.to_path_buf(),
            source,
        }
        .into()),
    }
}

fn single_cert(
    path: &Path,
    pem: &[u8],
) -> Result<rustls_pki_types::CertificateDer<'static>, StateError> {
    let corrupt = |reason: String| StateError::FileCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut certs = certs_from_pem(pem).map_err(corrupt)?;
    if certs.len() != 1 {
        return Err(corrupt(format!(
            "expected exactly one certificate, found {}",
            certs.len()
        )));
    }
    Ok(certs.remove(0))
}

fn read_operator_root(cert: &Path, key: &Path, name: &str) -> Result<Root, StateError> {
    let cert_pem = fsio::read(cert)?;
    let key_pem = fsio::read(key)?;
    let operator = |source: CaError| StateError::OperatorCa {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    };
    let der = single_cert(cert, &cert_pem)?;
    let key_pem = String::from_utf8(key_pem)
        .map_err(|_| operator(CaError::BadKey("not UTF-8 PEM".into())))?;
    Root::from_parts(name, der, &key_pem).map_err(operator)
}

fn root_entry(root: &Root, origin: &str) -> RootEntry {
    RootEntry {
        name: root.name.clone(),
        cert_sha256: sha256_hex(root.cert.as_ref()),
        created_unix: time::OffsetDateTime::now_utc().unix_timestamp(),
        origin: origin.to_owned(),
    }
}

fn write_root(dir: &DataDir, root: &Root) -> Result<(), StateError> {
    fsio::write_atomic(
        &dir.root_key(&root.name),
        root.key_pem().as_bytes(),
        PRIVATE_FILE,
    )?;
    fsio::write_atomic(
        &dir.root_cert(&root.name),
        root.cert_pem().as_bytes(),
        PUBLIC_FILE,
    )?;
    Ok(())
}

/// Rewrites `bundle.pem` (and the admin copy, when present) if it differs from the CA's.
pub fn write_bundle(dir: &DataDir, ca: &CertificateAuthority) -> Result<(), StateError> {
    let pem = ca.bundle_pem();
    for path in [
        dir.bundle(),
        dir.admin_dir().join(crate::admin::BUNDLE_FILE),
    ] {
        let is_admin_copy = path != dir.bundle();
        if is_admin_copy && !dir.admin_dir().is_dir() {
            continue;
        }
        if std::fs::read(&path).ok().as_deref() != Some(pem.as_bytes()) {
            fsio::write_atomic(&path, pem.as_bytes(), PUBLIC_FILE)?;
        }
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Step 1 of a CA rotation: adds a new root to the bundle; signing stays with the
/// current root. Returns the new root's name.
pub fn prepare_rotation(
    dir: &DataDir,
    operator_ca: Option<(&Path, &Path)>,
) -> Result<String, StateError> {
    dir.clean_temps()?;
    let (mut state, ca) = load(dir)?;
    if state.roots.len() > 1 {
        return Err(StateError::Rotation(format!(
            "a rotation is already under way (the bundle holds {} roots); finish it with `ca rotate` and `ca retire-old` first",
            state.roots.len()
        )));
    }
    let next = next_root_name(&state);
    let (root, origin) = match operator_ca {
        Some((cert, key)) => (read_operator_root(cert, key, &next)?, "operator"),
        None => (Root::generate(&next, ca.trust_domain())?, "generated"),
    };
    if ca.roots().iter().any(|r| r.cert == root.cert) {
        return Err(StateError::Rotation(
            "the new CA is already in the bundle".into(),
        ));
    }
    write_root(dir, &root)?;
    state.roots.push(root_entry(&root, origin));
    let roots = ca_into_roots(dir, &state)?;
    let ca = CertificateAuthority::new(ca.trust_domain().clone(), roots, &state.signing)?;
    write_bundle(dir, &ca)?;
    write_state(dir, &state)?;
    Ok(next)
}

/// Step 2: signs with the newest root from now on. The old root stays in the bundle so
/// that SVIDs it signed keep verifying until they expire. Reissues the admin credential.
pub fn rotate(dir: &DataDir) -> Result<String, StateError> {
    dir.clean_temps()?;
    let (mut state, ca) = load(dir)?;
    let newest = state
        .roots
        .last()
        .map(|r| r.name.clone())
        .unwrap_or_default();
    if state.roots.len() < 2 || newest == state.signing {
        return Err(StateError::Rotation(
            "there is no new root to rotate to; run `ca prepare-rotation` first, and wait until every proxy has the new bundle".into(),
        ));
    }
    state.previous = Some(std::mem::replace(&mut state.signing, newest.clone()));
    let roots = ca_into_roots(dir, &state)?;
    let ca = CertificateAuthority::new(ca.trust_domain().clone(), roots, &state.signing)?;
    crate::admin::write_credential(dir, &ca)?;
    write_state(dir, &state)?;
    Ok(newest)
}

/// Step 3: drops the old root from the bundle. Refused while an SVID it signed (other
/// than the control plane's own, which `rotate` replaced) is still valid, unless `force`.
pub fn retire_old(dir: &DataDir, force: bool) -> Result<String, StateError> {
    dir.clean_temps()?;
    let (mut state, ca) = load(dir)?;
    let previous = state.previous.clone().ok_or_else(|| {
        StateError::Rotation(
            "no rotation to finish: run `ca prepare-rotation` and `ca rotate` first".into(),
        )
    })?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let last_valid = crate::audit::last_not_after_by_issuer(&dir.audit(), &previous)?;
    if let Some(until) = last_valid.filter(|until| *until > now) {
        if !force {
            return Err(StateError::Rotation(format!(
                "SVIDs signed by the old root `{previous}` stay valid until unix time {until} ({} s from now); proxies renew onto the new root before then. Retry after that time, or pass --force",
                until - now
            )));
        }
    }
    state.roots.retain(|r| r.name != previous);
    state.previous = None;
    let roots = ca_into_roots(dir, &state)?;
    let ca = CertificateAuthority::new(ca.trust_domain().clone(), roots, &state.signing)?;
    write_bundle(dir, &ca)?;
    write_state(dir, &state)?;
    fsio::remove(&dir.root_key(&previous))?;
    fsio::remove(&dir.root_cert(&previous))?;
    Ok(previous)
}

fn ca_into_roots(dir: &DataDir, state: &StateFile) -> Result<Vec<Root>, StateError> {
    state.roots.iter().map(|e| load_root(dir, e)).collect()
}

fn next_root_name(state: &StateFile) -> String {
    let highest = state
        .roots
        .iter()
        .filter_map(|r| r.name.strip_prefix("root-")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    format!("root-{}", highest + 1)
}
