//! The control plane's JSON messages (`palisade_api::wire`) from arbitrary bytes: the
//! answers a proxy decodes (a watch line's `ConfigSnapshot`, the SVID, registration and
//! error bodies) and, for completeness, every other message of the API. Each is refused
//! or decoded; what decodes encodes, and decodes again to an equal value with the same
//! encoding. A decoded snapshot is then applied as a proxy applies it (authorization
//! compiled, WAF settings and routes built, endpoints taken into the mesh state): the
//! policy types re-run their leaf parsers on the wire, and nothing the control plane
//! (or whoever answers in its place) sends may panic the proxy.
#![no_main]

use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use palisade_api::wire::{
    ConfigSnapshot, ErrorBody, IssueRequest, IssueResponse, PolicyCheckRequest,
    PolicyCheckResponse, Registered, Registration, TokenRequest, TokenResponse,
};
use palisade_proxy::{Enforcement, MeshState};
use palisade_spiffe::TrustDomain;
use palisade_waf::{Engine, RuleSet};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn enforcement() -> &'static Arc<Enforcement> {
    static ENFORCEMENT: OnceLock<Arc<Enforcement>> = OnceLock::new();
    ENFORCEMENT.get_or_init(|| {
        let rules = RuleSet::embedded().expect("the embedded rules compile");
        let td = TrustDomain::new("palisade.local").expect("valid trust domain");
        Enforcement::with_engine(td, "payments", Engine::new(rules))
    })
}

/// Decodes `data` as a `T`; on success checks the round trip and returns the value.
fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let value: T = serde_json::from_slice(data).ok()?;
    let encoded = serde_json::to_vec(&value).expect("a decoded message encodes");
    let again: T = serde_json::from_slice(&encoded).unwrap_or_else(|e| {
        panic!(
            "{value:?} encodes as {} which does not decode: {e}",
            String::from_utf8_lossy(&encoded)
        )
    });
    assert_eq!(again, value, "{}", String::from_utf8_lossy(&encoded));
    assert_eq!(
        serde_json::to_vec(&again).expect("a decoded message encodes"),
        encoded
    );
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    if let Some(snapshot) = round_trip::<ConfigSnapshot>(data) {
        // One shared `Enforcement` across inputs, as a proxy applies one snapshot after
        // another; a fresh mesh state each time is cheap.
        enforcement().apply(&snapshot);
        MeshState::new().apply(&snapshot);
    }
    round_trip::<IssueResponse>(data);
    round_trip::<Registered>(data);
    round_trip::<ErrorBody>(data);
    round_trip::<TokenResponse>(data);
    round_trip::<PolicyCheckResponse>(data);
    round_trip::<IssueRequest>(data);
    round_trip::<TokenRequest>(data);
    round_trip::<Registration>(data);
    round_trip::<PolicyCheckRequest>(data);
});
