//! Request and response bodies of the control plane's HTTP API.
//!
//! | method and path            | authenticated by                 | body in → out                         |
//! |----------------------------|----------------------------------|---------------------------------------|
//! | `POST /v1/svid`            | join token (first issuance) or the caller's current SVID over mTLS (renewal) | [`IssueRequest`] → [`IssueResponse`] |
//! | `POST /v1/admin/tokens`    | the admin credential over mTLS   | [`TokenRequest`] → [`TokenResponse`]  |
//! | `POST /v1/register`        | the caller's SVID over mTLS      | [`Registration`] → [`Registered`]     |
//! | `GET /v1/watch?service=S`  | the caller's SVID over mTLS      | a stream of [`ConfigSnapshot`] lines  |
//! | `POST /v1/admin/policy/check` | the admin credential over mTLS | [`PolicyCheckRequest`] → [`PolicyCheckResponse`] |
//!
//! Every error answer carries an [`ErrorBody`] whose `code` is one of [`codes`].
//!
//! The watch stream sends one snapshot at once, one on every change, and the current one
//! again every ~15 s as a keep-alive: a proxy that hears nothing for ~45 s should treat
//! the stream as dead and reconnect. An endpoint whose proxy neither keeps a watch open
//! nor re-registers for the control plane's grace period (45 s by default) is dropped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const PATH_SVID: &str = "/v1/svid";
pub const PATH_ADMIN_TOKENS: &str = "/v1/admin/tokens";
pub const PATH_REGISTER: &str = "/v1/register";
pub const PATH_WATCH: &str = "/v1/watch";
pub const PATH_ADMIN_POLICY_CHECK: &str = "/v1/admin/policy/check";

/// A certificate signing request. The identity in the CSR is ignored: the control plane
/// decides the identity from the credential (join token or current SVID), and refuses a
/// CSR whose subject alternative names ask for any other identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// PKCS#10 CSR, PEM.
    pub csr_pem: String,
    /// The bootstrap credential for the first issuance; absent on renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueResponse {
    pub spiffe_id: String,
    /// The leaf first, then any intermediates, PEM.
    pub chain_pem: String,
    /// The current trust bundle (every root in force), PEM.
    pub bundle_pem: String,
    /// The leaf's `notAfter`, seconds since the Unix epoch.
    pub not_after_unix: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub namespace: String,
    pub service_account: String,
    /// Lifetime in seconds; the control plane applies its default and caps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// Shown once; the control plane keeps only its hash.
    pub token: String,
    pub spiffe_id: String,
    pub expires_at_unix: i64,
}

/// A proxy announcing the service it fronts and where its inbound listener is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub service: String,
    /// `host:port` of the proxy's inbound (mTLS) listener.
    pub inbound_addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The identity the registration was recorded under (the caller's SPIFFE ID).
    pub spiffe_id: String,
}

/// One endpoint of a service: where to connect, and the only identity it may present.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    pub addr: String,
    pub spiffe_id: String,
}

/// Everything a proxy needs from the control plane, sent whole on every change so that a
/// proxy that reconnects is never left with a partial view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigSnapshot {
    /// Increases with every change the control plane makes.
    pub version: u64,
    /// The current trust bundle, PEM.
    pub bundle_pem: String,
    /// Endpoints of every registered service, by service name.
    pub endpoints: BTreeMap<String, Vec<Endpoint>>,
    /// What the watching proxy's own service enforces: the mesh-wide settings and the
    /// authorization policies that target it. The control plane always sends it (a mesh
    /// without policy files sends the defaults); `None` means "not configured yet", and
    /// a proxy then admits nobody (fail closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<ServiceAuthorization>,
    /// WAF settings of the watching proxy's service: the defaults (block, paranoia 1,
    /// threshold 5) unless a `WafPolicy` targets it. `None` means the proxy keeps what it
    /// has (the secure defaults at first start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waf: Option<palisade_waf::WafSettings>,
}

/// The authorization configuration of one service, as the control plane pushes it.
/// The proxy compiles it with [`crate::policy::ServicePolicy::compile`], the same code
/// `palisadectl policy check` runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceAuthorization {
    pub mesh: crate::policy::MeshConfig,
    pub policies: Vec<crate::policy::AuthorizationPolicy>,
}

/// A request to explain, decided against the control plane's policy in force (its last
/// good set), with the same code the proxies enforce with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyCheckRequest {
    /// The caller's SPIFFE ID; absent for a caller without an SVID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The service called: `NAME` or `NAME.NAMESPACE`.
    pub to: String,
    pub method: String,
    pub path: String,
    /// Request headers as `(name, value)` pairs, in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The caller's address, for CIDR rules.
    #[serde(default = "loopback")]
    pub peer_ip: std::net::IpAddr,
}

fn loopback() -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
}

/// The decision on a [`PolicyCheckRequest`] and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCheckResponse {
    pub allowed: bool,
    /// `default`, or the rule: `allow rule shop/payments rules[0] (orders) at FILE:LINE`.
    pub decided_by: String,
    /// The sentence for a person.
    pub reason: String,
    /// The stable label (`allow_rule`, `not_allowed_by_policy`, ...).
    pub reason_code: String,
    /// What audit-mode rules would have decided, when the service has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<PolicyCheckAudit>,
    /// The version of the policy set decided with (0 for a local directory).
    pub policy_version: u64,
    /// The service and namespace `to` resolved to, and how many policies target it.
    pub service: String,
    pub namespace: String,
    pub policies: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCheckAudit {
    pub allowed: bool,
    pub decided_by: String,
    pub reason: String,
    pub reason_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable reason, such as `token_expired`.
    pub code: String,
    /// What was wrong and what to do, for a person.
    pub error: String,
}

/// The stable `code` values of [`ErrorBody`].
pub mod codes {
    /// The body is not the expected JSON, or a query parameter is missing.
    pub const BAD_REQUEST: &str = "bad_request";
    /// The body is larger than the endpoint accepts.
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// The CSR does not parse, its self-signature fails, or its key type is unsupported.
    pub const CSR_MALFORMED: &str = "csr_malformed";
    /// The CSR's SANs ask for an identity other than the credential's.
    pub const CSR_IDENTITY_MISMATCH: &str = "csr_identity_mismatch";
    /// Neither a client SVID nor a join token was presented.
    pub const CREDENTIAL_MISSING: &str = "credential_missing";
    pub const TOKEN_UNKNOWN: &str = "token_unknown";
    pub const TOKEN_EXPIRED: &str = "token_expired";
    pub const TOKEN_USED: &str = "token_used";
    /// The endpoint needs a client SVID over mTLS.
    pub const SVID_REQUIRED: &str = "svid_required";
    /// The endpoint needs the admin credential.
    pub const ADMIN_REQUIRED: &str = "admin_required";
    /// A token was asked for the reserved `palisade-system` namespace.
    pub const RESERVED_NAMESPACE: &str = "reserved_namespace";
    /// A namespace, service account, service name, address or TTL is invalid.
    pub const INVALID_ARGUMENT: &str = "invalid_argument";
    /// The control plane could not sign or persist; retry later.
    pub const INTERNAL: &str = "internal";
    /// The watch caller's SVID is not a workload identity (`/ns/NS/sa/SA`).
    pub const NOT_A_WORKLOAD: &str = "not_a_workload";
    /// A proxy asked to register or watch a service other than the one its SVID's
    /// service account names.
    pub const SERVICE_NOT_OWNED: &str = "service_not_owned";
}
