//! Which service a request from the app is for.
//!
//! The destination is named by the request's authority: the absolute-form URI
//! (`GET http://payments/charges`), HTTP/2's `:authority`, or else the `Host` header.
//! The port is ignored (the mesh knows where each service listens). The control plane
//! names each service `service.namespace`, and also `service` for the proxies of its own
//! namespace. The host is matched case-insensitively, first whole, then by its first two
//! DNS labels, then by its first label, so `payments`, `payments.shop`, `payments.shop.svc`
//! and `payments.shop.svc.cluster.local` all reach `payments` of namespace `shop` — the
//! names an app written for Kubernetes already uses — and a bare name never leaves the
//! caller's namespace. IP literals never match a service.

use std::sync::Arc;

use http::{header, Request};

use crate::state::{MeshState, Service};

/// The authority the app addressed (`host[:port]`), if any.
pub fn authority<B>(request: &Request<B>) -> Option<&str> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.as_str());
    }
    request.headers().get(header::HOST)?.to_str().ok()
}

/// The host part of an authority, without port or IPv6 brackets.
pub fn host_of(authority: &str) -> &str {
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    authority
        .split_once(':')
        .map_or(authority, |(host, _)| host)
}

/// Resolves `host` to a service, as described in the module documentation.
pub fn resolve(state: &MeshState, host: &str) -> Option<Arc<Service>> {
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let host = host.trim_end_matches('.');
    // Apps send lowercase names almost always: allocate only when they do not.
    let host: std::borrow::Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase().into()
    } else {
        host.into()
    };
    if let Some(service) = state.service(&host) {
        return Some(service);
    }
    let mut dots = host.match_indices('.').map(|(i, _)| i);
    let first_end = dots.next()?;
    if let Some(second_end) = dots.next() {
        if let Some(service) = state.service(&host[..second_end]) {
            return Some(service);
        }
    }
    state.service(&host[..first_end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_api::wire::{ConfigSnapshot, Endpoint};

    #[test]
    fn resolves_names_by_whole_host_then_two_labels_then_one() {
        let state = MeshState::new();
        let mut snapshot = ConfigSnapshot::default();
        // What a proxy of namespace `shop` receives: its namespace's services bare and
        // qualified, other namespaces' qualified only.
        for name in ["payments", "payments.shop", "ledger.bank", "web.v2"] {
            snapshot.endpoints.insert(
                name.into(),
                vec![Endpoint {
                    addr: "127.0.0.1:1".into(),
                    spiffe_id: "spiffe://td/ns/shop/sa/x".into(),
                }],
            );
        }
        state.apply(&snapshot);
        for (host, service) in [
            ("payments", "payments"),
            ("PAYMENTS", "payments"),
            ("payments.other-label", "payments"),
            ("payments.shop", "payments.shop"),
            ("payments.shop.svc.cluster.local.", "payments.shop"),
        ] {
            assert_eq!(
                resolve(&state, host).map(|s| s.name.clone()).as_deref(),
                Some(service),
                "{host}"
            );
        }
        assert_eq!(resolve(&state, "web.v2").unwrap().name, "web.v2");
        for host in ["ledger.bank", "ledger.bank.svc.cluster.local"] {
            assert_eq!(resolve(&state, host).unwrap().name, "ledger.bank", "{host}");
        }
        for host in ["", "orders", "ledger", "127.0.0.1", "::1", "shop.payments"] {
            assert!(resolve(&state, host).is_none(), "{host}");
        }
        assert_eq!(host_of("payments:8080"), "payments");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("user@payments"), "payments");
    }
}
