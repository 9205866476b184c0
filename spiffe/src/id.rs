//! SPIFFE IDs and trust domains, parsed strictly by the SPIFFE ID specification.
//!
//! Strict parsing matters because the ID is the principal every authorization decision
//! keys on: two spellings of one identity (a trailing slash, an upper-case trust domain,
//! a `..` segment) must never both be accepted, or a policy written for one is bypassed
//! by the other.

use std::fmt;
use std::str::FromStr;

/// Longest SPIFFE ID accepted, in bytes, as the specification recommends.
const MAX_ID_LEN: usize = 2048;
/// Longest trust domain accepted, in bytes (a DNS name's limit).
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a string is not a valid SPIFFE ID or trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("SPIFFE ID is empty")]
    Empty,
    #[error("SPIFFE ID is longer than {MAX_ID_LEN} bytes")]
    TooLong,
    #[error("SPIFFE ID must start with `spiffe://`")]
    WrongScheme,
    #[error("trust domain is empty")]
    EmptyTrustDomain,
    #[error("trust domain is longer than {MAX_TRUST_DOMAIN_LEN} bytes")]
    TrustDomainTooLong,
    #[error(
        "trust domain has the character {0:?}: only lower-case letters, digits, `.`, `-` and `_` are allowed"
    )]
    BadTrustDomainChar(char),
    #[error("path segment is empty (a `//` or a trailing `/`)")]
    EmptySegment,
    #[error("path segment `.` or `..` is not allowed")]
    DotSegment,
    #[error(
        "path has the character {0:?}: only letters, digits, `.`, `-` and `_` are allowed in segments"
    )]
    BadPathChar(char),
    #[error("a Palisade workload ID has the shape spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>")]
    NotWorkloadShape,
}

/// A SPIFFE trust domain, such as `cluster.local`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    pub fn new(name: &str) -> Result<Self, IdError> {
        if name.is_empty() {
            return Err(IdError::EmptyTrustDomain);
        }
        if name.len() > MAX_TRUST_DOMAIN_LEN {
            return Err(IdError::TrustDomainTooLong);
        }
        if let Some(c) = name
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
        {
            return Err(IdError::BadTrustDomainChar(c));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A SPIFFE ID: `spiffe://<trust-domain>/<path>`.
///
/// Stored as the full URI so that displaying, hashing and comparing it costs nothing
/// per request; the trust domain's end is remembered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: String,
    trust_domain_end: usize,
}

const SCHEME: &str = "spiffe://";

impl SpiffeId {
    /// Parses a SPIFFE ID by the specification's rules.
    pub fn parse(uri: &str) -> Result<Self, IdError> {
        if uri.is_empty() {
            return Err(IdError::Empty);
        }
        if uri.len() > MAX_ID_LEN {
            return Err(IdError::TooLong);
        }
        let rest = uri.strip_prefix(SCHEME).ok_or(IdError::WrongScheme)?;
        let (domain, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        TrustDomain::new(domain)?;
        if !path.is_empty() {
            for segment in path[1..].split('/') {
                validate_segment(segment)?;
            }
        }
        Ok(Self {
            uri: uri.to_owned(),
            trust_domain_end: SCHEME.len() + domain.len(),
        })
    }

    /// The ID of a workload: `spiffe://<td>/ns/<namespace>/sa/<service-account>`.
    pub fn workload(
        trust_domain: &TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, IdError> {
        validate_segment(namespace)?;
        validate_segment(service_account)?;
        Self::parse(&format!(
            "{SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}"
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.uri
    }

    pub fn trust_domain_name(&self) -> &str {
        &self.uri[SCHEME.len()..self.trust_domain_end]
    }

    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_name().to_owned())
    }

    /// The path, starting with `/`, or empty for a trust domain's own ID.
    pub fn path(&self) -> &str {
        &self.uri[self.trust_domain_end..]
    }

    /// `(namespace, service account)` when the ID has Palisade's workload shape.
    pub fn workload_parts(&self) -> Option<(&str, &str)> {
        let mut segments = self.path().strip_prefix('/')?.split('/');
        match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        self.workload_parts().map(|(ns, _)| ns)
    }

    pub fn service_account(&self) -> Option<&str> {
        self.workload_parts().map(|(_, sa)| sa)
    }
}

fn validate_segment(segment: &str) -> Result<(), IdError> {
    if segment.is_empty() {
        return Err(IdError::EmptySegment);
    }
    if segment == "." || segment == ".." {
        return Err(IdError::DotSegment);
    }
    if let Some(c) = segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(IdError::BadPathChar(c));
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_workload_ids() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/orders").unwrap();
        assert_eq!(id.trust_domain_name(), "cluster.local");
        assert_eq!(id.path(), "/ns/shop/sa/orders");
        assert_eq!(id.workload_parts(), Some(("shop", "orders")));
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/orders");
    }

    #[test]
    fn builds_workload_ids() {
        let td = TrustDomain::new("example.org").unwrap();
        let id = SpiffeId::workload(&td, "a", "b").unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/ns/a/sa/b");
        assert_eq!(
            SpiffeId::workload(&td, "a/b", "c"),
            Err(IdError::BadPathChar('/'))
        );
        assert_eq!(SpiffeId::workload(&td, "..", "c"), Err(IdError::DotSegment));
    }

    #[test]
    fn non_workload_paths_have_no_parts() {
        for uri in [
            "spiffe://td",
            "spiffe://td/ns/a",
            "spiffe://td/ns/a/sa/b/extra",
            "spiffe://td/x/a/sa/b",
        ] {
            assert_eq!(
                SpiffeId::parse(uri).unwrap().workload_parts(),
                None,
                "{uri}"
            );
        }
    }

    #[test]
    fn rejects_every_ambiguous_spelling() {
        let cases = [
            ("", IdError::Empty),
            ("https://td/ns/a/sa/b", IdError::WrongScheme),
            ("SPIFFE://td/ns/a", IdError::WrongScheme),
            ("spiffe:///ns/a", IdError::EmptyTrustDomain),
            ("spiffe://TD/ns/a", IdError::BadTrustDomainChar('T')),
            ("spiffe://td:443/ns/a", IdError::BadTrustDomainChar(':')),
            ("spiffe://user@td/ns/a", IdError::BadTrustDomainChar('@')),
            ("spiffe://td/ns/a/", IdError::EmptySegment),
            ("spiffe://td//ns", IdError::EmptySegment),
            ("spiffe://td/", IdError::EmptySegment),
            ("spiffe://td/ns/../sa", IdError::DotSegment),
            ("spiffe://td/ns/./sa", IdError::DotSegment),
            ("spiffe://td/ns/a?x=1", IdError::BadPathChar('?')),
            ("spiffe://td/ns/a#f", IdError::BadPathChar('#')),
            ("spiffe://td/ns/a%2F", IdError::BadPathChar('%')),
        ];
        for (uri, expected) in cases {
            assert_eq!(SpiffeId::parse(uri), Err(expected), "{uri}");
        }
        let long = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN));
        assert_eq!(SpiffeId::parse(&long), Err(IdError::TooLong));
    }
}
