//! The queue between the request path and the export thread, and the thread itself.
//!
//! The request path's share is one uncontended lock and a push: a full queue drops the
//! span and counts it, it never waits. The `palisade-otlp-export` thread wakes when a
//! batch is full, when the schedule delay has passed, or when asked to flush; it encodes
//! batches itself ([`super::encode`]) and sends each as one unary gRPC call over a
//! plaintext HTTP/2 connection it keeps open, on a single-threaded runtime of its own.
//! A failed call is logged (at most once a minute), its spans are dropped and counted,
//! and the connection is opened again for the next batch: nothing is retried later.

use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::metrics::counter::Counter;

use super::config::ExportConfig;
use super::encode::{export_request, Preamble, Writer};
use super::record::{Anchor, SpanRecord};

/// The gRPC method of an OTLP trace export.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// How often a failing collector is reported in the log.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Finished spans waiting for the export thread.
#[derive(Debug)]
pub(crate) struct Queue {
    spans: Mutex<Vec<SpanRecord>>,
    max_queue: usize,
    max_batch: usize,
    /// The proxy's own service: a span naming it records a flag, not the name.
    local_service: Box<str>,
    /// Spans dropped because the queue was full.
    pub(crate) dropped: Counter,
    /// Spans lost because their export failed.
    pub(crate) failed: Counter,
    /// The export thread, woken when a batch is full.
    exporter: OnceLock<Thread>,
}

impl Queue {
    pub(crate) fn new(max_queue: usize, max_batch: usize, local_service: &str) -> Self {
        Self {
            spans: Mutex::new(Vec::with_capacity(max_batch)),
            max_queue,
            max_batch,
            local_service: local_service.into(),
            dropped: Counter::default(),
            failed: Counter::default(),
            exporter: OnceLock::new(),
        }
    }

    /// Queues a finished span, or drops and counts it when the queue is full.
    pub(crate) fn push(&self, span: SpanRecord) {
        let queued = {
            let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
            if spans.len() >= self.max_queue {
                None
            } else {
                spans.push(span);
                Some(spans.len())
            }
        };
        match queued {
            None => {
                self.dropped.inc();
            }
            Some(len) if len == self.max_batch => {
                if let Some(exporter) = self.exporter.get() {
                    exporter.unpark();
                }
            }
            Some(_) => {}
        }
    }

    pub(crate) fn local_service(&self) -> &str {
        &self.local_service
    }

    fn len(&self) -> usize {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Everything queued, swapped with `spare` (an empty buffer keeping its capacity).
    fn take(&self, spare: &mut Vec<SpanRecord>) {
        std::mem::swap(
            &mut *self.spans.lock().unwrap_or_else(|p| p.into_inner()),
            spare,
        );
    }
}

/// What the owner asks of the export thread; the sender, when any, learns it is done.
#[derive(Debug)]
pub(crate) enum Command {
    Flush(SyncSender<()>),
    Stop(Option<SyncSender<()>>),
}

/// Where batches go.
pub(crate) enum Sink {
    Otlp(Box<OtlpClient>),
    /// Spans are dropped unencoded: benches measure the request path's share alone.
    Discard,
}

impl Sink {
    /// Exports `spans`; false when they were lost.
    fn export(&mut self, spans: &[SpanRecord]) -> bool {
        match self {
            Self::Otlp(client) => client.export(spans),
            Self::Discard => true,
        }
    }
}

/// Starts the export thread; `sink` is built on it (a runtime must be dropped on the
/// thread that owns it, never in the caller's async context).
pub(crate) fn spawn(
    queue: Arc<Queue>,
    schedule_delay: Duration,
    sink: impl FnOnce() -> Result<Sink, std::io::Error> + Send + 'static,
) -> Result<(Thread, Sender<Command>), std::io::Error> {
    let (commands, received) = std::sync::mpsc::channel();
    let (started_tx, started) = std::sync::mpsc::sync_channel(1);
    let thread_queue = queue.clone();
    let handle = std::thread::Builder::new()
        .name("palisade-otlp-export".to_owned())
        .spawn(move || match sink() {
            Ok(sink) => {
                let _ = started_tx.send(Ok(()));
                run(&thread_queue, &received, sink, schedule_delay);
            }
            Err(error) => {
                let _ = started_tx.send(Err(error));
            }
        })?;
    started
        .recv()
        .map_err(|_| std::io::Error::other("the export thread stopped while starting"))??;
    let thread = handle.thread().clone();
    let _ = queue.exporter.set(thread.clone());
    Ok((thread, commands))
}

fn run(queue: &Queue, commands: &Receiver<Command>, mut sink: Sink, delay: Duration) {
    let mut batch = Vec::with_capacity(queue.max_batch);
    let mut next = Instant::now() + delay;
    loop {
        let command = match commands.try_recv() {
            Ok(command) => Some(command),
            Err(TryRecvError::Empty) => None,
            // Every owner is gone: export what is left and stop.
            Err(TryRecvError::Disconnected) => Some(Command::Stop(None)),
        };
        let now = Instant::now();
        if command.is_some() || now >= next || queue.len() >= queue.max_batch {
            queue.take(&mut batch);
            export_all(queue, &mut sink, &batch);
            batch.clear();
            next = Instant::now() + delay;
        }
        match command {
            Some(Command::Flush(done)) => {
                let _ = done.send(());
            }
            Some(Command::Stop(done)) => {
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return;
            }
            None => std::thread::park_timeout(next.saturating_duration_since(Instant::now())),
        }
    }
}

/// Exports `spans` in batches; after a failed batch the rest are dropped too (the
/// collector is down or slow: waiting on it again would delay the next flush by another
/// timeout, and spans are never kept for a retry).
fn export_all(queue: &Queue, sink: &mut Sink, spans: &[SpanRecord]) {
    let mut batches = spans.chunks(queue.max_batch);
    for batch in batches.by_ref() {
        if !sink.export(batch) {
            queue.failed.inc_by(batch.len() as u64);
            break;
        }
    }
    let lost: usize = batches.map(<[SpanRecord]>::len).sum();
    if lost > 0 {
        queue.failed.inc_by(lost as u64);
    }
}

/// Why an export call failed (never includes header values: they may be credentials).
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("HTTP/2: {0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within {0:?} (OTEL_EXPORTER_OTLP_TIMEOUT)")]
    Timeout(Duration),
    #[error("the collector answered HTTP {0}")]
    Status(StatusCode),
    #[error("the collector answered gRPC status {code}: {message}")]
    Grpc { code: String, message: String },
    #[error("the collector's answer has no grpc-status")]
    NoGrpcStatus,
}

