//! The proxy's settings: where it listens, where the app is, and the limits and timeouts
//! that bound what a peer can make it spend.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything the data path needs to start, built by `main.rs` from the command line.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// mTLS listener for other proxies.
    pub inbound: SocketAddr,
    /// Plain HTTP listener for the local application's outgoing calls.
    pub outbound: SocketAddr,
    /// Health and metrics.
    pub admin: SocketAddr,
    /// The local application, plain HTTP.
    pub app: SocketAddr,
    /// Also accept plaintext on the inbound listener, marked unauthenticated. Migration only.
    pub permissive: bool,
    /// How long in-flight requests may take to finish after shutdown is asked for.
    pub drain_timeout: Duration,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// Span export (see [`crate::telemetry`]); `None` keeps tracing off.
    pub tracing: Option<crate::telemetry::Tracing>,
}

impl ProxyConfig {
    /// A config with the default limits and timeouts.
    pub fn new(
        inbound: SocketAddr,
        outbound: SocketAddr,
        admin: SocketAddr,
        app: SocketAddr,
    ) -> Self {
        Self {
            inbound,
            outbound,
            admin,
            app,
            permissive: false,
            tracing: None,
            drain_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
        }
    }
}

/// Sizes a peer controls. Defaults follow what Envoy and Linkerd ship: large enough for
/// real traffic (cookies, JWTs), small enough that one client cannot pin much memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of an HTTP/1.1 request head (request line and headers); past it, 431.
    /// hyper refuses values under 8 KiB, so smaller values are raised to 8 KiB.
    pub max_header_bytes: usize,
    /// Number of HTTP/1.1 request headers; past it, 431.
    pub max_headers: usize,
    /// HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`, bytes.
    pub max_header_list_size: u32,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` offered to each client connection.
    pub max_concurrent_streams: u32,
    /// Streams a client may reset before the server accepted them, per connection, before
    /// the connection is closed with `ENHANCE_YOUR_CALM` (CVE-2023-44487, rapid reset).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server itself had to reset because the client misbehaved, per
    /// connection, before the connection is closed (the 2024 variant of rapid reset).
    pub max_local_error_reset_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_header_list_size: 64 * 1024,
            max_concurrent_streams: 100,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 256,
        }
    }
}

/// Times a peer controls. Each one stops a slow or silent peer from holding a socket,
/// a task and buffers forever.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect to the app or to another proxy.
    pub connect: Duration,
    /// The TLS handshake, including the wait for the client's first byte.
    pub tls_handshake: Duration,
    /// Reading an HTTP/1.1 request head once a connection waits for one.
    pub request_header: Duration,
    /// No byte in either direction for this long closes the connection gracefully.
    pub idle: Duration,
    /// How long a failing endpoint is left out of load balancing.
    pub endpoint_ejection: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(1),
            tls_handshake: Duration::from_secs(5),
            request_header: Duration::from_secs(10),
            idle: Duration::from_secs(300),
            endpoint_ejection: Duration::from_secs(30),
        }
    }
}
