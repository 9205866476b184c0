//! Deciding one request: which rules match, what wins, and why.
//!
//! Precedence, in order: a matching `deny` rule; a matching `allow` rule; the default
//! (deny when the service has a policy, else the mesh-wide default). Among several
//! matching rules of one action the first one (policies ordered by namespace and name,
//! rules by position) is reported as the decider.
//!
//! Two views are computed in one walk: the enforced view (rules and policies in audit
//! mode left out) decides the request; the audit view (everything counted) is what would
//! happen if audit mode were switched off, and is returned for the audit log.

use std::fmt;
use std::net::IpAddr;

use palisade_spiffe::SpiffeId;

use super::compile::{Bucket, CompiledRule, Node, ServicePolicy, IMPLICIT_CALLER};
use super::model::{Action, Caller, DefaultAction, HeaderCondition, HeaderMatch, Source};

/// What the proxy knows about a request when it authorizes it.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The verified SPIFFE ID of the peer; `None` for a plaintext (permissive-mode) caller.
    pub peer: Option<&'a SpiffeId>,
    pub peer_ip: IpAddr,
    pub method: &'a str,
    /// The request target's path; a query string or fragment is ignored.
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
}

/// The rule that decided, as the audit log and `palisadectl policy check` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef<'a> {
    pub namespace: &'a str,
    pub policy: &'a str,
    /// Position in the policy's `spec.rules`.
    pub index: usize,
    pub name: Option<&'a str>,
    pub action: Action,
    /// The rule (or its policy) is in audit mode.
    pub audit: bool,
    pub source: Option<&'a Source>,
}

impl fmt::Display for RuleRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} rules[{}]",
            self.namespace, self.policy, self.index
        )?;
        if let Some(name) = self.name {
            write!(f, " ({name})")?;
        }
        if let Some(source) = self.source {
            write!(f, " at {source}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy<'a> {
    Rule(RuleRef<'a>),
    Default,
}

impl fmt::Display for DecidedBy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecidedBy::Rule(r) => write!(f, "rule {r}"),
            DecidedBy::Default => f.write_str("default"),
        }
    }
}

/// Why the decision came out as it did; `Display` is the sentence for a person, and
/// [`Reason::code`] the stable label for metrics and SIEM fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    DenyRuleMatched,
    AllowRuleMatched,
    /// The service has a policy and no rule allowed the request.
    NotAllowedByPolicy,
    /// The path has dot segments, `//`, a backslash, or a percent-encoded `/`, `\` or
    /// unreserved character, so patterns cannot be applied to it unambiguously.
    AmbiguousPath,
    /// No policy; the mesh default admits any caller of the mesh's trust domain.
    DefaultAllowAuthenticated,
    /// No policy; the caller has no SVID.
    DefaultDenyUnauthenticated,
    /// No policy; the caller's SVID is of another trust domain.
    DefaultDenyForeignTrustDomain,
    /// No policy; the mesh default is `deny`.
    MeshDefaultDeny,
    /// No policy; the mesh default is `allowAll` (permissive).
    DefaultAllowAll,
}

impl Reason {
    pub fn code(&self) -> &'static str {
        match self {
            Reason::DenyRuleMatched => "deny_rule",
            Reason::AllowRuleMatched => "allow_rule",
            Reason::NotAllowedByPolicy => "not_allowed_by_policy",
            Reason::AmbiguousPath => "ambiguous_path",
            Reason::DefaultAllowAuthenticated => "default_allow_authenticated",
            Reason::DefaultDenyUnauthenticated => "default_deny_unauthenticated",
            Reason::DefaultDenyForeignTrustDomain => "default_deny_foreign_trust_domain",
            Reason::MeshDefaultDeny => "mesh_default_deny",
            Reason::DefaultAllowAll => "default_allow_all",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::DenyRuleMatched => "a deny rule matched the caller and route (deny wins over allow)",
            Reason::AllowRuleMatched => "an allow rule matched the caller and route, and no deny rule did",
            Reason::NotAllowedByPolicy => "the service has a policy and no allow rule matched this caller and route",
            Reason::AmbiguousPath => "the path has dot segments, `//`, a backslash, or a percent-encoded `/`, `\\` or unreserved character (such as `%61` for `a`), so no policy can be applied to it safely",
            Reason::DefaultAllowAuthenticated => "the service has no enforced policy and the mesh default admits any caller with an SVID of the mesh's trust domain",
            Reason::DefaultDenyUnauthenticated => "the service has no enforced policy and the caller has no SVID",
            Reason::DefaultDenyForeignTrustDomain => "the service has no enforced policy and the caller's SVID is of another trust domain",
            Reason::MeshDefaultDeny => "the service has no enforced policy and the mesh default is deny",
            Reason::DefaultAllowAll => "the service has no enforced policy and the mesh default (allowAll, permissive) admits every caller",
        })
    }
}

