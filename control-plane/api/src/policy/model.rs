//! The policy resources as typed, already-validated values.
//!
//! Every leaf that can be wrong (a SPIFFE ID pattern, a path pattern, a CIDR, a header
//! regex) is parsed into its own type when the resource is built, so that a value of
//! these types is valid by construction and compiling it can never fail. The same types
//! travel to proxies as JSON: their serde codecs re-run the leaf parsers, so a proxy
//! never trusts the wire more than a file.

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::pattern::{PathPattern, SpiffeIdPattern};

/// The only `apiVersion` this build understands.
pub const API_VERSION: &str = "palisade.dev/v1alpha1";
/// `kind` of a resource declaring who may call one service.
pub const KIND_AUTHORIZATION_POLICY: &str = "AuthorizationPolicy";
/// `kind` of the mesh-wide settings resource.
pub const KIND_MESH_CONFIG: &str = "MeshConfig";
/// The namespace a resource without `metadata.namespace` belongs to, as in Kubernetes.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Allow or deny. Deny wins over allow whenever both match one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        })
    }
}

/// Whether a rule or a whole policy is enforced, or only decided and logged (for rollout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

/// What a service with no enforced policy admits: the mesh-wide default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DefaultAction {
    /// Any caller holding a valid SVID of the mesh's own trust domain (Linkerd's
    /// `all-authenticated`). Unauthenticated callers and other trust domains are denied.
    #[default]
    #[serde(rename = "allowAuthenticated")]
    AllowAuthenticated,
    /// Strict zero trust: a service without a policy admits nobody.
    #[serde(rename = "deny")]
    Deny,
    /// Permissive: also callers without an SVID (plaintext) and of other trust domains.
    /// For migrating a mesh onto mTLS only; the proxy must also have permissive mode on
    /// for plaintext to reach authorization at all.
    #[serde(rename = "allowAll")]
    AllowAll,
}

impl fmt::Display for DefaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DefaultAction::AllowAuthenticated => "allowAuthenticated",
            DefaultAction::Deny => "deny",
            DefaultAction::AllowAll => "allowAll",
        })
    }
}

/// The mesh-wide settings (`kind: MeshConfig`); at most one per policy directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshConfig {
    pub name: String,
    pub default_action: DefaultAction,
}

/// Where a resource or a rule was read from, for explanations (`palisadectl policy check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// `kind: AuthorizationPolicy`: which callers may (or may not) call which routes of one
/// service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationPolicy {
    pub name: String,
    pub namespace: String,
    /// The service the policy protects, in the policy's namespace.
    pub target_service: String,
    pub mode: Mode,
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: Action,
    pub mode: Mode,
    /// Empty means: any authenticated caller for `allow`, every caller for `deny` (both
    /// the cautious reading).
    pub callers: Vec<Caller>,
    /// Empty means every method on every path.
    pub routes: Vec<Route>,
    /// Every condition must hold.
    pub headers: Vec<HeaderMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// One way of naming callers; every field given must match (AND). A rule matches a caller
/// when any of its entries does (OR).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<SpiffeIdPattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<IpNet>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authenticated: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unauthenticated: bool,
}

/// Methods × paths. An empty list means any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub methods: Vec<String>,
    pub paths: Vec<PathPattern>,
}

/// A condition on one request header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderMatch {
    pub name: HeaderKey,
    pub condition: HeaderCondition,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HeaderCondition {
    /// The value equals this, byte for byte.
    Exact(String),
    /// `true`: the header is there; `false`: it is absent.
    Present(bool),
    /// The whole value matches this regular expression (anchored).
    Regex(HeaderRegex),
}

impl PartialEq for HeaderCondition {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Present(a), Self::Present(b)) => a == b,
            (Self::Regex(a), Self::Regex(b)) => a.source == b.source,
            _ => false,
        }
    }
}

/// A valid HTTP header name (lower-case), parsed once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HeaderKey(http::HeaderName);

impl HeaderKey {
    pub fn new(name: &str) -> Result<Self, String> {
        http::HeaderName::from_bytes(name.as_bytes())
            .map(Self)
            .map_err(|_| format!("`{name}` is not a valid HTTP header name"))
    }

    pub fn header_name(&self) -> &http::HeaderName {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl TryFrom<String> for HeaderKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::new(&s)
    }
}

impl From<HeaderKey> for String {
    fn from(k: HeaderKey) -> String {
        k.0.as_str().to_owned()
    }
}

/// Largest compiled size of a header regex: keeps a policy from costing the proxy
/// memory or time out of proportion (the regex engine is linear-time in the input).
const HEADER_REGEX_SIZE_LIMIT: usize = 64 * 1024;

/// An anchored, size-limited regular expression over header bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HeaderRegex {
    source: String,
    regex: regex::bytes::Regex,
}

impl HeaderRegex {
    pub fn new(source: &str) -> Result<Self, String> {
        let regex = regex::bytes::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(HEADER_REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => {
                    format!(
                        "regex is too large once compiled (limit {HEADER_REGEX_SIZE_LIMIT} bytes)"
                    )
                }
                other => other.to_string(),
            })?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, value: &[u8]) -> bool {
        self.regex.is_match(value)
    }
}

impl TryFrom<String> for HeaderRegex {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::new(&s)
    }
}

impl From<HeaderRegex> for String {
    fn from(r: HeaderRegex) -> String {
        r.source
    }
}
