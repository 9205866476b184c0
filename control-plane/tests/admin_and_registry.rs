//! The admin endpoint and palisadectl, and the service registry with its watch stream.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use palisade_api::wire::{
    codes, Registration, TokenRequest, TokenResponse, PATH_ADMIN_TOKENS, PATH_REGISTER,
};
use palisade_control_plane::admin::client_config_from_dir;
use palisade_control_plane::client::ApiClient;

fn token_request(ns: &str) -> TokenRequest {
    TokenRequest {
        namespace: ns.into(),
        service_account: "web".into(),
        ttl_secs: Some(600),
    }
}

#[tokio::test]
async fn the_admin_endpoint_requires_exactly_the_admin_credential() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start_cp(dir.path()).await;

    let anonymous_answer = post(&anonymous(&cp), PATH_ADMIN_TOKENS, &token_request("shop")).await;
    assert_error(
        &anonymous_answer,
        StatusCode::UNAUTHORIZED,
        codes::ADMIN_REQUIRED,
    );

    let workload = first_svid(&cp, "shop", "web").await;
    let workload_answer = post(
        &with_svid(&cp, &workload),
        PATH_ADMIN_TOKENS,
        &token_request("shop"),
    )
    .await;
    let msg = assert_error(
        &workload_answer,
        StatusCode::FORBIDDEN,
        codes::ADMIN_REQUIRED,
    );
    assert!(msg.contains("spiffe://example.org/ns/shop/sa/web"), "{msg}");

    let (tls, trust_domain) = client_config_from_dir(&cp.admin_dir()).unwrap();
    assert_eq!(trust_domain.as_str(), TD);
    let admin = ApiClient::new(&cp.url(), tls).unwrap();
    let made: TokenResponse = admin
        .post_json(PATH_ADMIN_TOKENS, &token_request("shop"))
        .await
        .unwrap();
    assert_eq!(made.spiffe_id, "spiffe://example.org/ns/shop/sa/web");
    let key = rcgen::KeyPair::generate().unwrap();
    issue_with(&anonymous(&cp), csr(&key, vec![]), Some(made.token))
        .await
        .unwrap();

    let reserved = post(&admin, PATH_ADMIN_TOKENS, &token_request("palisade-system")).await;
    assert_error(
        &reserved,
        StatusCode::BAD_REQUEST,
        codes::RESERVED_NAMESPACE,
    );
    let too_long = post(
        &admin,
        PATH_ADMIN_TOKENS,
        &TokenRequest {
            ttl_secs: Some(7 * 86400),
            ..token_request("shop")
        },
    )
    .await;
    assert_error(&too_long, StatusCode::BAD_REQUEST, codes::INVALID_ARGUMENT);
    cp.shutdown().await;
}

/// Runs the palisadectl binary against `cp` (on a blocking thread, so the in-process
/// control plane keeps serving).
async fn palisadectl(
    cp: &palisade_control_plane::RunningControlPlane,
    args: &[&str],
) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_palisadectl"));
    command
        .args(["--control-plane", &cp.url(), "--admin-dir"])
        .arg(cp.admin_dir())
        .args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn palisadectl_token_create_prints_a_token_that_buys_one_svid() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start_cp(dir.path()).await;
    let output = palisadectl(
        &cp,
        &[
            "token",
            "create",
            "--namespace",
            "shop",
            "--service-account",
            "web",
            "--ttl",
            "10m",
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("pjt_"), "{token}");
    let key = rcgen::KeyPair::generate().unwrap();
    let issued = issue_with(&anonymous(&cp), csr(&key, vec![]), Some(token))
        .await
        .unwrap();
    assert_eq!(issued.spiffe_id, "spiffe://example.org/ns/shop/sa/web");

    let refused = palisadectl(
        &cp,
        &[
            "token",
            "create",
            "--namespace",
            "palisade-system",
            "--service-account",
            "x",
        ],
    )
    .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("reserved"));
    cp.shutdown().await;
}

