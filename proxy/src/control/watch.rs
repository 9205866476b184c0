//! The config watch: a long-lived stream of [`ConfigSnapshot`]s from the control plane.
//!
//! The proxy must keep serving whatever happens to this stream, so the task never gives
//! up: when the stream ends, errs, sends something it cannot read, or stays silent past
//! the idle timeout, it reconnects with capped exponential backoff and jitter, registers
//! again (a restarted control plane may have forgotten us) and resumes. While it is
//! disconnected the last snapshot stays in force.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use palisade_api::wire::{ConfigSnapshot, Registration, PATH_REGISTER, PATH_WATCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use super::ndjson::{is_keep_alive, FrameError, LineFramer, DEFAULT_MAX_LINE};
use super::{ClientAuthMode, ControlError, ControlPlaneClient};
use crate::identity::apply_bundle_pem;

/// What to watch and how patiently.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The service this proxy fronts.
    pub service: String,
    /// The proxy's inbound (mTLS) address to register, or `None` for a proxy that only
    /// calls out.
    pub inbound_addr: Option<String>,
    /// Longest snapshot line accepted.
    pub max_line: usize,
    /// With no line at all (not even a keep-alive) for this long, the stream is presumed
    /// dead and reconnected. The control plane sends a keep-alive about every 15 s.
    pub idle_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl WatchConfig {
    /// A watch of `service` with the default limits. The name may hold only ASCII
    /// letters, digits, `.`, `-` and `_`, as a DNS label or Kubernetes name does.
    pub fn new(service: &str, inbound_addr: Option<String>) -> Result<Self, ControlError> {
        let valid = !service.is_empty()
            && service.len() <= 253
            && service
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !valid {
            return Err(ControlError::InvalidRequest(format!(
                "service name `{service}` must be 1 to 253 ASCII letters, digits, `.`, `-` or `_`"
            )));
        }
        Ok(Self {
            service: service.to_owned(),
            inbound_addr,
            max_line: DEFAULT_MAX_LINE,
            idle_timeout: Duration::from_secs(45),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        })
    }
}

/// The watch's connection state, for `/ready`, metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchStatus {
    Connecting,
    Connected,
    /// The stream failed; the task is waiting to reconnect.
    Disconnected {
        error: String,
    },
    Stopped,
}

/// The running watch task and what it last saw.
#[derive(Debug)]
pub struct WatchHandle {
    pub task: JoinHandle<()>,
    latest: watch::Receiver<Option<Arc<ConfigSnapshot>>>,
    status: watch::Receiver<WatchStatus>,
}

impl WatchHandle {
    /// The last snapshot received, kept while disconnected.
    pub fn latest(&self) -> Option<Arc<ConfigSnapshot>> {
        self.latest.borrow().clone()
    }

    /// Follows snapshots as they arrive.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<ConfigSnapshot>>> {
        self.latest.clone()
    }

    pub fn status(&self) -> watch::Receiver<WatchStatus> {
        self.status.clone()
    }
}

/// Why one watch connection ended.
#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("reading the watch stream failed: {0}")]
    Stream(hyper::Error),
    #[error("the watch stream ended")]
    Ended,
    #[error("no line on the watch stream for {0:?}; presuming it dead")]
    Idle(Duration),
    #[error("the watch stream is malformed: {0}")]
    Frame(#[from] FrameError),
    #[error("a line of the watch stream is not a config snapshot: {0}")]
    Garbled(serde_json::Error),
}

/// Starts watching. `on_snapshot` runs on the watch task for every snapshot that differs
/// from the previous one (the control plane repeats the current one as a keep-alive), after any
/// trust bundle it carries has been applied to the client's shared bundle; it should
/// only swap state in, not block. The task ends when `shutdown` completes.
pub fn spawn_watch<F, S>(
    client: ControlPlaneClient,
    config: WatchConfig,
    on_snapshot: F,
    shutdown: S,
) -> WatchHandle
where
    F: Fn(Arc<ConfigSnapshot>) + Send + Sync + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    let (latest_tx, latest) = watch::channel(None);
    let (status_tx, status) = watch::channel(WatchStatus::Connecting);
    let task = tokio::spawn(async move {
        let deliver = |snapshot: ConfigSnapshot| {
            // The control plane repeats the current snapshot as its keep-alive; only a
            // change is worth applying and announcing.
            if latest_tx.borrow().as_deref() == Some(&snapshot) {
                return;
            }
            if let Err(error) = apply_bundle_pem(client.bundle(), &snapshot.bundle_pem) {
                tracing::error!(
                    control_plane = %client.addr(),
                    version = snapshot.version,
                    %error,
                    "the control plane sent a trust bundle that does not parse; keeping the current bundle"
                );
            }
            let snapshot = Arc::new(snapshot);
            on_snapshot(snapshot.clone());
            latest_tx.send_replace(Some(snapshot));
        };
        tokio::select! {
            () = run(&client, &config, &deliver, &status_tx) => {}
            () = shutdown => {}
        }
        status_tx.send_replace(WatchStatus::Stopped);
    });
    WatchHandle {
        task,
        latest,
        status,
    }
}

