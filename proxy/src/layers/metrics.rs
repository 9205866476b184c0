//! Counts every answered request by direction, status class and peer identity, and times
//! it by the same and the destination service, after the response head is known, so that
//! denies and proxy errors are counted like app answers. It also writes the access log:
//! one `access` event per answered request (the path without the query string, which may
//! carry secrets).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower::{Layer, Service};

use super::{PeerIdentity, ResponseFuture};
use crate::body::ProxyBody;
use crate::metrics::{Direction, Metrics, UNKNOWN_SERVICE};
use crate::telemetry::RequestSpan;

/// The destination proxy's identity, a response extension set by the outbound forwarder
/// once an endpoint answered.
#[derive(Debug, Clone)]
pub struct Upstream(pub palisade_spiffe::SpiffeId);

/// The registered service an outbound request resolved to, a response extension set by
/// the outbound forwarder on every answer once the destination resolved (errors too).
#[derive(Debug, Clone)]
pub struct Destination(pub Arc<crate::state::Service>);

/// The `tracing` target of access lines, so that they can be filtered on their own
/// (`RUST_LOG=info,palisade::access=off` silences them).
pub const ACCESS_TARGET: &str = "palisade::access";

/// What an access line says about the request, taken before the request moves on:
/// clones that share the request's bytes instead of copying them.
struct AccessFacts {
    method: http::Method,
    uri: http::Uri,
    request_id: Option<http::HeaderValue>,
}

#[derive(Debug, Clone)]
pub struct RequestMetricsLayer {
    direction: Direction,
    metrics: Arc<Metrics>,
}

impl RequestMetricsLayer {
    pub fn new(direction: Direction, metrics: Arc<Metrics>) -> Self {
        Self { direction, metrics }
    }
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            direction: self.direction,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    direction: Direction,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request<ProxyBody>> for RequestMetrics<S>
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

    fn call(&mut self, mut request: Request<ProxyBody>) -> Self::Future {
        let started = Instant::now();
        let caller = request.extensions().get::<PeerIdentity>().cloned();
        // Tracing off costs this one check.
        let span = self.metrics.tracing().map(|tracing| {
            let method = request.method().clone();
            tracing.start(self.direction, &method, request.headers_mut(), started)
        });
        // Only the inbound stack has layers that record facts (authorization, WAF); an
        // outbound request does not pay the extension.
        if self.direction == Direction::Inbound {
            if let Some(facts) = span.as_ref().and_then(RequestSpan::facts) {
                request.extensions_mut().insert(facts);
            }
        }
        // The access line's request facts are copied only when the line will be written.
        let access =
            tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO).then(|| AccessFacts {
                method: request.method().clone(),
                uri: request.uri().clone(),
                request_id: request.headers().get(crate::headers::REQUEST_ID).cloned(),
            });
        let direction = self.direction;
        let metrics = self.metrics.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let peer = match direction {
                Direction::Inbound => caller
                    .as_ref()
                    .map_or("unauthenticated", PeerIdentity::label),
                Direction::Outbound => response
                    .extensions()
                    .get::<Upstream>()
                    .map_or("none", |upstream| upstream.0.as_str()),
            };
            let service = match direction {
                Direction::Inbound => metrics.local_service(),
                Direction::Outbound => response
                    .extensions()
                    .get::<Destination>()
                    .map_or(UNKNOWN_SERVICE, |destination| destination.0.name.as_str()),
            };
            let elapsed = started.elapsed();
            metrics.request(direction, response.status(), peer, service, elapsed);
            if let Some(span) = span {
                span.finish(peer, service, response.status(), elapsed);
            }
            if let Some(facts) = access {
                tracing::info!(
                    target: ACCESS_TARGET,
                    event = "access",
                    request_id = facts
                        .request_id
                        .as_ref()
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                    direction = direction.as_str(),
                    method = facts.method.as_str(),
                    path = facts.uri.path(),
                    status = response.status().as_u16(),
                    peer,
                    service,
                    duration_ms = elapsed.as_secs_f64() * 1000.0,
                    "request answered"
                );
            }
            Ok(response)
        })
    }
}
