//! Connections to other proxies: TCP, then TLS 1.3 presenting our SVID, then a check that
//! the server's SPIFFE ID is the one registered for the endpoint, then HTTP/2.
//!
//! The TLS verifier accepts any SVID of the trust domain; which identity is acceptable
//! depends on the endpoint, so it is checked right after the handshake and before a
//! single request byte is sent. A mismatch (a misrouted address, or someone else
//! listening on it) refuses the connection. Connections are pooled per
//! (address, identity) and multiplexed, whatever protocol the app spoke.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hyper::client::conn::http1;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use palisade_spiffe::tls::{client_config, peer_spiffe_id};
use palisade_spiffe::{ServerIdentity, SpiffeId};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::body::ProxyBody;
use crate::config::Timeouts;
use crate::metrics::{Direction, HandshakeFailure, Metrics};
use crate::run::ProxyIdentity;
use crate::state::Endpoint;

/// Why no connection to an endpoint could be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("TCP connect to {addr} failed: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("TCP connect to {addr} timed out")]
    TcpTimeout { addr: String },
    #[error("TLS handshake with {addr} failed ({}): {source}", .failure.reason())]
    Tls {
        addr: String,
        failure: HandshakeFailure,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} timed out")]
    TlsTimeout { addr: String },
    #[error(
        "{addr} presented `{found}`, but only `{expected}` is registered there; connection refused"
    )]
    PeerIdMismatch {
        addr: String,
        expected: SpiffeId,
        found: String,
    },
    #[error("connecting to {addr} failed a moment ago")]
    RecentFailure { addr: String },
    #[error("HTTP/2 handshake with {addr} failed: {source}")]
    Http { addr: String, source: hyper::Error },
}

/// Pooled connections by address, then by the identity verified on them. Keyed by the
/// address string so that a lookup borrows instead of allocating.
type Pool = HashMap<String, Vec<Slot>>;

/// One pooled connection, and the gate that lets only one task connect it at a time:
/// a burst of requests to a new endpoint opens one connection, not one per request.
struct Slot {
    id: SpiffeId,
    sender: Option<SendRequest<ProxyBody>>,
    /// Held while connecting; holds the time of the last failed attempt, so that tasks
    /// that waited behind a failure fail over at once instead of retrying in turn.
    gate: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

impl Slot {
    fn ready(&self) -> Option<SendRequest<ProxyBody>> {
        self.sender
            .as_ref()
            .filter(|sender| sender.is_ready())
            .cloned()
    }

    fn is_dead(&self) -> bool {
        Arc::strong_count(&self.gate) == 1 && self.sender.as_ref().is_none_or(|s| s.is_closed())
    }
}

/// The pool of mTLS HTTP/2 connections to other proxies.
pub struct MeshClient {
    tls: TlsConnector,
    /// ALPN `http/1.1`, for upgrades only.
    tls_http1: TlsConnector,
    http: http2::Builder<TokioExecutor>,
    pool: Mutex<Pool>,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
}

impl MeshClient {
    pub fn new(identity: &ProxyIdentity, timeouts: Timeouts, metrics: Arc<Metrics>) -> Self {
        let mut tls = client_config(
            Some(identity.svids.clone()),
            identity.bundle.clone(),
            ServerIdentity::AnyInTrustDomain,
        );
        let mut tls_http1 = tls.clone();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        tls_http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut http = http2::Builder::new(TokioExecutor::new());
        http.timer(TokioTimer::new())
            .keep_alive_interval(timeouts.idle / 4)
            .keep_alive_timeout(timeouts.tls_handshake);
        Self {
            tls: TlsConnector::from(Arc::new(tls)),
            tls_http1: TlsConnector::from(Arc::new(tls_http1)),
            http,
            pool: Mutex::new(HashMap::new()),
            timeouts,
            metrics,
        }
    }

    /// A ready connection to `endpoint`, pooled or new.
    pub async fn connection(
        &self,
        endpoint: &Endpoint,
    ) -> Result<SendRequest<ProxyBody>, ConnectError> {
        let waiting_since = Instant::now();
        let gate = {
            let mut pool = self.lock_pool();
            let slots = match pool.get_mut(endpoint.addr.as_str()) {
                Some(slots) => slots,
                None => {
                    pool.retain(|_, slots| {
                        slots.retain(|slot| !slot.is_dead());
                        !slots.is_empty()
                    });
                    pool.entry(endpoint.addr.clone()).or_default()
                }
            };
            let slot = match slots.iter().position(|slot| slot.id == endpoint.spiffe_id) {
                Some(index) => &mut slots[index],
                None => {
                    // A new slot is rare (a new endpoint, or one whose connection
                    // died): the moment to drop slots nobody will use again.
                    slots.retain(|slot| !slot.is_dead());
                    slots.push(Slot {
                        id: endpoint.spiffe_id.clone(),
                        sender: None,
                        gate: Arc::default(),
                    });
                    let last = slots.len() - 1;
                    &mut slots[last]
                }
            };
            if let Some(sender) = slot.ready() {
                return Ok(sender);
            }
            slot.gate.clone()
        };
        let mut last_failure = gate.lock().await;
        if let Some(sender) = self.pooled(endpoint) {
            return Ok(sender);
        }
        if last_failure.is_some_and(|failed| failed >= waiting_since) {
            return Err(ConnectError::RecentFailure {
                addr: endpoint.addr.clone(),
            });
        }
        // Boxed: connecting holds a TLS handshake's state, and every request's future
        // would otherwise be that large (and moved whole) for the rare request that
        // connects.
        let sender = match Box::pin(self.connect(endpoint)).await {
            Ok(sender) => sender,
            Err(error) => {
                *last_failure = Some(Instant::now());
                return Err(error);
            }
        };
        let mut pool = self.lock_pool();
        if let Some(slot) = pool
            .get_mut(endpoint.addr.as_str())
            .and_then(|slots| slots.iter_mut().find(|slot| slot.id == endpoint.spiffe_id))
        {
            slot.sender = Some(sender.clone());
        }
        Ok(sender)
    }

