//! Join tokens: the one-time bootstrap credential of a workload's first SVID.
//!
//! A token is 256 random bits, shown once to the operator. The store keeps only its
//! SHA-256 with the one identity it may obtain, its expiry and whether it was used, in
//! `tokens.json`, rewritten atomically on every change. A token is consumed (and the
//! consumption persisted) before the SVID it pays for is signed, so a crash can never
//! let one token buy two SVIDs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use palisade_spiffe::{SpiffeId, TrustDomain};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::fsio::{self, FsError, PRIVATE_FILE};

/// The namespace of the control plane's own identities; no token may be made for it.
pub const RESERVED_NAMESPACE: &str = "palisade-system";
/// Lifetime of a token when none is asked for.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Longest lifetime a token may have: a bootstrap secret should not outlive a day.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long used and expired records are kept, so that a late caller learns that its
/// token was used or expired rather than that it is unknown.
const KEEP_AFTER_EXPIRY_SECS: i64 = 24 * 3600;
/// Prefix of every token, so that a leaked one is recognisable by secret scanners.
const TOKEN_PREFIX: &str = "pjt_";
const FORMAT: u32 = 1;

/// Why a token cannot be made or redeemed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the join token is unknown; create one with `palisadectl token create`")]
    Unknown,
    #[error("the join token expired at unix time {expired_at}; create a new one with `palisadectl token create`")]
    Expired { expired_at: i64 },
    #[error("the join token was already used at unix time {used_at}; a token buys one first SVID only, create a new one")]
    AlreadyUsed { used_at: i64 },
    #[error("the namespace `{RESERVED_NAMESPACE}` is reserved for the control plane; no join token can be made for it")]
    ReservedNamespace,
    #[error("`{namespace}`/`{service_account}` is not a valid identity: {reason}")]
    BadIdentity {
        namespace: String,
        service_account: String,
        reason: String,
    },
    #[error("a join token lifetime must be between 1 s and {max} s, not {0} s", max = MAX_TOKEN_TTL.as_secs())]
    BadTtl(u64),
    #[error("the token store {} is corrupted ({reason}). Restore it from a backup", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    Fs(#[from] FsError),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    format: u32,
    tokens: Vec<TokenRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRecord {
    sha256: String,
    namespace: String,
    service_account: String,
    created_unix: i64,
    expires_unix: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    used_unix: Option<i64>,
    #[serde(skip)]
    hash: [u8; 32],
}

/// A freshly made token: the secret (shown once) and what it buys.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: String,
    pub spiffe_id: SpiffeId,
    pub expires_at_unix: i64,
}

/// A token that checked out; [`TokenStore::consume`] spends it.
#[derive(Debug, Clone)]
pub struct Grant {
    index: usize,
    pub spiffe_id: SpiffeId,
    /// The first 12 hex digits of the token's hash: names the credential in the audit
    /// log without revealing anything usable.
    pub hash_prefix: String,
}

#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    records: Vec<TokenRecord>,
}

impl TokenStore {
    /// Writes an empty store (first start).
    pub fn create_empty(path: &Path) -> Result<(), FsError> {
        let file = TokenFile {
            format: FORMAT,
            tokens: Vec::new(),
        };
        let json = serde_json::to_vec(&file).unwrap_or_default();
        fsio::write_atomic(path, &json, PRIVATE_FILE)
    }

