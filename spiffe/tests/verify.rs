//! Hostile and broken certificates against the SVID verifier, and real in-memory TLS 1.3
//! handshakes through the rustls verifiers and resolver.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use palisade_spiffe::svid::shared_bundle;
use palisade_spiffe::tls::{client_config, peer_spiffe_id, server_config};
use palisade_spiffe::{
    ClientAuth, PeerRole, ServerIdentity, SpiffeId, SvidError, SvidStore, TrustBundle, TrustDomain,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};

struct TestCa {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    fn bundle(&self, td: &str) -> TrustBundle {
        TrustBundle::new(TrustDomain::new(td).unwrap(), vec![self.cert.clone()]).unwrap()
    }

    fn leaf(&self, shape: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![uri("spiffe://td.test/ns/shop/sa/orders")];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = time_from(SystemTime::now() - Duration::from_secs(60));
        params.not_after = time_from(SystemTime::now() + Duration::from_secs(3600));
        shape(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

fn time_from(t: SystemTime) -> time::OffsetDateTime {
    t.into()
}

fn now() -> UnixTime {
    UnixTime::now()
}

#[test]
fn accepts_a_well_formed_svid() {
    let ca = TestCa::new("root");
    let leaf = ca.leaf(|_| {});
    let id = ca
        .bundle("td.test")
        .verify(&leaf.chain, PeerRole::Client, now())
        .unwrap();
    assert_eq!(id.as_str(), "spiffe://td.test/ns/shop/sa/orders");
}

#[test]
fn rejects_hostile_and_broken_certificates() {
    let ca = TestCa::new("root");
    let other_ca = TestCa::new("someone else's root");
    let bundle = ca.bundle("td.test");

    let cases: Vec<(&str, Vec<CertificateDer<'static>>, SvidError)> = vec![
        ("empty chain", vec![], SvidError::EmptyChain),
        (
            "garbage DER",
            vec![CertificateDer::from(vec![0x30, 0x03, 0x01, 0x02, 0x03])],
            SvidError::Malformed(String::new()),
        ),
        (
            "another CA",
            other_ca.leaf(|_| {}).chain,
            SvidError::UntrustedIssuer,
        ),
        (
            "another trust domain",
            ca.leaf(|p| p.subject_alt_names = vec![uri("spiffe://evil.test/ns/shop/sa/orders")])
                .chain,
            SvidError::WrongTrustDomain {
                id: "spiffe://evil.test/ns/shop/sa/orders".into(),
                found: "evil.test".into(),
                expected: "td.test".into(),
            },
        ),
        (
            "two URI SANs",
            ca.leaf(|p| {
                p.subject_alt_names = vec![
                    uri("spiffe://td.test/ns/shop/sa/orders"),
                    uri("spiffe://td.test/ns/shop/sa/admin"),
                ]
            })
            .chain,
            SvidError::MultipleUriSans(2),
        ),
        (
            "no URI SAN",
            ca.leaf(|p| p.subject_alt_names = vec![SanType::DnsName("orders".try_into().unwrap())])
                .chain,
            SvidError::NoUriSan,
        ),
        (
            "URI SAN that is not SPIFFE",
            ca.leaf(|p| p.subject_alt_names = vec![uri("https://td.test/orders")])
                .chain,
            SvidError::InvalidSpiffeId {
                uri: "https://td.test/orders".into(),
                reason: palisade_spiffe::IdError::WrongScheme,
            },
        ),
        (
            "CA certificate presented as leaf",
            ca.leaf(|p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            })
            .chain,
            SvidError::LeafIsCa,
        ),
        (
            "leaf that can sign certificates",
            ca.leaf(|p| p.key_usages = vec![KeyUsagePurpose::KeyCertSign])
                .chain,
            SvidError::LeafCanSign,
        ),
        (
            "expired leaf",
            ca.leaf(|p| {
                p.not_before = time_from(SystemTime::now() - Duration::from_secs(7200));
                p.not_after = time_from(SystemTime::now() - Duration::from_secs(3600));
            })
            .chain,
            SvidError::Expired,
        ),
        (
            "leaf not valid yet",
            ca.leaf(|p| {
                p.not_before = time_from(SystemTime::now() + Duration::from_secs(3600));
                p.not_after = time_from(SystemTime::now() + Duration::from_secs(7200));
            })
            .chain,
            SvidError::NotYetValid,
        ),
        (
            "client-only leaf used as a server",
            ca.leaf(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth])
                .chain,
            SvidError::Rejected(String::new()),
        ),
    ];
    for (name, chain, expected) in cases {
        let role = if name.starts_with("client-only") {
            PeerRole::Server
        } else {
            PeerRole::Client
        };
        let error = bundle.verify(&chain, role, now()).unwrap_err();
        match (&error, &expected) {
            (SvidError::Malformed(_), SvidError::Malformed(_))
            | (SvidError::Rejected(_), SvidError::Rejected(_)) => {}
            _ => assert_eq!(error, expected, "{name}"),
        }
        assert!(!error.to_string().is_empty(), "{name}");
    }
}

#[test]
fn a_bundle_with_two_roots_accepts_leaves_of_both() {
    let old = TestCa::new("old root");
    let new = TestCa::new("new root");
    let td = TrustDomain::new("td.test").unwrap();
    let both = TrustBundle::new(td.clone(), vec![old.cert.clone(), new.cert.clone()]).unwrap();
    for leaf in [old.leaf(|_| {}), new.leaf(|_| {})] {
        both.verify(&leaf.chain, PeerRole::Client, now()).unwrap();
    }
    let pem = both.to_pem();
    let reread = TrustBundle::from_pem(td, pem.as_bytes()).unwrap();
    assert_eq!(reread.roots(), both.roots());
}

#[test]
fn broken_bundles_are_refused() {
    let td = TrustDomain::new("td.test").unwrap();
    assert_eq!(
        TrustBundle::from_pem(td.clone(), b"").unwrap_err(),
        SvidError::EmptyBundle
    );
    assert!(matches!(
        TrustBundle::from_pem(
            td.clone(),
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"
        ),
        Err(SvidError::BundlePem(_))
    ));
    assert!(matches!(
        TrustBundle::new(td, vec![CertificateDer::from(vec![1, 2, 3])]),
        Err(SvidError::BadRoot { index: 0, .. })
    ));
}

/// Drives a full TLS 1.3 handshake between the two configs in memory.
fn handshake(
    client: rustls::ClientConfig,
    server: rustls::ServerConfig,
) -> Result<(rustls::ClientConnection, rustls::ServerConnection), rustls::Error> {
    let mut client =
        rustls::ClientConnection::new(Arc::new(client), "workload.invalid".try_into().unwrap())?;
    let mut server = rustls::ServerConnection::new(Arc::new(server))?;
    for _ in 0..10 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets()?;
        let mut buf = Vec::new();
        server.write_tls(&mut buf).unwrap();
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            // The server learns of a client-certificate failure only from the client's
            // last flight, so flush it once more.
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
            return Ok((client, server));
        }
    }
    panic!("handshake did not finish");
}

