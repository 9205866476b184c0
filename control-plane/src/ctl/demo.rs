//! `palisadectl demo`: the local mesh on embedded defaults.
//!
//! It runs the real binaries — one control plane and two sidecar proxies as child
//! processes — beside two small sample applications served in this process, all on
//! 127.0.0.1, and walks through what the mesh does, saying each time what it expected and
//! what it saw. With `--check` the same walkthrough runs unattended and the exit code says
//! whether every step behaved as described.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const TRUST_DOMAIN: &str = "palisade.local";
const NAMESPACE: &str = "shop";
/// How long any single component may take to become ready before the demo gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long children get to drain after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The embedded policy the demo applies: payments admits orders for charges only.
const DEMO_POLICY: &str = include_str!("../../../deploy/local/policies/payments.yaml");

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Run the walkthrough unattended and exit non-zero if any step misbehaved.
    #[arg(long)]
    pub check: bool,
    /// Where the `palisade-control-plane` and `palisade-proxy` binaries are; by default
    /// the directory this `palisadectl` runs from.
    #[arg(long, env = "PALISADE_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
}

/// A workload of the demo: its sample app and the ports of its sidecar.
struct Workload {
    service: &'static str,
    app: SocketAddr,
    inbound: SocketAddr,
    outbound: SocketAddr,
    admin: SocketAddr,
}

impl Workload {
    fn spiffe_id(&self) -> String {
        format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{}", self.service)
    }
}

/// Child processes, stopped (SIGTERM, then kill) when the demo ends however it ends.
struct Children(Vec<(String, Child)>);

impl Children {
    async fn stop(&mut self) {
        for (_, child) in &self.0 {
            if let Some(pid) = child.id() {
                terminate(pid);
            }
        }
        for (name, child) in &mut self.0 {
            match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!("  {name} did not stop within {STOP_TIMEOUT:?}; killing it");
                    let _ = child.kill().await;
                }
            }
        }
        self.0.clear();
    }
}

