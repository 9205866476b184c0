//! Export settings, read from the standard OpenTelemetry variables.
//!
//! Everything is checked when the proxy starts: a value the exporter cannot honour (an
//! `https://` collector, another protocol than gRPC, compression, an unknown sampler, a
//! number that does not parse) stops the proxy with an error naming the variable, rather
//! than exporting something else than the operator asked for. Header values are never
//! echoed in errors (they usually carry credentials).

use std::net::Ipv6Addr;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue, Uri};

use super::sampler::Sampler;

/// The variables that turn export on, most specific first.
pub const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// A setting the exporter cannot honour.
#[derive(Debug, thiserror::Error)]
#[error("trace export: {0}")]
pub struct ConfigError(pub(super) String);

fn invalid(message: String) -> ConfigError {
    ConfigError(message)
}

/// Where and how spans are exported, and which requests get one.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// The collector's `host:port` (plain HTTP/2, no TLS).
    pub(super) authority: Authority,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`), e.g. a collector's API key.
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    /// Connecting plus one export call, at most.
    pub(super) timeout: Duration,
    pub(super) sampler: Sampler,
    /// Spans waiting for export; beyond it new spans are dropped and counted.
    pub(super) max_queue: usize,
    /// Spans per export call; a full batch is exported at once.
    pub(super) max_batch: usize,
    /// Longest a span waits for a batch to fill before export.
    pub(super) schedule_delay: Duration,
    /// `service.name`, when the environment sets it (else the proxy's own service).
    pub(super) service_name: Option<String>,
    /// Further resource attributes (`OTEL_RESOURCE_ATTRIBUTES`), in order.
    pub(super) resource: Vec<(String, String)>,
}

impl ExportConfig {
    /// Defaults for everything but the collector: `parentbased_always_on`, queue 2048,
    /// batches of 512, 5 s delay, 10 s timeout.
    pub fn for_endpoint(endpoint: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            authority: parse_endpoint(endpoint, "the endpoint")?,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            sampler: Sampler::default(),
            max_queue: 2048,
            max_batch: 512,
            schedule_delay: Duration::from_secs(5),
            service_name: None,
            resource: Vec::new(),
        })
    }

    /// The settings the standard variables give, looked up with `var`; `None` when no
    /// endpoint is set or `OTEL_SDK_DISABLED=true` (export off).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let Some((name, endpoint)) = ENDPOINT_VARS
            .iter()
            .find_map(|name| var(name).map(|value| (*name, value)))
        else {
            return Ok(None);
        };
        let mut config = Self::for_endpoint(endpoint.trim()).map_err(|e| {
            invalid(format!(
                "{name}: {}",
                e.0.trim_start_matches("the endpoint: ")
            ))
        })?;
        let traces_or = |specific: &str, general: &str| {
            var(specific)
                .map(|v| (specific.to_owned(), v))
                .or_else(|| var(general).map(|v| (general.to_owned(), v)))
        };
        if let Some((name, protocol)) = traces_or(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            if protocol.trim() != "grpc" {
                return Err(invalid(format!(
                    "{name}={protocol}: only `grpc` (OTLP/gRPC) is supported; unset it or set `grpc`"
                )));
            }
        }
        if let Some((name, compression)) = traces_or(
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ) {
            if compression.trim() != "none" {
                return Err(invalid(format!(
                    "{name}={compression}: compression is not supported; unset it or set `none`"
                )));
            }
        }
        if let Some((name, headers)) = traces_or(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            config.headers =
                parse_headers(&headers).map_err(|e| invalid(format!("{name}: {e}")))?;
        }
        if let Some((name, timeout)) = traces_or(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            config.timeout = Duration::from_millis(milliseconds(&name, &timeout)?.max(1));
        }
        config.sampler = Sampler::from_vars(
            var("OTEL_TRACES_SAMPLER").as_deref(),
            var("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )?;
        if let Some(size) = var("OTEL_BSP_MAX_QUEUE_SIZE") {
            config.max_queue = positive("OTEL_BSP_MAX_QUEUE_SIZE", &size)?;
        }
        if let Some(size) = var("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
            config.max_batch = positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &size)?;
        }
        // As the specification asks: a batch never exceeds the queue.
        config.max_batch = config.max_batch.min(config.max_queue);
        if let Some(delay) = var("OTEL_BSP_SCHEDULE_DELAY") {
            config.schedule_delay =
                Duration::from_millis(milliseconds("OTEL_BSP_SCHEDULE_DELAY", &delay)?);
        }
        if let Some(attributes) = var("OTEL_RESOURCE_ATTRIBUTES") {
            for (key, value) in parse_pairs(&attributes)
                .map_err(|e| invalid(format!("OTEL_RESOURCE_ATTRIBUTES: {e}")))?
            {
                if key == "service.name" {
                    config.service_name = Some(value);
                } else {
                    config.resource.push((key, value));
                }
            }
        }
        if let Some(name) = var("OTEL_SERVICE_NAME") {
            config.service_name = Some(name.trim().to_owned());
        }
        Ok(Some(config))
    }

    /// The collector's authority. Public only for the fuzz target (hidden from the docs,
    /// not part of the API), which checks that every accepted endpoint gives one the
    /// exporter can connect to.
    #[doc(hidden)]
    pub fn authority_for_fuzzing(&self) -> &Authority {
        &self.authority
    }

    /// Replaces the sampler (tests, embedders).
    pub fn with_sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = sampler;
        self
    }

    /// Replaces the batching: queue size, batch size, schedule delay.
    pub fn with_batching(mut self, max_queue: usize, max_batch: usize, delay: Duration) -> Self {
        self.max_queue = max_queue.max(1);
        self.max_batch = max_batch.clamp(1, self.max_queue);
        self.schedule_delay = delay;
        self
    }

    /// Replaces the export timeout (connecting plus one call).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// `http://host:port` → the authority. TLS to the collector is not implemented, so an