/// What would have happened had audit-mode rules and policies been enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditVerdict<'a> {
    pub allowed: bool,
    pub decided_by: DecidedBy<'a>,
    pub reason: Reason,
}

/// The outcome of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    /// What the proxy must do: forward (`true`) or answer 403/401 (`false`).
    pub allowed: bool,
    pub decided_by: DecidedBy<'a>,
    pub reason: Reason,
    /// Present when the service has any rule or policy in audit mode.
    pub audit: Option<AuditVerdict<'a>>,
}

impl Decision<'_> {
    /// Audit mode would have changed the outcome: the event the audit log exists for.
    pub fn audit_disagrees(&self) -> bool {
        self.audit.is_some_and(|a| a.allowed != self.allowed)
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = |allowed| if allowed { "allow" } else { "deny" };
        write!(
            f,
            "{} by {}: {}",
            verdict(self.allowed),
            self.decided_by,
            self.reason
        )?;
        if let Some(a) = &self.audit {
            write!(
                f,
                "\naudit mode would {} by {}: {}",
                verdict(a.allowed),
                a.decided_by,
                a.reason
            )?;
        }
        Ok(())
    }
}

/// The caller, worked out once per request.
struct Peer<'a> {
    id: Option<&'a SpiffeId>,
    local: bool,
    namespace: Option<&'a str>,
    service_account: Option<&'a str>,
    ip: IpAddr,
}

/// The lowest matching rule id per view and action.
#[derive(Default)]
struct Matches {
    enforced_deny: Option<u32>,
    enforced_allow: Option<u32>,
    audit_deny: Option<u32>,
    audit_allow: Option<u32>,
}

fn keep_min(slot: &mut Option<u32>, id: u32) {
    if slot.is_none_or(|cur| id < cur) {
        *slot = Some(id);
    }
}

impl ServicePolicy {
    /// Decides one request. Never panics and does not allocate.
    pub fn evaluate<'s>(&'s self, facts: &RequestFacts<'_>) -> Decision<'s> {
        let peer = self.peer(facts);
        let path = strip_query(facts.path);
        let ambiguous = self.has_any_policy && is_ambiguous(path);
        let mut m = Matches::default();
        if self.has_any_policy && !ambiguous {
            if let Some(node) = self.by_method.get(facts.method) {
                self.walk_root(node, path, &peer, facts.headers, &mut m);
            }
            self.walk_root(&self.any_method, path, &peer, facts.headers, &mut m);
        }
        let (allowed, decided_by, reason) = self.verdict(
            m.enforced_deny,
            m.enforced_allow,
            self.has_enforced_policy,
            ambiguous,
            &peer,
        );
        let audit = self.has_audit.then(|| {
            let (allowed, decided_by, reason) = self.verdict(
                m.audit_deny,
                m.audit_allow,
                self.has_any_policy,
                ambiguous,
                &peer,
            );
            AuditVerdict {
                allowed,
                decided_by,
                reason,
            }
        });
        Decision {
            allowed,
            decided_by,
            reason,
            audit,
        }
    }

