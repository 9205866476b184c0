//! The one body type every layer sees, and the responses the proxy writes itself.
//!
//! Bodies are boxed streams: a layer can pass a body along untouched, so nothing is ever
//! buffered whole (a 10 MB upload moves frame by frame from socket to socket).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

/// Errors inside bodies and services that are not answered as HTTP.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error while streaming a body (a peer reset, a broken connection).
///
/// A concrete type rather than `BoxError` inside [`ProxyBody`]: trait objects in the
/// body type defeat the compiler's `Send` proofs for the layers' boxed futures.
#[derive(Debug)]
pub struct BodyError(BoxError);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// A streaming body of any origin (hyper's `Incoming`, a local response, a test).
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BodyError>;

/// Boxes any body into a [`ProxyBody`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(|error| BodyError(error.into())).boxed_unsync()
}

pub fn empty() -> ProxyBody {
    boxed(http_body_util::Empty::new())
}

/// Marks a response the proxy wrote itself (an error or a deny), so that the request-id
/// layer stamps it with `x-request-id` and metrics can tell it from the app's answers.
#[derive(Debug, Clone, Copy)]
pub struct LocalResponse;

/// A response written by the proxy: `status`, a one-line plain-text reason for a person,
/// and the [`LocalResponse`] mark. Authorization and the WAF answer through this too.
pub fn local_response(status: StatusCode, message: impl Into<String>) -> Response<ProxyBody> {
    let mut text = message.into();
    text.push('\n');
    let mut response = Response::new(boxed(Full::new(Bytes::from(text))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.extensions_mut().insert(LocalResponse);
    response
}
