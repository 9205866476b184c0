//! The two pattern languages of a policy: SPIFFE ID patterns (callers) and path patterns
//! (routes).

use std::fmt;

use palisade_spiffe::SpiffeId;
use serde::{Deserialize, Serialize};

/// What is wrong with a value, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafError {
    pub message: String,
    pub hint: Option<String>,
}

impl LeafError {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

impl fmt::Display for LeafError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// A SPIFFE ID, exact or with `*` standing for exactly one whole path segment
/// (`spiffe://td/ns/shop/sa/*`). The trust domain is always literal: a wildcard there
/// would admit identities minted by any federated authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeIdPattern {
    source: String,
    kind: IdPatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum IdPatternKind {
    Exact(SpiffeId),
    /// Trust domain end (byte offset of the path) in `source`.
    Wildcard {
        path_start: usize,
    },
}

const WILDCARD_HINT: &str = "write a SPIFFE ID such as `spiffe://palisade.local/ns/shop/sa/orders`, or use `*` for one whole segment as in `spiffe://palisade.local/ns/shop/sa/*`";

impl SpiffeIdPattern {
    pub fn parse(source: &str) -> Result<Self, LeafError> {
        if !source.contains('*') {
            let id = SpiffeId::parse(source).map_err(|e| {
                LeafError::new(
                    format!("`{source}` is not a valid SPIFFE ID: {e}"),
                    WILDCARD_HINT,
                )
            })?;
            return Ok(Self {
                source: source.to_owned(),
                kind: IdPatternKind::Exact(id),
            });
        }
        let Some(rest) = source.strip_prefix("spiffe://") else {
            return Err(LeafError::new(
                format!(
                    "`{source}` is not a valid SPIFFE ID pattern: it must start with `spiffe://`"
                ),
                WILDCARD_HINT,
            ));
        };
        let path_start = rest.find('/').map(|i| i + "spiffe://".len());
        let Some(path_start) = path_start else {
            return Err(LeafError::new(
                format!("`{source}` has a wildcard but no path"),
                WILDCARD_HINT,
            ));
        };
        if source[..path_start].contains('*') {
            return Err(LeafError::new(
                format!("`{source}` has a wildcard in the trust domain"),
                "the trust domain must be written out; only path segments may be `*`",
            ));
        }
        if source[path_start + 1..]
            .split('/')
            .any(|segment| segment.contains('*') && segment != "*")
        {
            return Err(LeafError::new(
                format!("`{source}` uses `*` inside a segment"),
                "`*` must be a whole path segment, as in `spiffe://palisade.local/ns/shop/sa/*`",
            ));
        }
        // Validate everything else with the strict ID parser, `*` standing in for a segment.
        let probe = source.replace('*', "x");
        SpiffeId::parse(&probe).map_err(|e| {
            LeafError::new(
                format!("`{source}` is not a valid SPIFFE ID pattern: {e}"),
                WILDCARD_HINT,
            )
        })?;
        Ok(Self {
            source: source.to_owned(),
            kind: IdPatternKind::Wildcard { path_start },
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The text before the first `*` segment, ending with `/` (`spiffe://td/ns/shop/sa/`
    /// for `spiffe://td/ns/shop/sa/*`); the whole ID for an exact pattern. Every ID the
    /// pattern matches starts with it, so it serves as an index key.
    pub fn literal_prefix(&self) -> &str {
        match &self.kind {
            IdPatternKind::Exact(_) => &self.source,
            IdPatternKind::Wildcard { path_start } => {
                let star = self.source[*path_start..]
                    .split('/')
                    .scan(*path_start, |pos, segment| {
                        let start = *pos;
                        *pos += segment.len() + 1;
                        Some((start, segment))
                    })
                    .find(|(_, segment)| *segment == "*")
                    .map_or(self.source.len(), |(start, _)| start);
                &self.source[..star]
            }
        }
    }

    /// The exact ID, when the pattern has no wildcard.
    pub fn exact(&self) -> Option<&SpiffeId> {
        match &self.kind {
            IdPatternKind::Exact(id) => Some(id),
            IdPatternKind::Wildcard { .. } => None,
        }
    }

    pub fn matches(&self, id: &SpiffeId) -> bool {
        match &self.kind {
            IdPatternKind::Exact(exact) => exact == id,
            IdPatternKind::Wildcard { path_start } => {
                let (td, path) = self.source.split_at(*path_start);
                let id_str = id.as_str();
                let id_td_end = id_str.len() - id.path().len();
                if &id_str[..id_td_end] != td {
                    return false;
                }
                let mut want = path[1..].split('/');
                let mut have = match id.path().strip_prefix('/') {
                    Some(p) => p.split('/'),
                    None => return false,
                };
                loop {
                    match (want.next(), have.next()) {
                        (None, None) => return true,
                        (Some(w), Some(h)) if w == "*" || w == h => {}
                        _ => return false,
                    }
                }
            }
        }
    }
}

impl TryFrom<String> for SpiffeIdPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).map_err(|e| e.to_string())
    }
}

impl From<SpiffeIdPattern> for String {
    fn from(p: SpiffeIdPattern) -> String {
        p.source
    }
}

/// Longest path pattern accepted.
const MAX_PATTERN_LEN: usize = 1024;

/// Most `{name}` parameters in one path pattern (catch-alls aside). `matchit` 0.8 names
/// parameters `a` to `z` internally and panics on the 26th instead of returning an
/// error, so a longer pattern must be refused before it reaches a router.
pub const MAX_PATH_PARAMS: usize = 25;

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// Matches exactly this text.
    Static(String),
    /// `{name}`: any one non-empty segment.
    Param,
    /// `{*name}`, last: the rest of the path, including an empty rest (so `/{*rest}`
    /// matches `/`), but not a missing slash (`/v1/{*rest}` does not match `/v1`).
    CatchAll,
}

/// A path pattern in `matchit` syntax, restricted to whole-segment parameters:
/// `/v1/charges`, `/v1/charges/{id}`, `/static/{*rest}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PathPattern {
    source: String,
    segments: Vec<PathSegment>,
}

