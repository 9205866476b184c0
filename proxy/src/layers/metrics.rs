//! Counts every answered request by direction, status class and peer identity, after the
//! response is known, so that denies and proxy errors are counted like app answers.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::{PeerIdentity, ResponseFuture};
use crate::body::ProxyBody;
use crate::metrics::{Direction, Metrics};

/// The destination proxy's identity, a response extension set by the outbound forwarder
/// once an endpoint answered.
#[derive(Debug, Clone)]
pub struct Upstream(pub palisade_spiffe::SpiffeId);

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

    fn call(&mut self, request: Request<ProxyBody>) -> Self::Future {
        let caller = request.extensions().get::<PeerIdentity>().cloned();
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
            metrics.request(direction, response.status(), peer);
            Ok(response)
        })
    }
}
