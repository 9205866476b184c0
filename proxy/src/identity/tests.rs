//! Bootstrap and renewal against the fake control plane.

use std::sync::atomic::Ordering;
use std::time::Duration;

use palisade_spiffe::{SpiffeId, TrustDomain};

use super::*;
use crate::control::test_support::{
    bootstrap_from, eventually, identity_config, FakeControlPlane, TD,
};

fn leaf_public_key(identity: &Identity) -> Vec<u8> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let chain = identity.svids.chain().unwrap();
    let (_, cert) = X509Certificate::from_der(chain[0].as_ref()).unwrap();
    cert.public_key().raw.to_vec()
}

#[tokio::test]
async fn bootstrap_installs_a_verified_svid_for_the_requested_id() {
    let fake = FakeControlPlane::start().await;
    let identity = bootstrap_from(&fake, "orders").await.unwrap();
    let info = identity.svids.info().unwrap();
    assert_eq!(info.id.as_str(), "spiffe://mesh.test/ns/shop/sa/orders");
    assert_eq!(identity.id, info.id);
    assert!(identity.is_ready());
    assert_eq!(identity.status().info, info);
}

#[tokio::test]
async fn a_used_token_is_refused_with_the_control_planes_reason() {
    let fake = FakeControlPlane::start().await;
    bootstrap_from(&fake, "orders").await.unwrap();
    let error = bootstrap(identity_config(&fake, "orders", "token-orders"))
        .await
        .unwrap_err();
    let IdentityError::Control(control) = &error else {
        panic!("expected a refusal, got {error}");
    };
    assert_eq!(control.refusal_code(), Some("token_invalid"));
    let message = error.to_string();
    assert!(message.contains("unknown or used join token"), "{message}");
    assert!(message.contains("401"), "{message}");
}

#[tokio::test]
async fn an_svid_for_another_identity_is_refused_and_not_installed() {
    let fake = FakeControlPlane::start().await;
    let td = TrustDomain::new(TD).unwrap();
    *fake.state.issue_as.lock().unwrap() = Some(SpiffeId::workload(&td, "shop", "admin").unwrap());
    let error = bootstrap_from(&fake, "orders").await.unwrap_err();
    assert!(
        matches!(&error, IdentityError::WrongId { got, .. } if got.ends_with("/sa/admin")),
        "{error}"
    );
}

#[tokio::test]
async fn a_bundle_of_another_trust_domain_is_refused_before_any_call() {
    let fake = FakeControlPlane::start().await;
    let mut config = identity_config(&fake, "orders", "unused");
    config.trust_domain = TrustDomain::new("other.test").unwrap();
    let error = bootstrap(config).await.unwrap_err();
    assert!(
        matches!(error, IdentityError::TrustDomainMismatch { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_control_plane_is_a_clear_connect_error() {
    let fake = FakeControlPlane::start().await;
    let mut config = identity_config(&fake, "orders", "unused");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    config.control_plane = crate::control::ControlPlaneAddr::parse(&closed.to_string()).unwrap();
    let error = bootstrap(config).await.unwrap_err().to_string();
    assert!(error.contains("could not resolve or connect"), "{error}");
    assert!(error.contains(&closed.to_string()), "{error}");
}

#[tokio::test]
async fn renewal_rotates_key_and_serial_and_keeps_the_id() {
    let fake = FakeControlPlane::start().await;
    *fake.state.ttl.lock().unwrap() = Duration::from_secs(2);
    let identity = bootstrap_from(&fake, "orders").await.unwrap();
    let first = identity.status();
    let first_key = leaf_public_key(&identity);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = identity.spawn_renewal(async move {
        let _ = stopped.await;
    });
    let renewed = eventually(Duration::from_secs(5), || identity.status().renewals >= 2).await;
    assert!(
        renewed,
        "no two renewals within 5 s: {:?}",
        identity.status()
    );
    let now = identity.status();
    assert_ne!(now.info.serial_hex, first.info.serial_hex);
    assert_eq!(now.info.id, first.info.id);
    assert_ne!(leaf_public_key(&identity), first_key);
    assert!(identity.is_ready());
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("the renewal task stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn failed_renewals_retry_while_the_old_svid_stays_in_force() {
    let fake = FakeControlPlane::start().await;
    *fake.state.ttl.lock().unwrap() = Duration::from_secs(4);
    let identity = bootstrap_from(&fake, "orders").await.unwrap();
    let first = identity.status();
    fake.state.fail_renewals.store(true, Ordering::SeqCst);
    let task = identity.spawn_renewal(std::future::pending());
    // Renewal falls due between 1.6 s and 2.4 s; by 2.8 s it has failed at least once.
    tokio::time::sleep(Duration::from_millis(2800)).await;
    assert_eq!(identity.status().renewals, 0);
    assert_eq!(
        identity.svids.info().unwrap().serial_hex,
        first.info.serial_hex
    );
    assert!(
        identity.is_ready(),
        "the old SVID is still valid and in force"
    );
    fake.state.fail_renewals.store(false, Ordering::SeqCst);
    let renewed = eventually(Duration::from_secs(2), || identity.status().renewals >= 1).await;
    assert!(renewed, "the retry after recovery did not renew");
    assert_ne!(identity.status().info.serial_hex, first.info.serial_hex);
    task.abort();
}

#[test]
fn the_join_token_never_shows_in_debug_output() {
    let config = IdentityConfig {
        control_plane: crate::control::ControlPlaneAddr::parse("127.0.0.1:1").unwrap(),
        trust_domain: TrustDomain::new(TD).unwrap(),
        bundle: palisade_spiffe::svid::shared_bundle(
            crate::control::test_support::TestCa::new("ca").bundle(),
        ),
        namespace: "shop".into(),
        service_account: "orders".into(),
        join_token: "s3cret-token".into(),
        timeouts: Default::default(),
        retry: Default::default(),
    };
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret-token"), "{debug}");
}

#[tokio::test]
async fn a_forged_renewal_is_refused_and_the_current_svid_stays() {
    let fake = FakeControlPlane::start().await;
    let identity = bootstrap_from(&fake, "orders").await.unwrap();
    let before = identity.svids.info().unwrap();
    fake.state.sign_with_rogue_ca.store(true, Ordering::SeqCst);
    let error = identity.renew_now().await.unwrap_err();
    assert!(
        matches!(error, IdentityError::Unverified(SvidError::UntrustedIssuer)),
        "{error}"
    );
    assert!(error
        .to_string()
        .contains("does not verify against the trust bundle"));
    assert_eq!(identity.svids.info().unwrap(), before);
    assert_eq!(identity.status().renewals, 0);
    fake.state.sign_with_rogue_ca.store(false, Ordering::SeqCst);
    let renewed = identity.renew_now().await.unwrap();
    assert_ne!(renewed.serial_hex, before.serial_hex);
    assert_eq!(identity.status().renewals, 1);
}