#[tokio::test]
async fn registrations_stream_to_watchers_and_dead_proxies_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Duration::from_secs(3600));
    cfg.registration_grace = Duration::from_millis(600);
    cfg.keepalive = Duration::from_millis(300);
    let cp = start(cfg).await.unwrap();
    let web = first_svid(&cp, "shop", "web").await;
    let api = first_svid(&cp, "shop", "api").await;

    let refused = post(
        &anonymous(&cp),
        PATH_REGISTER,
        &Registration {
            service: "web".into(),
            inbound_addr: "127.0.0.1:15006".into(),
        },
    )
    .await;
    assert_error(&refused, StatusCode::UNAUTHORIZED, codes::SVID_REQUIRED);
    let bad = post(
        &with_svid(&cp, &web),
        PATH_REGISTER,
        &Registration {
            service: "web".into(),
            inbound_addr: "nowhere".into(),
        },
    )
    .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, codes::INVALID_ARGUMENT);
    // A workload speaks only for the service its service account names: the web proxy
    // can neither become an endpoint of api nor read api's configuration.
    let hijack = post(
        &with_svid(&cp, &web),
        PATH_REGISTER,
        &Registration {
            service: "api".into(),
            inbound_addr: "127.0.0.1:15099".into(),
        },
    )
    .await;
    assert_error(&hijack, StatusCode::FORBIDDEN, codes::SERVICE_NOT_OWNED);
    let (status, _, snoop_driver) = open_watch(&cp, &web, "api").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    snoop_driver.abort();

    let (status, mut web_stream, web_driver) = open_watch(&cp, &web, "web").await;
    assert_eq!(status, StatusCode::OK);
    let mut web_pending = Vec::new();
    let first = next_snapshot(&mut web_stream, &mut web_pending).await;
    assert!(first.endpoints.is_empty());
    assert_eq!(first.bundle_pem, cp.bundle_pem());

    let registered = post(
        &with_svid(&cp, &web),
        PATH_REGISTER,
        &Registration {
            service: "web".into(),
            inbound_addr: "127.0.0.1:15006".into(),
        },
    )
    .await;
    assert_eq!(registered.0, StatusCode::OK, "{registered:?}");
    assert_eq!(
        registered.1["spiffe_id"],
        "spiffe://example.org/ns/shop/sa/web"
    );
    let second = next_snapshot(&mut web_stream, &mut web_pending).await;
    assert!(second.version > first.version);
    assert_eq!(second.endpoints["web"][0].addr, "127.0.0.1:15006");
    assert_eq!(
        second.endpoints["web"][0].spiffe_id,
        "spiffe://example.org/ns/shop/sa/web"
    );

    // The api proxy registers and watches; keep-alives arrive with no change.
    let (_, mut api_stream, api_driver) = open_watch(&cp, &api, "api").await;
    let mut api_pending = Vec::new();
    post(
        &with_svid(&cp, &api),
        PATH_REGISTER,
        &Registration {
            service: "api".into(),
            inbound_addr: "127.0.0.1:15007".into(),
        },
    )
    .await;
    let mut seen = next_snapshot(&mut api_stream, &mut api_pending).await;
    while !seen.endpoints.contains_key("api") {
        seen = next_snapshot(&mut api_stream, &mut api_pending).await;
    }
    let keepalive = next_snapshot(&mut api_stream, &mut api_pending).await;
    assert_eq!(
        keepalive.version, seen.version,
        "a keep-alive repeats the snapshot"
    );

    // The web proxy's stream is open, so its registration outlives the grace period.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut latest = next_snapshot(&mut api_stream, &mut api_pending).await;
    assert!(latest.endpoints.contains_key("web"));

    // The web proxy dies: its endpoint is dropped after the grace period.
    drop(web_stream);
    web_driver.abort();
    for _ in 0..40 {
        latest = next_snapshot(&mut api_stream, &mut api_pending).await;
        if !latest.endpoints.contains_key("web") {
            break;
        }
    }
    assert!(!latest.endpoints.contains_key("web"), "{latest:?}");
    assert!(latest.endpoints.contains_key("api"));

    let (status, _, driver) = open_watch(&cp, &api, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    driver.abort();
    api_driver.abort();
    cp.shutdown().await;
}
