//! Layer-7 authorization: decides each inbound request with the service's compiled
//! policy ([`palisade_api::policy::ServicePolicy`]) before anything inspects or forwards it.
//!
//! A deny is answered here (403, or 401 for a caller without an SVID) with a short body
//! that names no rule, so a caller learns nothing about the policy; the operator finds the
//! reason in the `authz_deny` audit event with the same `x-request-id`. A rule in audit
//! mode that disagrees with the enforced decision is logged as `authz_audit` and changes
//! nothing. Before the control plane sent any policy, nobody is admitted (503).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use palisade_api::policy::{DecidedBy, Decision, RequestFacts};
use tower::{Layer, Service};

use super::{ClientAddr, PeerIdentity, RequestId, ResponseFuture};
use crate::body::{local_response, ProxyBody};
use crate::enforcement::Enforcement;
use crate::metrics::Metrics;

/// Longest path written to an audit event, in bytes: enough to recognise a route, bounded
/// against hostile requests.
pub const AUDIT_PATH_MAX: usize = 256;

const DENIED: &str = "forbidden: the service's policy does not allow this call; quote the x-request-id to its operators";
const NO_IDENTITY: &str =
    "unauthorized: this service admits only callers with a mesh identity (mTLS)";
const NOT_CONFIGURED: &str = "not configured yet: this proxy has no authorization policy from the control plane; retry shortly";

/// `s` cut to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[derive(Debug, Clone)]
pub struct AuthorizationLayer {
    enforcement: Arc<Enforcement>,
    metrics: Arc<Metrics>,
}

impl AuthorizationLayer {
    pub fn new(enforcement: Arc<Enforcement>, metrics: Arc<Metrics>) -> Self {
        Self {
            enforcement,
            metrics,
        }
    }
}

impl<S> Layer<S> for AuthorizationLayer {
    type Service = Authorization<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorization {
            inner,
            enforcement: self.enforcement.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Authorization<S> {
    inner: S,
    enforcement: Arc<Enforcement>,
    metrics: Arc<Metrics>,
}

fn rule_label(decided_by: &DecidedBy<'_>) -> String {
    match decided_by {
        DecidedBy::Rule(r) => match r.name {
            Some(name) => format!("{}/{}#{}({name})", r.namespace, r.policy, r.index),
            None => format!("{}/{}#{}", r.namespace, r.policy, r.index),
        },
        DecidedBy::Default => "default".to_owned(),
    }
}

/// What the layer does with the request, worked out while the policy guard is held.
enum Outcome {
    Forward,
    Refuse(StatusCode, &'static str),
}

impl<S> Authorization<S> {
    fn decide(&self, request: &Request<ProxyBody>) -> Outcome {
        let peer = request.extensions().get::<PeerIdentity>();
        let peer_id = peer.and_then(PeerIdentity::spiffe_id);
        let peer_label = peer.map_or("unauthenticated", PeerIdentity::label);
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.0.to_str().ok())
            .unwrap_or("");
        let path = truncate(request.uri().path(), AUDIT_PATH_MAX);
        let service = self.enforcement.service();
        let method = request.method().as_str();
        let policy = self.enforcement.authorization();
        let Some(policy) = policy.as_ref() else {
            self.metrics.authz_decision("deny");
            tracing::warn!(
                event = "authz_deny",
                request_id,
                peer = peer_label,
                service,
                method,
                path,
                decided_by = "none",
                reason = "not_configured",
                mode = "enforce",
                "request refused: no authorization policy has arrived from the control plane"
            );
            return Outcome::Refuse(StatusCode::SERVICE_UNAVAILABLE, NOT_CONFIGURED);
        };
        let facts = RequestFacts {
            peer: peer_id,
            peer_ip: request
                .extensions()
                .get::<ClientAddr>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.0.ip()),
            method,
            path: request.uri().path(),
            headers: request.headers(),
        };
        let decision: Decision<'_> = policy.evaluate(&facts);
        if let Some(audit) = decision.audit.filter(|_| decision.audit_disagrees()) {
            tracing::warn!(
                event = "authz_audit",
                request_id,
                peer = peer_label,
                service,
                method,
                path,
                decided_by = %rule_label(&audit.decided_by),
                reason = audit.reason.code(),
                mode = "audit",
                enforced = if decision.allowed { "allow" } else { "deny" },
                would = if audit.allowed { "allow" } else { "deny" },
                "audit mode disagrees with the enforced decision"
            );
        }
        if decision.allowed {
            let audit_deny = decision.audit.is_some_and(|a| !a.allowed);
            self.metrics
                .authz_decision(if audit_deny { "audit_deny" } else { "allow" });
            return Outcome::Forward;
        }
        self.metrics.authz_decision("deny");
        tracing::warn!(
            event = "authz_deny",
            request_id,
            peer = peer_label,
            service,
            method,
            path,
            decided_by = %rule_label(&decision.decided_by),
            reason = decision.reason.code(),
            mode = "enforce",
            "request denied by authorization policy"
        );
        if peer_id.is_none() {
            Outcome::Refuse(StatusCode::UNAUTHORIZED, NO_IDENTITY)
        } else {
            Outcome::Refuse(StatusCode::FORBIDDEN, DENIED)
        }
    }
}

impl<S> Service<Request<ProxyBody>> for Authorization<S>
where
    S: Service<
        Request<ProxyBody>,
        Response = Response<ProxyBody>,
        Error = std::convert::Infallible,
    >,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ProxyBody>) -> Self::Future {
        match self.decide(&request) {
            Outcome::Forward => Box::pin(self.inner.call(request)),
            Outcome::Refuse(status, message) => {
                let response = local_response(status, message);
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
