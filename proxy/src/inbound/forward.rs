//! The last step of the inbound stack: the request goes to the local application over
//! plain HTTP on loopback, through a connection pool.
//!
//! Proxy-to-proxy traffic is always HTTP/2, so the protocol towards the app cannot be
//! copied from the wire. It is chosen per request: gRPC (`content-type: application/grpc…`)
//! needs HTTP/2 and its trailers, so it goes over h2c (prior knowledge); everything else
//! goes over HTTP/1.1, which every app speaks. HTTP/1.1 upgrades go over HTTP/1.1 and
//! become a byte stream after the app's `101` (see [`crate::upgrade`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::{Authority, Scheme};
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::Service;

use crate::body::{self, local_response, ProxyBody};
use crate::config::Timeouts;
use crate::headers::strip_hop_by_hop;
use crate::layers::ResponseFuture;
use crate::upgrade;

/// Forwards requests to the local app.
#[derive(Debug, Clone)]
pub struct AppForwarder {
    /// Shared: the stack is cloned for every request (and the WAF clones its inner
    /// service once more), and a client's clone is several reference counts.
    apps: Arc<Apps>,
}

#[derive(Debug)]
struct Apps {
    app: SocketAddr,
    authority: Authority,
    http1: Client<HttpConnector, ProxyBody>,
    h2c: Client<HttpConnector, ProxyBody>,
}

impl AppForwarder {
    pub fn new(app: SocketAddr, timeouts: &Timeouts) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeouts.connect));
        connector.set_nodelay(true);
        let http1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(timeouts.idle)
            .build(connector.clone());
        let h2c = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(timeouts.idle)
            .http2_only(true)
            .timer(TokioTimer::new())
            .build(connector);
        let authority = Authority::try_from(app.to_string())
            .unwrap_or_else(|_| Authority::from_static("127.0.0.1"));
        Self {
            apps: Arc::new(Apps {
                app,
                authority,
                http1,
                h2c,
            }),
        }
    }
}

fn is_grpc(request: &Request<ProxyBody>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl Service<Request<ProxyBody>> for AppForwarder {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<ProxyBody>) -> Self::Future {
        let protocol = upgrade::requested(&request);
        let downstream = protocol.as_ref().map(|_| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = protocol {
            upgrade::restore(&mut parts.headers, protocol);
        }
        // The app sees the host the caller asked for, not the app's loopback address.
        if !parts.headers.contains_key(header::HOST) {
            if let Some(host) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(header::HOST, host);
            }
        }
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(self.apps.authority.clone());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = match Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(error) => {
                return Box::pin(async move {
                    Ok(local_response(
                        StatusCode::BAD_REQUEST,
                        format!("the request target is not usable: {error}"),
                    ))
                })
            }
        };
        let mut request = Request::from_parts(parts, body);
        // `Client::request` takes its own clone of the client into the future.
        let response = if is_grpc(&request) && downstream.is_none() {
            *request.version_mut() = Version::HTTP_2;
            self.apps.h2c.request(request)
        } else {
            *request.version_mut() = Version::HTTP_11;
            self.apps.http1.request(request)
        };
        let app = self.apps.app;
        Box::pin(async move {
            match response.await {
                Ok(mut response) => {
                    let switched = match downstream {
                        Some(downstream) if upgrade::accepted(&response) => {
                            let protocol = response.headers().get(header::UPGRADE).cloned();
                            upgrade::bridge(downstream, hyper::upgrade::on(&mut response));
                            protocol
                        }
                        _ => None,
                    };
                    let (mut parts, incoming) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    if let Some(protocol) = switched {
                        upgrade::restore(&mut parts.headers, protocol);
                    }
                    Ok(Response::from_parts(parts, body::boxed(incoming)))
                }
                Err(error) if error.is_connect() => {
                    tracing::warn!(%app, %error, "the local application is unreachable");
                    Ok(local_response(
                        StatusCode::BAD_GATEWAY,
                        format!("the proxy could not connect to its local application at {app}; is it running?"),
                    ))
                }
                Err(error) => {
                    tracing::warn!(%app, %error, "the local application failed the request");
                    Ok(local_response(
                        StatusCode::BAD_GATEWAY,
                        "the local application closed the connection or sent an invalid response",
                    ))
                }
            }
        })
    }
}
