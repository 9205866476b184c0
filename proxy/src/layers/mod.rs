//! The per-request middleware, one tower layer per concern. Each side's stack is
//! assembled in one place: `inbound::stack` and `outbound::stack`.
//!
//! Every service in a stack has the same shape, [`HttpService`]: a request with a
//! streaming [`ProxyBody`] in, a response out, and never an error, because every failure
//! is answered as HTTP by the layer that knows what went wrong (with
//! [`crate::body::local_response`]).

mod authorization;
mod metrics;
mod peer_identity;
mod request_id;
mod waf;

pub use authorization::{truncate, Authorization, AuthorizationLayer, AUDIT_PATH_MAX};
pub use metrics::{Destination, RequestMetrics, RequestMetricsLayer, Upstream};
pub use peer_identity::{ClientAddr, PeerIdentity, PeerIdentityHeader, PeerIdentityLayer};
pub use request_id::{RequestId, RequestIdLayer, RequestIdService};
pub use waf::{Waf, WafLayer};

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use http::{Request, Response};

use crate::body::ProxyBody;

/// A whole stack, type-erased so that listeners and tests can hold it by name.
pub type HttpService =
    tower::util::BoxCloneSyncService<Request<ProxyBody>, Response<ProxyBody>, Infallible>;

/// The future every layer returns.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static>>;
