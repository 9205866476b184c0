//! What every HTTP listener of the proxy shares: the hyper server settings that enforce
//! [`Limits`] and [`Timeouts`], and the per-connection loop that honours shutdown and
//! closes idle connections.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::body::ProxyBody;
use crate::config::{Limits, Timeouts};
use crate::drain::Watch;

/// hyper's smallest accepted HTTP/1.1 read buffer.
const MIN_HEADER_BYTES: usize = 8192;

/// hyper's own limit on HTTP/1.1 request headers when none is set. Setting it explicitly
/// makes hyper allocate and fill two slot arrays per request head (~1,700 instructions);
/// left unset, it parses into uninitialized stack arrays of this size, with the same
/// limit.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// An HTTP/1.1 + HTTP/2 server builder with the proxy's limits:
/// - HTTP/1.1: the request head may not exceed `max_header_bytes` nor `max_headers`
///   fields (hyper answers 431), and must arrive within `request_header`.
/// - HTTP/2: `max_concurrent_streams`, `max_header_list_size`, and both rapid-reset
///   guards (client resets before accept, and server-side error resets), after which
///   hyper closes the connection with `ENHANCE_YOUR_CALM`.
pub fn http_builder(limits: &Limits, timeouts: &Timeouts) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.request_header)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
    if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
        builder.http1().max_headers(limits.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size)
        .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.max_local_error_reset_streams);
    builder
}

/// Serves one connection until it ends. When shutdown is signaled, or when no byte moved
/// in either direction for `idle`, the connection is shut down gracefully: in-flight
/// requests finish, then it closes. The watch is held until then, so drain waits for it.
pub async fn serve_connection<I, S, F>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    watch: Watch,
    idle: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Fn(Request<Incoming>) -> F + Send + 'static,
    F: std::future::Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let io = IdleIo::new(io);
    let activity = io.activity.clone();
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(io), hyper::service::service_fn(service));
    tokio::pin!(connection);
    let mut closing = false;
    let mut ticker =
        tokio::time::interval((idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5)));
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                break;
            }
            () = watch.signaled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = ticker.tick(), if !closing => {
                if activity.idle_for() >= idle {
                    tracing::debug!(?idle, "closing an idle connection");
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    drop(watch);
}

/// When a connection last moved a byte.
#[derive(Debug)]
struct Activity {
    start: Instant,
    last_millis: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

pin_project_lite::pin_project! {
    /// Records the time of the last read or write, for the idle timeout.
    struct IdleIo<I> {
        #[pin]
        inner: I,
        activity: Arc<Activity>,
    }
}

impl<I> IdleIo<I> {
    fn new(inner: I) -> Self {
        Self {
            inner,
            activity: Arc::new(Activity {
                start: Instant::now(),
                last_millis: AtomicU64::new(0),
            }),
        }
    }
}

impl<I: AsyncRead> AsyncRead for IdleIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        result
    }
}

impl<I: AsyncWrite> AsyncWrite for IdleIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The status line answering a request of `count` headers to a server built with
    /// `max_headers`.
    async fn status_with_headers(max_headers: usize, count: usize) -> String {
        let limits = Limits {
            max_headers,
            ..Limits::default()
        };
        let builder = http_builder(&limits, &Timeouts::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (_signal, watch) = crate::drain::channel();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("the test client connects");
            let service = |_request: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(crate::body::empty()))
            };
            serve_connection(&builder, tcp, service, watch, Duration::from_secs(5)).await;
        });
        let mut tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("the server listens");
        // `host` and `connection` are two of the `count`.
        let extra: String = (2..count).map(|i| format!("x-h{i}: v\r\n")).collect();
        let request = format!("GET / HTTP/1.1\r\nhost: a\r\n{extra}connection: close\r\n\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .expect("the request is sent");
        let mut answer = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer))
            .await
            .expect("an answer within 5 s")
            .expect("the answer is read");
        server.abort();
        String::from_utf8_lossy(&answer[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    }

    /// The default limit is left to hyper (see [`HYPER_DEFAULT_MAX_HEADERS`]): it must
    /// still be exactly `max_headers`, as a limit set explicitly is.
    #[tokio::test]
    async fn the_header_count_limit_holds_whether_or_not_it_is_hyper_s_default() {
        let default = Limits::default().max_headers;
        assert_eq!(default, HYPER_DEFAULT_MAX_HEADERS);
        assert_eq!(
            status_with_headers(default, default).await,
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            status_with_headers(default, default + 1).await,
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        assert_eq!(status_with_headers(7, 7).await, "HTTP/1.1 200 OK");
        assert_eq!(
            status_with_headers(7, 8).await,
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }
}
