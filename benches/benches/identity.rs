//! Identity micro-benchmarks: how many CSRs the CA signs per second (parse, verify the
//! CSR's self-signature, sign the leaf; no HTTP, no disk) and how many SVIDs a peer
//! verifies per second (`TrustBundle::verify`, the per-handshake cost).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use palisade_control_plane::ca::{CertificateAuthority, ExtraNames, Root};
use palisade_control_plane::csr::CheckedCsr;
use palisade_spiffe::{PeerRole, SpiffeId, TrustDomain};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls_pki_types::UnixTime;

fn setup() -> (CertificateAuthority, SpiffeId, String) {
    let td = TrustDomain::new("bench.local").expect("valid trust domain");
    let root = Root::generate("root-1", &td).expect("root generation");
    let ca = CertificateAuthority::new(td.clone(), vec![root], "root-1").expect("CA");
    let id = SpiffeId::workload(&td, "shop", "web").expect("valid id");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .expect("CSR");
    (ca, id, csr)
}

fn identity(c: &mut Criterion) {
    let (ca, id, csr_pem) = setup();
    let ttl = Duration::from_secs(3600);

    let mut group = c.benchmark_group("identity");
    group.throughput(Throughput::Elements(1));
    group.bench_function("csr_sign", |b| {
        b.iter(|| {
            let csr = CheckedCsr::parse_pem(&csr_pem).expect("CSR parses");
            csr.check_identity(&id).expect("identity matches");
            ca.issue(&id, &csr.public_key, ttl, ExtraNames::None)
                .expect("signed")
        })
    });

    let csr = CheckedCsr::parse_pem(&csr_pem).expect("CSR parses");
    let svid = ca
        .issue(&id, &csr.public_key, ttl, ExtraNames::None)
        .expect("signed");
    let bundle = ca.bundle().clone();
    let now = UnixTime::now();
    group.bench_function("svid_verify", |b| {
        b.iter(|| {
            bundle
                .verify(&svid.chain, PeerRole::Client, now)
                .expect("verifies")
        })
    });
    group.finish();
}

criterion_group!(benches, identity);
criterion_main!(benches);
