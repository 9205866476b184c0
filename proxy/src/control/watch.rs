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

/// Starts watching. `on_snapshot` runs on the watch task for every snapshot, after any
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
    let path_and_query = format!("{PATH_WATCH}?service={}", config.service);
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