/// An OTLP/gRPC client on its own single-threaded runtime.
pub(crate) struct OtlpClient {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    preamble: Preamble,
    writer: Writer,
    timeout: Duration,
    log: FailureLog,
}

impl OtlpClient {
    pub(crate) fn new(
        config: &ExportConfig,
        service_name: &str,
        local_service: &str,
    ) -> Result<Self, std::io::Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let uri = Uri::builder()
            .scheme("http")
            .authority(config.authority.clone())
            .path_and_query(EXPORT_PATH)
            .build()
            .map_err(std::io::Error::other)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("palisade-proxy/", env!("CARGO_PKG_VERSION"))),
        );
        for (name, value) in &config.headers {
            headers.insert(name.clone(), value.clone());
        }
        Ok(Self {
            runtime,
            channel: Channel {
                authority: config.authority.clone(),
                uri,
                headers,
                sender: None,
            },
            preamble: Preamble::new(service_name, &config.resource, local_service),
            writer: Writer::default(),
            timeout: config.timeout,
            log: FailureLog::default(),
        })
    }

    fn export(&mut self, spans: &[SpanRecord]) -> bool {
        export_request(&mut self.writer, &self.preamble, &Anchor::now(), spans);
        let frame = self.writer.frame();
        let timeout = self.timeout;
        let channel = &mut self.channel;
        let result = self.runtime.block_on(async {
            tokio::time::timeout(timeout, channel.export(frame.clone()))
                .await
                .unwrap_or(Err(ExportError::Timeout(timeout)))
        });
        self.writer.reclaim(frame);
        match result {
            Ok(()) => true,
            Err(error) => {
                // A timed-out or failed connection is not reused.
                self.channel.sender = None;
                self.log
                    .failed(&self.channel.authority, spans.len(), &error);
                false
            }
        }
    }
}

/// One HTTP/2 connection to the collector, opened on first use and after a failure.
struct Channel {
    authority: Authority,
    uri: Uri,
    headers: HeaderMap,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Channel {
    async fn export(&mut self, body: Bytes) -> Result<(), ExportError> {
        let reused = self.sender.is_some();
        match self.call(body.clone()).await {
            // The collector may have closed an idle connection: one more try on a new one.
            Err(ExportError::Http(_)) if reused => {
                self.sender = None;
                self.call(body).await
            }
            result => result,
        }
    }

    async fn call(&mut self, body: Bytes) -> Result<(), ExportError> {
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => self.sender.insert(self.connect().await?),
        };
        sender.ready().await?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let response = sender.send_request(request).await?;
        let (head, body) = response.into_parts();
        if head.status != StatusCode::OK {
            return Err(ExportError::Status(head.status));
        }
        // A "trailers-only" answer carries the status in its headers.
        if head.headers.contains_key("grpc-status") {
            return grpc_status(&head.headers);
        }
        let trailers = body.collect().await?.trailers().cloned();
        grpc_status(&trailers.unwrap_or_default())
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ExportError> {
        let stream = tokio::net::TcpStream::connect(self.authority.as_str())
            .await
            .map_err(ExportError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

fn grpc_status(headers: &HeaderMap) -> Result<(), ExportError> {
    const GRPC_MESSAGE_MAX: usize = 200;
    let code = headers
        .get("grpc-status")
        .ok_or(ExportError::NoGrpcStatus)?
        .to_str()
        .unwrap_or("?");
    if code == "0" {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .map(|m| percent_encoding::percent_decode(m.as_bytes()).decode_utf8_lossy())
        .unwrap_or_default();
    Err(ExportError::Grpc {
        code: code.chars().take(8).collect(),
        message: message.chars().take(GRPC_MESSAGE_MAX).collect(),
    })
}

/// Logs the first failed export, then at most one line a minute with the count since.
#[derive(Debug, Default)]
struct FailureLog {
    last: Option<Instant>,
    since: u64,
}

impl FailureLog {
    fn failed(&mut self, collector: &Authority, spans: usize, error: &ExportError) {
        self.since += 1;
        if self.last.is_some_and(|last| last.elapsed() < LOG_EVERY) {
            return;
        }
        tracing::warn!(
            event = "trace_export_failed",
            collector = %collector,
            spans,
            failed_exports = self.since,
            error = %error,
            "exporting spans failed; they are dropped (next report in a minute at most)"
        );
        self.last = Some(Instant::now());
        self.since = 0;
    }
}
