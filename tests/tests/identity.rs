//! The proxy's identity client against the real control plane, in-process on 127.0.0.1:
//! first issuance, renewal, rotation under load, refused tokens, restarts and the
//! config watch.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_api::wire::ConfigSnapshot;
use palisade_e2e::test_helpers::{eventually, mtls_probe, MtlsProbeServer, TestControlPlane};
use palisade_proxy::control::{spawn_watch, WatchConfig, WatchStatus};
use palisade_proxy::identity::{bootstrap, IdentityError};
use palisade_spiffe::{PeerRole, TrustBundle};
use rustls_pki_types::UnixTime;

fn leaf_public_key(identity: &palisade_proxy::identity::Identity) -> Vec<u8> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let chain = identity.svids.chain().expect("an SVID is installed");
    let (_, cert) = X509Certificate::from_der(chain[0].as_ref()).expect("the leaf parses");
    cert.public_key().raw.to_vec()
}

#[tokio::test]
async fn first_issuance_yields_a_verified_svid_for_the_requested_identity() {
    let cp = TestControlPlane::start().await.unwrap();
    let identity = cp.identity("shop", "orders").await.unwrap();
    assert_eq!(identity.id.as_str(), "spiffe://mesh.test/ns/shop/sa/orders");
    assert!(identity.is_ready());
    // The chain verifies against the bundle file an operator distributes, both ways.
    let bundle = TrustBundle::from_pem(cp.trust_domain(), cp.bundle_pem().as_bytes()).unwrap();
    let chain = identity.svids.chain().unwrap();
    for role in [PeerRole::Client, PeerRole::Server] {
        assert_eq!(
            bundle.verify(&chain, role, UnixTime::now()).unwrap(),
            identity.id
        );
    }
    let status = identity.status();
    assert!(status.info.not_after_unix - status.info.not_before_unix <= 3600 + 300);
    cp.shutdown().await;
}

#[tokio::test]
async fn renewal_changes_serial_and_key_and_keeps_the_id() {
    let cp = TestControlPlane::with_svid_ttl(Duration::from_secs(2))
        .await
        .unwrap();
    let identity = cp.identity("shop", "orders").await.unwrap();
    let first = identity.status();
    let first_key = leaf_public_key(&identity);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let renewal = identity.spawn_renewal(async move {
        let _ = stopped.await;
    });
    assert!(
        eventually(Duration::from_secs(6), || identity.status().renewals >= 2).await,
        "two renewals expected within 6 s, status {:?}",
        identity.status()
    );
    let now = identity.status();
    assert_ne!(now.info.serial_hex, first.info.serial_hex);
    assert_eq!(now.info.id, first.info.id);
    assert_ne!(leaf_public_key(&identity), first_key);
    assert!(now.info.not_after_unix >= first.info.not_after_unix);
    assert!(identity.is_ready());
    let _ = stop.send(());
    renewal.await.unwrap();
    cp.shutdown().await;
}

