//! The control plane's observability listener: `/metrics`, `/live` and `/ready` over
//! plain HTTP. It is separate from the mTLS API port because Prometheus and the kubelet
//! hold no SVID; it is off unless `--metrics ADDR` asks for it, and should be bound to a
//! loopback or pod-internal address (it reveals counts, versions and expiry dates, never
//! identities' secrets).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the listener reports on.
pub trait Observed: Send + Sync + 'static {
    /// The Prometheus text exposition of every metric.
    fn metrics_text(&self) -> String;
    /// `Ok` when the control plane can serve, or why not (for a person reading probes).
    fn readiness(&self) -> Result<(), String>;
}

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapers and probes are few; more connections than this wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;

fn text(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// One answer; every endpoint is a GET without a body.
pub fn answer<O: Observed + ?Sized>(
    observed: &O,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if method != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the metrics endpoints answer GET only\n",
            PLAIN,
        );
    }
    match path {
        "/live" => text(StatusCode::OK, "live\n", PLAIN),
        "/ready" => match observed.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n", PLAIN),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
                PLAIN,
            ),
        },
        "/metrics" => text(
            StatusCode::OK,
            observed.metrics_text(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "unknown endpoint; try /metrics, /live or /ready\n",
            PLAIN,
        ),
    }
}

/// Serves until `shutdown` turns true.
pub async fn serve<O: Observed>(
    listener: TcpListener,
    observed: Arc<O>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => match accepted {
                Ok((tcp, _)) => {
                    let observed = Arc::clone(&observed);
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                            let response = answer(&*observed, request.method(), request.uri().path());
                            std::future::ready(Ok::<_, Infallible>(response))
                        });
                        let mut builder = hyper::server::conn::http1::Builder::new();
                        builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
                        if let Err(error) = builder.serve_connection(TokioIo::new(tcp), service).await {
                            tracing::debug!(event = "metrics_connection_closed", %error, "metrics connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(event = "accept_failed", %error, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    connections.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Result<(), String>);

    impl Observed for Fixed {
        fn metrics_text(&self) -> String {
            "x_total 1\n".into()
        }
        fn readiness(&self) -> Result<(), String> {
            self.0.clone()
        }
    }

    #[test]
    fn answers_each_endpoint() {
        let ready = Fixed(Ok(()));
        let not_ready = Fixed(Err("no certificate".into()));
        assert_eq!(
            answer(&ready, &Method::GET, "/live").status(),
            StatusCode::OK
        );
        assert_eq!(
            answer(&ready, &Method::GET, "/ready").status(),
            StatusCode::OK
        );
        assert_eq!(
            answer(&not_ready, &Method::GET, "/ready").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            answer(&ready, &Method::GET, "/metrics").status(),
            StatusCode::OK
        );
        assert_eq!(
            answer(&ready, &Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            answer(&ready, &Method::GET, "/other").status(),
            StatusCode::NOT_FOUND
        );
    }
}
