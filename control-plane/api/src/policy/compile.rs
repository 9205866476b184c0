//! The policies of one service, compiled once per update into lookup structures.
//!
//! Per method (plus one structure for rules that name no method) a segment trie holds the
//! path patterns; each trie position holds a [`Bucket`] of the rules placed there, indexed
//! by caller: exact SPIFFE IDs (and namespace + service account, which is an exact ID in
//! the mesh's trust domain) by hash, namespaces by hash, wildcard IDs by hash of their
//! literal prefix (one lookup per `/` of the caller's ID), everything else in a short list.
//! A request walks only the trie nodes its own path reaches and looks at only the rules
//! whose caller could be it, so rules for other routes or other callers cost nothing.
//!
//! The trie finds *every* pattern that matches, not only the most specific one as an
//! HTTP router does: a `deny` on `/{*rest}` must not be shadowed by an `allow` on
//! `/v1/charges/{id}`. Because the trie walk collects all matches, patterns never
//! conflict, and two policies may name one parameter differently.

use std::collections::HashMap;

use palisade_spiffe::TrustDomain;

use super::model::{Action, AuthorizationPolicy, Caller, DefaultAction, HeaderMatch, Mode, Source};
use super::pattern::PathSegment;

/// A caller-entry index meaning "the rule named no callers".
pub(super) const IMPLICIT_CALLER: u32 = u32::MAX;

/// One rule, flattened out of its policy.
#[derive(Debug)]
pub(super) struct CompiledRule {
    pub namespace: String,
    pub policy: String,
    pub index: usize,
    pub name: Option<String>,
    pub action: Action,
    /// The rule or its whole policy is in audit mode.
    pub audit: bool,
    pub callers: Vec<Caller>,
    pub headers: Vec<HeaderMatch>,
    pub source: Option<Source>,
}

/// The rules placed at one trie position, indexed by caller.
#[derive(Debug, Default)]
pub(super) struct Bucket {
    pub by_id: HashMap<Box<str>, Vec<u32>>,
    pub by_namespace: HashMap<Box<str>, Vec<u32>>,
    /// Wildcard SPIFFE ID entries by their literal prefix: `(rule, caller entry)`.
    pub by_id_prefix: HashMap<Box<str>, Vec<(u32, u32)>>,
    /// `(rule, caller entry)` pairs that need a full caller check.
    pub others: Vec<(u32, u32)>,
}

#[derive(Debug, Default)]
pub(super) struct Node {
    pub statics: HashMap<Box<str>, Node>,
    pub param: Option<Box<Node>>,
    /// Rules whose pattern ends here.
    pub end: Bucket,
    /// Rules whose pattern ends with a catch-all here.
    pub catch_all: Bucket,
}

/// Every policy of one service, ready to evaluate requests. Build one per update and swap
/// it in whole (for example with `arc-swap`); it is immutable and `Send + Sync`.
#[derive(Debug)]
pub struct ServicePolicy {
    pub(super) default_action: DefaultAction,
    /// `spiffe://<mesh trust domain>/`: identities with this prefix are the mesh's own.
    pub(super) local_prefix: String,
    pub(super) rules: Vec<CompiledRule>,
    pub(super) by_method: HashMap<Box<str>, Node>,
    pub(super) any_method: Node,
    /// The service has at least one enforced policy: enforced default is deny.
    pub(super) has_enforced_policy: bool,
    /// The service has at least one policy, enforced or audit: audit-view default is deny.
    pub(super) has_any_policy: bool,
    /// Some rule or policy runs in audit mode, so decisions carry an audit verdict.
    pub(super) has_audit: bool,
}

impl ServicePolicy {
    /// Compiles the policies that target one service. `policies` must all target it (the
    /// caller selects them, see [`super::PolicySet::policies_for`]); they are ordered by
    /// `(namespace, name)` so that "the first matching rule", reported as the decider, is
    /// the same on every proxy whatever order the policies arrived in.
    pub fn compile(
        trust_domain: &TrustDomain,
        default_action: DefaultAction,
        policies: &[&AuthorizationPolicy],
    ) -> Self {
        let mut ordered: Vec<&AuthorizationPolicy> = policies.to_vec();
        ordered.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let local_prefix = format!("spiffe://{trust_domain}/");
        let mut out = Self {
            default_action,
            local_prefix,
            rules: Vec::new(),
            by_method: HashMap::new(),
            any_method: Node::default(),
            has_enforced_policy: ordered.iter().any(|p| p.mode == Mode::Enforce),
            has_any_policy: !ordered.is_empty(),
            has_audit: false,
        };
        for policy in ordered {
            for (index, rule) in policy.rules.iter().enumerate() {
                let audit = policy.mode == Mode::Audit || rule.mode == Mode::Audit;
                out.has_audit |= audit;
                // Rule ids are u32 to keep buckets small; a policy set is far below 2^32
                // rules (files are size-capped), and saturating keeps this panic-free.
                let id = u32::try_from(out.rules.len()).unwrap_or(u32::MAX - 1);
                out.rules.push(CompiledRule {
                    namespace: policy.namespace.clone(),
                    policy: policy.name.clone(),
                    index,
                    name: rule.name.clone(),
                    action: rule.action,
                    audit,
                    callers: rule.callers.clone(),
                    headers: rule.headers.clone(),
                    source: policy.source.as_ref().map(|s| Source {
                        file: s.file.clone(),
                        line: rule.line.unwrap_or(s.line),
                    }),
                });
                out.place(id, rule);
            }
        }
        out.has_audit |= out.has_any_policy && !out.has_enforced_policy;
        out
    }

