//! One HTTP/2 connection to the control plane over TLS, with bounded waits and bodies.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_api::wire::ErrorBody;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{ControlError, ControlPlaneAddr, Timeouts};

/// Largest JSON answer accepted for a unary call (an SVID chain and bundle are a few KiB).
const MAX_RESPONSE_BODY: usize = 1024 * 1024;
/// How much of an unexpected error body is quoted in an error message.
const MAX_QUOTED_BODY: usize = 512;

/// An open HTTP/2 connection. It closes when dropped.
pub struct Connection {
    addr: ControlPlaneAddr,
    sender: SendRequest<Full<Bytes>>,
    timeouts: Timeouts,
}

impl Connection {
    pub(super) async fn open(
        addr: &ControlPlaneAddr,
        tls: Arc<ClientConfig>,
        timeouts: Timeouts,
    ) -> Result<Self, ControlError> {
        tokio::time::timeout(timeouts.connect, Self::handshake(addr, tls, timeouts))
            .await
            .map_err(|_| ControlError::ConnectTimeout {
                addr: addr.clone(),
                after: timeouts.connect,
            })?
    }

    async fn handshake(
        addr: &ControlPlaneAddr,
        tls: Arc<ClientConfig>,
        timeouts: Timeouts,
    ) -> Result<Self, ControlError> {
        let tcp = TcpStream::connect((addr.host(), addr.port()))
            .await
            .map_err(|source| ControlError::Connect {
                addr: addr.clone(),
                source,
            })?;
        // Nagle only delays the small frames of this protocol.
        let _ = tcp.set_nodelay(true);
        // The verifier checks the server's SPIFFE ID, not this name; rustls still needs
        // one, and an IP or DNS name of the control plane is the honest choice.
        let server_name = ServerName::try_from(addr.host().to_owned())
            .unwrap_or_else(|_| ServerName::try_from("control-plane.palisade").expect("valid"));
        let stream = TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
            .map_err(|source| ControlError::Tls {
                addr: addr.clone(),
                source,
            })?;
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|source| ControlError::Http {
                    addr: addr.clone(),
                    source,
                })?;
        let peer = addr.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(control_plane = %peer, %error, "control plane connection ended");
            }
        });
        Ok(Self {
            addr: addr.clone(),
            sender,
            timeouts,
        })
    }

    pub fn addr(&self) -> &ControlPlaneAddr {
        &self.addr
    }

    /// POSTs `body` as JSON and decodes a JSON answer, all within the request timeout.
    pub async fn post_json<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        path: &'static str,
        body: &Req,
    ) -> Result<Resp, ControlError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ControlError::InvalidRequest(format!("cannot encode `{path}`: {e}")))?;
        let after = self.timeouts.request;
        let addr = self.addr.clone();
        tokio::time::timeout(after, async {
            let response = self
                .send(Method::POST, path, path, Bytes::from(body))
                .await?;
            let bytes = self.read_body(path, response.into_body()).await?;
            serde_json::from_slice(&bytes).map_err(|source| ControlError::Decode {
                addr: self.addr.clone(),
                path,
                source,
            })
        })
        .await
        .map_err(|_| ControlError::Timeout { addr, path, after })?
    }

    /// Sends a GET and returns the answer's head once it arrives (within the request
    /// timeout) with the body still streaming: for the watch.
    pub async fn get_stream(
        &mut self,
        path: &'static str,
        path_and_query: &str,
    ) -> Result<Response<Incoming>, ControlError> {
        let after = self.timeouts.request;
        let addr = self.addr.clone();
        tokio::time::timeout(
            after,
            self.send(Method::GET, path, path_and_query, Bytes::new()),
        )
        .await
        .map_err(|_| ControlError::Timeout { addr, path, after })?
    }

    /// Sends one request; a non-success status becomes [`ControlError::Refused`] with
    /// the server's [`ErrorBody`], or [`ControlError::UnexpectedStatus`] without one.
    async fn send(
        &mut self,
        method: Method,
        path: &'static str,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<Response<Incoming>, ControlError> {
        let uri = format!("https://{}{}", self.addr.authority(), path_and_query);
        let mut builder = Request::builder().method(method).uri(uri);
        if !body.is_empty() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| ControlError::InvalidRequest(format!("`{path_and_query}`: {e}")))?;
        let http_error = |source| ControlError::Http {
            addr: self.addr.clone(),
            source,
        };
        self.sender.ready().await.map_err(http_error)?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(http_error)?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = self.read_body(path, response.into_body()).await?;
        Err(refusal(&self.addr, path, status, &bytes))
    }

    async fn read_body(&self, path: &'static str, body: Incoming) -> Result<Bytes, ControlError> {
        Limited::new(body, MAX_RESPONSE_BODY)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|e| ControlError::Body {
                addr: self.addr.clone(),
                path,
                reason: e.to_string(),
            })
    }
}

/// The error for a non-success answer: the server's [`ErrorBody`] when it sent one, else
/// the status and the start of whatever it sent.
fn refusal(
    addr: &ControlPlaneAddr,
    path: &'static str,
    status: StatusCode,
    body: &[u8],
) -> ControlError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { code, error }) => ControlError::Refused {
            addr: addr.clone(),
            path,
            status,
            code,
            message: error,
        },
        Err(_) => {
            let quoted = &body[..body.len().min(MAX_QUOTED_BODY)];
            ControlError::UnexpectedStatus {
                addr: addr.clone(),
                path,
                status,
                body: String::from_utf8_lossy(quoted).into_owned(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_quote_the_servers_reason_or_the_start_of_its_body() {
        let addr = ControlPlaneAddr::parse("127.0.0.1:8443").unwrap();
        let body =
            br#"{"code":"token_expired","error":"the join token expired; create a new one"}"#;
        let error = refusal(&addr, "/v1/svid", StatusCode::UNAUTHORIZED, body);
        assert_eq!(error.refusal_code(), Some("token_expired"));
        assert_eq!(
            error.to_string(),
            "the control plane at https://127.0.0.1:8443 refused `/v1/svid` (401 Unauthorized, token_expired): the join token expired; create a new one"
        );

        let html = format!("<html>{}</html>", "x".repeat(10_000));
        let error = refusal(&addr, "/v1/svid", StatusCode::BAD_GATEWAY, html.as_bytes());
        assert_eq!(error.refusal_code(), None);
        let message = error.to_string();
        assert!(
            message.contains("502 Bad Gateway and no error body: <html>xxx"),
            "{message}"
        );
        assert!(message.len() < 700, "the quoted body is bounded");

        let error = refusal(
            &addr,
            "/v1/svid",
            StatusCode::BAD_REQUEST,
            &[0xff, 0xfe, b'{'],
        );
        assert!(error.to_string().contains("400 Bad Request"));
    }
}
