//! Gives every request an `x-request-id`, and stamps it on the responses the proxy writes
//! itself, so that a person who got a 403 or a 503 can hand the id to an operator who
//! finds the matching log line. A sane id from the client is kept (so one id follows a
//! call across services); anything else is replaced, since it ends up in logs.

use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use super::ResponseFuture;
use crate::body::{LocalResponse, ProxyBody};
use crate::headers::{is_sane_request_id, new_request_id, REQUEST_ID};

/// The request's id, as a request extension for later layers and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub HeaderValue);

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S> Service<Request<ProxyBody>> for RequestIdService<S>
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
        let mut id = match request.headers().get(REQUEST_ID) {
            Some(value) if is_sane_request_id(value) => value.clone(),
            _ => new_request_id(),
        };
        // Each request has its own id, so HPACK gains nothing from indexing it, and
        // indexed ids fill the HTTP/2 dynamic table: every later request walks them all
        // looking for a match (~4,000 instructions per request on the outbound side).
        // A sensitive value is sent as a never-indexed literal: same name and value.
        id.set_sensitive(true);
        request.headers_mut().insert(REQUEST_ID, id.clone());
        request.extensions_mut().insert(RequestId(id.clone()));
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            if response.extensions().get::<LocalResponse>().is_some() {
                response.headers_mut().insert(REQUEST_ID, id);
            }
            Ok(response)
        })
    }
}
