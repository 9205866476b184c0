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
use crate::telemetry::TraceFacts;

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

/// The fields of an `authz_deny` event (documented in docs/observability.md).
struct Deny<'a> {
    request_id: &'a str,
    peer: &'a str,
    service: &'a str,
    method: &'a str,
    path: &'a str,
}

impl Deny<'_> {
    fn log(&self, decided_by: &str, reason: &str, message: &str) {
        tracing::warn!(
            event = "authz_deny",
            request_id = self.request_id,
            peer = self.peer,
            service = self.service,
            method = self.method,
            path = self.path,
            decided_by,
            reason,
            mode = "enforce",
            "{message}"
        );
    }
}

impl<S> Authorization<S> {
    /// Counts the decision and hands it to the request's span.
    fn record(&self, request: &Request<ProxyBody>, result: &'static str) {
        self.metrics.authz_decision(result);
        if let Some(facts) = request.extensions().get::<Arc<TraceFacts>>() {
            facts.set_authz(result);
        }
    }

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
        let deny = Deny {
            request_id,
            peer: peer_label,
            service,
            method,
            path,
        };
        let Some(policy) = policy.as_ref() else {
            self.record(request, "deny");
            deny.log(
                "none",
                "not_configured",
                "request refused: no authorization policy has arrived from the control plane",
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
            let result = if audit_deny { "audit_deny" } else { "allow" };
            self.record(request, result);
            return Outcome::Forward;
        }
        self.record(request, "deny");
        deny.log(
            &rule_label(&decision.decided_by),
            decision.reason.code(),
            "request denied by authorization policy",
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

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use palisade_api::policy::{parse_file, Resource};
    use palisade_api::wire::{ConfigSnapshot, ServiceAuthorization};
    use palisade_spiffe::{SpiffeId, TrustDomain};
    use tower::ServiceExt;

    use super::*;
    use crate::body::boxed;
    use crate::layers::HttpService;

    const POLICY: &str = r#"
apiVersion: palisade.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: payments-callers
  namespace: shop
spec:
  targetService: payments
  rules:
    - name: orders-can-charge
      action: allow
      callers:
        - spiffeId: spiffe://td/ns/shop/sa/orders
      routes:
        - methods: [GET, POST]
          paths: ["/v1/charges/{id}"]
    - name: billing-later
      action: allow
      mode: audit
      callers:
        - spiffeId: spiffe://td/ns/shop/sa/billing
      routes:
        - paths: ["/v1/charges/{id}"]
"#;

    pub(crate) fn authorization(yaml: &str) -> ServiceAuthorization {
        let (resources, diagnostics) = parse_file("test.yaml", yaml);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let policies = resources
            .into_iter()
            .filter_map(|r| match r {
                Resource::Policy(p) => Some(p),
                Resource::Mesh(..) => None,
            })
            .collect();
        ServiceAuthorization {
            mesh: Default::default(),
            policies,
        }
    }

    /// The filters in front of an app that counts the requests it gets.
    pub(crate) fn stack(
        enforcement: Arc<Enforcement>,
        metrics: Arc<Metrics>,
    ) -> (HttpService, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let app = tower::service_fn(move |_request: Request<ProxyBody>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                Ok::<_, std::convert::Infallible>(Response::new(boxed(Full::new(
                    Bytes::from_static(b"app"),
                ))))
            }
        });
        let service = tower::ServiceBuilder::new()
            .layer(crate::inbound::filters(enforcement, metrics))
            .service(app);
        (HttpService::new(service), seen)
    }

