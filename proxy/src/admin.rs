//! The admin listener: `/live`, `/ready` and `/metrics`, plain HTTP, meant for the
//! kubelet and Prometheus on a port that is not exposed to the mesh.
//!
//! Readiness is strict: the proxy is ready only with an installed, unexpired SVID, a
//! configuration from the control plane and an authorization policy. Without them every mesh call would fail, so
//! traffic should not be routed to the pod yet.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use palisade_spiffe::SvidStore;
use tokio::net::TcpListener;

use crate::body::{self, local_response, ProxyBody};
use crate::config::{Limits, Timeouts};
use crate::drain::Watch;
use crate::enforcement::Enforcement;
use crate::metrics::Metrics;
use crate::server::{http_builder, serve_connection};
use crate::state::MeshState;

/// What the admin endpoints report on.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub svids: Arc<SvidStore>,
    pub state: Arc<MeshState>,
    pub enforcement: Arc<Enforcement>,
}

impl Admin {
    /// `Ok` when ready, or the reason it is not, for a person reading the probe output.
    pub fn readiness(&self) -> Result<(), String> {
        let Some(info) = self.svids.info() else {
            return Err("no SVID is installed yet".into());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if info.not_after_unix <= now {
            return Err(format!("the SVID {} has expired", info.id));
        }
        if !self.state.is_configured() {
            return Err("no configuration has arrived from the control plane yet".into());
        }
        if !self.enforcement.is_configured() {
            return Err(
                "no authorization policy has arrived from the control plane yet (inbound requests are refused)".into(),
            );
        }
        Ok(())
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<ProxyBody> {
        if request.method() != Method::GET {
            return local_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "the admin endpoints answer GET only",
            );
        }
        match request.uri().path() {
            "/live" => local_response(StatusCode::OK, "live"),
            "/ready" => match self.readiness() {
                Ok(()) => local_response(StatusCode::OK, "ready"),
                Err(reason) => local_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}"),
                ),
            },
            "/metrics" => {
                let mut response = Response::new(body::boxed(Full::new(Bytes::from(
                    self.metrics.encode(&self.svids),
                ))));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            _ => local_response(
                StatusCode::NOT_FOUND,
                "unknown admin endpoint; try /live, /ready or /metrics",
            ),
        }
    }
}

/// Serves the admin endpoints until shutdown is signaled.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, watch: Watch) {
    let http: Arc<auto::Builder<TokioExecutor>> =
        Arc::new(http_builder(&Limits::default(), &Timeouts::default()));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = watch.signaled() => break,
        };
        match accepted {
            Ok((tcp, _)) => {
                let admin = admin.clone();
                let http = http.clone();
                let watch = watch.clone();
                tokio::spawn(async move {
                    let service = move |request: Request<Incoming>| {
                        let response = admin.answer(&request);
                        std::future::ready(Ok::<_, Infallible>(response))
                    };
                    serve_connection(&http, tcp, service, watch, Duration::from_secs(60)).await;
                });
            }
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
