//! The WAF: inspects each authorized inbound request with the base rule set under the
//! service's settings, and refuses it (403, 413 or 400) when its anomaly score reaches the
//! threshold in block mode.
//!
//! Bodies: for content types an application parses into arguments (urlencoded, JSON,
//! multipart, XML, text), the proxy reads the body up to `body_limit` (plus one frame)
//! before forwarding, inspects it, and then forwards the buffered bytes followed by the
//! rest of the stream. Past the limit the settings decide: `reject` answers 413,
//! `inspect_prefix` inspects the first `body_limit` bytes and lets the rest stream.
//! Other types (gRPC, octet-stream, images) and bodies without a `Content-Type` stream
//! uninspected: parsing an upload of unknown type as form data only yields false
//! positives (one giant "argument name"), and frameworks do not parse untyped bodies
//! into arguments either. Their method, path, query, headers and cookies are still
//! inspected.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{header, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use palisade_waf::{Action, Mode, Verdict};
use tower::{Layer, Service};

use super::authorization::{truncate, AUDIT_PATH_MAX};
use super::{RequestId, ResponseFuture};
use crate::body::{boxed, local_response, BodyError, ProxyBody};
use crate::enforcement::{Enforcement, WafConfig};
use crate::metrics::Metrics;

const BLOCKED: &str = "forbidden: the request was blocked by the web application firewall; quote the x-request-id to the service's operators";
const TOO_LARGE: &str =
    "payload too large: the request body exceeds what the web application firewall inspects";
const UNDECODABLE: &str =
    "bad request: the request body's content encoding could not be decoded for inspection";

/// Whether the WAF reads the body before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyInspection {
    /// Not at all: the body streams through.
    None,
    /// Up to the limit; past it, the settings' `over_limit` applies.
    Full,
}

/// Which bodies are parsed into arguments by applications, by `Content-Type`.
fn body_inspection(request: &Request<ProxyBody>) -> BodyInspection {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return BodyInspection::None;
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let inspectable = matches!(
        essence.as_str(),
        "application/x-www-form-urlencoded"
            | "multipart/form-data"
            | "application/json"
            | "application/xml"
            | "application/graphql"
    ) || essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || essence.is_empty();
    if inspectable {
        BodyInspection::Full
    } else {
        BodyInspection::None
    }
}

#[derive(Debug, Clone)]
pub struct WafLayer {
    enforcement: Arc<Enforcement>,
    metrics: Arc<Metrics>,
}

impl WafLayer {
    pub fn new(enforcement: Arc<Enforcement>, metrics: Arc<Metrics>) -> Self {
        Self {
            enforcement,
            metrics,
        }
    }
}

impl<S> Layer<S> for WafLayer {
    type Service = Waf<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Waf {
            inner,
            enforcement: self.enforcement.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Waf<S> {
    inner: S,
    enforcement: Arc<Enforcement>,
    metrics: Arc<Metrics>,
}

/// The part of a body read before inspection, and what is left of the stream.
struct Buffered {
    data: Bytes,
    trailers: Option<http::HeaderMap>,
    rest: Option<ProxyBody>,
}

/// Reads `body` until more than `limit` bytes arrived or it ended.
async fn read_up_to(mut body: ProxyBody, limit: usize) -> Result<Buffered, BodyError> {
    let mut data = BytesMut::new();
    let mut trailers = None;
    loop {
        if data.len() > limit {
            return Ok(Buffered {
                data: data.freeze(),
                trailers,
                rest: Some(body),
            });
        }
        match body.frame().await {
            None => break,
            Some(frame) => match frame?.into_data() {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(frame) => {
                    trailers = frame.into_trailers().ok();
                    break;
                }
            },
        }
    }
    Ok(Buffered {
        data: data.freeze(),
        trailers,
        rest: None,
    })
}

/// A body that first yields frames read earlier, then the rest of the original stream.
struct Replay {
    frames: VecDeque<Frame<Bytes>>,
    rest: Option<ProxyBody>,
}

impl Body for Replay {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .frames
            .iter()
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum();
        match &self.rest {
            None => SizeHint::with_exact(buffered),
            Some(rest) => {
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + buffered);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint
            }
        }
    }
}

