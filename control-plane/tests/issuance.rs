//! SVID issuance over HTTPS/HTTP2: first issuance, renewal, and every refused input.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use palisade_api::wire::{codes, IssueRequest, PATH_SVID};
use palisade_control_plane::client::ClientError;
use palisade_spiffe::PeerRole;
use rcgen::{KeyPair, SanType};
use rustls_pki_types::UnixTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

#[tokio::test]
async fn first_issuance_yields_a_leaf_with_exactly_the_svid_properties() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(config(dir.path(), Duration::from_secs(600)))
        .await
        .unwrap();
    let svid = first_svid(&cp, "shop", "web").await;

    let id = bundle_of(&cp)
        .verify(&svid.chain, PeerRole::Server, UnixTime::now())
        .unwrap();
    assert_eq!(id, workload("shop", "web"));
    assert_eq!(
        svid.response.spiffe_id,
        "spiffe://example.org/ns/shop/sa/web"
    );
    assert_eq!(svid.chain.len(), 1, "leaf only; the root is in the bundle");
    assert_eq!(
        svid.response.bundle_pem,
        std::fs::read_to_string(cp.bundle_path()).unwrap()
    );

    let (_, leaf) = X509Certificate::from_der(svid.chain[0].as_ref()).unwrap();
    let sans = leaf.subject_alternative_name().unwrap().unwrap();
    let uris: Vec<_> = sans
        .value
        .general_names
        .iter()
        .filter(|n| matches!(n, GeneralName::URI(_)))
        .collect();
    assert_eq!(sans.value.general_names.len(), 1, "exactly one SAN");
    assert_eq!(uris.len(), 1, "exactly one URI SAN");
    assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let lifetime = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert_eq!(lifetime, 600 + 60, "ttl plus the 60 s backdate");
    assert_eq!(
        leaf.validity().not_after.timestamp(),
        svid.response.not_after_unix
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn renewal_over_mtls_needs_no_token_and_keeps_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(config(dir.path(), Duration::from_secs(2)))
        .await
        .unwrap();
    let first = first_svid(&cp, "shop", "web").await;
    let second = renew(&cp, &first).await.unwrap();
    assert_eq!(second.response.spiffe_id, first.response.spiffe_id);
    assert_ne!(second.chain[0], first.chain[0]);
    // The renewed SVID renews in turn, a second later.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let third = renew(&cp, &second).await.unwrap();
    assert_eq!(
        third.response.spiffe_id,
        "spiffe://example.org/ns/shop/sa/web"
    );

    // A renewal CSR asking for another identity is refused.
    let key = KeyPair::generate().unwrap();
    let answer = post(
        &with_svid(&cp, &third),
        PATH_SVID,
        &IssueRequest {
            csr_pem: csr(&key, vec![uri_san("spiffe://example.org/ns/bank/sa/vault")]),
            join_token: None,
        },
    )
    .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        codes::CSR_IDENTITY_MISMATCH,
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn join_token_errors_are_each_named() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start_cp(dir.path()).await;
    let client = anonymous(&cp);
    let key = KeyPair::generate().unwrap();
    let request = |token: &str| IssueRequest {
        csr_pem: csr(&key, vec![]),
        join_token: Some(token.to_owned()),
    };

    let unknown = post(&client, PATH_SVID, &request("pjt_not-a-real-token")).await;
    let msg = assert_error(&unknown, StatusCode::UNAUTHORIZED, codes::TOKEN_UNKNOWN);
    assert!(msg.contains("unknown"), "{msg}");

    let token = cp.create_join_token("shop", "web", None).unwrap().token;
    let ok = post(&client, PATH_SVID, &request(&token)).await;
    assert_eq!(ok.0, StatusCode::OK, "{ok:?}");
    let used = post(&client, PATH_SVID, &request(&token)).await;
    let msg = assert_error(&used, StatusCode::UNAUTHORIZED, codes::TOKEN_USED);
    assert!(msg.contains("already used"), "{msg}");

    let short = cp
        .create_join_token("shop", "web", Some(Duration::from_secs(1)))
        .unwrap()
        .token;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let expired = post(&client, PATH_SVID, &request(&short)).await;
    let msg = assert_error(&expired, StatusCode::UNAUTHORIZED, codes::TOKEN_EXPIRED);
    assert!(msg.contains("expired"), "{msg}");

    let none = post(
        &client,
        PATH_SVID,
        &IssueRequest {
            csr_pem: csr(&key, vec![]),
            join_token: None,
        },
    )
    .await;
    assert_error(&none, StatusCode::UNAUTHORIZED, codes::CREDENTIAL_MISSING);
    cp.shutdown().await;
}

