//! HTTP/1.1 upgrades (WebSocket and friends) through the proxy.
//!
//! `Upgrade` and `Connection` are hop-by-hop, so they are removed like the others and
//! then put back on purpose for a request that asks for an upgrade and for the `101`
//! answer. After the `101`, the proxy stops speaking HTTP and copies bytes both ways.
//! Between proxies an upgraded request travels on its own mTLS connection with HTTP/1.1
//! (ALPN `http/1.1`), because an HTTP/1.1 upgrade has no HTTP/2 equivalent that every
//! app supports; the peer identity check is the same as for HTTP/2.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The `Upgrade` value of an HTTP/1.1 request that asks for an upgrade, if it does.
pub fn requested<B>(request: &Request<B>) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let asks = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| request.headers().get(header::UPGRADE).cloned())
        .flatten()
}

/// Puts back the two upgrade fields that hop-by-hop stripping removed.
pub fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Whether `response` accepted the upgrade.
pub fn accepted<B>(response: &Response<B>) -> bool {
    response.status() == StatusCode::SWITCHING_PROTOCOLS
}

/// Copies bytes both ways between the two upgraded connections until either side closes.
pub fn bridge(downstream: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        match tokio::try_join!(downstream, upstream) {
            Ok((downstream, upstream)) => {
                let mut downstream = TokioIo::new(downstream);
                let mut upstream = TokioIo::new(upstream);
                if let Err(error) =
                    tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await
                {
                    tracing::debug!(%error, "upgraded connection ended with an error");
                }
            }
            Err(error) => tracing::debug!(%error, "upgrade did not complete"),
        }
    });
}