fn store_with(leaf: Leaf) -> Arc<SvidStore> {
    let store = SvidStore::new();
    store.install(leaf.chain, leaf.key).unwrap();
    store
}

#[test]
fn mutual_tls_yields_both_spiffe_ids() {
    let ca = TestCa::new("root");
    let bundle = shared_bundle(ca.bundle("td.test"));
    let server_svids = store_with(
        ca.leaf(|p| p.subject_alt_names = vec![uri("spiffe://td.test/ns/shop/sa/payments")]),
    );
    let client_svids = store_with(ca.leaf(|_| {}));
    let payments = SpiffeId::parse("spiffe://td.test/ns/shop/sa/payments").unwrap();
    let (client, server) = handshake(
        client_config(
            Some(client_svids),
            bundle.clone(),
            ServerIdentity::OneOf(vec![payments.clone()]),
        ),
        server_config(server_svids, bundle, ClientAuth::Required),
    )
    .unwrap();
    assert_eq!(peer_spiffe_id(client.peer_certificates()), Some(payments));
    assert_eq!(
        peer_spiffe_id(server.peer_certificates()).unwrap().as_str(),
        "spiffe://td.test/ns/shop/sa/orders"
    );
    assert_eq!(server.alpn_protocol(), None, "the client offered no ALPN");
}

