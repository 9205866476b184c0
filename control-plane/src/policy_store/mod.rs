//! The policy store: the policy directory (authorization policies, the mesh config and
//! WAF policies) checked as a whole, the set in force, and what each service's proxies
//! get from it.
//!
//! A change is all or nothing: any problem in any file refuses the whole change, because
//! enforcing the valid part of a broken change would enforce something nobody wrote. The
//! last good set stays in force (see [`watch`]).

pub mod dir;
pub mod watch;

use std::collections::HashMap;
use std::path::Path;

use palisade_api::policy::{
    DecidedBy, Diagnostic, Diagnostics, KnownRules, PolicySet, RequestFacts, WafPolicy,
    DEFAULT_NAMESPACE,
};
use palisade_api::wire::{
    PolicyCheckAudit, PolicyCheckRequest, PolicyCheckResponse, ServiceAuthorization,
};
use palisade_spiffe::{SpiffeId, TrustDomain};
use palisade_waf::WafSettings;

/// Every valid resource of a policy directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyBundle {
    pub set: PolicySet,
    /// Ordered by `(namespace, name)`; at most one per target service.
    pub waf: Vec<WafPolicy>,
    pub files: usize,
    /// SHA-256 of the files' names and contents, hex; empty for the built-in defaults.
    pub digest: String,
}

impl PolicyBundle {
    /// Checks `(file name, contents)` pairs as one set: authorization policies, the mesh
    /// config and WAF policies, with every problem of every file.
    pub fn from_sources(
        files: &[(String, String)],
        known: &KnownRules,
    ) -> Result<Self, Diagnostics> {
        let mut problems = Vec::new();
        let set = PolicySet::from_sources(files.iter().map(|(n, t)| (n.as_str(), t.as_str())));
        let set = match set {
            Ok(set) => Some(set),
            Err(Diagnostics(mut more)) => {
                problems.append(&mut more);
                None
            }
        };
        let mut waf: Vec<WafPolicy> = Vec::new();
        let mut by_name: HashMap<(String, String), usize> = HashMap::new();
        let mut by_target: HashMap<(String, String), usize> = HashMap::new();
        for (file, text) in files {
            let (policies, mut more) = palisade_api::policy::parse_waf_file(file, text, known);
            problems.append(&mut more);
            for policy in policies {
                let name = (policy.namespace.clone(), policy.name.clone());
                let target = (policy.namespace.clone(), policy.target_service.clone());
                if let Some(&first) = by_name.get(&name) {
                    problems.push(duplicate(
                        &policy,
                        "metadata.name",
                        format!(
                            "duplicate WafPolicy `{}` in namespace `{}`; the first is at {}",
                            policy.name, policy.namespace, waf[first].source
                        ),
                        "rename one of them",
                    ));
                    continue;
                }
                if let Some(&first) = by_target.get(&target) {
                    problems.push(duplicate(
                        &policy,
                        "spec.targetService",
                        format!(
                        "a second WafPolicy for service `{}` in namespace `{}`; the first is at {}",
                        policy.target_service, policy.namespace, waf[first].source
                    ),
                        "keep one WafPolicy per service; use `routes:` for per-route settings",
                    ));
                    continue;
                }
                by_name.insert(name, waf.len());
                by_target.insert(target, waf.len());
                waf.push(policy);
            }
        }
        match set {
            Some(set) if problems.is_empty() => {
                waf.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
                Ok(PolicyBundle {
                    set,
                    waf,
                    files: files.len(),
                    digest: String::new(),
                })
            }
            _ => {
                problems
                    .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
                Err(Diagnostics(problems))
            }
        }
    }

    /// Reads and checks every policy file under `dir` (what `--policy-dir` and
    /// `palisadectl policy lint` do).
    pub fn load_dir(dir: &Path, known: &KnownRules) -> Result<Self, Diagnostics> {
        Self::from_contents(&dir::read(&dir::list(dir)), known)
    }

    /// Checks what [`dir::read`] read; problems reading files refuse the set too.
    pub fn from_contents(
        contents: &dir::Contents,
        known: &KnownRules,
    ) -> Result<Self, Diagnostics> {
        let result = Self::from_sources(&contents.files, known);
        match (result, contents.problems.is_empty()) {
            (Ok(mut bundle), true) => {
                bundle.digest.clone_from(&contents.digest);
                Ok(bundle)
            }
            (Ok(_), false) => Err(Diagnostics(contents.problems.clone())),
            (Err(Diagnostics(more)), _) => {
                let mut all = contents.problems.clone();
                all.extend(more);
                Err(Diagnostics(all))
            }
        }
    }

    /// What the proxies of `service` in `namespace` enforce: the mesh settings and the
    /// authorization policies that target it.
    pub fn authorization_for(&self, namespace: &str, service: &str) -> ServiceAuthorization {
        ServiceAuthorization {
            mesh: self.set.mesh.clone(),
            policies: self.set.policies_for(namespace, service).cloned().collect(),
        }
    }