impl Buffered {
    fn into_body(self) -> ProxyBody {
        // Nothing was read: the original stream goes on untouched.
        if self.data.is_empty() && self.trailers.is_none() {
            if let Some(rest) = self.rest {
                return rest;
            }
        }
        let mut frames = VecDeque::with_capacity(2);
        if !self.data.is_empty() {
            frames.push_back(Frame::data(self.data));
        }
        if let Some(trailers) = self.trailers {
            frames.push_back(Frame::trailers(trailers));
        }
        boxed(Replay {
            frames,
            rest: self.rest,
        })
    }
}

fn action_label(action: Action) -> &'static str {
    match action {
        Action::Block => "block",
        Action::Detect => "detect",
        Action::Pass => "pass",
    }
}

/// One `waf_match` audit event per match, and the metrics. Fragments come from the
/// engine already truncated to 64 bytes, and redacted for secret headers, cookies and
/// secret-looking arguments.
fn report(
    verdict: &Verdict,
    metrics: &Metrics,
    request_id: &str,
    service: &str,
    mode: Mode,
    path: &str,
) {
    let action = action_label(verdict.action);
    let mode = match mode {
        Mode::Off => "off",
        Mode::Detect => "detect",
        Mode::Block => "block",
    };
    for m in &verdict.matches {
        metrics.waf_match(m.rule_id, action);
        tracing::warn!(
            event = "waf_match",
            request_id,
            service,
            rule_id = m.rule_id,
            match_target = %m.target,
            fragment = %m.fragment,
            score = m.score,
            action,
            mode,
            rule_message = %m.message,
            "WAF rule matched"
        );
    }
    if verdict.action != Action::Pass {
        tracing::warn!(
            event = "waf_verdict",
            request_id,
            service,
            path = truncate(path, AUDIT_PATH_MAX),
            action,
            mode,
            score = verdict.score,
            threshold = verdict.threshold,
            body_over_limit = verdict.body_over_limit,
            body_undecodable = verdict.body_undecodable,
            "WAF threshold reached"
        );
    }
}

fn refusal(verdict: &Verdict) -> Option<Response<ProxyBody>> {
    let status = verdict.status()?;
    Some(match status {
        413 => local_response(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE),
        400 => local_response(StatusCode::BAD_REQUEST, UNDECODABLE),
        _ => local_response(StatusCode::FORBIDDEN, BLOCKED),
    })
}

