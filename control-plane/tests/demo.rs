//! The README's main command, run unattended: `palisadectl demo --check` starts the real
//! control plane and proxy binaries and fails if any step of the walkthrough misbehaves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The proxy binary lives in another package, so cargo does not build it for this test;
/// it is usually there already (the proxy's own integration tests need it), else build it.
fn proxy_binary(bin_dir: &Path) -> PathBuf {
    let proxy = bin_dir.join("palisade-proxy");
    if !proxy.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "palisade-proxy", "--bin", "palisade-proxy"])
            .status()
            .expect("running cargo build for the proxy");
        assert!(status.success(), "building palisade-proxy failed");
    }
    proxy
}

#[test]
fn the_demo_walkthrough_behaves_as_described() {
    let palisadectl = PathBuf::from(env!("CARGO_BIN_EXE_palisadectl"));
    let bin_dir = palisadectl
        .parent()
        .expect("binary directory")
        .to_path_buf();
    let proxy = proxy_binary(&bin_dir);
    assert!(proxy.is_file(), "{} is missing", proxy.display());
    assert!(Path::new(env!("CARGO_BIN_EXE_palisade-control-plane")).is_file());

    let mut child = Command::new(&palisadectl)
        .args(["demo", "--check", "--bin-dir"])
        .arg(&bin_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting palisadectl demo");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("polling the demo") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("palisadectl demo --check did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("reading the demo's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "the demo reported a misbehaving step:\n{stdout}\n{stderr}"
    );
    for expected in [
        "✓ the call succeeds",
        "✓ the sidecar refuses it",
        "✓ the payments sidecar denies it",
        "✓ the WAF",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
    assert!(!stdout.contains('✗'), "{stdout}");
}