    /// The WAF settings of `service` in `namespace`: its `WafPolicy`, or the defaults.
    pub fn waf_for(&self, namespace: &str, service: &str) -> WafSettings {
        self.waf
            .iter()
            .find(|w| w.namespace == namespace && w.target_service == service)
            .map(|w| w.settings.clone())
            .unwrap_or_default()
    }

    /// `NAME.NAMESPACE`, or `NAME` when at most one namespace has policies for it (a
    /// service no policy names gets the mesh default whatever its namespace).
    pub fn resolve_service(&self, to: &str) -> Result<(String, String), String> {
        if let Some((name, namespace)) = to.split_once('.') {
            return Ok((name.to_owned(), namespace.to_owned()));
        }
        let namespaces: Vec<&str> = self
            .set
            .services()
            .into_iter()
            .filter(|(_, s)| *s == to)
            .map(|(ns, _)| ns)
            .collect();
        match namespaces.as_slice() {
            [] => Ok((to.to_owned(), DEFAULT_NAMESPACE.to_owned())),
            [ns] => Ok((to.to_owned(), (*ns).to_owned())),
            many => Err(format!(
                "`{to}` is ambiguous: policies target it in namespaces {}; write `{to}.NAMESPACE`",
                many.join(", ")
            )),
        }
    }

    /// Decides `request` with the code the proxies enforce with, and says why.
    pub fn explain(
        &self,
        trust_domain: &TrustDomain,
        request: &PolicyCheckRequest,
        policy_version: u64,
    ) -> Result<PolicyCheckResponse, String> {
        let peer = match &request.from {
            Some(from) => Some(
                SpiffeId::parse(from)
                    .map_err(|e| format!("`from` `{from}` is not a SPIFFE ID: {e}"))?,
            ),
            None => None,
        };
        let mut headers = http::HeaderMap::new();
        for (name, value) in &request.headers {
            let name = http::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"))?;
            let value = http::HeaderValue::from_str(value.trim())
                .map_err(|_| format!("the value of header `{name}` is not a valid header value"))?;
            headers.append(name, value);
        }
        let (service, namespace) = self.resolve_service(&request.to)?;
        let compiled = self.set.compile_service(trust_domain, &namespace, &service);
        let decision = compiled.evaluate(&RequestFacts {
            peer: peer.as_ref(),
            peer_ip: request.peer_ip,
            method: &request.method,
            path: &request.path,
            headers: &headers,
        });
        Ok(PolicyCheckResponse {
            allowed: decision.allowed,
            decided_by: describe(&decision.decided_by),
            reason: decision.reason.to_string(),
            reason_code: decision.reason.code().to_owned(),
            audit: decision.audit.map(|a| PolicyCheckAudit {
                allowed: a.allowed,
                decided_by: describe(&a.decided_by),
                reason: a.reason.to_string(),
                reason_code: a.reason.code().to_owned(),
            }),
            policy_version,
            policies: self.set.policies_for(&namespace, &service).count(),
            service,
            namespace,
        })
    }
}

fn duplicate(policy: &WafPolicy, path: &str, message: String, hint: &str) -> Diagnostic {
    Diagnostic {
        file: policy.source.file.clone(),
        line: policy.source.line,
        column: 1,
        path: path.to_owned(),
        message,
        hint: Some(hint.to_owned()),
    }
}

/// `default`, or `allow rule NS/POLICY rules[N] (NAME) at FILE:LINE [audit]`.
pub fn describe(by: &DecidedBy<'_>) -> String {
    match by {
        DecidedBy::Rule(r) => format!(
            "{} rule {}{}",
            r.action,
            r,
            if r.audit { " [audit]" } else { "" }
        ),
        DecidedBy::Default => "the default".to_owned(),
    }
}

/// The set in force and its version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivePolicy {
    pub bundle: PolicyBundle,
    /// Milliseconds since the epoch when it was applied (or the last version plus one):
    /// increases with every applied change, also across restarts. 0: the built-in defaults.
    pub version: u64,
}

impl ActivePolicy {
    /// `bundle`, versioned after `previous`.
    pub fn next(bundle: PolicyBundle, previous: u64) -> Self {
        let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let millis = u64::try_from(millis).unwrap_or(0);
        ActivePolicy {
            bundle,
            version: millis.max(previous + 1),
        }
    }
}

/// The rule ids and tags `WafPolicy` exclusions may name: those of the base rule set
/// the proxies run.
pub fn embedded_rules() -> Result<KnownRules, palisade_waf::RuleError> {
    Ok(KnownRules::from_rule_set(
        &palisade_waf::RuleSet::embedded()?
    ))
}
