//! Passes the caller's verified identity to the app in `x-palisade-peer-id`.
//!
//! The identity comes only from the [`PeerIdentity`] extension that the inbound listener
//! attaches from the TLS handshake. Any `x-palisade-peer-id` the client sent is removed
//! first, on every request, so an app can trust the header exactly as far as it trusts
//! its own sidecar. A plaintext caller (permissive mode) gets no header at all.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use palisade_spiffe::SpiffeId;
use tower::{Layer, Service};

use crate::body::ProxyBody;
use crate::headers::PEER_ID;

/// Who is calling, as proven by the connection: a request extension on every inbound
/// request, read by authorization, the WAF, logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// mTLS with a verified SVID. Shared, because every request of the connection
    /// carries a copy.
    Authenticated(Arc<SpiffeId>),
    /// Plaintext, accepted only in permissive mode.
    Unauthenticated,
}

impl PeerIdentity {
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        match self {
            Self::Authenticated(id) => Some(id),
            Self::Unauthenticated => None,
        }
    }

    /// A bounded label for metrics and logs.
    pub fn label(&self) -> &str {
        match self {
            Self::Authenticated(id) => id.as_str(),
            Self::Unauthenticated => "unauthenticated",
        }
    }
}

/// The caller's TCP address, a request extension on every inbound request (policies may
/// match caller CIDRs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);

#[derive(Debug, Clone, Copy, Default)]
pub struct PeerIdentityLayer;

impl<S> Layer<S> for PeerIdentityLayer {
    type Service = PeerIdentityHeader<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PeerIdentityHeader { inner }
    }
}

#[derive(Debug, Clone)]
pub struct PeerIdentityHeader<S> {
    inner: S,
}

impl<S> Service<Request<ProxyBody>> for PeerIdentityHeader<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ProxyBody>) -> Self::Future {
        request.headers_mut().remove(PEER_ID);
        let verified = request
            .extensions()
            .get::<PeerIdentity>()
            .and_then(PeerIdentity::spiffe_id)
            .and_then(|id| HeaderValue::from_str(id.as_str()).ok());
        if let Some(value) = verified {
            request.headers_mut().insert(PEER_ID, value);
        }
        self.inner.call(request)
    }
}