fn terminate(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) with a pid of our own child and a valid signal number has no memory
    // effects; at worst the process is already gone and the call fails with ESRCH.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()
            .context("finding palisadectl's own path")?
            .parent()
            .context("palisadectl's path has no parent directory")?
            .to_path_buf(),
    };
    let work = tempfile::Builder::new()
        .prefix("palisade-demo-")
        .tempdir()
        .context("creating the demo's temporary directory")?;
    let mut children = Children(Vec::new());
    let outcome = walkthrough(&bin_dir, work.path(), &mut children, args.check).await;
    println!("\nStopping the mesh…");
    children.stop().await;
    match outcome {
        Ok(0) => {
            println!("Every step behaved as described.");
            Ok(ExitCode::SUCCESS)
        }
        Ok(failures) => {
            println!(
                "{failures} step(s) did not behave as described; logs are gone with {}",
                work.path().display()
            );
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            println!(
                "The demo could not run: {error:#}\nComponent logs were in {}",
                work.path().display()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn walkthrough(
    bin_dir: &Path,
    work: &Path,
    children: &mut Children,
    check: bool,
) -> anyhow::Result<usize> {
    let control_plane_bin = binary(bin_dir, "palisade-control-plane")?;
    let proxy_bin = binary(bin_dir, "palisade-proxy")?;
    let palisadectl_bin = binary(bin_dir, "palisadectl")?;

    println!("Palisade demo: a control plane, two services (orders calls payments) and their sidecars on 127.0.0.1.");
    println!("Working directory: {}\n", work.display());

    let data_dir = work.join("control-plane");
    let policy_dir = work.join("policies");
    std::fs::create_dir_all(&policy_dir).context("creating the demo policy directory")?;
    std::fs::write(policy_dir.join("payments.yaml"), DEMO_POLICY)
        .context("writing the demo policy")?;
    let control_plane_addr = free_port()?;
    let control_plane_url = format!("https://{control_plane_addr}");

    println!("1. Starting the control plane on {control_plane_addr} (it creates a fresh CA)…");
    let mut command = Command::new(&control_plane_bin);
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--listen")
        .arg(control_plane_addr.to_string())
        .arg("--policy-dir")
        .arg(&policy_dir)
        .arg("--trust-domain")
        .arg(TRUST_DOMAIN);
    children.0.push((
        "control plane".into(),
        spawn(command, work, "control-plane")?,
    ));
    wait_for_file(&data_dir.join("bundle.pem")).await?;
    wait_for_port(control_plane_addr).await?;
    println!(
        "   ready; trust bundle at {}",
        data_dir.join("bundle.pem").display()
    );

    let payments = start_app("payments").await?;
    let orders = start_app("orders").await?;
    let payments = Workload {
        service: "payments",
        app: payments,
        inbound: free_port()?,
        outbound: free_port()?,
        admin: free_port()?,
    };
    let orders = Workload {
        service: "orders",
        app: orders,
        inbound: free_port()?,
        outbound: free_port()?,
        admin: free_port()?,
    };

    for workload in [&payments, &orders] {
        println!(
            "2. Starting {}'s sidecar (inbound {}, outbound {}, admin {}) with a one-time join token…",
            workload.service, workload.inbound, workload.outbound, workload.admin
        );
        let token = join_token(&palisadectl_bin, &control_plane_url, &data_dir, workload).await?;
        let mut command = Command::new(&proxy_bin);
        command
            .env("PALISADE_JOIN_TOKEN", token)
            .arg("--control-plane")
            .arg(&control_plane_url)
            .arg("--trust-bundle")
            .arg(data_dir.join("bundle.pem"))
            .arg("--trust-domain")
            .arg(TRUST_DOMAIN)
            .arg("--namespace")
            .arg(NAMESPACE)
            .arg("--service-account")
            .arg(workload.service)
            .arg("--service")
            .arg(workload.service)
            .arg("--inbound")
            .arg(workload.inbound.to_string())
            .arg("--app")
            .arg(workload.app.to_string())
            .arg("--outbound")
            .arg(workload.outbound.to_string())
            .arg("--admin")
            .arg(workload.admin.to_string());
        children.0.push((
            format!("{} sidecar", workload.service),
            spawn(command, work, &format!("proxy-{}", workload.service))?,
        ));
    }
    for workload in [&payments, &orders] {
        wait_for_ready(workload.admin).await.with_context(|| {
            format!(
                "{}'s sidecar never became ready (log: {})",
                workload.service,
                work.join(format!("proxy-{}.log", workload.service))
                    .display()
            )
        })?;
        println!(
            "   {}'s sidecar holds the SVID {}",
            workload.service,
            workload.spiffe_id()
        );
    }
    wait_for_route(orders.outbound, "payments").await?;

    let mut failures = 0;
    let mut step = |title: &str, outcome: Result<String, String>| match outcome {
        Ok(seen) => println!("   ✓ {title}: {seen}"),
        Err(seen) => {
            failures += 1;
            println!("   ✗ {title}: {seen}");
        }
    };

    println!("\n3. orders calls payments through its sidecar: plain HTTP to orders' outbound, mutual TLS between the sidecars.");
    let reply = http_get(orders.outbound, "payments", "GET", "/v1/charges/42").await;
    step(
        "the call succeeds and payments learns who called",
        match reply {
            Ok((StatusCode::OK, body)) if body.contains(&orders.spiffe_id()) => Ok(format!(
                "200 OK, and the app saw x-palisade-peer-id = {}",
                orders.spiffe_id()
            )),
            Ok((status, body)) => Err(format!(
                "expected 200 naming the caller, got {status}: {body}"
            )),
            Err(error) => Err(format!("the call failed: {error}")),
        },
    );

    println!("\n4. Someone sends plaintext HTTP straight to payments' inbound port.");
    step(
        "the sidecar refuses it: mutual TLS is required",
        match plaintext_probe(payments.inbound).await {
            Ok(answer) if answer.starts_with("HTTP/1.1 400") || !answer.starts_with("HTTP/") => {
                Ok(answer)
            }
            Ok(answer) => Err(format!("the sidecar answered plaintext with: {answer}")),
            Err(error) => Err(format!("the probe failed: {error}")),
        },
    );

    println!("\n5. orders tries a route payments' policy does not allow (DELETE /v1/charges/42).");
    let reply = http_get(orders.outbound, "payments", "DELETE", "/v1/charges/42").await;
    step(
        "the payments sidecar denies it before the app sees it",
        match reply {
            Ok((StatusCode::FORBIDDEN, _)) => {
                let event = last_event(&work.join("proxy-payments.log"), "authz_deny").await;
                Ok(format!("403 Forbidden; payments' sidecar logged {event}"))
            }
            Ok((status, body)) => Err(format!("expected 403, got {status}: {body}")),
            Err(error) => Err(format!("the call failed: {error}")),
        },
    );

    println!("\n6. orders sends an SQL injection in a query parameter of a route it may call.");
    let reply = http_get(
        orders.outbound,
        "payments",
        "GET",
        "/v1/charges/42?note=1%27%20OR%20%271%27%3D%271",
    )
    .await;
    step(
        "the WAF in payments' sidecar blocks it",
        match reply {
            Ok((StatusCode::FORBIDDEN, _)) => {
                let event = last_event(&work.join("proxy-payments.log"), "waf_match").await;
                Ok(format!("403 Forbidden; payments' sidecar logged {event}"))
            }
            Ok((status, body)) => Err(format!("expected 403, got {status}: {body}")),
            Err(error) => Err(format!("the call failed: {error}")),
        },
    );

    if !check {
        println!("\nThe mesh keeps running. Try it yourself:");
        println!(
            "  curl -H 'Host: payments' http://{}/v1/charges/42",
            orders.outbound
        );
        println!("  curl http://{}/metrics", payments.admin);
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    Ok(failures)
}

/// The newest security event of one kind in a sidecar's JSON log, for showing the
/// operator what the SIEM would receive. Log lines may land a moment after the answer.
async fn last_event(log: &Path, event: &str) -> String {
    let needle = format!("\"event\":\"{event}\"");
    for _ in 0..20 {
        if let Ok(text) = tokio::fs::read_to_string(log).await {
            if let Some(line) = text.lines().rev().find(|line| line.contains(&needle)) {
                return line.to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    format!("no `{event}` event (see {})", log.display())
}

fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found; build the binaries first (`cargo build --release --bins`) or pass --bin-dir",
            path.display()
        );
    }
    Ok(path)
}

fn spawn(mut command: Command, work: &Path, log_name: &str) -> anyhow::Result<Child> {
    let log_path = work.join(format!("{log_name}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let log_err = log.try_clone().context("duplicating a log file handle")?;
    command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {log_name}"))
}

/// A free loopback port. The small race between releasing it and the child binding it is
/// acceptable for a demo on one machine.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    listener.local_addr().context("reading a free port")
}

async fn wait_until<F, Fut>(what: &str, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if probe().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} within {READY_TIMEOUT:?}")
}

async fn wait_for_file(path: &Path) -> anyhow::Result<()> {
    wait_until(&format!("{} did not appear", path.display()), || async {
        path.is_file()
    })
    .await
}

async fn wait_for_port(addr: SocketAddr) -> anyhow::Result<()> {
    wait_until(&format!("nothing listened on {addr}"), || async move {
        TcpStream::connect(addr).await.is_ok()
    })
    .await
}

async fn wait_for_ready(admin: SocketAddr) -> anyhow::Result<()> {
    wait_until(
        &format!("{admin}/ready did not answer 200"),
        || async move {
            matches!(
                http_get(admin, "localhost", "GET", "/ready").await,
                Ok((StatusCode::OK, _))
            )
        },
    )
    .await
}

/// Waits until the outbound proxy has learnt the destination's endpoints from the
/// control plane's watch, so the walkthrough does not race the first push.
async fn wait_for_route(outbound: SocketAddr, service: &str) -> anyhow::Result<()> {
    wait_until(
        &format!("the outbound proxy did not learn {service}'s endpoints"),
        || async move {
            !matches!(
                http_get(outbound, service, "GET", "/v1/charges/1").await,
                Ok((StatusCode::SERVICE_UNAVAILABLE, _)) | Err(_)
            )
        },
    )
    .await
}

async fn join_token(
    palisadectl: &Path,
    control_plane_url: &str,
    data_dir: &Path,
    workload: &Workload,
) -> anyhow::Result<String> {
    let output = Command::new(palisadectl)
        .arg("--control-plane")
        .arg(control_plane_url)
        .arg("--admin-dir")
        .arg(data_dir.join("admin"))
        .arg("token")
        .arg("create")
        .arg("--namespace")
        .arg(NAMESPACE)
        .arg("--service-account")
        .arg(workload.service)
        .arg("--ttl")
        .arg("10m")
        .output()
        .await
        .context("running palisadectl token create")?;
    if !output.status.success() {
        bail!(
            "palisadectl token create failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let token = String::from_utf8(output.stdout)
        .context("palisadectl printed a token that is not UTF-8")?
        .trim()
        .to_owned();
    if token.is_empty() {
        bail!("palisadectl token create printed no token");
    }
    Ok(token)
}

/// Serves a sample application that answers every request with what it saw, including
/// the caller identity its sidecar vouched for.
async fn start_app(service: &'static str) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .with_context(|| format!("binding the {service} sample app"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| app_reply(service, request));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn app_reply(
    service: &'static str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let caller = request
        .headers()
        .get("x-palisade-peer-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_owned();
    let mut body = String::new();
    let _ = write!(
        body,
        "{{\"service\":\"{service}\",\"method\":\"{}\",\"path\":\"{}\",\"caller\":\"{caller}\"}}",
        request.method(),
        request.uri().path()
    );
    Ok(Response::new(Full::new(Bytes::from(body))))
}

/// One plain HTTP/1.1 request, returning the status and body.
async fn http_get(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
) -> anyhow::Result<(StatusCode, String)> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, host)
        .body(Full::new(Bytes::new()))?;
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .context("the request timed out")??;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Sends a plaintext HTTP request to a TLS-only port and describes what came back.
async fn plaintext_probe(addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /v1/charges/42 HTTP/1.1\r\nHost: payments\r\n\r\n")
        .await?;
    let mut answer = vec![0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await;
    Ok(match read {
        Ok(Ok(0)) | Ok(Err(_)) => "the connection was closed without an HTTP answer".into(),
        Ok(Ok(n)) if answer[..n].starts_with(b"HTTP/") => {
            let text = String::from_utf8_lossy(&answer[..n]);
            let status_line = text.lines().next().unwrap_or_default().to_owned();
            format!("{status_line}, answered by the sidecar itself; the app never saw it")
        }
        Ok(Ok(n)) => format!("the connection got {n} bytes of TLS alert, not HTTP, then closed"),
        Err(_) => "the connection stayed silent: no HTTP answer".into(),
    })
}
