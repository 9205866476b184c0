//! Certificate chains a peer may present, and PEM text an operator may give as a trust
//! bundle. The input is read two ways: as a chain of DER certificates, each behind a
//! two-byte big-endian length (the last one takes the rest), and as PEM text.
//!
//! Asserted: every reading of a certificate (its SPIFFE ID, validity, serial; as a trust
//! anchor) returns a value or an error, never a panic; a chain verifies against the
//! fuzzing root (`data/svid_root.der`) only for an ID that root signed (the seeds' leaves:
//! nothing the fuzzer makes can carry a valid signature); an accepted SVID's ID is the
//! one its leaf names, in the bundle's trust domain.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use palisade_spiffe::svid::{self, certs_from_pem, leaf_spiffe_id, not_after_unix};
use palisade_spiffe::tls::{peer_spiffe_id, svid_info};
use palisade_spiffe::{PeerRole, TrustBundle, TrustDomain};
use rustls_pki_types::{CertificateDer, UnixTime};

/// Inside the seeds' validity (2026 to 2036).
const NOW_SECS: u64 = 1_800_000_000;

/// The IDs of the leaves the fuzzing root signed (see `seeds/svid_der`).
const SIGNED_IDS: &[&str] = &[
    "spiffe://td.test/ns/shop/sa/orders",
    "spiffe://td.test/ns/shop/sa/payments",
    "spiffe://td.test/ns/x/sa/y",
];

fn bundle() -> &'static TrustBundle {
    static BUNDLE: OnceLock<TrustBundle> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let root = CertificateDer::from(&include_bytes!("../data/svid_root.der")[..]);
        TrustBundle::new(
            TrustDomain::new("td.test").expect("trust domain"),
            vec![root],
        )
        .expect("the fuzzing root is a trust anchor")
    })
}

fn read_one(cert: &CertificateDer<'_>) {
    let id = leaf_spiffe_id(cert);
    if let Err(e) = &id {
        assert!(!e.to_string().is_empty());
    }
    let info = svid_info(cert);
    match (&id, &info) {
        (Ok(id), Ok(info)) => assert_eq!(&info.id, id),
        (Err(a), Err(b)) => assert_eq!(a, b),
        // The ID is read first: an ID error is the info's error.
        (Err(_), Ok(_)) => panic!("svid_info accepted a leaf without a valid ID"),
        (Ok(_), Err(_)) => {}
    }
    let _ = not_after_unix(cert);
    assert_eq!(peer_spiffe_id(Some(std::slice::from_ref(cert))), id.ok());
    let _ = TrustBundle::new(
        TrustDomain::new("td.test").expect("td"),
        vec![cert.clone().into_owned()],
    );
}

fn verify(chain: &[CertificateDer<'_>]) {
    let now = UnixTime::since_unix_epoch(Duration::from_secs(NOW_SECS));
    for role in [PeerRole::Server, PeerRole::Client] {
        match bundle().verify(chain, role, now) {
            Ok(id) => {
                assert!(
                    SIGNED_IDS.contains(&id.as_str()),
                    "forged SVID accepted: {id}"
                );
                assert_eq!(leaf_spiffe_id(&chain[0]), Ok(id.clone()));
                assert_eq!(id.trust_domain_name(), "td.test");
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut chain = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && chain.len() < 4 {
        let (cert, after) = match rest {
            [hi, lo, tail @ ..] => {
                let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
                tail.split_at(len)
            }
            _ => (rest, &[][..]),
        };
        chain.push(CertificateDer::from(cert));
        rest = after;
    }
    for cert in &chain {
        read_one(cert);
    }
    verify(&chain);
    if let Ok(certs) = certs_from_pem(data) {
        for cert in &certs {
            read_one(cert);
            assert_eq!(
                certs_from_pem(svid::cert_to_pem(cert).as_bytes()).as_deref(),
                Ok(std::slice::from_ref(cert))
            );
        }
        verify(&certs);
        if let Err(e) = TrustBundle::from_pem(TrustDomain::new("td.test").expect("td"), data) {
            assert!(!e.to_string().is_empty());
        }
    }
});