    fn peer<'a>(&self, facts: &RequestFacts<'a>) -> Peer<'a> {
        let local = facts
            .peer
            .is_some_and(|id| id.as_str().starts_with(self.local_prefix.as_str()));
        let parts = facts
            .peer
            .filter(|_| local)
            .and_then(|id| id.workload_parts());
        Peer {
            id: facts.peer,
            local,
            namespace: parts.map(|(ns, _)| ns),
            service_account: parts.map(|(_, sa)| sa),
            ip: facts.peer_ip,
        }
    }

    fn verdict(
        &self,
        deny: Option<u32>,
        allow: Option<u32>,
        has_policy: bool,
        ambiguous: bool,
        peer: &Peer<'_>,
    ) -> (bool, DecidedBy<'_>, Reason) {
        if has_policy && ambiguous {
            return (false, DecidedBy::Default, Reason::AmbiguousPath);
        }
        if let Some(id) = deny {
            return (
                false,
                DecidedBy::Rule(self.rule_ref(id)),
                Reason::DenyRuleMatched,
            );
        }
        if let Some(id) = allow {
            return (
                true,
                DecidedBy::Rule(self.rule_ref(id)),
                Reason::AllowRuleMatched,
            );
        }
        if has_policy {
            return (false, DecidedBy::Default, Reason::NotAllowedByPolicy);
        }
        match self.default_action {
            DefaultAction::Deny => (false, DecidedBy::Default, Reason::MeshDefaultDeny),
            DefaultAction::AllowAll => (true, DecidedBy::Default, Reason::DefaultAllowAll),
            DefaultAction::AllowAuthenticated if peer.local => {
                (true, DecidedBy::Default, Reason::DefaultAllowAuthenticated)
            }
            DefaultAction::AllowAuthenticated if peer.id.is_some() => (
                false,
                DecidedBy::Default,
                Reason::DefaultDenyForeignTrustDomain,
            ),
            DefaultAction::AllowAuthenticated => (
                false,
                DecidedBy::Default,
                Reason::DefaultDenyUnauthenticated,
            ),
        }
    }

    fn rule_ref(&self, id: u32) -> RuleRef<'_> {
        let r = &self.rules[id as usize];
        RuleRef {
            namespace: &r.namespace,
            policy: &r.policy,
            index: r.index,
            name: r.name.as_deref(),
            action: r.action,
            audit: r.audit,
            source: r.source.as_ref(),
        }
    }

    fn walk_root(
        &self,
        root: &Node,
        path: &str,
        peer: &Peer<'_>,
        headers: &http::HeaderMap,
        m: &mut Matches,
    ) {
        if let Some(rest) = path.strip_prefix('/') {
            self.walk(root, rest, peer, headers, m);
        }
    }

    /// `rest` is the path after a `/`: at least one (possibly empty) segment remains.
    /// Each trie node is reached by one route only, so the walk visits a node at most
    /// once and its cost is bounded by the trie, whatever the path.
    fn walk(
        &self,
        node: &Node,
        rest: &str,
        peer: &Peer<'_>,
        headers: &http::HeaderMap,
        m: &mut Matches,
    ) {
        self.visit(&node.catch_all, peer, headers, m);
        let (segment, tail) = match rest.split_once('/') {
            Some((s, t)) => (s, Some(t)),
            None => (rest, None),
        };
        let step = |child: &Node, m: &mut Matches| match tail {
            Some(t) => self.walk(child, t, peer, headers, m),
            None => self.visit(&child.end, peer, headers, m),
        };
        if let Some(child) = node.statics.get(segment) {
            step(child, m);
        }
        if let Some(child) = node.param.as_deref() {
            if !segment.is_empty() {
                step(child, m);
            }
        }
    }

    fn visit(&self, bucket: &Bucket, peer: &Peer<'_>, headers: &http::HeaderMap, m: &mut Matches) {
        if let Some(id) = peer.id {
            if let Some(rules) = bucket.by_id.get(id.as_str()) {
                for &r in rules {
                    self.consider(r, headers, m);
                }
            }
        }
        if let Some(ns) = peer.namespace {
            if let Some(rules) = bucket.by_namespace.get(ns) {
                for &r in rules {
                    self.consider(r, headers, m);
                }
            }
        }
        if let Some(id) = peer.id.filter(|_| !bucket.by_id_prefix.is_empty()) {
            let id = id.as_str();
            // Every prefix of the ID that ends with `/`, after the scheme's `//`.
            for (i, _) in id.match_indices('/').skip(2) {
                if let Some(entries) = bucket.by_id_prefix.get(&id[..=i]) {
                    for &(r, caller) in entries {
                        let rule = &self.rules[r as usize];
                        if rule
                            .callers
                            .get(caller as usize)
                            .is_some_and(|c| caller_matches(c, peer))
                        {
                            self.consider(r, headers, m);
                        }
                    }
                }
            }
        }
        for &(r, caller) in &bucket.others {
            let rule = &self.rules[r as usize];
            let matched = if caller == IMPLICIT_CALLER {
                rule.action == Action::Deny || peer.id.is_some()
            } else {
                rule.callers
                    .get(caller as usize)
                    .is_some_and(|c| caller_matches(c, peer))
            };
            if matched {
                self.consider(r, headers, m);
            }
        }
    }

    fn consider(&self, id: u32, headers: &http::HeaderMap, m: &mut Matches) {
        let rule = &self.rules[id as usize];
        if !headers_match(rule, headers) {
            return;
        }
        match (rule.action, rule.audit) {
            (Action::Deny, false) => {
                keep_min(&mut m.enforced_deny, id);
                keep_min(&mut m.audit_deny, id);
            }
            (Action::Allow, false) => {
                keep_min(&mut m.enforced_allow, id);
                keep_min(&mut m.audit_allow, id);
            }
            (Action::Deny, true) => keep_min(&mut m.audit_deny, id),
            (Action::Allow, true) => keep_min(&mut m.audit_allow, id),
        }
    }
}