    /// Puts rule `id` at every (method, path) position its routes name.
    fn place(&mut self, id: u32, rule: &super::model::Rule) {
        let callers = &self.rules[id as usize].callers;
        let mut entries: Vec<CallerKey> = callers
            .iter()
            .enumerate()
            .map(|(i, c)| CallerKey::of(c, i as u32, &self.local_prefix))
            .collect();
        if entries.is_empty() {
            entries.push(CallerKey::Other(IMPLICIT_CALLER));
        }
        let any_route = [super::model::Route::default()];
        let routes = if rule.routes.is_empty() {
            &any_route[..]
        } else {
            &rule.routes[..]
        };
        for route in routes {
            if route.methods.is_empty() {
                place_route(&mut self.any_method, route, id, &entries);
            }
            for method in &route.methods {
                let node = self.by_method.entry(method.as_str().into()).or_default();
                place_route(node, route, id, &entries);
            }
        }
    }
}

fn place_route(node: &mut Node, route: &super::model::Route, id: u32, entries: &[CallerKey]) {
    if route.paths.is_empty() {
        // Any path: the root catch-all sees every path (each has at least one segment).
        add(&mut node.catch_all, id, entries);
    }
    for pattern in &route.paths {
        add(insert(node, pattern.segments()), id, entries);
    }
}

/// Walks (creating) the trie down a pattern and returns the bucket where it ends.
fn insert<'n>(mut node: &'n mut Node, segments: &[PathSegment]) -> &'n mut Bucket {
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match segment {
            PathSegment::CatchAll => return &mut node.catch_all,
            PathSegment::Static(s) => node = node.statics.entry(s.as_str().into()).or_default(),
            PathSegment::Param => node = node.param.get_or_insert_with(Box::default),
        }
        if last {
            return &mut node.end;
        }
    }
    // A pattern always has at least one segment (`/` is one empty static segment).
    &mut node.end
}

/// How a caller entry is indexed.
enum CallerKey {
    Id(Box<str>),
    Namespace(Box<str>),
    IdPrefix(Box<str>, u32),
    Other(u32),
}

impl CallerKey {
    fn of(c: &Caller, index: u32, local_prefix: &str) -> Self {
        let only_flags_absent = c.cidr.is_none() && !c.authenticated && !c.unauthenticated;
        match (&c.spiffe_id, &c.namespace, &c.service_account) {
            (Some(p), None, None) if only_flags_absent => match p.exact() {
                Some(id) => Self::Id(id.as_str().into()),
                None => Self::IdPrefix(p.literal_prefix().into(), index),
            },
            (None, Some(ns), Some(sa)) if only_flags_absent => {
                Self::Id(format!("{local_prefix}ns/{ns}/sa/{sa}").into())
            }
            (None, Some(ns), None) if only_flags_absent => Self::Namespace(ns.as_str().into()),
            _ => Self::Other(index),
        }
    }
}

fn add(bucket: &mut Bucket, rule: u32, entries: &[CallerKey]) {
    fn push(list: &mut Vec<u32>, rule: u32) {
        if list.last() != Some(&rule) {
            list.push(rule);
        }
    }
    for entry in entries {
        match entry {
            CallerKey::Id(id) => push(bucket.by_id.entry(id.clone()).or_default(), rule),
            CallerKey::Namespace(ns) => {
                push(bucket.by_namespace.entry(ns.clone()).or_default(), rule)
            }
            CallerKey::IdPrefix(prefix, i) => bucket
                .by_id_prefix
                .entry(prefix.clone())
                .or_default()
                .push((rule, *i)),
            CallerKey::Other(i) => bucket.others.push((rule, *i)),
        }
    }
}