#[tokio::test]
async fn malformed_csr_and_csr_for_another_identity_are_refused_without_spending_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start_cp(dir.path()).await;
    let client = anonymous(&cp);
    let token = cp.create_join_token("shop", "web", None).unwrap().token;

    let garbage = post(
        &client,
        PATH_SVID,
        &IssueRequest {
            csr_pem:
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                    .into(),
            join_token: Some(token.clone()),
        },
    )
    .await;
    let msg = assert_error(&garbage, StatusCode::BAD_REQUEST, codes::CSR_MALFORMED);
    assert!(msg.contains("CSR"), "{msg}");

    let not_json = client
        .call(
            http::Method::POST,
            PATH_SVID,
            bytes::Bytes::from_static(b"{nope"),
        )
        .await
        .unwrap();
    assert_eq!(not_json.0, StatusCode::BAD_REQUEST);

    let key = KeyPair::generate().unwrap();
    for sans in [
        vec![uri_san("spiffe://example.org/ns/bank/sa/vault")],
        vec![
            uri_san("spiffe://example.org/ns/shop/sa/web"),
            uri_san("spiffe://example.org/ns/bank/sa/vault"),
        ],
        vec![SanType::DnsName("web.shop.svc".try_into().unwrap())],
    ] {
        let other = post(
            &client,
            PATH_SVID,
            &IssueRequest {
                csr_pem: csr(&key, sans),
                join_token: Some(token.clone()),
            },
        )
        .await;
        let msg = assert_error(
            &other,
            StatusCode::BAD_REQUEST,
            codes::CSR_IDENTITY_MISMATCH,
        );
        assert!(msg.contains("spiffe://example.org/ns/shop/sa/web"), "{msg}");
    }

    // The refused attempts did not consume the token; a CSR naming exactly the
    // token's identity is accepted.
    let ok = issue_with(
        &client,
        csr(&key, vec![uri_san("spiffe://example.org/ns/shop/sa/web")]),
        Some(token),
    )
    .await
    .unwrap();
    assert_eq!(ok.spiffe_id, "spiffe://example.org/ns/shop/sa/web");
    cp.shutdown().await;
}

#[tokio::test]
async fn renewal_with_an_svid_of_another_ca_or_trust_domain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start_cp(dir.path()).await;

    // Same trust domain, another CA.
    let other_dir = tempfile::tempdir().unwrap();
    let other = start_cp(other_dir.path()).await;
    let foreign = first_svid(&other, "shop", "web").await;
    let err = renew(&cp, &foreign).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Http(_) | ClientError::Tls { .. }),
        "the handshake must refuse the foreign SVID: {err}"
    );

    // Another trust domain.
    let td_dir = tempfile::tempdir().unwrap();
    let mut td_config = config(td_dir.path(), Duration::from_secs(3600));
    td_config.trust_domain = "other.org".into();
    let other_td = palisade_control_plane::start(td_config).await.unwrap();
    let token = other_td
        .create_join_token("shop", "web", None)
        .unwrap()
        .token;
    let key = KeyPair::generate().unwrap();
    let tls = palisade_spiffe::tls::client_config(
        None,
        palisade_spiffe::svid::shared_bundle(
            palisade_spiffe::TrustBundle::from_pem(
                other_td.trust_domain().clone(),
                other_td.bundle_pem().as_bytes(),
            )
            .unwrap(),
        ),
        palisade_spiffe::ServerIdentity::OneOf(vec![other_td.spiffe_id().clone()]),
    );
    let client = palisade_control_plane::client::ApiClient::new(&other_td.url(), tls).unwrap();
    let response = issue_with(&client, csr(&key, vec![]), Some(token))
        .await
        .unwrap();
    let alien = Svid {
        chain: palisade_spiffe::svid::certs_from_pem(response.chain_pem.as_bytes()).unwrap(),
        key,
        response,
    };
    let err = renew(&cp, &alien).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Http(_) | ClientError::Tls { .. }),
        "the handshake must refuse an SVID of another trust domain: {err}"
    );

    // The control plane is unharmed and still renews its own SVIDs.
    let own = first_svid(&cp, "shop", "web").await;
    renew(&cp, &own).await.unwrap();
    for running in [cp, other, other_td] {
        running.shutdown().await;
    }
}

#[tokio::test]
async fn the_serving_certificate_renews_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(config(dir.path(), Duration::from_secs(2)))
        .await
        .unwrap();
    let serial = || async {
        let tls = palisade_spiffe::tls::client_config(
            None,
            palisade_spiffe::svid::shared_bundle(bundle_of(&cp)),
            palisade_spiffe::ServerIdentity::OneOf(vec![cp.spiffe_id().clone()]),
        );
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
        let tcp = tokio::net::TcpStream::connect(cp.local_addr())
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();
        let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        palisade_spiffe::tls::svid_info(&leaf).unwrap()
    };
    let before = serial().await;
    assert_eq!(before.id, *cp.spiffe_id());
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let after = serial().await;
    assert_ne!(
        before.serial_hex, after.serial_hex,
        "renewed at half its life"
    );
    cp.shutdown().await;
}
