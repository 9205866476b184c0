//! The proxy's HTTPS client to the control plane: SVID issuance and renewal, service
//! registration, and the config watch.
//!
//! Every connection verifies that the server holds the control plane's own SVID
//! (`spiffe://<td>/ns/palisade-system/sa/control-plane`) against the trust bundle, so a
//! proxy never sends a CSR or a join token to anyone else. First issuance presents no
//! client certificate (the join token authenticates it); everything else presents the
//! proxy's current SVID. Calls are rare (one per renewal, one per reconnect), so each
//! opens its own HTTP/2 connection instead of keeping a pool.

pub mod backoff;
mod connection;
pub mod ndjson;
#[cfg(test)]
pub(crate) mod test_support;
mod watch;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use palisade_api::wire::{
    IssueRequest, IssueResponse, Registered, Registration, PATH_REGISTER, PATH_SVID,
};
use palisade_spiffe::tls::{client_config, ServerIdentity};
use palisade_spiffe::{SharedBundle, SpiffeId, SvidStore, TrustDomain};
use rustls::ClientConfig;

pub use connection::Connection;
pub use watch::{spawn_watch, WatchConfig, WatchHandle, WatchStatus};

/// The namespace and service account of the control plane's own SVID.
pub const CONTROL_PLANE_NAMESPACE: &str = "palisade-system";
pub const CONTROL_PLANE_SERVICE_ACCOUNT: &str = "control-plane";

/// The only identity a proxy accepts from the control plane in trust domain `td`.
pub fn control_plane_id(td: &TrustDomain) -> SpiffeId {
    // Both segments are constants of letters and `-`, and a valid trust domain is at
    // most 255 bytes, so the ID is always valid.
    SpiffeId::workload(td, CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT)
        .expect("the control plane's constant namespace and service account are valid")
}

/// Why a call to the control plane failed. Messages name the control plane's address
/// and, when it answered with an error, the code and text it sent.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control plane address `{url}` is invalid: {reason} (expected https://HOST:PORT)")]
    InvalidAddr { url: String, reason: String },
    #[error("could not resolve or connect to the control plane at {addr}: {source}")]
    Connect {
        addr: ControlPlaneAddr,
        source: std::io::Error,
    },
    #[error("connecting to the control plane at {addr} timed out after {after:?}")]
    ConnectTimeout {
        addr: ControlPlaneAddr,
        after: Duration,
    },
    #[error("TLS handshake with the control plane at {addr} failed: {source} (is the trust bundle the control plane's, and is it the control plane listening there?)")]
    Tls {
        addr: ControlPlaneAddr,
        source: std::io::Error,
    },
    #[error("HTTP/2 with the control plane at {addr} failed: {source}")]
    Http {
        addr: ControlPlaneAddr,
        source: hyper::Error,
    },
    #[error("`{path}` on the control plane at {addr} did not answer within {after:?}")]
    Timeout {
        addr: ControlPlaneAddr,
        path: &'static str,
        after: Duration,
    },
    #[error("the control plane at {addr} refused `{path}` ({status}, {code}): {message}")]
    Refused {
        addr: ControlPlaneAddr,
        path: &'static str,
        status: http::StatusCode,
        code: String,
        message: String,
    },
    #[error(
        "the control plane at {addr} answered `{path}` with {status} and no error body: {body}"
    )]
    UnexpectedStatus {
        addr: ControlPlaneAddr,
        path: &'static str,
        status: http::StatusCode,
        body: String,
    },
    #[error("reading the answer to `{path}` from the control plane at {addr} failed: {reason}")]
    Body {
        addr: ControlPlaneAddr,
        path: &'static str,
        reason: String,
    },
    #[error("the control plane at {addr} sent a `{path}` answer that is not valid JSON of the expected shape: {source}")]
    Decode {
        addr: ControlPlaneAddr,
        path: &'static str,
        source: serde_json::Error,
    },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl ControlError {
    /// The machine-readable code the control plane sent, if it refused the request.
    pub fn refusal_code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Where the control plane listens: `https://HOST:PORT` (or just `HOST:PORT`).
/// The host is resolved on every connection so that a moved control plane is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneAddr {
    host: String,
    port: u16,
}