/// `https://` endpoint is refused rather than downgraded to plaintext.
fn parse_endpoint(endpoint: &str, what: &str) -> Result<Authority, ConfigError> {
    let uri: Uri = endpoint
        .parse()
        .map_err(|e| invalid(format!("{what}: `{endpoint}` is not a URL ({e})")))?;
    match uri.scheme() {
        Some(scheme) if *scheme == Scheme::HTTP => {}
        Some(scheme) if *scheme == Scheme::HTTPS => {
            return Err(invalid(format!(
                "{what}: `{endpoint}` uses https, but TLS to the collector is not supported yet; \
                 use an http:// endpoint (a collector on the node or the pod's network)"
            )))
        }
        _ => {
            return Err(invalid(format!(
                "{what}: `{endpoint}` must be an http://host:port URL"
            )))
        }
    }
    // `http://:4317` parses, with an empty host: the exporter would only fail when it
    // dials, after the proxy has started.
    let authority = uri
        .authority()
        .filter(|authority| !authority.host().is_empty())
        .ok_or_else(|| invalid(format!("{what}: `{endpoint}` names no host")))?;
    if authority.as_str().contains('@') {
        return Err(invalid(format!(
            "{what}: the endpoint must not carry credentials; use OTEL_EXPORTER_OTLP_HEADERS"
        )));
    }
    if !is_host_and_port(authority) {
        return Err(invalid(format!(
            "{what}: `{endpoint}` must be an http://host:port URL"
        )));
    }
    let with_port = match authority.port_u16() {
        Some(_) => authority.clone(),
        None => format!("{}:80", authority.host())
            .parse()
            .map_err(|e| invalid(format!("{what}: `{endpoint}`: {e}")))?,
    };
    Ok(with_port)
}

/// Whether `authority` is `host`, `host:` or `host:port`, an IPv6 host a valid address:
/// `http` also accepts `[::1]x:4317` (reading the host as `[::1]`) and `[]`, which the
/// exporter, dialling the whole text, would only find out about after the proxy started.
fn is_host_and_port(authority: &Authority) -> bool {
    let host = authority.host();
    let Some(rest) = authority.as_str().strip_prefix(host) else {
        return false;
    };
    let port_ok = rest.is_empty()
        || rest
            .strip_prefix(':')
            .is_some_and(|port| port.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = match host.strip_prefix('[') {
        Some(literal) => literal
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok()),
        None => true,
    };
    port_ok && host_ok
}

/// `key=value,key=value`, values percent-decoded (the W3C Baggage format the
/// specification uses for both header and resource variables).
fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for item in text.split(',').filter(|item| !item.trim().is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!(
                "an entry has no `=` (expected key=value,key=value; entry {})",
                pairs.len() + 1
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("entry {} has an empty key", pairs.len() + 1));
        }
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| format!("the value of `{key}` is not UTF-8 once percent-decoded"))?;
        pairs.push((key.to_owned(), value.into_owned()));
    }
    Ok(pairs)
}