    /// The pool. Every update is a single field, so a lock poisoned by a panic elsewhere
    /// cannot leave it inconsistent and is used as is.
    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pooled(&self, endpoint: &Endpoint) -> Option<SendRequest<ProxyBody>> {
        self.lock_pool()
            .get(endpoint.addr.as_str())?
            .iter()
            .find(|slot| slot.id == endpoint.spiffe_id)?
            .ready()
    }

    /// Drops the pooled connection to `endpoint` (it failed to take a request).
    pub fn forget(&self, endpoint: &Endpoint) {
        if let Some(slot) = self
            .lock_pool()
            .get_mut(endpoint.addr.as_str())
            .and_then(|slots| slots.iter_mut().find(|slot| slot.id == endpoint.spiffe_id))
        {
            slot.sender = None;
        }
    }

    /// A new HTTP/1.1 connection to `endpoint` for one upgrade request; not pooled,
    /// since the connection becomes the upgraded byte stream.
    pub async fn upgrade_connection(
        &self,
        endpoint: &Endpoint,
    ) -> Result<http1::SendRequest<ProxyBody>, ConnectError> {
        let tls = self.secure(endpoint, &self.tls_http1).await?;
        let addr = &endpoint.addr;
        let (sender, connection) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|source| ConnectError::Http {
                addr: addr.clone(),
                source,
            })?;
        let open = self.metrics.open_connection(Direction::Outbound);
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
            drop(open);
        });
        Ok(sender)
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<SendRequest<ProxyBody>, ConnectError> {
        let tls = self.secure(endpoint, &self.tls).await?;
        let addr = &endpoint.addr;
        let (sender, connection) = self
            .http
            // Boxed: hyper spawns a task per request whose future type also holds
            // the connection's, TLS state included, so every such task would be
            // allocated and moved at that size.
            .handshake(TokioIo::new(Box::new(tls)))
            .await
            .map_err(|source| ConnectError::Http {
                addr: addr.clone(),
                source,
            })?;
        let peer = addr.clone();
        let open = self.metrics.open_connection(Direction::Outbound);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection to a mesh peer ended");
            }
            drop(open);
        });
        Ok(sender)
    }

    /// TCP, TLS, and the check that the peer is the identity registered for `endpoint`.
    async fn secure(
        &self,
        endpoint: &Endpoint,
        connector: &TlsConnector,
    ) -> Result<TlsStream<TcpStream>, ConnectError> {
        let addr = &endpoint.addr;
        let tcp = match tokio::time::timeout(self.timeouts.connect, TcpStream::connect(addr)).await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(source)) => {
                return Err(ConnectError::Tcp {
                    addr: addr.clone(),
                    source,
                })
            }
            Err(_) => return Err(ConnectError::TcpTimeout { addr: addr.clone() }),
        };
        let _ = tcp.set_nodelay(true);
        // SPIFFE servers are named by their SVID, not by DNS; the IP is a harmless SNI.
        let name = match tcp.peer_addr() {
            Ok(peer) => ServerName::IpAddress(peer.ip().into()),
            Err(source) => {
                return Err(ConnectError::Tcp {
                    addr: addr.clone(),
                    source,
                })
            }
        };
        let tls =
            match tokio::time::timeout(self.timeouts.tls_handshake, connector.connect(name, tcp))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(source)) => {
                    let failure = HandshakeFailure::classify(&source);
                    self.metrics.handshake(Direction::Outbound, Err(failure));
                    return Err(ConnectError::Tls {
                        addr: addr.clone(),
                        failure,
                        source,
                    });
                }
                Err(_) => {
                    self.metrics
                        .handshake(Direction::Outbound, Err(HandshakeFailure::Timeout));
                    return Err(ConnectError::TlsTimeout { addr: addr.clone() });
                }
            };
        let found = peer_spiffe_id(tls.get_ref().1.peer_certificates());
        if found.as_ref() != Some(&endpoint.spiffe_id) {
            self.metrics
                .handshake(Direction::Outbound, Err(HandshakeFailure::PeerIdMismatch));
            let found = found.map_or_else(|| "no SPIFFE ID".to_owned(), |id| id.to_string());
            tracing::warn!(
                event = "tls_failure",
                reason = "peer_id_mismatch",
                %addr,
                expected = %endpoint.spiffe_id,
                %found,
                "refused a destination proxy presenting an identity not registered for it"
            );
            return Err(ConnectError::PeerIdMismatch {
                addr: addr.clone(),
                expected: endpoint.spiffe_id.clone(),
                found,
            });
        }
        self.metrics.handshake(Direction::Outbound, Ok(()));
        Ok(tls)
    }
}