impl<S> Service<Request<ProxyBody>> for Waf<S>
where
    S: Service<
            Request<ProxyBody>,
            Response = Response<ProxyBody>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ProxyBody>) -> Self::Future {
        let config: Arc<WafConfig> = self.enforcement.waf();
        if config.always_off() {
            return Box::pin(self.inner.call(request));
        }
        // The ready service goes into the future; the clone takes its place here.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let enforcement = self.enforcement.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let inspection = body_inspection(&request);
            let (parts, body) = request.into_parts();
            let limit = config.settings.body_limit;
            let buffered = if inspection == BodyInspection::None || body.is_end_stream() {
                Buffered {
                    data: Bytes::new(),
                    trailers: None,
                    rest: Some(body),
                }
            } else {
                match read_up_to(body, limit).await {
                    Ok(buffered) => buffered,
                    Err(error) => {
                        tracing::debug!(%error, "the request body failed while the WAF read it");
                        return Ok(local_response(
                            StatusCode::BAD_REQUEST,
                            "bad request: the request body ended abnormally",
                        ));
                    }
                }
            };
            let route = config.route_for(parts.uri.path());
            let mut view = palisade_waf::Request::from_parts(&parts, &buffered.data);
            // The proxy wrote these itself, nothing of the caller's: the peer id from the
            // TLS peer (a `spiffe://` URI, which URL-scheme rules at higher paranoia would
            // flag) and, when the request's span is recorded, `traceparent` (the metrics
            // layer replaced the caller's with the span's own ids, hex only).
            let traced = parts.extensions.get::<Arc<crate::telemetry::TraceFacts>>();
            view.headers.retain(|(name, _)| {
                *name != crate::headers::PEER_ID
                    && !(traced.is_some() && *name == crate::telemetry::TRACEPARENT)
            });
            let verdict = enforcement.engine().inspect(&view, &config.settings, route);
            drop(view);
            if let Some(facts) = traced {
                facts.set_waf_score(verdict.score);
            }
            if !verdict.matches.is_empty() || verdict.action != Action::Pass {
                let request_id = parts
                    .extensions
                    .get::<RequestId>()
                    .and_then(|id| id.0.to_str().ok())
                    .unwrap_or("");
                let mode = route
                    .and_then(|r| config.settings.routes.get(r))
                    .and_then(|r| r.mode)
                    .unwrap_or(config.settings.mode);
                report(
                    &verdict,
                    &metrics,
                    request_id,
                    enforcement.service(),
                    mode,
                    parts.uri.path(),
                );
            }
            if let Some(refused) = refusal(&verdict) {
                return Ok(refused);
            }
            let request = Request::from_parts(parts, buffered.into_body());
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn request(content_type: Option<&str>) -> Request<ProxyBody> {
        let mut builder = Request::post("/x");
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        builder.body(crate::body::empty()).unwrap()
    }

    #[test]
    fn only_argument_bearing_bodies_are_inspected_whole() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/X-WWW-Form-Urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/problem+json",
            "application/soap+xml",
        ] {
            assert_eq!(
                body_inspection(&request(Some(ct))),
                BodyInspection::Full,
                "{ct}"
            );
        }
        for ct in ["application/grpc", "application/octet-stream", "image/png"] {
            assert_eq!(
                body_inspection(&request(Some(ct))),
                BodyInspection::None,
                "{ct}"
            );
        }
        assert_eq!(body_inspection(&request(None)), BodyInspection::None);
    }

    fn enforcement(settings: palisade_waf::WafSettings) -> Arc<Enforcement> {
        let enforcement =
            Enforcement::new(palisade_spiffe::TrustDomain::new("td").unwrap(), "payments").unwrap();
        enforcement.apply(&palisade_api::wire::ConfigSnapshot {
            authorization: Some(Default::default()),
            waf: Some(settings),
            ..Default::default()
        });
        enforcement
    }

    fn post(target: &str, content_type: &str, body: impl Into<Bytes>) -> Request<ProxyBody> {
        let mut request = Request::post(target)
            .header(header::CONTENT_TYPE, content_type)
            .body(boxed(Full::new(body.into())))
            .unwrap();
        request
            .extensions_mut()
            .insert(crate::layers::PeerIdentity::Authenticated(Arc::new(
                palisade_spiffe::SpiffeId::parse("spiffe://td/ns/shop/sa/orders").unwrap(),
            )));
        request
    }

    #[tokio::test]
    async fn attacks_are_blocked_before_the_app_and_benign_bodies_pass_whole() {
        use std::sync::atomic::Ordering;
        use tower::ServiceExt;
        let metrics = Metrics::new();
        let (service, seen) = crate::layers::authorization::tests::stack(
            enforcement(Default::default()),
            metrics.clone(),
        );
        let sqli = "1' UNION SELECT password FROM users--";
        for request in [
            post(
                &format!("/search?q={}", sqli.replace(' ', "%20")),
                "text/plain",
                "",
            ),
            post(
                "/search",
                "application/json",
                format!(r#"{{"q":"{sqli}"}}"#),
            ),
            post(
                "/search",
                "application/x-www-form-urlencoded",
                format!("q={}", sqli.replace(' ', "+")),
            ),
        ] {
            let response = service.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert!(response
                .extensions()
                .get::<crate::body::LocalResponse>()
                .is_some());
        }
        assert_eq!(seen.load(Ordering::SeqCst), 0);
        let text = metrics.encode(&palisade_spiffe::SvidStore::default());
        assert!(
            text.contains("palisade_proxy_waf_matches_total{rule="),
            "{text}"
        );
        assert!(text.contains(r#"action="block"} "#), "{text}");

        // Benign JSON (with an apostrophe and SQL words in prose) passes, body intact.
        let benign =
            r#"{"note":"Don't select the union rep from the drop-down; we'll update it","qty":3}"#;
        let response = service
            .clone()
            .oneshot(post("/orders", "application/json", benign))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        // An opaque upload is not parsed: an SQL-looking payload streams to the app.
        let response = service
            .clone()
            .oneshot(post("/upload", "application/octet-stream", sqli))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(seen.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn body_limits_reject_or_inspect_the_prefix_and_detect_mode_passes() {
        use tower::ServiceExt;
        let small = palisade_waf::WafSettings {
            body_limit: 1024,
            ..Default::default()
        };
        let (service, _) =
            crate::layers::authorization::tests::stack(enforcement(small.clone()), Metrics::new());
        let big = format!(r#"{{"text":"{}"}}"#, "a".repeat(4096));
        let response = service
            .clone()
            .oneshot(post("/x", "application/json", big.clone()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

        let prefix = palisade_waf::WafSettings {
            over_limit: palisade_waf::OverLimit::InspectPrefix,
            ..small
        };
        let (service, seen) =
            crate::layers::authorization::tests::stack(enforcement(prefix), Metrics::new());
        let response = service
            .clone()
            .oneshot(post("/x", "text/plain", big))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);

        let detect = palisade_waf::WafSettings {
            mode: Mode::Detect,
            ..Default::default()
        };
        let (service, seen) =
            crate::layers::authorization::tests::stack(enforcement(detect), Metrics::new());
        let response = service
            .clone()
            .oneshot(post(
                "/x?q=1%27%20UNION%20SELECT%20password%20FROM%20users--",
                "text/plain",
                "",
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn match_events_name_rule_and_target_and_never_secret_values() {
        use tower::ServiceExt;
        let (captured, _guard) = crate::layers::authorization::tests::Captured::start();
        let (service, _) = crate::layers::authorization::tests::stack(
            enforcement(Default::default()),
            Metrics::new(),
        );
        let mut request = post(
            "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--",
            "text/plain",
            "",
        );
        let headers = request.headers_mut();
        headers.insert(
            header::COOKIE,
            http::HeaderValue::from_static("session=1' UNION SELECT cookiesecret FROM users--"),
        );
        headers.insert(
            header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer 1' UNION SELECT bearersecret FROM users--"),
        );
        request
            .extensions_mut()
            .insert(RequestId(http::HeaderValue::from_static("req-9")));
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let text = captured.text();
        assert!(
            !text.contains("cookiesecret") && !text.contains("bearersecret"),
            "{text}"
        );
        let matches = captured.events("waf_match");
        let on_query = matches
            .iter()
            .find(|m| m["match_target"] == "query_arg:q")
            .unwrap_or_else(|| panic!("no match on the query argument: {text}"));
        assert_eq!(on_query["request_id"], "req-9");
        assert_eq!(on_query["action"], "block");
        assert_eq!(on_query["mode"], "block");
        assert!(on_query["rule_id"].as_u64().is_some());
        assert!(on_query["score"].as_u64().is_some_and(|s| s > 0));
        assert!(on_query["fragment"]
            .as_str()
            .is_some_and(|f| !f.is_empty() && f.len() <= 64));
        assert_eq!(captured.events("waf_verdict").len(), 1);
    }

    #[tokio::test]
    async fn a_read_prefix_is_replayed_before_the_rest_of_the_stream() {
        let (mut tx, channel) = http_body_util::channel::Channel::<Bytes, BodyError>::new(8);
        for chunk in [&b"0123"[..], b"4567", b"89"] {
            tx.send_data(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        drop(tx);
        let buffered = read_up_to(boxed(channel), 5).await.unwrap();
        assert_eq!(&buffered.data[..], b"01234567");
        assert!(buffered.rest.is_some());
        let all = buffered.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"0123456789");

        let small = read_up_to(boxed(Full::new(Bytes::from_static(b"abc"))), 5)
            .await
            .unwrap();
        assert!(small.rest.is_none());
        assert_eq!(
            &small.into_body().collect().await.unwrap().to_bytes()[..],
            b"abc"
        );
    }
}
