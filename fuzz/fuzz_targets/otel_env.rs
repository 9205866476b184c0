//! The trace export settings from the standard OpenTelemetry variables
//! (`ExportConfig::from_vars`), with arbitrary values: the input is the values of the
//! variables below in order, split at NUL bytes (which no environment variable can hold),
//! an empty part leaving its variable unset. Every outcome is a `ConfigError` or a
//! configuration: export is off exactly when no endpoint is set or the SDK is disabled;
//! an accepted endpoint gives an authority the exporter can connect to (host and port,
//! no credentials, the same authority alone and among the other variables); and no
//! error repeats a header value, which usually carries a credential.
#![no_main]

use http::uri::Authority;
use libfuzzer_sys::fuzz_target;
use palisade_proxy::telemetry::{ExportConfig, ENDPOINT_VARS};

const VARS: [&str; 19] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_SDK_DISABLED",
    // Not one the exporter reads: a stray variable must change nothing.
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
];

/// Appended as the last header of both header variables: a valid value, so it can only
/// reach an error message by the message echoing header values.
const CANARY: &str = "x-fuzz-canary=Zm9vYmFyY2FuYXJ5";

fn check_authority(authority: &Authority) {
    let text = authority.as_str();
    assert!(!text.contains('@'), "{text}");
    let host = authority.host();
    assert!(!host.is_empty(), "{text}");
    if let Some(literal) = host.strip_prefix('[') {
        let ip = literal.strip_suffix(']').expect("a closed IPv6 literal");
        assert!(ip.parse::<std::net::Ipv6Addr>().is_ok(), "{text}");
    }
    let port = authority
        .port_u16()
        .unwrap_or_else(|| panic!("{text} has no port"));
    // The exporter dials `host:port` as `TcpStream::connect` reads it.
    let (dialled, port_text) = text.rsplit_once(':').expect("a port");
    assert_eq!(dialled, host, "{text}");
    assert_eq!(port_text.parse::<u16>(), Ok(port), "{text}");
    assert_eq!(text.parse::<Authority>().ok().as_ref(), Some(authority));
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .expect("the exporter's URI builds");
    assert_eq!(uri.authority(), Some(authority));
}

fuzz_target!(|data: &[u8]| {
    let mut values: Vec<(&str, String)> = data
        .split(|&b| b == 0)
        .zip(VARS)
        .filter(|(value, _)| !value.is_empty())
        .map(|(value, name)| (name, String::from_utf8_lossy(value).into_owned()))
        .collect();
    for (name, value) in &mut values {
        if name.ends_with("_HEADERS") {
            value.push(',');
            value.push_str(CANARY);
        }
    }
    let lookup = |vars: &[(&str, String)], name: &str| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    let set = |name: &str| lookup(&values, name).filter(|v| !v.trim().is_empty());
    let endpoint = ENDPOINT_VARS.iter().find_map(|name| set(name));
    let disabled = set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    match ExportConfig::from_vars(|name| lookup(&values, name)) {
        Ok(None) => assert!(endpoint.is_none() || disabled),
        Ok(Some(config)) => {
            assert!(!disabled);
            let endpoint = endpoint.expect("export on without an endpoint");
            let authority = config.authority_for_fuzzing();
            check_authority(authority);
            let alone = ExportConfig::for_endpoint(endpoint.trim())
                .expect("the endpoint is accepted alone");
            assert_eq!(alone.authority_for_fuzzing(), authority);
        }
        Err(error) => {
            assert!(endpoint.is_some() && !disabled, "{error}");
            let message = error.to_string();
            assert!(message.starts_with("trace export: "), "{message}");
            assert!(!message.contains("Zm9vYmFyY2FuYXJ5"), "{message}");
        }
    }
});
