//! What the request path hands the export thread: a fixed-size record per sampled span,
//! with no heap allocation in the common case (a short peer or destination name is
//! copied inline; the proxy's own service is a flag). Times are the request path's
//! monotonic readings; the export thread turns them into Unix time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;

use crate::metrics::Direction;

/// Longest name copied inline; longer ones (rare: SPIFFE IDs are usually 30–80 bytes)
/// take one allocation.
const INLINE: usize = 94;

/// A short string copied without allocating, or a boxed one.
#[derive(Debug, Clone)]
pub(crate) enum Text {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<str>),
}

impl Text {
    pub(crate) fn copy(text: &str) -> Self {
        if text.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            Self::Inline {
                len: text.len() as u8,
                bytes,
            }
        } else {
            Self::Boxed(text.into())
        }
    }

    /// The text's UTF-8 bytes (copied whole from a `&str`), as the encoder writes them:
    /// no validation on the export thread.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Boxed(text) => text.as_bytes(),
        }
    }
}

/// The `palisade.service` of a span.
#[derive(Debug, Clone)]
pub(crate) enum ServiceName {
    /// The proxy's own service (every inbound span): its attribute is encoded once.
    Local,
    Other(Text),
}

/// The `palisade.authz.decision` values, by index (0: not recorded).
pub(crate) const DECISIONS: [&str; 4] = ["", "allow", "deny", "audit_deny"];

/// `palisade.waf.score` not recorded.
pub(crate) const NO_SCORE: u32 = u32::MAX;

/// What the proxy learned when the request was answered.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) peer: Text,
    pub(crate) service: ServiceName,
    pub(crate) status: u16,
}

/// One finished span, as exported.
#[derive(Debug, Clone)]
pub(crate) struct SpanRecord {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    /// All zero without a parent (a new trace).
    pub(crate) parent_span_id: [u8; 8],
    /// The incoming `tracestate`, kept on the span (copied once: only when the app sends
    /// one).
    pub(crate) trace_state: Option<Arc<str>>,
    pub(crate) direction: Direction,
    pub(crate) method: Method,
    /// When the request arrived (the metrics layer's reading, not a clock read of its
    /// own).
    pub(crate) started: Instant,
    /// Until its response head (the metrics layer's latency).
    pub(crate) duration: Duration,
    /// `None` when the request was abandoned before its answer.
    pub(crate) outcome: Option<Outcome>,
    /// Index into [`DECISIONS`].
    pub(crate) authz: u8,
    /// [`NO_SCORE`] when the WAF did not inspect the request.
    pub(crate) waf_score: u32,
}

impl SpanRecord {
    pub(crate) fn has_parent(&self) -> bool {
        self.parent_span_id != [0; 8]
    }
}

/// Unix time from the request path's monotonic readings: one wall-clock and one
/// monotonic reading per batch on the export thread, instead of two clock reads per span
/// on the request path. A span is at most a few seconds older than its batch, so a step
/// of the system clock in between shifts it like it would shift any span then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anchor {
    unix_nanos: u64,
    instant: Instant,
}

impl Anchor {
    pub(crate) fn now() -> Self {
        let instant = Instant::now();
        let unix_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        Self {
            unix_nanos,
            instant,
        }
    }

    /// The anchor `instant` = `unix_nanos`.
    #[cfg(test)]
    pub(crate) fn at(unix_nanos: u64, instant: Instant) -> Self {
        Self {
            unix_nanos,
            instant,
        }
    }

    /// `at` in Unix nanoseconds.
    pub(crate) fn unix_nanos(&self, at: Instant) -> u64 {
        // Spans end before their batch is exported: one subtraction in the common case.
        match self.instant.checked_duration_since(at) {
            Some(before) => self.unix_nanos.saturating_sub(before.as_nanos() as u64),
            None => self.unix_nanos + at.duration_since(self.instant).as_nanos() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keeps_short_and_long_strings() {
        assert_eq!(Text::copy("").as_bytes(), b"");
        let id = "spiffe://mesh.test/ns/shop/sa/orders";
        assert!(matches!(Text::copy(id), Text::Inline { .. }));
        assert_eq!(Text::copy(id).as_bytes(), id.as_bytes());
        let long = "x".repeat(INLINE + 1);
        assert!(matches!(Text::copy(&long), Text::Boxed(_)));
        assert_eq!(Text::copy(&long).as_bytes(), long.as_bytes());
        assert_eq!(
            Text::copy(&"é".repeat(INLINE / 2)).as_bytes(),
            "é".repeat(INLINE / 2).as_bytes()
        );
    }

    #[test]
    fn the_anchor_converts_monotonic_readings() {
        let earlier = Instant::now();
        let anchor = Anchor::now();
        let later = anchor.instant + Duration::from_micros(250);
        let before = anchor.unix_nanos(earlier);
        assert!(before <= anchor.unix_nanos);
        assert!(anchor.unix_nanos - before < 1_000_000_000);
        assert_eq!(anchor.unix_nanos(later), anchor.unix_nanos + 250_000);
    }
}