fn parse_headers(text: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    parse_pairs(text)?
        .into_iter()
        .map(|(key, value)| {
            let name = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| format!("`{key}` is not a valid header name"))?;
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| format!("the value of `{key}` is not a valid header value"))?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

fn milliseconds(name: &str, value: &str) -> Result<u64, ConfigError> {
    value.trim().parse().map_err(|_| {
        invalid(format!(
            "{name}={value}: expected a whole number of milliseconds"
        ))
    })
}

fn positive(name: &str, value: &str) -> Result<usize, ConfigError> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(format!(
            "{name}={value}: expected a positive whole number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        ExportConfig::from_vars(vars(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn export_is_off_without_an_endpoint_or_when_disabled() {
        assert!(ExportConfig::from_vars(vars(&[])).unwrap().is_none());
        assert!(
            ExportConfig::from_vars(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]))
                .unwrap()
                .is_none()
        );
        assert!(ExportConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ]))
        .unwrap()
        .is_none());
    }

    #[test]
    fn the_standard_variables_are_read() {
        let config = ExportConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s%20cret, x-tenant = shop",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=ignored,deployment.environment=prod",
            ),
            ("OTEL_SERVICE_NAME", "payments-eu"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(config.authority.as_str(), "collector:80");
        assert_eq!(config.headers.len(), 2);
        assert_eq!(config.headers[0].0, "api-key");
        assert_eq!(config.headers[0].1, "s cret");
        assert_eq!(config.headers[1].0, "x-tenant");
        assert_eq!(config.timeout, Duration::from_millis(2500));
        assert_eq!((config.max_queue, config.max_batch), (100, 100));
        assert_eq!(config.schedule_delay, Duration::from_millis(250));
        assert_eq!(config.service_name.as_deref(), Some("payments-eu"));
        assert_eq!(
            config.resource,
            [("deployment.environment".to_owned(), "prod".to_owned())]
        );
    }

    #[test]
    fn an_https_endpoint_is_refused_with_the_reason() {
        let message = error(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317")]);
        assert!(message.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{message}");
        assert!(
            message.contains("TLS to the collector is not supported"),
            "{message}"
        );
        assert!(ExportConfig::for_endpoint("https://collector:4317").is_err());
        for bad in [
            "collector:4317",
            "ftp://collector",
            "http://user:pw@collector:4317",
        ] {
            assert!(ExportConfig::for_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_endpoint_without_a_host_is_refused() {
        // Found by the `otel_env` fuzz target: these became the authority `:80` (or
        // `:4317`), which the exporter cannot dial.
        for bad in ["http://:", "http://:4317", "http://:[:1]f"] {
            let message = ExportConfig::for_endpoint(bad).unwrap_err().to_string();
            assert!(message.contains("names no host"), "{bad}: {message}");
        }
    }

    #[test]
    fn an_endpoint_is_host_and_port_and_nothing_more() {
        // Found by the `otel_env` fuzz target: `http` reads the host of these as `[::1]`
        // or `[]`, and the exporter would have dialled the whole text.
        for bad in [
            "http://[]8:3",
            "http://[::1]ral68:34",
            "http://[]:4317",
            "http://[::1]x",
            "http://collector:+80",
        ] {
            let message = ExportConfig::for_endpoint(bad).unwrap_err().to_string();
            assert!(message.contains("http://host:port"), "{bad}: {message}");
        }
        for (good, authority) in [
            ("http://[::1]:4317", "[::1]:4317"),
            ("http://[::1]", "[::1]:80"),
            ("http://collector:", "collector:80"),
            ("http://10.0.0.1:4317/", "10.0.0.1:4317"),
        ] {
            let config = ExportConfig::for_endpoint(good).unwrap();
            assert_eq!(config.authority.as_str(), authority, "{good}");
        }
    }

    #[test]
    fn settings_the_exporter_cannot_honour_are_refused() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        for (pair, names) in [
            (("OTEL_TRACES_SAMPLER", "sometimes"), "OTEL_TRACES_SAMPLER"),
            (
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                "only `grpc`",
            ),
            (
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
                "compression",
            ),
            (("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"), "milliseconds"),
            (("OTEL_BSP_MAX_QUEUE_SIZE", "0"), "OTEL_BSP_MAX_QUEUE_SIZE"),
            (
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key"),
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                ("OTEL_RESOURCE_ATTRIBUTES", "=x"),
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
        ] {
            let message = error(&[endpoint, pair]);
            assert!(message.contains(names), "{pair:?}: {message}");
        }
    }

    #[test]
    fn header_values_never_appear_in_errors() {
        let message = error(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer top\nsecret",
            ),
        ]);
        assert!(!message.contains("secret"), "{message}");
    }
}