#[tokio::test]
async fn rotation_under_load_loses_no_handshake() {
    let cp = TestControlPlane::with_svid_ttl(Duration::from_secs(3))
        .await
        .unwrap();
    let server = cp.identity("shop", "payments").await.unwrap();
    let client = cp.identity("shop", "orders").await.unwrap();
    let renewals = [
        server.spawn_renewal(std::future::pending()),
        client.spawn_renewal(std::future::pending()),
    ];
    let probe = MtlsProbeServer::start(&server).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (mut ok, mut failures) = (0usize, Vec::new());
    // Bounded by count and by time; stops as soon as both sides renewed twice.
    for _ in 0..5000 {
        if tokio::time::Instant::now() >= deadline
            || (server.status().renewals >= 2 && client.status().renewals >= 2 && ok >= 50)
        {
            break;
        }
        match mtls_probe(&client, probe.addr, &server.id).await {
            Ok(seen) if seen == client.id.as_str() => ok += 1,
            Ok(seen) => failures.push(format!("server saw `{seen}`")),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed handshakes: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(probe.failed_handshakes.load(Ordering::SeqCst), 0);
    assert!(ok >= 50, "only {ok} handshakes ran");
    assert!(
        server.status().renewals >= 2,
        "server renewed {}",
        server.status().renewals
    );
    assert!(
        client.status().renewals >= 2,
        "client renewed {}",
        client.status().renewals
    );
    for task in renewals {
        task.abort();
    }
    cp.shutdown().await;
}

#[tokio::test]
async fn used_and_expired_tokens_are_refused_clearly() {
    let cp = TestControlPlane::start().await.unwrap();
    let token = cp.token("shop", "orders").unwrap();
    let config = cp
        .identity_config_with_token("shop", "orders", &token)
        .unwrap();
    bootstrap(config.clone()).await.unwrap();
    let error = bootstrap(config).await.unwrap_err();
    let IdentityError::Control(control) = &error else {
        panic!("expected the control plane's refusal, got: {error}");
    };
    assert_eq!(control.refusal_code(), Some("token_used"), "{error}");

    let expiring = cp
        .token_with_ttl("shop", "orders", Some(Duration::from_secs(1)))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let config = cp
        .identity_config_with_token("shop", "orders", &expiring)
        .unwrap();
    let error = bootstrap(config).await.unwrap_err();
    let IdentityError::Control(control) = &error else {
        panic!("expected the control plane's refusal, got: {error}");
    };
    assert_eq!(control.refusal_code(), Some("token_expired"), "{error}");
    assert!(
        error.to_string().contains(&cp.addr().to_string()),
        "{error}"
    );

    let config = cp
        .identity_config_with_token("shop", "orders", "not-a-token")
        .unwrap();
    let error = bootstrap(config).await.unwrap_err();
    let IdentityError::Control(control) = &error else {
        panic!("expected the control plane's refusal, got: {error}");
    };
    assert_eq!(control.refusal_code(), Some("token_unknown"), "{error}");
    cp.shutdown().await;
}

#[tokio::test]
async fn a_restarted_control_plane_keeps_its_ca_and_renews_the_proxy() {
    let mut cp = TestControlPlane::start().await.unwrap();
    let identity = cp.identity("shop", "orders").await.unwrap();
    let bundle_before = cp.bundle_pem();
    let serial_before = identity.status().info.serial_hex;
    cp.restart().await.unwrap();
    assert_eq!(cp.bundle_pem(), bundle_before, "the restart made a new CA");
    let renewed = identity.renew_now().await.unwrap();
    assert_ne!(renewed.serial_hex, serial_before);
    assert_eq!(renewed.id, identity.id);
    assert_eq!(identity.bundle.load().to_pem(), bundle_before);
    cp.shutdown().await;
}

#[tokio::test]
async fn renewal_retries_through_a_control_plane_outage() {
    let mut cp = TestControlPlane::with_svid_ttl(Duration::from_secs(4))
        .await
        .unwrap();
    let identity = cp.identity("shop", "orders").await.unwrap();
    let renewal = identity.spawn_renewal(std::future::pending());
    cp.stop().await;
    // Renewal falls due at 1.6–2.4 s and fails while the control plane is down.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(identity.status().renewals, 0);
    assert!(identity.is_ready(), "the old SVID stays in force meanwhile");
    cp.restart().await.unwrap();
    assert!(
        eventually(Duration::from_secs(3), || identity.status().renewals >= 1).await,
        "no renewal after the control plane came back"
    );
    renewal.abort();
    cp.shutdown().await;
}

#[tokio::test]
async fn the_watch_delivers_registrations_and_reconnects_after_a_restart() {
    let mut cp = TestControlPlane::start().await.unwrap();
    let payments = cp.identity("shop", "payments").await.unwrap();
    let seen: Arc<Mutex<Vec<Arc<ConfigSnapshot>>>> = Arc::default();
    let sink = seen.clone();
    let config = WatchConfig {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(300),
        ..WatchConfig::new("payments", Some("127.0.0.1:15006".into())).unwrap()
    };
    let watch = spawn_watch(
        payments.control_plane().clone(),
        config,
        move |snapshot| sink.lock().unwrap().push(snapshot),
        std::future::pending(),
    );
    let registered = |snapshot: &ConfigSnapshot| {
        snapshot.endpoints.get("payments").is_some_and(|endpoints| {
            endpoints
                .iter()
                .any(|e| e.addr == "127.0.0.1:15006" && e.spiffe_id == payments.id.as_str())
        })
    };
    assert!(
        eventually(Duration::from_secs(3), || watch
            .latest()
            .is_some_and(|s| registered(&s)))
        .await,
        "no snapshot with our registration; latest: {:?}",
        watch.latest()
    );
    let status = watch.status();
    assert_eq!(*status.borrow(), WatchStatus::Connected);

    cp.stop().await;
    assert!(
        eventually(Duration::from_secs(3), || matches!(
            *status.borrow(),
            WatchStatus::Disconnected { .. } | WatchStatus::Connecting
        ))
        .await,
        "the watch did not notice the control plane going away"
    );
    // While disconnected, the last snapshot stays in force.
    assert!(watch.latest().is_some_and(|s| registered(&s)));

    cp.restart().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || *status.borrow()
            == WatchStatus::Connected)
        .await,
        "the watch did not reconnect: {:?}",
        *status.borrow()
    );
    // The restarted control plane knows our endpoint again (we re-registered): a proxy
    // that starts watching only now sees it.
    let orders = cp.identity("shop", "orders").await.unwrap();
    let other = spawn_watch(
        orders.control_plane().clone(),
        WatchConfig::new("orders", None).unwrap(),
        |_| {},
        std::future::pending(),
    );
    assert!(
        eventually(Duration::from_secs(3), || other
            .latest()
            .is_some_and(|s| registered(&s)))
        .await,
        "after the restart another proxy does not see payments: {:?}",
        other.latest()
    );
    assert!(watch.latest().is_some_and(|s| registered(&s)));
    assert!(!seen.lock().unwrap().is_empty());
    other.task.abort();
    watch.task.abort();
    cp.shutdown().await;
}

