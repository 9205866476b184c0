//! Endpoint choice: power of two choices over least outstanding requests.
//!
//! Two random candidates are compared and the less loaded one wins. This needs no shared
//! lock, adapts to slow endpoints within a few requests, and avoids the herd behaviour of
//! always picking the global minimum (Mitzenmacher; what Linkerd and Envoy ship).
//! Ejected endpoints are skipped; if every remaining endpoint is ejected they are used
//! anyway ("panic mode"), since trying a possibly-recovered endpoint beats failing fast.

use std::sync::Arc;

use rand::Rng;

use crate::state::Endpoint;

/// Identifies an endpoint of one snapshot, for the list of endpoints already tried.
pub fn key(endpoint: &Arc<Endpoint>) -> usize {
    Arc::as_ptr(endpoint) as usize
}

/// Picks an endpoint that is not in `tried`, or `None` when all were tried.
pub fn pick(endpoints: &[Arc<Endpoint>], tried: &[usize]) -> Option<Arc<Endpoint>> {
    let untried = |e: &&Arc<Endpoint>| !tried.contains(&key(e));
    let mut candidates: Vec<&Arc<Endpoint>> = endpoints
        .iter()
        .filter(untried)
        .filter(|e| !e.is_ejected())
        .collect();
    if candidates.is_empty() {
        candidates = endpoints.iter().filter(untried).collect();
    }
    let chosen = match candidates.len() {
        0 => return None,
        1 => candidates[0],
        n => {
            let mut rng = rand::rng();
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            if candidates[b].outstanding() < candidates[a].outstanding() {
                candidates[b]
            } else {
                candidates[a]
            }
        }
    };
    Some(chosen.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn endpoint(port: u16) -> Arc<Endpoint> {
        Arc::new(Endpoint::new(
            format!("127.0.0.1:{port}"),
            palisade_spiffe::SpiffeId::parse("spiffe://td/ns/a/sa/b").unwrap(),
        ))
    }

    #[test]
    fn prefers_less_loaded_skips_ejected_and_tried() {
        let endpoints = vec![endpoint(1), endpoint(2)];
        let _busy: Vec<_> = (0..5).map(|_| endpoints[0].start_request()).collect();
        for _ in 0..20 {
            assert_eq!(pick(&endpoints, &[]).unwrap().addr, "127.0.0.1:2");
        }
        endpoints[1].eject(Duration::from_secs(60));
        assert_eq!(pick(&endpoints, &[]).unwrap().addr, "127.0.0.1:1");
        let tried = [key(&endpoints[0])];
        // Only the ejected one is left: panic mode still tries it.
        assert_eq!(pick(&endpoints, &tried).unwrap().addr, "127.0.0.1:2");
        let tried = [key(&endpoints[0]), key(&endpoints[1])];
        assert!(pick(&endpoints, &tried).is_none());
    }
}