#[test]
fn server_refuses_clients_without_an_svid_or_from_another_ca() {
    let ca = TestCa::new("root");
    let other = TestCa::new("other");
    let bundle = shared_bundle(ca.bundle("td.test"));
    let server = || {
        server_config(
            store_with(ca.leaf(|_| {})),
            bundle.clone(),
            ClientAuth::Required,
        )
    };

    let no_cert = client_config(None, bundle.clone(), ServerIdentity::AnyInTrustDomain);
    assert!(handshake(no_cert, server()).is_err());

    let foreign_bundle = shared_bundle(
        TrustBundle::new(
            TrustDomain::new("td.test").unwrap(),
            vec![ca.cert.clone(), other.cert.clone()],
        )
        .unwrap(),
    );
    let foreign = client_config(
        Some(store_with(other.leaf(|_| {}))),
        foreign_bundle,
        ServerIdentity::AnyInTrustDomain,
    );
    let error = handshake(foreign, server()).unwrap_err();
    assert!(
        matches!(
            error,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{error:?}"
    );
}

#[test]
fn client_refuses_a_server_with_an_unexpected_id() {
    let ca = TestCa::new("root");
    let bundle = shared_bundle(ca.bundle("td.test"));
    let expected = SpiffeId::parse("spiffe://td.test/ns/shop/sa/payments").unwrap();
    let client = client_config(
        Some(store_with(ca.leaf(|_| {}))),
        bundle.clone(),
        ServerIdentity::OneOf(vec![expected]),
    );
    let impostor = server_config(store_with(ca.leaf(|_| {})), bundle, ClientAuth::Required);
    let error = handshake(client, impostor).unwrap_err();
    assert!(
        error.to_string().contains("not one this client expects"),
        "{error}"
    );
}

#[test]
fn a_store_without_an_svid_fails_closed_and_rotation_applies_to_the_next_handshake() {
    let ca = TestCa::new("root");
    let bundle = shared_bundle(ca.bundle("td.test"));
    let server_svids = SvidStore::new();
    let config = server_config(server_svids.clone(), bundle.clone(), ClientAuth::Required);
    let client = || {
        client_config(
            Some(store_with(ca.leaf(|_| {}))),
            bundle.clone(),
            ServerIdentity::AnyInTrustDomain,
        )
    };
    assert!(handshake(client(), config.clone()).is_err());

    let first = ca.leaf(|_| {});
    let first_serial = server_svids
        .install(first.chain, first.key)
        .unwrap()
        .serial_hex;
    let (c, _) = handshake(client(), config.clone()).unwrap();
    let seen = palisade_spiffe::tls::svid_info(&c.peer_certificates().unwrap()[0]).unwrap();
    assert_eq!(seen.serial_hex, first_serial);

    let second = ca.leaf(|_| {});
    let second_serial = server_svids
        .install(second.chain, second.key)
        .unwrap()
        .serial_hex;
    let (c, _) = handshake(client(), config).unwrap();
    let seen = palisade_spiffe::tls::svid_info(&c.peer_certificates().unwrap()[0]).unwrap();
    assert_eq!(seen.serial_hex, second_serial);
    assert_ne!(first_serial, second_serial);
}

#[test]
fn a_key_that_does_not_fit_the_certificate_is_refused() {
    let ca = TestCa::new("root");
    let a = ca.leaf(|_| {});
    let b = ca.leaf(|_| {});
    let error = SvidStore::new().install(a.chain, b.key).unwrap_err();
    assert!(error.to_string().contains("does not fit"), "{error}");
}
