//! Persistence: restart keeps the CA, broken state is a clear error and never a new CA,
//! leftovers of a crash mid-write are harmless, the SVID lifetime is bounded, and a CA
//! rotation runs without outage.

mod common;

use std::time::Duration;

use common::*;
use palisade_control_plane::server::{check_ttl, MIN_CLI_SVID_TTL};
use palisade_control_plane::state::{self, DataDir, StateError};
use palisade_control_plane::ServeError;
use palisade_spiffe::{PeerRole, TrustBundle};
use rustls_pki_types::UnixTime;

fn start_error(
    result: Result<palisade_control_plane::RunningControlPlane, ServeError>,
) -> ServeError {
    match result {
        Ok(_) => panic!("the control plane started over broken state"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_restart_keeps_the_ca_and_old_svids_still_verify_and_renew() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start_cp(dir.path()).await;
    let bundle_before = std::fs::read(cp.bundle_path()).unwrap();
    let svid = first_svid(&cp, "shop", "web").await;
    let unused = cp.create_join_token("shop", "api", None).unwrap().token;
    cp.shutdown().await;

    let cp = start_cp(dir.path()).await;
    assert_eq!(
        std::fs::read(cp.bundle_path()).unwrap(),
        bundle_before,
        "same CA"
    );
    bundle_of(&cp)
        .verify(&svid.chain, PeerRole::Client, UnixTime::now())
        .unwrap();
    renew(&cp, &svid).await.unwrap();
    // Token hashes survived too.
    let key = rcgen::KeyPair::generate().unwrap();
    let issued = issue_with(&anonymous(&cp), csr(&key, vec![]), Some(unused))
        .await
        .unwrap();
    assert_eq!(issued.spiffe_id, "spiffe://example.org/ns/shop/sa/api");

    // The audit log recorded every issuance with who asked.
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let entries: Vec<serde_json::Value> = audit
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let workload: Vec<_> = entries
        .iter()
        .filter(|e| e["spiffe_id"].as_str().unwrap().contains("/ns/shop/"))
        .collect();
    assert_eq!(workload.len(), 3);
    assert!(workload[0]["credential"]
        .as_str()
        .unwrap()
        .starts_with("join_token:"));
    assert!(workload[1]["credential"]
        .as_str()
        .unwrap()
        .starts_with("svid:"));
    for field in ["serial", "not_after_unix", "time_unix", "issuer"] {
        assert!(!workload[0][field].is_null(), "{field}");
    }
    cp.shutdown().await;
}

#[tokio::test]
async fn keys_and_state_are_owner_only_and_tokens_stored_hashed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cp = start_cp(&data).await;
    let token = cp.create_join_token("shop", "web", None).unwrap().token;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("ca")), 0o700);
    assert_eq!(mode(&data.join("ca/root-1.key.pem")), 0o600);
    assert_eq!(mode(&data.join("admin")), 0o700);
    assert_eq!(mode(&data.join("admin/admin.key.pem")), 0o600);
    assert_eq!(mode(&data.join("tokens.json")), 0o600);
    let stored = std::fs::read_to_string(data.join("tokens.json")).unwrap();
    assert!(!stored.contains(&token));
    cp.shutdown().await;
}

