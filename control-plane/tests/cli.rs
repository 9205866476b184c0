//! The `palisade-control-plane` binary: flag validation and the offline CA commands.

use std::process::{Command, Output};

fn control_plane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade-control-plane"))
        .args(args)
        .env_remove("PALISADE_SVID_TTL")
        .env_remove("PALISADE_DATA_DIR")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn serve_refuses_an_svid_ttl_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for ttl in ["30s", "25h"] {
        let output = control_plane(&[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--svid-ttl",
            ttl,
        ]);
        assert!(!output.status.success());
        let message = stderr(&output);
        assert!(message.contains("--svid-ttl"), "{message}");
        assert!(message.contains("out of range"), "{message}");
    }
    assert!(!data.exists(), "a refused start creates nothing");
}

#[test]
fn serve_requires_both_halves_of_an_operator_ca() {
    let dir = tempfile::tempdir().unwrap();
    let output = control_plane(&[
        "serve",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--ca-cert",
        "/nonexistent.pem",
    ]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--ca-key"), "{}", stderr(&output));
}

#[tokio::test]
async fn the_ca_commands_run_the_rotation_on_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = palisade_control_plane::ServeConfig::new(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        "example.org",
    );
    let cp = palisade_control_plane::start(config).await.unwrap();
    cp.shutdown().await;
    let data = dir.path().to_str().unwrap().to_owned();
    let bundle = || std::fs::read_to_string(dir.path().join("bundle.pem")).unwrap();
    let roots = |pem: &str| pem.matches("BEGIN CERTIFICATE").count();

    let early = control_plane(&["ca", "rotate", "--data-dir", &data]);
    assert!(!early.status.success());
    assert!(
        stderr(&early).contains("prepare-rotation"),
        "{}",
        stderr(&early)
    );

    let prepared = control_plane(&["ca", "prepare-rotation", "--data-dir", &data]);
    assert!(prepared.status.success(), "{}", stderr(&prepared));
    assert_eq!(roots(&bundle()), 2);
    let again = control_plane(&["ca", "prepare-rotation", "--data-dir", &data]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already under way"),
        "{}",
        stderr(&again)
    );

    let rotated = control_plane(&["ca", "rotate", "--data-dir", &data]);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let retired = control_plane(&["ca", "retire-old", "--data-dir", &data]);
    assert!(retired.status.success(), "{}", stderr(&retired));
    assert_eq!(roots(&bundle()), 1);
    assert!(dir.path().join("ca/root-2.key.pem").exists());
    assert!(!dir.path().join("ca/root-1.key.pem").exists());

    let missing = control_plane(&[
        "ca",
        "rotate",
        "--data-dir",
        dir.path().join("nowhere").to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("not an initialised data directory"),
        "{}",
        stderr(&missing)
    );
}
