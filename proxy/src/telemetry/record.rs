//! What the request path hands the export thread: a fixed-size record per sampled span,
//! with no heap allocation in the common case (short peer and service names are copied
//! inline; the proxy's own service is shared).

use std::sync::Arc;

use http::Method;

use crate::metrics::Direction;

/// Longest name copied inline; longer ones (rare: SPIFFE IDs are usually 30–80 bytes)
/// take one allocation.
const INLINE: usize = 94;

/// A short string copied without allocating, or a shared or boxed one.
#[derive(Debug, Clone)]
pub(crate) enum Text {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
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
            Self::Shared(text) => text.as_bytes(),
            Self::Boxed(text) => text.as_bytes(),
        }
    }
}

/// The `palisade.authz.decision` values, by index (0: not recorded).
pub(crate) const DECISIONS: [&str; 4] = ["", "allow", "deny", "audit_deny"];

/// `palisade.waf.score` not recorded.
pub(crate) const NO_SCORE: u32 = u32::MAX;

/// What the proxy learned when the request was answered.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) peer: Text,
    pub(crate) service: Text,
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
    pub(crate) start_unix_nanos: u64,
    pub(crate) end_unix_nanos: u64,
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
        assert_eq!(Text::Shared(Arc::from("payments")).as_bytes(), b"payments");
    }
}
