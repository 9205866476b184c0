//! The outbound side: the local app calls other services through this listener in plain
//! HTTP/1.1 or h2c (prior knowledge); the proxy finds the service, picks an endpoint and
//! carries the request over mTLS + HTTP/2 to that endpoint's proxy. HTTP/1.1 upgrades
//! (WebSocket) are the exception: see [`crate::upgrade`].

mod balance;
mod client;
pub mod route;

pub use balance::pick;
pub use client::{ConnectError, MeshClient};

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Scheme;
use http::{header, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::body::{self, local_response, ProxyBody};
use crate::config::{ProxyConfig, Timeouts};
use crate::drain::Watch;
use crate::headers::strip_hop_by_hop;
use crate::layers::{
    Destination, HttpService, RequestIdLayer, RequestMetricsLayer, ResponseFuture, Upstream,
};
use crate::metrics::{Direction, Metrics};
use crate::run::ProxyIdentity;
use crate::server::{http_builder, serve_connection};
use crate::state::MeshState;
use crate::upgrade;

/// Endpoints tried per request before giving up. Only requests that were never sent are
/// retried (connect, TLS or identity failures, or a pooled connection that had closed),
/// so a retry can never run a request twice.
const MAX_ATTEMPTS: usize = 3;

/// The outbound request stack, outermost first:
///
/// 1. [`RequestIdLayer`]: every answer, even a local 503, carries an `x-request-id`,
///    and the same id travels to the destination.
/// 2. [`RequestMetricsLayer`]: counts answers by destination identity.
/// 3. [`Forwarder`]: resolve, balance, mTLS to the destination's proxy.
pub fn stack(forwarder: Forwarder, metrics: Arc<Metrics>) -> HttpService {
    HttpService::new(
        ServiceBuilder::new()
            .layer(RequestIdLayer)
            .layer(RequestMetricsLayer::new(Direction::Outbound, metrics))
            .service(forwarder),
    )
}

/// Resolves the destination service, picks an endpoint and forwards over the mesh.
#[derive(Clone)]
pub struct Forwarder {
    state: Arc<MeshState>,
    client: Arc<MeshClient>,
    ejection: Duration,
}

impl Forwarder {
    pub fn new(state: Arc<MeshState>, client: Arc<MeshClient>, timeouts: &Timeouts) -> Self {
        Self {
            state,
            client,
            ejection: timeouts.endpoint_ejection,
        }
    }
}

impl Service<Request<ProxyBody>> for Forwarder {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ProxyBody>) -> Self::Future {
        let Some(authority) = route::authority(&request).map(str::to_owned) else {
            return ready(local_response(
                StatusCode::BAD_REQUEST,
                "the request names no destination: send a Host header or an absolute URI naming a mesh service",
            ));
        };
        let host = route::host_of(&authority);
        let Some(service) = route::resolve(&self.state, host) else {
            return ready(local_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "no mesh service is named `{host}`; check the name, and that the service's proxy registered with the control plane"
                ),
            ));
        };
        let destination = Destination(service.clone());
        let response = self.forward(request, &authority, service);
        // Every answer carries the resolved service, proxy errors included, so that the
        // request metrics can label it with a registered name.
        Box::pin(async move {
            let mut response = response.await?;
            response.extensions_mut().insert(destination);
            Ok(response)
        })
    }
}

impl Forwarder {
    fn forward(
        &mut self,
        request: Request<ProxyBody>,
        authority: &str,
        service: Arc<crate::state::Service>,
    ) -> ResponseFuture {
        if let Some(protocol) = upgrade::requested(&request) {
            return Box::pin(forward_upgrade(
                self.client.clone(),
                service,
                request,
                protocol,
                self.ejection,
            ));
        }
        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        // HTTP/2 carries the host in `:authority`.
        parts.headers.remove(header::HOST);
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = authority.parse().ok();
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = match Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(error) => {
                return ready(local_response(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the request's destination `{authority}` is not a valid authority: {error}"
                    ),
                ))
            }
        };
        parts.version = Version::HTTP_2;
        let mut request = Request::from_parts(parts, body);
        let client = self.client.clone();
        let ejection = self.ejection;
        Box::pin(async move {
            let mut tried = Vec::with_capacity(MAX_ATTEMPTS);
            let mut last_error = String::from("the service has no endpoint");
            for _ in 0..MAX_ATTEMPTS {
                let Some(endpoint) = pick(&service.endpoints, &tried) else {
                    break;
                };
                tried.push(balance::key(&endpoint));
                let mut sender = match client.connection(&endpoint).await {
                    Ok(sender) => sender,
                    Err(error) => {
                        tracing::warn!(service = %service.name, addr = %endpoint.addr, %error, "endpoint ejected after a connection failure");
                        endpoint.eject(ejection);
                        last_error = error.to_string();
                        continue;
                    }
                };
                let outstanding = endpoint.start_request();
                match sender.try_send_request(request).await {
                    Ok(response) => {
                        let (mut parts, incoming) = response.into_parts();
                        strip_hop_by_hop(&mut parts.headers);
                        parts
                            .extensions
                            .insert(Upstream(endpoint.spiffe_id.clone()));
                        // The endpoint counts as loaded until the response body is done.
                        let body = incoming.map_frame(move |frame| {
                            let _ = &outstanding;
                            frame
                        });
                        return Ok(Response::from_parts(parts, body::boxed(body)));
                    }
                    Err(mut error) => match error.take_message() {
                        Some(unsent) => {
                            // A pooled connection that closed (a GOAWAY in flight) says
                            // nothing about the endpoint: it stays eligible, and the next
                            // attempt opens a fresh connection.
                            client.forget(&endpoint);
                            tried.pop();
                            last_error = error.into_error().to_string();
                            request = unsent;
                        }
                        None => {
                            tracing::warn!(service = %service.name, addr = %endpoint.addr, error = %error.error(), "the destination proxy failed the request");
                            return Ok(local_response(
                                StatusCode::BAD_GATEWAY,
                                format!(
                                    "the destination proxy of `{}` failed the request: {}",
                                    service.name,
                                    error.error()
                                ),
                            ));
                        }
                    },
                }
            }
            Ok(local_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "no endpoint of service `{}` could be reached; last error: {last_error}",
                    service.name
                ),
            ))
        })
    }
}