/// Connects, streams, and reconnects forever.
async fn run(
    client: &ControlPlaneClient,
    config: &WatchConfig,
    deliver: &(impl Fn(ConfigSnapshot) + Sync),
    status: &watch::Sender<WatchStatus>,
) {
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    loop {
        status.send_replace(WatchStatus::Connecting);
        let mut received = false;
        let error = stream_once(client, config, &mut |snapshot| {
            if !received {
                received = true;
                status.send_replace(WatchStatus::Connected);
            }
            deliver(snapshot);
        })
        .await;
        if received {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            control_plane = %client.addr(),
            service = %config.service,
            %error,
            retry_in = ?delay,
            "config watch disconnected; keeping the last configuration and reconnecting"
        );
        status.send_replace(WatchStatus::Disconnected {
            error: error.to_string(),
        });
        tokio::time::sleep(delay).await;
    }
}

/// One connection: register, watch, and read snapshots until something goes wrong.
async fn stream_once(
    client: &ControlPlaneClient,
    config: &WatchConfig,
    deliver: &mut impl FnMut(ConfigSnapshot),
) -> WatchError {
    match try_stream_once(client, config, deliver).await {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

async fn try_stream_once(
    client: &ControlPlaneClient,
    config: &WatchConfig,
    deliver: &mut impl FnMut(ConfigSnapshot),
) -> Result<std::convert::Infallible, WatchError> {
    let mut connection = client.connect(ClientAuthMode::Svid).await?;
    if let Some(inbound_addr) = &config.inbound_addr {
        let registration = Registration {
            service: config.service.clone(),
            inbound_addr: inbound_addr.clone(),
        };
        let _: palisade_api::wire::Registered =
            connection.post_json(PATH_REGISTER, &registration).await?;
    }
    // Naming the registered address ties this stream's liveness to that endpoint only.
    let path_and_query = match &config.inbound_addr {
        Some(addr) => format!(
            "{PATH_WATCH}?service={}&addr={}",
            config.service,
            percent_encoding::utf8_percent_encode(addr, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => format!("{PATH_WATCH}?service={}", config.service),
    };
    let mut body = connection
        .get_stream(PATH_WATCH, &path_and_query)
        .await?
        .into_body();
    let mut framer = LineFramer::new(config.max_line);
    loop {
        let frame = tokio::time::timeout(config.idle_timeout, body.frame())
            .await
            .map_err(|_| WatchError::Idle(config.idle_timeout))?
            .ok_or(WatchError::Ended)?
            .map_err(WatchError::Stream)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        framer.push(&data);
        while let Some(line) = framer.next_line()? {
            if is_keep_alive(&line) {
                continue;
            }
            let snapshot: ConfigSnapshot =
                serde_json::from_slice(&line).map_err(WatchError::Garbled)?;
            deliver(snapshot);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::*;
    use crate::control::test_support::{
        bootstrap_from, eventually, FakeControlPlane, Step, TestCa,
    };

    fn fast(config: WatchConfig) -> WatchConfig {
        WatchConfig {
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ..config
        }
    }

    struct Seen(Arc<Mutex<Vec<u64>>>);

    impl Seen {
        fn new() -> (Self, impl Fn(Arc<ConfigSnapshot>) + Send + Sync + 'static) {
            let versions = Arc::new(Mutex::new(Vec::new()));
            let sink = versions.clone();
            (Self(versions), move |snapshot: Arc<ConfigSnapshot>| {
                sink.lock().unwrap().push(snapshot.version)
            })
        }

        fn versions(&self) -> Vec<u64> {
            self.0.lock().unwrap().clone()
        }
    }

    fn line(snapshot: &ConfigSnapshot) -> Step {
        let mut bytes = serde_json::to_vec(snapshot).unwrap();
        bytes.push(b'\n');
        Step::Send(bytes.into())
    }

    #[tokio::test]
    async fn delivers_snapshots_registers_and_applies_bundles() {
        let fake = FakeControlPlane::start().await;
        let identity = bootstrap_from(&fake, "orders").await.unwrap();
        let rotated = TestCa::new("next root");
        let two_roots = fake.bundle_pem() + &palisade_spiffe::svid::cert_to_pem(&rotated.cert);
        let snapshot = |version, bundle_pem: &str| ConfigSnapshot {
            version,
            bundle_pem: bundle_pem.to_owned(),
            ..Default::default()
        };
        fake.script_watch(vec![
            Step::Send(fake.snapshot_line(1)),
            Step::Send(Bytes::from_static(b"\n")),
            Step::Send(fake.snapshot_line(1)),
            line(&snapshot(2, &two_roots)),
            line(&snapshot(3, "-----BEGIN CERTIFICATE-----\nnot base64\n")),
        ]);
        let (seen, on_snapshot) = Seen::new();
        let config = WatchConfig::new("orders", Some("127.0.0.1:15006".into())).unwrap();
        let handle = spawn_watch(
            identity.control_plane().clone(),
            fast(config),
            on_snapshot,
            std::future::pending(),
        );
        assert!(eventually(Duration::from_secs(3), || seen.versions() == [1, 2, 3]).await);
        let first = handle.latest().unwrap();
        assert_eq!(first.version, 3);
        assert_eq!(*handle.status().borrow(), WatchStatus::Connected);
        // The two-root bundle was applied; the broken one after it was not.
        assert_eq!(identity.bundle.load().roots().len(), 2);
        let registrations = fake.state.registrations.lock().unwrap().clone();
        assert_eq!(registrations.len(), 1);
        assert_eq!(registrations[0].0, identity.id);
        assert_eq!(registrations[0].1.inbound_addr, "127.0.0.1:15006");
        handle.task.abort();
    }

    #[tokio::test]
    async fn a_garbled_line_reconnects_reregisters_and_keeps_the_last_snapshot() {
        let fake = FakeControlPlane::start().await;
        let identity = bootstrap_from(&fake, "orders").await.unwrap();
        fake.script_watch(vec![
            Step::Send(fake.snapshot_line(1)),
            Step::Send(Bytes::from_static(b"{\"version\": \"garbled\n")),
        ]);
        let (seen, on_snapshot) = Seen::new();
        let config = WatchConfig::new("orders", Some("127.0.0.1:15006".into())).unwrap();
        let handle = spawn_watch(
            identity.control_plane().clone(),
            WatchConfig {
                backoff_initial: Duration::from_millis(300),
                ..fast(config)
            },
            on_snapshot,
            std::future::pending(),
        );
        let status = handle.status();
        assert!(
            eventually(Duration::from_secs(3), || matches!(
                &*status.borrow(),
                WatchStatus::Disconnected { error } if error.contains("not a config snapshot")
            ))
            .await
        );
        assert_eq!(handle.latest().unwrap().version, 1, "last snapshot kept");
        assert!(
            eventually(Duration::from_secs(3), || seen.versions().len() == 2).await,
            "no snapshot after reconnecting"
        );
        assert_eq!(handle.latest().unwrap().version, 1001);
        handle.task.abort();
        assert_eq!(fake.state.registrations.lock().unwrap().len(), 2);
        assert_eq!(
            fake.state
                .watch_connections
                .load(std::sync::atomic::Ordering::SeqCst),
            2
        );
    }

    #[tokio::test]
    async fn an_oversized_line_is_refused_without_buffering_it() {
        let fake = FakeControlPlane::start().await;
        let identity = bootstrap_from(&fake, "orders").await.unwrap();
        fake.script_watch(vec![Step::Send(Bytes::from(vec![b'{'; 4096]))]);
        let (seen, on_snapshot) = Seen::new();
        let config = WatchConfig {
            max_line: 1024,
            backoff_initial: Duration::from_millis(300),
            ..fast(WatchConfig::new("orders", None).unwrap())
        };
        let handle = spawn_watch(
            identity.control_plane().clone(),
            config,
            on_snapshot,
            std::future::pending(),
        );
        let status = handle.status();
        assert!(
            eventually(Duration::from_secs(3), || matches!(
                &*status.borrow(),
                WatchStatus::Disconnected { error } if error.contains("longer than 1024 bytes")
            ))
            .await
        );
        assert!(eventually(Duration::from_secs(3), || seen.versions() == [1001]).await);
        assert!(fake.state.registrations.lock().unwrap().is_empty());
        handle.task.abort();
    }

    #[tokio::test]
    async fn a_silent_or_ended_stream_is_reconnected_and_shutdown_stops_the_task() {
        let fake = FakeControlPlane::start().await;
        let identity = bootstrap_from(&fake, "orders").await.unwrap();
        fake.script_watch(vec![Step::Send(fake.snapshot_line(1)), Step::End]);
        fake.script_watch(vec![Step::Send(fake.snapshot_line(2))]);
        let (seen, on_snapshot) = Seen::new();
        let config = WatchConfig {
            idle_timeout: Duration::from_millis(300),
            ..fast(WatchConfig::new("orders", None).unwrap())
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = spawn_watch(
            identity.control_plane().clone(),
            config,
            on_snapshot,
            async move {
                let _ = stopped.await;
            },
        );
        // 1 then the end of the stream; 2 then silence past the idle timeout; then 1002.
        assert!(
            eventually(Duration::from_secs(4), || seen.versions() == [1, 2, 1002]).await,
            "saw {:?}",
            seen.versions()
        );
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(1), handle.task)
            .await
            .expect("the watch stops on shutdown")
            .unwrap();
    }

    #[test]
    fn service_names_are_validated() {
        assert!(WatchConfig::new("payments-v2.shop", None).is_ok());
        for bad in ["", "a b", "a/b", "a?x=1", "é"] {
            let error = WatchConfig::new(bad, None).unwrap_err().to_string();
            assert!(error.contains("service name"), "{bad}: {error}");
        }
    }
}