#[tokio::test]
async fn a_corrupted_or_missing_state_file_is_a_clear_error_and_never_a_new_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start_cp(dir.path()).await;
    cp.shutdown().await;
    let bundle = std::fs::read(dir.path().join("bundle.pem")).unwrap();
    let state_path = dir.path().join("state.json");
    let good_state = std::fs::read(&state_path).unwrap();

    std::fs::write(&state_path, b"{\"format\": 1, \"trust_dom").unwrap();
    let err = start_error(start(config(dir.path(), Duration::from_secs(3600))).await);
    assert!(
        matches!(err, ServeError::State(StateError::StateCorrupt { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains(&state_path.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("never creating a new CA"), "{err}");

    std::fs::remove_file(&state_path).unwrap();
    let err = start_error(start(config(dir.path(), Duration::from_secs(3600))).await);
    assert!(
        matches!(err, ServeError::State(StateError::StateMissing { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains(&state_path.display().to_string()),
        "{err}"
    );

    std::fs::write(&state_path, &good_state).unwrap();
    let key_path = dir.path().join("ca/root-1.key.pem");
    let key = std::fs::read(&key_path).unwrap();
    std::fs::remove_file(&key_path).unwrap();
    let err = start_error(start(config(dir.path(), Duration::from_secs(3600))).await);
    assert!(
        matches!(err, ServeError::State(StateError::FileMissing { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains(&key_path.display().to_string()),
        "{err}"
    );

    std::fs::write(
        &key_path,
        b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = start_error(start(config(dir.path(), Duration::from_secs(3600))).await);
    assert!(
        matches!(err, ServeError::State(StateError::FileCorrupt { .. })),
        "{err}"
    );

    let tokens_path = dir.path().join("tokens.json");
    std::fs::write(&key_path, &key).unwrap();
    let tokens = std::fs::read(&tokens_path).unwrap();
    std::fs::write(&tokens_path, b"[[[").unwrap();
    let err = start_error(start(config(dir.path(), Duration::from_secs(3600))).await);
    assert!(
        err.to_string().contains(&tokens_path.display().to_string()),
        "{err}"
    );
    std::fs::write(&tokens_path, &tokens).unwrap();

    // No attempt created a new CA: the same bundle is back once the files are restored.
    assert_eq!(
        std::fs::read(dir.path().join("bundle.pem")).unwrap(),
        bundle
    );
    let cp = start_cp(dir.path()).await;
    assert_eq!(std::fs::read(cp.bundle_path()).unwrap(), bundle);
    cp.shutdown().await;
}

#[tokio::test]
async fn half_written_temp_files_left_by_a_crash_do_not_corrupt_state() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start_cp(dir.path()).await;
    let token = cp.create_join_token("shop", "web", None).unwrap().token;
    cp.shutdown().await;
    let bundle = std::fs::read(dir.path().join("bundle.pem")).unwrap();
    // What a crash between write and rename leaves: torn temp files beside the real ones.
    std::fs::write(
        dir.path().join(".state.json.tmp-00000000deadbeef"),
        b"{\"format\":1,\"tru",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".tokens.json.tmp-00000000deadbeef"),
        b"{\"tok",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ca/.root-1.key.pem.tmp-00000000deadbeef"),
        b"-----BEGIN",
    )
    .unwrap();
    // And a torn last audit line from a crash mid-append.
    let mut audit = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("audit.log"))
        .unwrap();
    std::io::Write::write_all(&mut audit, b"{\"time_unix\":17").unwrap();
    drop(audit);

    let cp = start_cp(dir.path()).await;
    assert_eq!(std::fs::read(cp.bundle_path()).unwrap(), bundle);
    assert!(!dir.path().join(".state.json.tmp-00000000deadbeef").exists());
    assert!(!dir
        .path()
        .join("ca/.root-1.key.pem.tmp-00000000deadbeef")
        .exists());
    let key = rcgen::KeyPair::generate().unwrap();
    issue_with(&anonymous(&cp), csr(&key, vec![]), Some(token))
        .await
        .unwrap();
    cp.shutdown().await;
}

#[tokio::test]
async fn svid_ttl_out_of_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for ttl in [Duration::from_secs(1), Duration::from_secs(25 * 3600)] {
        let err = start_error(start(config(dir.path(), ttl)).await);
        assert!(matches!(err, ServeError::BadSvidTtl { .. }), "{err}");
        assert!(err.to_string().contains("out of range"), "{err}");
    }
    // The serve command's bounds: 1 minute to 24 hours.
    assert!(check_ttl(Duration::from_secs(30), MIN_CLI_SVID_TTL).is_err());
    assert!(check_ttl(Duration::from_secs(60), MIN_CLI_SVID_TTL).is_ok());
    assert!(check_ttl(Duration::from_secs(24 * 3600), MIN_CLI_SVID_TTL).is_ok());
    assert!(check_ttl(Duration::from_secs(24 * 3600 + 1), MIN_CLI_SVID_TTL).is_err());
    assert!(
        !dir.path().join("state.json").exists(),
        "nothing created on a refused start"
    );
}

#[tokio::test]
async fn a_ca_rotation_keeps_old_and_new_svids_verifying_until_the_old_root_retires() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start_cp(dir.path()).await;
    let data = DataDir::new(dir.path());
    let old_leaf = first_svid(&cp, "shop", "web").await;

    // Step 1: the new root joins the bundle; the running control plane picks it up.
    let new_root = state::prepare_rotation(&data, None).unwrap();
    assert_eq!(new_root, "root-2");
    eventually("the two-root bundle", || root_count(&cp.bundle_pem()) == 2).await;
    assert_eq!(
        root_count(&std::fs::read_to_string(cp.bundle_path()).unwrap()),
        2
    );
    let still_old = first_svid(&cp, "shop", "api").await;
    assert_eq!(still_old.response.bundle_pem, cp.bundle_pem());
    let root1 = TrustBundle::from_pem(
        td(),
        std::fs::read(dir.path().join("ca/root-1.crt.pem"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let root2 = TrustBundle::from_pem(
        td(),
        std::fs::read(dir.path().join("ca/root-2.crt.pem"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    root1
        .verify(&still_old.chain, PeerRole::Client, UnixTime::now())
        .unwrap();

    // Step 2: signing switches to the new root; the old root stays trusted.
    let before = std::fs::read(dir.path().join("state.json")).unwrap();
    state::rotate(&data).unwrap();
    assert_ne!(
        before,
        std::fs::read(dir.path().join("state.json")).unwrap()
    );
    let mut new_leaf = None;
    for _ in 0..100 {
        let svid = renew(&cp, &old_leaf).await.unwrap();
        if root2
            .verify(&svid.chain, PeerRole::Client, UnixTime::now())
            .is_ok()
        {
            new_leaf = Some(svid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_leaf = new_leaf.expect("the control plane signs with the new root after `ca rotate`");
    let both = bundle_of(&cp);
    assert_eq!(both.roots().len(), 2);
    both.verify(&old_leaf.chain, PeerRole::Client, UnixTime::now())
        .unwrap();
    both.verify(&new_leaf.chain, PeerRole::Client, UnixTime::now())
        .unwrap();
    // The admin credential was reissued by the new root and still works.
    let (admin_tls, _) =
        palisade_control_plane::admin::client_config_from_dir(&cp.admin_dir()).unwrap();
    let admin = palisade_control_plane::client::ApiClient::new(&cp.url(), admin_tls).unwrap();
    let _: palisade_api::wire::TokenResponse = admin
        .post_json(
            palisade_api::wire::PATH_ADMIN_TOKENS,
            &palisade_api::wire::TokenRequest {
                namespace: "shop".into(),
                service_account: "db".into(),
                ttl_secs: None,
            },
        )
        .await
        .unwrap();

    // Step 3: retiring is refused while old-root SVIDs are valid, unless forced.
    let err = state::retire_old(&data, false).unwrap_err();
    assert!(err.to_string().contains("stay valid until"), "{err}");
    assert_eq!(state::retire_old(&data, true).unwrap(), "root-1");
    eventually("the one-root bundle", || root_count(&cp.bundle_pem()) == 1).await;
    let only_new = bundle_of(&cp);
    only_new
        .verify(&new_leaf.chain, PeerRole::Client, UnixTime::now())
        .unwrap();
    assert!(only_new
        .verify(&old_leaf.chain, PeerRole::Client, UnixTime::now())
        .is_err());
    assert!(
        !dir.path().join("ca/root-1.key.pem").exists(),
        "the retired key is deleted"
    );
    renew(&cp, &new_leaf).await.unwrap();
    cp.shutdown().await;

    // A restart after the rotation keeps the new root.
    let cp = start_cp(dir.path()).await;
    bundle_of(&cp)
        .verify(&new_leaf.chain, PeerRole::Client, UnixTime::now())
        .unwrap();
    cp.shutdown().await;
}

#[tokio::test]
async fn an_operator_supplied_ca_is_used_and_a_different_one_later_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let write_root = |name: &str| {
        let root = palisade_control_plane::ca::Root::generate(name, &td()).unwrap();
        let cert = ca_dir.path().join(format!("{name}.crt"));
        let key = ca_dir.path().join(format!("{name}.key"));
        std::fs::write(&cert, root.cert_pem()).unwrap();
        std::fs::write(&key, root.key_pem()).unwrap();
        (cert, key, root.cert_pem())
    };
    let (cert, key, pem) = write_root("corp");
    let mut cfg = config(dir.path(), Duration::from_secs(3600));
    cfg.ca = Some((cert.clone(), key.clone()));
    let cp = start(cfg.clone()).await.unwrap();
    assert_eq!(cp.bundle_pem(), pem);
    let svid = first_svid(&cp, "shop", "web").await;
    cp.shutdown().await;
    let cp = start(cfg.clone()).await.unwrap();
    renew(&cp, &svid).await.unwrap();
    cp.shutdown().await;

    let (other_cert, other_key, _) = write_root("other");
    cfg.ca = Some((other_cert, other_key));
    let err = start_error(start(cfg).await);
    assert!(
        matches!(err, ServeError::State(StateError::OperatorCaDiffers { .. })),
        "{err}"
    );
}