/// An HTTP/1.1 upgrade request: its own mTLS connection speaking HTTP/1.1, and after the
/// destination's `101` a byte stream both ways (see [`crate::upgrade`]).
async fn forward_upgrade(
    client: Arc<MeshClient>,
    service: Arc<crate::state::Service>,
    mut request: Request<ProxyBody>,
    protocol: http::HeaderValue,
    ejection: Duration,
) -> Result<Response<ProxyBody>, Infallible> {
    let mut downstream = Some(hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    upgrade::restore(&mut parts.headers, protocol);
    if !parts.headers.contains_key(header::HOST) {
        if let Some(host) = parts
            .uri
            .authority()
            .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, host);
        }
    }
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    let mut request = Some(Request::from_parts(parts, body));
    let mut tried = Vec::with_capacity(MAX_ATTEMPTS);
    let mut last_error = String::from("the service has no endpoint");
    while tried.len() < MAX_ATTEMPTS {
        let Some(endpoint) = pick(&service.endpoints, &tried) else {
            break;
        };
        tried.push(balance::key(&endpoint));
        let mut sender = match client.upgrade_connection(&endpoint).await {
            Ok(sender) => sender,
            Err(error) => {
                tracing::warn!(service = %service.name, addr = %endpoint.addr, %error, "endpoint ejected after a connection failure");
                endpoint.eject(ejection);
                last_error = error.to_string();
                continue;
            }
        };
        let (Some(request), Some(downstream)) = (request.take(), downstream.take()) else {
            break;
        };
        let _outstanding = endpoint.start_request();
        return Ok(match sender.send_request(request).await {
            Ok(mut response) => {
                let switched = if upgrade::accepted(&response) {
                    let protocol = response.headers().get(header::UPGRADE).cloned();
                    upgrade::bridge(downstream, hyper::upgrade::on(&mut response));
                    protocol
                } else {
                    None
                };
                let (mut parts, incoming) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                if let Some(protocol) = switched {
                    upgrade::restore(&mut parts.headers, protocol);
                }
                parts
                    .extensions
                    .insert(Upstream(endpoint.spiffe_id.clone()));
                Response::from_parts(parts, body::boxed(incoming))
            }
            Err(error) => local_response(
                StatusCode::BAD_GATEWAY,
                format!(
                    "the destination proxy of `{}` failed the upgrade request: {error}",
                    service.name
                ),
            ),
        });
    }
    Ok(local_response(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "no endpoint of service `{}` could be reached; last error: {last_error}",
            service.name
        ),
    ))
}

fn ready(response: Response<ProxyBody>) -> ResponseFuture {
    Box::pin(std::future::ready(Ok(response)))
}

/// Everything an outbound listener needs; cheap to share between connections.
pub struct Outbound {
    http: auto::Builder<TokioExecutor>,
    stack: HttpService,
    metrics: Arc<Metrics>,
    idle_timeout: Duration,
}

impl Outbound {
    /// The outbound side with the default stack ([`stack`]).
    pub fn new(
        config: &ProxyConfig,
        identity: &ProxyIdentity,
        state: Arc<MeshState>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let client = Arc::new(MeshClient::new(identity, config.timeouts, metrics.clone()));
        let forwarder = Forwarder::new(state, client, &config.timeouts);
        Arc::new(Self {
            http: http_builder(&config.limits, &config.timeouts),
            stack: stack(forwarder, metrics.clone()),
            metrics,
            idle_timeout: config.timeouts.idle,
        })
    }
}

/// Accepts the app's connections until shutdown is signaled.
pub async fn serve(listener: TcpListener, outbound: Arc<Outbound>, watch: Watch) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = watch.signaled() => break,
        };
        match accepted {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                let outbound = outbound.clone();
                let watch = watch.clone();
                tokio::spawn(async move {
                    let _open = outbound.metrics.open_connection(Direction::Outbound);
                    let stack = outbound.stack.clone();
                    let service = move |request: Request<Incoming>| {
                        stack.clone().oneshot(request.map(body::boxed))
                    };
                    serve_connection(&outbound.http, tcp, service, watch, outbound.idle_timeout)
                        .await;
                });
            }
            Err(error) => {
                tracing::warn!(%error, "outbound accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::info!("outbound listener stopped accepting");
}