fn caller_matches(c: &Caller, peer: &Peer<'_>) -> bool {
    if let Some(p) = &c.spiffe_id {
        if !peer.id.is_some_and(|id| p.matches(id)) {
            return false;
        }
    }
    if let Some(ns) = &c.namespace {
        if peer.namespace != Some(ns.as_str()) {
            return false;
        }
    }
    if let Some(sa) = &c.service_account {
        if peer.service_account != Some(sa.as_str()) {
            return false;
        }
    }
    if let Some(net) = &c.cidr {
        if !net.contains(&peer.ip) {
            return false;
        }
    }
    if c.authenticated && peer.id.is_none() {
        return false;
    }
    if c.unauthenticated && peer.id.is_some() {
        return false;
    }
    true
}

/// Header conditions are read in the caller's disfavour: for an `allow` rule every value
/// of a repeated header must satisfy the condition, for a `deny` rule any one value does.
/// A caller cannot slip past a deny, or into an allow, by repeating a header.
fn headers_match(rule: &CompiledRule, headers: &http::HeaderMap) -> bool {
    rule.headers
        .iter()
        .all(|h| header_matches(h, rule.action, headers))
}

fn header_matches(h: &HeaderMatch, action: Action, headers: &http::HeaderMap) -> bool {
    let mut values = headers.get_all(h.name.header_name()).iter();
    let value_ok = |v: &http::HeaderValue| match &h.condition {
        HeaderCondition::Exact(want) => v.as_bytes() == want.as_bytes(),
        HeaderCondition::Regex(re) => re.is_match(v.as_bytes()),
        HeaderCondition::Present(_) => true,
    };
    match (&h.condition, action) {
        (HeaderCondition::Present(want), _) => values.next().is_some() == *want,
        (_, Action::Deny) => values.any(value_ok),
        (_, Action::Allow) => {
            let mut any = false;
            for v in values {
                if !value_ok(v) {
                    return false;
                }
                any = true;
            }
            any
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The path without its query string or fragment.
fn strip_query(path: &str) -> &str {
    match path.find(['?', '#']) {
        Some(i) => &path[..i],
        None => path,
    }
}

/// A path that an application could read differently from the policy: it must start with
/// `/` and have no `.`/`..` or empty inner segments, no backslash, no control characters,
/// and no percent-encoded `/`, `\` or unreserved character (letters, digits, `-._~`).
fn is_ambiguous(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return true;
    };
    let bytes = rest.as_bytes();
    if bytes.iter().any(|&b| b == b'\\' || b.is_ascii_control()) {
        return true;
    }
    for w in bytes.windows(3) {
        if w[0] != b'%' {
            continue;
        }
        let decoded = match (hex(w[1]), hex(w[2])) {
            (Some(hi), Some(lo)) => hi << 4 | lo,
            _ => continue,
        };
        // An encoded unreserved character (`%61` for `a`) names the same resource as the
        // plain one to an application that normalises, but would slip past a deny rule
        // written in plain text; an encoded `/` or `\` changes the segments.
        if decoded.is_ascii_alphanumeric()
            || matches!(decoded, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\')
        {
            return true;
        }
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !last) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambiguous_paths_are_recognised() {
        for p in [
            "", "v1", "//", "/a//b", "/a/./b", "/a/../b", "/..", "/a/.", "/a%2fb", "/a%2Eb",
            "/a%5cb", "/a\\b", "/a\u{0}b", "/a\tb", "/%61dmin", "/a%7e", "/a%2D",
        ] {
            assert!(is_ambiguous(p), "{p:?}");
        }
        for p in [
            "/", "/a", "/a/", "/a/b.c", "/a%20b", "/a%C3%A9", "/a%3F", "/a/..b", "/...", "/%",
            "/%zz",
        ] {
            assert!(!is_ambiguous(p), "{p:?}");
        }
    }

    #[test]
    fn query_and_fragment_are_ignored() {
        assert_eq!(strip_query("/a?b=/c"), "/a");
        assert_eq!(strip_query("/a#x"), "/a");
        assert_eq!(strip_query("/a"), "/a");
    }
}