    /// Loads the store; a missing or corrupted file is an error, never an empty store,
    /// because an empty store would quietly resurrect nothing but could hide tampering.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let corrupt = |reason: String| TokenError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = fsio::read(path)?;
        let file: TokenFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.format != FORMAT {
            return Err(corrupt(format!("unsupported format {}", file.format)));
        }
        let mut records = file.tokens;
        for record in &mut records {
            record.hash = decode_hash(&record.sha256)
                .ok_or_else(|| corrupt(format!("bad hash `{}`", record.sha256)))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            records,
        })
    }

    /// Makes a token for one identity and persists its hash before returning it.
    pub fn create(
        &mut self,
        trust_domain: &TrustDomain,
        namespace: &str,
        service_account: &str,
        ttl: Option<Duration>,
    ) -> Result<NewToken, TokenError> {
        if namespace == RESERVED_NAMESPACE {
            return Err(TokenError::ReservedNamespace);
        }
        let spiffe_id =
            SpiffeId::workload(trust_domain, namespace, service_account).map_err(|e| {
                TokenError::BadIdentity {
                    namespace: namespace.to_owned(),
                    service_account: service_account.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        let ttl = ttl.unwrap_or(DEFAULT_TOKEN_TTL);
        if ttl < Duration::from_secs(1) || ttl > MAX_TOKEN_TTL {
            return Err(TokenError::BadTtl(ttl.as_secs()));
        }
        let secret: [u8; 32] = rand::random();
        let token = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let hash = hash_token(&token);
        let now = now_unix();
        let expires_unix = now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        self.records
            .retain(|r| r.expires_unix + KEEP_AFTER_EXPIRY_SECS > now);
        self.records.push(TokenRecord {
            sha256: hex(&hash),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            created_unix: now,
            expires_unix,
            used_unix: None,
            hash,
        });
        if let Err(e) = self.persist() {
            self.records.pop();
            return Err(e);
        }
        Ok(NewToken {
            token,
            spiffe_id,
            expires_at_unix: expires_unix,
        })
    }

    /// Checks a presented token without spending it.
    pub fn check(&self, token: &str, trust_domain: &TrustDomain) -> Result<Grant, TokenError> {
        let hash = hash_token(token);
        // Every record is compared, in constant time, so that timing reveals nothing
        // about which stored hash a guess came close to.
        let mut found = None;
        for (index, record) in self.records.iter().enumerate() {
            if bool::from(record.hash.ct_eq(&hash)) {
                found = Some(index);
            }
        }
        let index = found.ok_or(TokenError::Unknown)?;
        let record = &self.records[index];
        if let Some(used_at) = record.used_unix {
            return Err(TokenError::AlreadyUsed { used_at });
        }
        if record.expires_unix <= now_unix() {
            return Err(TokenError::Expired {
                expired_at: record.expires_unix,
            });
        }
        let spiffe_id =
            SpiffeId::workload(trust_domain, &record.namespace, &record.service_account).map_err(
                |e| TokenError::Corrupt {
                    path: self.path.clone(),
                    reason: e.to_string(),
                },
            )?;
        Ok(Grant {
            index,
            spiffe_id,
            hash_prefix: record.sha256.chars().take(12).collect(),
        })
    }

    /// Spends a checked token and persists that before the caller signs anything.
    pub fn consume(&mut self, grant: &Grant) -> Result<(), TokenError> {
        let record = self
            .records
            .get_mut(grant.index)
            .ok_or(TokenError::Unknown)?;
        record.used_unix = Some(now_unix());
        if let Err(e) = self.persist() {
            if let Some(record) = self.records.get_mut(grant.index) {
                record.used_unix = None;
            }
            return Err(e);
        }
        Ok(())
    }

    fn persist(&self) -> Result<(), TokenError> {
        let file = TokenFile {
            format: FORMAT,
            tokens: self.records.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| TokenError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        fsio::write_atomic(&self.path, &json, PRIVATE_FILE)?;
        Ok(())
    }
}

fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        TokenStore::create_empty(&path).unwrap();
        let store = TokenStore::load(&path).unwrap();
        (dir, store)
    }

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    #[test]
    fn a_token_buys_its_identity_once_and_only_its_hash_is_stored() {
        let (dir, mut store) = store();
        let made = store.create(&td(), "shop", "web", None).unwrap();
        let on_disk = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!on_disk.contains(&made.token));
        let grant = store.check(&made.token, &td()).unwrap();
        assert_eq!(
            grant.spiffe_id.as_str(),
            "spiffe://example.org/ns/shop/sa/web"
        );
        store.consume(&grant).unwrap();
        let reloaded = TokenStore::load(&dir.path().join("tokens.json")).unwrap();
        assert!(matches!(
            reloaded.check(&made.token, &td()),
            Err(TokenError::AlreadyUsed { .. })
        ));
        assert!(matches!(
            store.check("pjt_nope", &td()),
            Err(TokenError::Unknown)
        ));
    }

    #[test]
    fn reserved_namespace_and_bad_ttl_are_refused() {
        let (_dir, mut store) = store();
        assert!(matches!(
            store.create(&td(), RESERVED_NAMESPACE, "admin", None),
            Err(TokenError::ReservedNamespace)
        ));
        assert!(matches!(
            store.create(&td(), "shop", "web", Some(Duration::from_secs(2 * 86400))),
            Err(TokenError::BadTtl(_))
        ));
    }
}
