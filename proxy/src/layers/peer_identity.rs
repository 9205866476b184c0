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
        let verified = request
            .extensions()
            .get::<PeerIdentity>()
            .and_then(PeerIdentity::spiffe_id)
            .and_then(|id| HeaderValue::from_str(id.as_str()).ok());
        // `insert` drops every value the client sent, as `remove` does.
        match verified {
            Some(value) => request.headers_mut().insert(PEER_ID, value),
            None => request.headers_mut().remove(PEER_ID),
        };
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{service_fn, ServiceExt};

    /// The `x-palisade-peer-id` values the next service sees.
    async fn forwarded(peer: PeerIdentity, sent: &[&'static str]) -> Vec<HeaderValue> {
        let mut request = Request::new(crate::body::empty());
        for value in sent {
            request
                .headers_mut()
                .append(PEER_ID, HeaderValue::from_static(value));
        }
        request.extensions_mut().insert(peer);
        // The app's answer echoes the request's headers.
        let inner = service_fn(|request: Request<ProxyBody>| async move {
            let mut response = Response::new(crate::body::empty());
            *response.headers_mut() = request.headers().clone();
            Ok::<_, Infallible>(response)
        });
        let response = PeerIdentityHeader { inner }
            .oneshot(request)
            .await
            .expect("the echo service never fails");
        response
            .headers()
            .get_all(PEER_ID)
            .iter()
            .cloned()
            .collect()
    }

    /// Every value a client sent is replaced by the verified identity, or dropped when
    /// there is none.
    #[tokio::test]
    async fn client_sent_peer_ids_never_pass() {
        let id = SpiffeId::parse("spiffe://td/ns/a/sa/b").expect("a valid SPIFFE ID");
        let authenticated = PeerIdentity::Authenticated(Arc::new(id));
        for sent in [&[][..], &["spiffe://td/ns/x/sa/y"], &["a", "b", "c"]] {
            assert_eq!(
                forwarded(authenticated.clone(), sent).await,
                [HeaderValue::from_static("spiffe://td/ns/a/sa/b")],
                "{sent:?}"
            );
            assert!(forwarded(PeerIdentity::Unauthenticated, sent)
                .await
                .is_empty());
        }
    }
}