#[tokio::test]
async fn a_ca_rotation_under_load_loses_no_handshake() {
    use palisade_control_plane::state::{self, DataDir};

    let cp = TestControlPlane::with_svid_ttl(Duration::from_secs(3))
        .await
        .unwrap();
    let server = cp.identity("shop", "payments").await.unwrap();
    let client = cp.identity("shop", "orders").await.unwrap();
    let mut tasks = vec![
        server.spawn_renewal(std::future::pending()),
        client.spawn_renewal(std::future::pending()),
    ];
    // The watch is how a proxy learns a new bundle between renewals.
    let watches = [
        spawn_watch(
            server.control_plane().clone(),
            WatchConfig::new("payments", Some("127.0.0.1:15006".into())).unwrap(),
            |_| {},
            std::future::pending(),
        ),
        spawn_watch(
            client.control_plane().clone(),
            WatchConfig::new("orders", None).unwrap(),
            |_| {},
            std::future::pending(),
        ),
    ];
    let probe = MtlsProbeServer::start(&server).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, server_id, stop) = (client.clone(), server.id.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failures) = (0usize, Vec::new());
            for _ in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match mtls_probe(&client, probe.addr, &server_id).await {
                    Ok(_) => ok += 1,
                    Err(error) => failures.push(format!("{error:#}")),
                }
            }
            (ok, failures, probe.failed_handshakes.load(Ordering::SeqCst))
        })
    };
    let roots =
        |identity: &palisade_proxy::identity::Identity| identity.bundle.load().roots().len();
    let data = DataDir::new(cp.data_dir());

    // 1. The new root joins the bundle; both proxies get it from the watch.
    state::prepare_rotation(&data, None).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || roots(&server) == 2
            && roots(&client) == 2)
        .await,
        "the proxies did not receive the two-root bundle"
    );
    // 2. Signing moves to the new root; 3. once every old SVID has expired (renewals
    // moved the proxies onto the new root), the old root leaves the bundle.
    state::rotate(&data).unwrap();
    let mut retired = false;
    for _ in 0..60 {
        if state::retire_old(&data, false).is_ok() {
            retired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(retired, "the old root could not be retired within 12 s");
    assert!(
        eventually(Duration::from_secs(5), || roots(&server) == 1
            && roots(&client) == 1)
        .await,
        "the proxies did not drop the retired root"
    );
    // Handshakes keep flowing on the new root alone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failures, server_failures) = load.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} handshakes failed: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(server_failures, 0);
    assert!(ok >= 50, "only {ok} handshakes ran");
    let bundle = TrustBundle::from_pem(cp.trust_domain(), cp.bundle_pem().as_bytes()).unwrap();
    for identity in [&server, &client] {
        let chain = identity.svids.chain().unwrap();
        assert_eq!(
            bundle
                .verify(&chain, PeerRole::Client, UnixTime::now())
                .unwrap(),
            identity.id
        );
    }
    tasks.extend(watches.into_iter().map(|w| w.task));
    for task in tasks {
        task.abort();
    }
    cp.shutdown().await;
}