const PATH_HINT: &str = "write a path such as `/v1/charges`, `/v1/charges/{id}` or `/v1/{*rest}`";

impl PathPattern {
    pub fn parse(source: &str) -> Result<Self, LeafError> {
        if source.len() > MAX_PATTERN_LEN {
            return Err(LeafError::new(
                format!("path pattern is longer than {MAX_PATTERN_LEN} bytes"),
                PATH_HINT,
            ));
        }
        let Some(rest) = source.strip_prefix('/') else {
            return Err(LeafError::new(
                format!("path pattern `{source}` does not start with `/`"),
                format!("write `/{source}`"),
            ));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            segments.push(parse_segment(source, part, i == last)?);
        }
        let params = segments
            .iter()
            .filter(|s| **s == PathSegment::Param)
            .count();
        if params > MAX_PATH_PARAMS {
            return Err(LeafError::new(
                format!(
                    "path pattern `{source}` has {params} parameters; at most {MAX_PATH_PARAMS} are allowed"
                ),
                "match the fixed part of the path and end it with a catch-all such as `{*rest}`",
            ));
        }
        // The pattern is matchit syntax: make sure matchit itself agrees, so that the
        // patterns developers write here mean the same in every other router we use.
        matchit::Router::new()
            .insert(source, ())
            .map_err(|e| LeafError::new(format!("path pattern `{source}`: {e}"), PATH_HINT))?;
        Ok(Self {
            source: source.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn segments(&self) -> &[PathSegment] {
        &self.segments
    }
}

fn parse_segment(source: &str, part: &str, is_last: bool) -> Result<PathSegment, LeafError> {
    if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(name) => (true, name),
            None => (false, inner),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(LeafError::new(
                format!("path pattern `{source}` has a parameter with a bad name `{part}`"),
                "name parameters with letters, digits and `_`, as in `{id}` or `{*rest}`",
            ));
        }
        if catch_all && !is_last {
            return Err(LeafError::new(
                format!("path pattern `{source}` has the catch-all `{part}` before its end"),
                "a catch-all such as `{*rest}` must be the last segment",
            ));
        }
        return Ok(if catch_all {
            PathSegment::CatchAll
        } else {
            PathSegment::Param
        });
    }
    if part.contains(['{', '}']) {
        return Err(LeafError::new(
            format!(
                "path pattern `{source}` has a parameter that is not a whole segment: `{part}`"
            ),
            "a parameter must fill its segment, as in `/files/{name}`",
        ));
    }
    if part.is_empty() && !is_last {
        return Err(LeafError::new(
            format!("path pattern `{source}` has an empty segment (`//`)"),
            "remove the doubled `/`",
        ));
    }
    if part == "." || part == ".." {
        return Err(LeafError::new(
            format!("path pattern `{source}` has a `{part}` segment"),
            "requests with dot segments are refused before policy; write the path without them",
        ));
    }
    if let Some(c) = part
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '\\'))
    {
        return Err(LeafError::new(
            format!("path pattern `{source}` has the character {c:?}"),
            "a path pattern matches the path only: no query string, fragment, spaces or `\\`",
        ));
    }
    Ok(PathSegment::Static(part.to_owned()))
}

