//! A small HTTPS (HTTP/2) client for the control plane's API, used by `palisadectl`.
//! Each call opens its own connection: admin commands are rare and short.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_api::wire::ErrorBody;
use rustls_pki_types::ServerName;

/// Why a call to the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the control plane URL `{0}` is invalid: use https://host:port")]
    BadUrl(String),
    #[error("cannot connect to the control plane at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with the control plane at {addr} failed: {source}")]
    Tls {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP/2 with the control plane failed: {0}")]
    Http(String),
    #[error("the control plane refused ({status}, {code}): {message}")]
    Refused {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("the control plane's answer is not the expected JSON: {0}")]
    BadAnswer(String),
}

/// Where the control plane is and how to talk TLS to it.
#[derive(Clone)]
pub struct ApiClient {
    authority: String,
    server_name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// `url` is `https://host:port`; `tls` decides what we present and accept.
    pub fn new(url: &str, tls: rustls::ClientConfig) -> Result<Self, ClientError> {
        let bad = || ClientError::BadUrl(url.to_owned());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("https") {
            return Err(bad());
        }
        let host = uri.host().ok_or_else(bad)?;
        let port = uri.port_u16().unwrap_or(443);
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(bare_host.to_owned()).map_err(|_| bad())?;
        let mut tls = tls;
        tls.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            authority: format!("{host}:{port}"),
            server_name,
            connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        })
    }

    /// Sends `body` as JSON with `POST path` and decodes the JSON answer.
    pub async fn post_json<T, R>(&self, path: &str, body: &T) -> Result<R, ClientError>
    where
        T: serde::Serialize,
        R: serde::de::DeserializeOwned,
    {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Http(e.to_string()))?;
        let (status, bytes) = self.call(Method::POST, path, Bytes::from(body)).await?;
        if !status.is_success() {
            let error: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
                code: "unknown".into(),
                error: String::from_utf8_lossy(&bytes).into_owned(),
            });
            return Err(ClientError::Refused {
                status,
                code: error.code,
                message: error.error,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer(e.to_string()))
    }

    /// One request on a fresh connection; returns the status and the whole body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|source| ClientError::Connect {
                addr: self.authority.clone(),
                source,
            })?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|source| ClientError::Tls {
                addr: self.authority.clone(),
                source,
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?;
        let driver = tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?
                .to_bytes();
            Ok((status, bytes))
        }
        .await;
        driver.abort();
        result
    }
}