    fn request(peer: Option<&str>, method: &str, path: &str) -> Request<ProxyBody> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .body(crate::body::empty())
            .unwrap();
        let peer = match peer {
            Some(id) => PeerIdentity::Authenticated(Arc::new(SpiffeId::parse(id).unwrap())),
            None => PeerIdentity::Unauthenticated,
        };
        request.extensions_mut().insert(peer);
        request
    }

    async fn body(response: Response<ProxyBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn allows_denies_and_fails_closed_without_policy() {
        let enforcement = Enforcement::new(TrustDomain::new("td").unwrap(), "payments").unwrap();
        let metrics = Metrics::new();
        let (service, seen) = stack(enforcement.clone(), metrics.clone());
        let orders = Some("spiffe://td/ns/shop/sa/orders");

        let response = service
            .clone()
            .oneshot(request(orders, "GET", "/v1/charges/1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body(response).await.contains("not configured yet"));
        assert_eq!(seen.load(Ordering::SeqCst), 0);

        enforcement.apply(&ConfigSnapshot {
            authorization: Some(authorization(POLICY)),
            ..Default::default()
        });
        let response = service
            .clone()
            .oneshot(request(orders, "GET", "/v1/charges/1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        // Denied: 403, a body naming no rule, and the app never sees it.
        for (peer, method, path) in [
            (orders, "DELETE", "/v1/charges/1"),
            (
                Some("spiffe://td/ns/shop/sa/billing"),
                "GET",
                "/v1/charges/1",
            ),
            (orders, "GET", "/v1/charges/%2e%2e/admin"),
        ] {
            let response = service
                .clone()
                .oneshot(request(peer, method, path))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
            assert!(response
                .extensions()
                .get::<crate::body::LocalResponse>()
                .is_some());
            let text = body(response).await;
            assert!(
                !text.contains("orders-can-charge") && !text.contains("payments-callers"),
                "{text}"
            );
        }
        // No SVID (permissive mode): 401.
        let response = service
            .clone()
            .oneshot(request(None, "GET", "/v1/charges/1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        let text = metrics.encode(&palisade_spiffe::SvidStore::default());
        assert!(
            text.contains(r#"palisade_proxy_authz_decisions_total{result="allow"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"palisade_proxy_authz_decisions_total{result="deny"} 5"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_new_policy_applies_to_the_next_request_of_the_same_service() {
        let enforcement = Enforcement::new(TrustDomain::new("td").unwrap(), "payments").unwrap();
        let (service, _) = stack(enforcement.clone(), Metrics::new());
        let billing = Some("spiffe://td/ns/shop/sa/billing");
        enforcement.apply(&ConfigSnapshot {
            authorization: Some(authorization(POLICY)),
            ..Default::default()
        });
        let status = service
            .clone()
            .oneshot(request(billing, "GET", "/v1/charges/1"))
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Billing's rule leaves audit mode.
        enforcement.apply(&ConfigSnapshot {
            authorization: Some(authorization(&POLICY.replace("      mode: audit\n", ""))),
            ..Default::default()
        });
        let status = service
            .clone()
            .oneshot(request(billing, "GET", "/v1/charges/1"))
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK);
    }

    /// Collects the JSON log lines written while the guard lives (current thread only,
    /// which is where `#[tokio::test]` runs everything).
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        pub(crate) fn start() -> (Self, tracing::subscriber::DefaultGuard) {
            // Interest in a callsite is cached for every thread: one first hit by a test
            // running without a subscriber, while another test installed its own, could
            // be cached as "never" and stay silent here. A global subscriber that
            // decides per event, and takes none, keeps every callsite "sometimes".
            static UNDECIDED_GLOBAL: std::sync::Once = std::sync::Once::new();
            UNDECIDED_GLOBAL.call_once(|| {
                use tracing_subscriber::layer::SubscriberExt;
                let undecided = tracing_subscriber::registry()
                    .with(tracing_subscriber::filter::filter_fn(|_| false));
                let _ = tracing::subscriber::set_global_default(undecided);
            });
            let captured = Self::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_writer(move || writer.clone())
                .finish();
            let guard = tracing::subscriber::set_default(subscriber);
            (captured, guard)
        }

        /// The lines whose `event` field is `event`, parsed.
        pub(crate) fn events(&self, event: &str) -> Vec<serde_json::Value> {
            String::from_utf8_lossy(&self.0.lock().unwrap())
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["fields"]["event"] == event)
                .map(|v| v["fields"].clone())
                .collect()
        }

        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[tokio::test]
    async fn deny_and_audit_events_carry_stable_fields() {
        let (captured, _guard) = Captured::start();
        let enforcement = Enforcement::new(TrustDomain::new("td").unwrap(), "payments").unwrap();
        let metrics = Metrics::new();
        let (service, _) = stack(enforcement.clone(), metrics.clone());
        let audit_deny = POLICY.replace(
            "    - name: billing-later",
            "    - name: no-deletes-soon\n      action: deny\n      mode: audit\n      routes:\n        - methods: [DELETE]\n    - name: billing-later",
        ).replace("methods: [GET, POST]", "methods: [GET, POST, DELETE]");
        enforcement.apply(&ConfigSnapshot {
            authorization: Some(authorization(&audit_deny)),
            ..Default::default()
        });
        let mut denied = request(
            Some("spiffe://td/ns/shop/sa/billing"),
            "POST",
            "/v1/charges/1",
        );
        denied
            .extensions_mut()
            .insert(RequestId(http::HeaderValue::from_static("req-1")));
        assert_eq!(
            service.clone().oneshot(denied).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
        let orders = Some("spiffe://td/ns/shop/sa/orders");
        let response = service
            .clone()
            .oneshot(request(orders, "DELETE", "/v1/charges/1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        let deny = captured.events("authz_deny");
        assert_eq!(deny.len(), 1, "{}", captured.text());
        let deny = &deny[0];
        assert_eq!(deny["request_id"], "req-1");
        assert_eq!(deny["peer"], "spiffe://td/ns/shop/sa/billing");
        assert_eq!(deny["service"], "payments");
        assert_eq!(deny["method"], "POST");
        assert_eq!(deny["path"], "/v1/charges/1");
        assert_eq!(deny["decided_by"], "default");
        assert_eq!(deny["reason"], "not_allowed_by_policy");
        assert_eq!(deny["mode"], "enforce");
        // Billing would be allowed by its audit rule; the delete would be denied.
        let audit = captured.events("authz_audit");
        assert_eq!(audit.len(), 2, "{}", captured.text());
        assert_eq!(
            audit[0]["decided_by"],
            "shop/payments-callers#2(billing-later)"
        );
        assert_eq!(audit[0]["would"], "allow");
        assert_eq!(
            audit[1]["decided_by"],
            "shop/payments-callers#1(no-deletes-soon)"
        );
        assert_eq!(audit[1]["enforced"], "allow");
        assert_eq!(audit[1]["would"], "deny");
        assert_eq!(audit[1]["mode"], "audit");
        let text = metrics.encode(&palisade_spiffe::SvidStore::default());
        assert!(
            text.contains(r#"palisade_proxy_authz_decisions_total{result="audit_deny"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("abc", 8), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }
}