impl TryFrom<String> for PathPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).map_err(|e| e.to_string())
    }
}

impl From<PathPattern> for String {
    fn from(p: PathPattern) -> String {
        p.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    #[test]
    fn wildcard_ids_match_one_whole_segment() {
        let p = SpiffeIdPattern::parse("spiffe://td/ns/shop/sa/*").unwrap();
        assert!(p.exact().is_none());
        assert!(p.matches(&id("spiffe://td/ns/shop/sa/orders")));
        assert!(!p.matches(&id("spiffe://td/ns/shop/sa/orders/x")));
        assert!(!p.matches(&id("spiffe://td/ns/shop")));
        assert!(!p.matches(&id("spiffe://td/ns/other/sa/orders")));
        assert!(!p.matches(&id("spiffe://tdx/ns/shop/sa/orders")));
        assert!(!p.matches(&id("spiffe://td")));
        assert_eq!(p.literal_prefix(), "spiffe://td/ns/shop/sa/");
        let any_ns = SpiffeIdPattern::parse("spiffe://td/ns/*/sa/orders").unwrap();
        assert_eq!(any_ns.literal_prefix(), "spiffe://td/ns/");
        assert!(any_ns.matches(&id("spiffe://td/ns/a/sa/orders")));
        assert!(!any_ns.matches(&id("spiffe://td/ns/a/sa/billing")));
    }

    #[test]
    fn bad_id_patterns_are_refused_with_reasons() {
        for (bad, needle) in [
            ("spiffe://*/ns/a", "trust domain"),
            ("spiffe://td/ns/sh*p", "inside a segment"),
            ("spiffe://td*", "no path"),
            ("http://td/ns/*", "not a valid SPIFFE ID pattern"),
            ("spiffe://td/ns/a/", "not a valid SPIFFE ID"),
            ("spiffe://TD/ns/a", "not a valid SPIFFE ID"),
        ] {
            let err = SpiffeIdPattern::parse(bad).unwrap_err();
            assert!(err.message.contains(needle), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn path_patterns_parse_into_segments() {
        let p = PathPattern::parse("/v1/charges/{id}").unwrap();
        assert_eq!(
            p.segments(),
            &[
                PathSegment::Static("v1".into()),
                PathSegment::Static("charges".into()),
                PathSegment::Param
            ]
        );
        let p = PathPattern::parse("/{*rest}").unwrap();
        assert_eq!(p.segments(), &[PathSegment::CatchAll]);
        let p = PathPattern::parse("/").unwrap();
        assert_eq!(p.segments(), &[PathSegment::Static(String::new())]);
    }

    #[test]
    fn bad_path_patterns_are_refused_with_reasons() {
        for (bad, needle) in [
            ("v1/charges", "does not start with `/`"),
            ("/v1/{*rest}/x", "before its end"),
            ("/v1/{}", "bad name"),
            ("/v1/{a-b}", "bad name"),
            ("/v1/x{id}", "not a whole segment"),
            ("/v1//x", "empty segment"),
            ("/v1/../x", "`..` segment"),
            ("/v1?x=1", "character '?'"),
            ("/v1/a b", "character ' '"),
        ] {
            let err = PathPattern::parse(bad).unwrap_err();
            assert!(err.message.contains(needle), "{bad}: {}", err.message);
        }
        assert!(PathPattern::parse(&format!("/{}", "a".repeat(2000))).is_err());
    }

    /// Found by the `spiffe_id` fuzz target: a pattern with 26 parameters panicked in
    /// `matchit` (`Too many route parameters.`) instead of being refused.
    #[test]
    fn too_many_parameters_are_refused_not_a_panic() {
        let pattern = |n: usize| {
            (0..n).fold(String::from("/v1"), |mut p, i| {
                p.push_str(&format!("/{{p{i}}}"));
                p
            })
        };
        let most = PathPattern::parse(&pattern(MAX_PATH_PARAMS)).unwrap();
        assert_eq!(most.segments().len(), MAX_PATH_PARAMS + 1);
        let err = PathPattern::parse(&pattern(MAX_PATH_PARAMS + 1)).unwrap_err();
        assert!(err.message.contains("has 26 parameters"), "{}", err.message);
        assert!(PathPattern::parse(&(pattern(MAX_PATH_PARAMS) + "/{*rest}")).is_ok());
    }
}