impl ControlPlaneAddr {
    pub fn parse(url: &str) -> Result<Self, ControlError> {
        let invalid = |reason: &str| ControlError::InvalidAddr {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = match url.split_once("://") {
            Some(("https", rest)) => rest,
            Some((scheme, _)) => {
                return Err(invalid(&format!(
                    "scheme `{scheme}` is not supported, only https"
                )))
            }
            None => url,
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') || authority.contains('@') {
            return Err(invalid("it must be only a host and a port, with no path"));
        }
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| invalid("the port is missing"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(&format!("`{port}` is not a port number")))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` as an HTTP authority, with brackets around an IPv6 address.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for ControlPlaneAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}", self.authority())
    }
}

impl FromStr for ControlPlaneAddr {
    type Err = ControlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// How long each step may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect plus TLS and HTTP/2 handshakes.
    pub connect: Duration,
    /// One request, from sending it to the last byte of the answer (not the watch).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(10),
        }
    }
}

/// Whether a connection presents our SVID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMode {
    /// No client certificate: the first issuance, authenticated by a join token.
    Anonymous,
    /// The proxy's current SVID (renewal, registration, watch).
    Svid,
}

/// A handle to the control plane; cheap to clone.
#[derive(Clone)]
pub struct ControlPlaneClient {
    inner: Arc<Inner>,
}

struct Inner {
    addr: ControlPlaneAddr,
    bundle: SharedBundle,
    anonymous: Arc<ClientConfig>,
    with_svid: Arc<ClientConfig>,
    timeouts: Timeouts,
}

impl fmt::Debug for ControlPlaneClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlaneClient")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl ControlPlaneClient {
    /// A client that trusts `bundle` (read on every handshake, so bundle updates apply)
    /// and presents the SVID in `svids` when a call needs it.
    pub fn new(
        addr: ControlPlaneAddr,
        trust_domain: &TrustDomain,
        bundle: SharedBundle,
        svids: Arc<SvidStore>,
        timeouts: Timeouts,
    ) -> Self {
        let expected = ServerIdentity::OneOf(vec![control_plane_id(trust_domain)]);
        let with_alpn = |mut config: ClientConfig| {
            config.alpn_protocols = vec![b"h2".to_vec()];
            Arc::new(config)
        };
        let anonymous = with_alpn(client_config(None, bundle.clone(), expected.clone()));
        let with_svid = with_alpn(client_config(Some(svids), bundle.clone(), expected));
        Self {
            inner: Arc::new(Inner {
                addr,
                bundle,
                anonymous,
                with_svid,
                timeouts,
            }),
        }
    }

    pub fn addr(&self) -> &ControlPlaneAddr {
        &self.inner.addr
    }

    pub fn bundle(&self) -> &SharedBundle {
        &self.inner.bundle
    }

    pub fn timeouts(&self) -> Timeouts {
        self.inner.timeouts
    }

    /// Opens one HTTP/2 connection to the control plane.
    pub async fn connect(&self, auth: ClientAuthMode) -> Result<Connection, ControlError> {
        let tls = match auth {
            ClientAuthMode::Anonymous => self.inner.anonymous.clone(),
            ClientAuthMode::Svid => self.inner.with_svid.clone(),
        };
        Connection::open(&self.inner.addr, tls, self.inner.timeouts).await
    }

    /// First issuance: a CSR authenticated by a join token. The token is sent once and
    /// never logged.
    pub async fn issue(
        &self,
        csr_pem: String,
        join_token: &str,
    ) -> Result<IssueResponse, ControlError> {
        let request = IssueRequest {
            csr_pem,
            join_token: Some(join_token.to_owned()),
        };
        self.connect(ClientAuthMode::Anonymous)
            .await?
            .post_json(PATH_SVID, &request)
            .await
    }

    /// Renewal: a CSR for a fresh key, authenticated by the current SVID over mTLS.
    pub async fn renew(&self, csr_pem: String) -> Result<IssueResponse, ControlError> {
        let request = IssueRequest {
            csr_pem,
            join_token: None,
        };
        self.connect(ClientAuthMode::Svid)
            .await?
            .post_json(PATH_SVID, &request)
            .await
    }

    /// Announces that this proxy serves `service` on `inbound_addr`; the control plane
    /// records it under the caller's SPIFFE ID.
    pub async fn register(
        &self,
        service: &str,
        inbound_addr: &str,
    ) -> Result<Registered, ControlError> {
        let registration = Registration {
            service: service.to_owned(),
            inbound_addr: inbound_addr.to_owned(),
        };
        self.connect(ClientAuthMode::Svid)
            .await?
            .post_json(PATH_REGISTER, &registration)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_control_plane_urls() {
        let addr = ControlPlaneAddr::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!((addr.host(), addr.port()), ("127.0.0.1", 8443));
        assert_eq!(addr.to_string(), "https://127.0.0.1:8443");
        let addr = ControlPlaneAddr::parse("cp.palisade-system.svc:443/").unwrap();
        assert_eq!((addr.host(), addr.port()), ("cp.palisade-system.svc", 443));
        let addr = ControlPlaneAddr::parse("https://[::1]:9").unwrap();
        assert_eq!(addr.host(), "::1");
        assert_eq!(addr.to_string(), "https://[::1]:9");
    }

    #[test]
    fn refuses_bad_control_plane_urls_clearly() {
        for (url, hint) in [
            ("http://127.0.0.1:80", "only https"),
            ("https://127.0.0.1", "port is missing"),
            ("https://127.0.0.1:99999", "not a port"),
            ("https://:443", "host is empty"),
            ("https://h:443/v1", "no path"),
        ] {
            let error = ControlPlaneAddr::parse(url).unwrap_err().to_string();
            assert!(error.contains(hint), "{url}: {error}");
        }
    }

    #[test]
    fn the_control_plane_id_is_fixed_by_trust_domain() {
        let td = TrustDomain::new("mesh.test").unwrap();
        assert_eq!(
            control_plane_id(&td).as_str(),
            "spiffe://mesh.test/ns/palisade-system/sa/control-plane"
        );
    }
}
