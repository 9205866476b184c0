//! Reading policy files: YAML documents → typed resources, with every problem reported
//! at its file, line, column and field.
//!
//! Documents are parsed to `serde_yaml::Value` and then checked by hand rather than with
//! `#[derive(Deserialize)]`: derive stops at the first problem, while `policy lint` must
//! show all of them, each with a hint in the developer's terms.

use std::collections::HashMap;

use ipnet::IpNet;
use serde_yaml::{Mapping, Value};

use super::diagnostic::{did_you_mean, Diagnostic};
use super::fields::{join, type_name, Document, FieldChecks};
use super::lines::LineIndex;
use super::model::{
    Action, AuthorizationPolicy, Caller, DefaultAction, HeaderCondition, HeaderKey, HeaderMatch,
    HeaderRegex, MeshConfig, Mode, Route, Rule, Source, API_VERSION, DEFAULT_NAMESPACE,
    KIND_AUTHORIZATION_POLICY, KIND_MESH_CONFIG,
};
use super::pattern::{PathPattern, SpiffeIdPattern};
use super::waf_policy::KIND_WAF_POLICY;

/// One resource read from a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Policy(AuthorizationPolicy),
    Mesh(MeshConfig, Source),
}

/// Reads every YAML document of one file; `WafPolicy` documents are skipped (they are
/// [`super::parse_waf_file`]'s). Resources come back even when other documents
/// (or other fields) have problems, so that a caller can report everything at once; a
/// resource with a problem of its own is left out.
pub fn parse_file(file: &str, text: &str) -> (Vec<Resource>, Vec<Diagnostic>) {
    let mut resources = Vec::new();
    let mut diagnostics = Vec::new();
    for (first_line, doc) in split_documents(text) {
        let value: Value = match serde_yaml::from_str(&doc) {
            Ok(v) => v,
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map(|l| (first_line + l.line() - 1, l.column()))
                    .unwrap_or((first_line, 1));
                let message = strip_location(&e.to_string()).to_owned();
                let hint = if message.contains("duplicate entry") {
                    "a key may appear once per mapping: merge the two or remove one"
                } else {
                    "check the indentation and the `key: value` shape around this line"
                };
                diagnostics.push(Diagnostic {
                    file: file.to_owned(),
                    line,
                    column,
                    path: String::new(),
                    message: format!("YAML: {message}"),
                    hint: Some(hint.into()),
                });
                continue;
            }
        };
        if value.is_null() {
            continue;
        }
        let index = LineIndex::build(&doc, first_line);
        let mut checker = Checker {
            doc: Document {
                file,
                index: &index,
                diagnostics: Vec::new(),
            },
        };
        let resource = checker.resource(&value);
        if checker.doc.diagnostics.is_empty() {
            resources.extend(resource);
        }
        diagnostics.append(&mut checker.doc.diagnostics);
    }
    (resources, diagnostics)
}

/// `(first line, text)` of each `---`-separated document.
pub(super) fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut first = 1;
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---"
            || line.starts_with("--- ")
            || line.starts_with("---\t")
            || line == "..."
            || line.starts_with("... ");
        if is_marker {
            if !current.trim().is_empty() {
                docs.push((first, std::mem::take(&mut current)));
            }
            current.clear();
            first = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        docs.push((first, current));
    }
    docs
}

/// serde_yaml appends " at line L column C" to messages; we print the position ourselves.
fn strip_location(message: &str) -> &str {
    match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

const TOP_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const METADATA_FIELDS: &[&str] = &["name", "namespace", "labels", "annotations"];
const POLICY_SPEC_FIELDS: &[&str] = &["targetService", "mode", "rules"];
const MESH_SPEC_FIELDS: &[&str] = &["defaultAction"];
const RULE_FIELDS: &[&str] = &["name", "action", "mode", "callers", "routes", "headers"];
const CALLER_FIELDS: &[&str] = &[
    "spiffeId",
    "namespace",
    "serviceAccount",
    "cidr",
    "authenticated",
    "unauthenticated",
];
const ROUTE_FIELDS: &[&str] = &["methods", "paths"];
const HEADER_FIELDS: &[&str] = &["name", "exact", "present", "regex"];
const KINDS: &[&str] = &[KIND_AUTHORIZATION_POLICY, KIND_MESH_CONFIG, KIND_WAF_POLICY];

struct Checker<'a> {
    doc: Document<'a>,
}

impl<'a> FieldChecks<'a> for Checker<'a> {
    fn document(&mut self) -> &mut Document<'a> {
        &mut self.doc
    }
}

impl Checker<'_> {
    fn required<'v>(
        &mut self,
        map: &'v Mapping,
        path: &str,
        key: &str,
        hint: &str,
    ) -> Option<&'v Value> {
        let v = map.get(key);
        if v.is_none() {
            self.error(
                path,
                format!("missing field `{key}`"),
                Some(hint.to_owned()),
            );
        }
        v
    }

    /// A list that is either absent (`None`) or non-empty; `key: []` is refused because its
    /// reading ("nothing" or "anything") is a guess either way.
    fn list<'v>(&mut self, map: &'v Mapping, path: &str, key: &str) -> Option<&'v [Value]> {
        let v = map.get(key)?;
        let here = join(path, key);
        match v {
            Value::Sequence(items) if items.is_empty() => {
                self.error(
                    &here,
                    format!("`{key}` is an empty list"),
                    Some(format!(
                        "omit `{key}` to match any, or list at least one entry"
                    )),
                );
                None
            }
            Value::Sequence(items) => Some(items),
            other => {
                self.error(
                    &here,
                    format!("expected a list, found {}", type_name(other)),
                    Some(format!(
                        "write `{key}:` followed by `- item` lines, or `{key}: [a, b]`"
                    )),
                );
                None
            }
        }
    }

    fn resource(&mut self, doc: &Value) -> Option<Resource> {
        let top = self.mapping(doc, "", TOP_FIELDS)?;
        let api_version = self.required(
            top,
            "",
            "apiVersion",
            &format!("add `apiVersion: {API_VERSION}`"),
        );
        if let Some(v) = api_version {
            if let Some(s) = self.string(v, "apiVersion", API_VERSION) {
                if s != API_VERSION {
                    self.error(
                        "apiVersion",
                        format!("unknown apiVersion `{s}`"),
                        Some(format!("this version of Palisade reads `{API_VERSION}`")),
                    );
                }
            }
        }
        let kind = self
            .required(
                top,
                "",
                "kind",
                "add `kind: AuthorizationPolicy` or `kind: MeshConfig`",
            )
            .and_then(|v| self.string(v, "kind", KIND_AUTHORIZATION_POLICY));
        let kind = match kind {
            Some(k) if KINDS.contains(&k) => k,
            Some(k) => {
                let hint = match did_you_mean(k, KINDS) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known kinds: {}", KINDS.join(", ")),
                };
                self.error("kind", format!("unknown kind `{k}`"), Some(hint));
                return None;
            }
            None => return None,
        };
        if kind == KIND_WAF_POLICY {
            // WAF settings, read and checked by `parse_waf_file`.
            return None;
        }
        let metadata = self
            .required(top, "", "metadata", "add `metadata:` with a `name:`")
            .and_then(|v| self.mapping(v, "metadata", METADATA_FIELDS));
        let (name, namespace, name_line) = match metadata {
            Some(m) => self.metadata(m, kind),
            None => (None, None, 0),
        };
        let spec = self.required(top, "", "spec", "add a `spec:`")?;
        if kind == KIND_MESH_CONFIG {
            let default_action = self.mesh_spec(spec);
            return Some(Resource::Mesh(
                MeshConfig {
                    name: name?,
                    default_action: default_action?,
                },
                Source {
                    file: self.doc.file.to_owned(),
                    line: name_line,
                },
            ));
        }
        let (target_service, mode, rules) = self.policy_spec(spec)?;
        Some(Resource::Policy(AuthorizationPolicy {
            name: name?,
            namespace: namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            target_service,
            mode,
            rules,
            source: Some(Source {
                file: self.doc.file.to_owned(),
                line: name_line,
            }),
        }))
    }

    fn metadata(&mut self, m: &Mapping, kind: &str) -> (Option<String>, Option<String>, usize) {
        let name = self
            .required(
                m,
                "metadata",
                "name",
                "add `name:` with a lower-case name such as `payments-callers`",
            )
            .and_then(|v| self.string(v, "metadata.name", "payments-callers"))
            .and_then(|s| self.object_name(s, "metadata.name", 253));
        let name_line = self.doc.index.locate("metadata.name").0;
        let namespace = match m.get("namespace") {
            Some(_) if kind == KIND_MESH_CONFIG => {
                self.error(
                    "metadata.namespace",
                    "a MeshConfig is mesh-wide and has no namespace".into(),
                    Some("remove `namespace:`".into()),
                );
                None
            }
            Some(v) => self
                .string(v, "metadata.namespace", "shop")
                .and_then(|s| self.object_name(s, "metadata.namespace", 63)),
            None => None,
        };
        for key in ["labels", "annotations"] {
            if let Some(v) = m.get(key).filter(|v| !v.is_mapping()) {
                self.error(
                    &join("metadata", key),
                    format!("expected a mapping, found {}", type_name(v)),
                    Some(format!("write `{key}:` followed by `key: value` lines")),
                );
            }
        }
        (name, namespace, name_line)
    }

    /// A Kubernetes object name: lower-case letters, digits, `-` (and `.` when `max` > 63).
    fn object_name(&mut self, s: &str, path: &str, max: usize) -> Option<String> {
        let dots = max > 63;
        let ok_char = |c: char| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.')
        };
        let ends_ok = s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric());
        if s.is_empty() || s.len() > max || !s.chars().all(ok_char) || !ends_ok {
            self.error(
                path,
                format!("`{s}` is not a valid name"),
                Some(format!(
                    "use at most {max} lower-case letters, digits and `-`{}, starting and ending with a letter or digit",
                    if dots { " or `.`" } else { "" }
                )),
            );
            return None;
        }
        Some(s.to_owned())
    }

    fn mode(&mut self, map: &Mapping, path: &str) -> Option<Mode> {
        let Some(v) = map.get("mode") else {
            return Some(Mode::Enforce);
        };
        let here = join(path, "mode");
        match self.string(v, &here, "enforce")? {
            "enforce" => Some(Mode::Enforce),
            "audit" => Some(Mode::Audit),
            other => {
                self.enum_error(&here, "mode", other, &["enforce", "audit"]);
                None
            }
        }
    }

    fn enum_error(&mut self, path: &str, what: &str, got: &str, allowed: &[&str]) {
        let hint = match did_you_mean(got, allowed) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("expected one of: {}", allowed.join(", ")),
        };
        self.error(path, format!("unknown {what} `{got}`"), Some(hint));
    }

    fn mesh_spec(&mut self, spec: &Value) -> Option<DefaultAction> {
        let spec = self.mapping(spec, "spec", MESH_SPEC_FIELDS)?;
        let Some(v) = spec.get("defaultAction") else {
            return Some(DefaultAction::default());
        };
        match self.string(v, "spec.defaultAction", "deny")? {
            "allowAuthenticated" => Some(DefaultAction::AllowAuthenticated),
            "deny" => Some(DefaultAction::Deny),
            "allowAll" => Some(DefaultAction::AllowAll),
            other => {
                self.enum_error(
                    "spec.defaultAction",
                    "default action",
                    other,
                    &["allowAuthenticated", "deny", "allowAll"],
                );
                None
            }
        }
    }

    fn policy_spec(&mut self, spec: &Value) -> Option<(String, Mode, Vec<Rule>)> {
        let spec = self.mapping(spec, "spec", POLICY_SPEC_FIELDS)?;
        let target = self
            .required(
                spec,
                "spec",
                "targetService",
                "add `targetService:` with the name of the service this policy protects",
            )
            .and_then(|v| self.string(v, "spec.targetService", "payments"))
            .and_then(|s| self.object_name(s, "spec.targetService", 63));
        let mode = self.mode(spec, "spec");
        let rules = self.required(
            spec,
            "spec",
            "rules",
            "add `rules:`; `rules: []` denies every caller",
        );
        let mut out = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut ok = true;
        match rules {
            Some(Value::Sequence(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("spec.rules[{i}]");
                    match self.rule(item, &path) {
                        Some(rule) => {
                            if let Some(name) = &rule.name {
                                if let Some(first) = names.insert(name.clone(), i) {
                                    self.error(
                                        &join(&path, "name"),
                                        format!("rule name `{name}` is already used by spec.rules[{first}]"),
                                        Some("give every rule of a policy its own name".into()),
                                    );
                                    ok = false;
                                }
                            }
                            out.push(rule);
                        }
                        None => ok = false,
                    }
                }
            }
            Some(other) => {
                self.error(
                    "spec.rules",
                    format!("expected a list of rules, found {}", type_name(other)),
                    Some("write `rules:` followed by `- action: allow` items".into()),
                );
                ok = false;
            }
            None => ok = false,
        }
        if !ok {
            return None;
        }
        Some((target?, mode?, out))
    }

    fn rule(&mut self, v: &Value, path: &str) -> Option<Rule> {
        let map = self.mapping(v, path, RULE_FIELDS)?;
        let errors_before = self.doc.diagnostics.len();
        let name = match map.get("name") {
            Some(v) => self
                .string(v, &join(path, "name"), "orders-can-charge")
                .and_then(|s| self.object_name(s, &join(path, "name"), 63)),
            None => None,
        };
        let action = match self
            .required(map, path, "action", "add `action: allow` or `action: deny`")
            .and_then(|v| self.string(v, &join(path, "action"), "allow"))
        {
            Some("allow") => Some(Action::Allow),
            Some("deny") => Some(Action::Deny),
            Some(other) => {
                self.enum_error(&join(path, "action"), "action", other, &["allow", "deny"]);
                None
            }
            None => None,
        };
        let mode = self.mode(map, path);
        let mut callers = Vec::new();
        if let Some(items) = self.list(map, path, "callers") {
            for (i, item) in items.iter().enumerate() {
                if let Some(c) = self.caller(item, &format!("{path}.callers[{i}]")) {
                    callers.push(c);
                }
            }
        }
        let mut routes = Vec::new();
        if let Some(items) = self.list(map, path, "routes") {
            for (i, item) in items.iter().enumerate() {
                if let Some(r) = self.route(item, &format!("{path}.routes[{i}]")) {
                    routes.push(r);
                }
            }
        }
        let mut headers = Vec::new();
        if let Some(items) = self.list(map, path, "headers") {
            for (i, item) in items.iter().enumerate() {
                if let Some(h) = self.header(item, &format!("{path}.headers[{i}]")) {
                    headers.push(h);
                }
            }
        }
        if self.doc.diagnostics.len() != errors_before {
            return None;
        }
        Some(Rule {
            name,
            action: action?,
            mode: mode?,
            callers,
            routes,
            headers,
            line: Some(self.doc.index.locate(path).0),
        })
    }

    fn caller(&mut self, v: &Value, path: &str) -> Option<Caller> {
        if let Value::String(s) = v {
            return match SpiffeIdPattern::parse(s) {
                Ok(p) => Some(Caller {
                    spiffe_id: Some(p),
                    ..Caller::default()
                }),
                Err(e) => {
                    self.error(path, e.message, e.hint);
                    None
                }
            };
        }
        let map = self.mapping(v, path, CALLER_FIELDS)?;
        let errors_before = self.doc.diagnostics.len();
        let mut caller = Caller::default();
        if let Some(v) = map.get("spiffeId") {
            let here = join(path, "spiffeId");
            if let Some(s) = self.string(v, &here, "spiffe://palisade.local/ns/shop/sa/orders") {
                match SpiffeIdPattern::parse(s) {
                    Ok(p) => caller.spiffe_id = Some(p),
                    Err(e) => self.error(&here, e.message, e.hint),
                }
            }
        }
        if let Some(v) = map.get("namespace") {
            let here = join(path, "namespace");
            caller.namespace = self
                .string(v, &here, "shop")
                .and_then(|s| self.object_name(s, &here, 63));
        }
        if let Some(v) = map.get("serviceAccount") {
            let here = join(path, "serviceAccount");
            caller.service_account = self
                .string(v, &here, "orders")
                .and_then(|s| self.object_name(s, &here, 253));
            if !map.contains_key("namespace") {
                self.error(
                    &here,
                    "`serviceAccount` without `namespace`".into(),
                    Some("a service account name is only unique within its namespace: add `namespace:` beside it".into()),
                );
            }
        }
        if let Some(v) = map.get("cidr") {
            let here = join(path, "cidr");
            if let Some(s) = self.string(v, &here, "10.0.0.0/8") {
                match parse_cidr(s) {
                    Ok(net) => caller.cidr = Some(net),
                    Err(hint) => self.error(&here, format!("`{s}` is not a CIDR"), Some(hint)),
                }
            }
        }
        for (key, slot) in [
            ("authenticated", &mut caller.authenticated),
            ("unauthenticated", &mut caller.unauthenticated),
        ] {
            if let Some(v) = map.get(key) {
                let here = join(path, key);
                match v {
                    Value::Bool(true) => *slot = true,
                    Value::Bool(false) => self.error(
                        &here,
                        format!("`{key}: false` names no caller"),
                        Some(format!("remove `{key}`, or set it to `true`")),
                    ),
                    other => self.error(
                        &here,
                        format!("expected `true`, found {}", type_name(other)),
                        Some(format!("write `{key}: true`")),
                    ),
                }
            }
        }
        if map.is_empty() {
            self.error(
                path,
                "this caller entry names nobody".into(),
                Some("give `spiffeId`, `namespace` (with optional `serviceAccount`), `cidr`, `authenticated: true` or `unauthenticated: true`".into()),
            );
        }
        let has_identity = map.contains_key("spiffeId")
            || map.contains_key("namespace")
            || map.contains_key("serviceAccount");
        if map.contains_key("unauthenticated")
            && (has_identity || map.contains_key("authenticated"))
        {
            self.error(
                &join(path, "unauthenticated"),
                "an unauthenticated caller has no identity, so this entry can never match".into(),
                Some("put `unauthenticated: true` in a caller entry of its own".into()),
            );
        }
        if self.doc.diagnostics.len() != errors_before {
            return None;
        }
        Some(caller)
    }

    fn route(&mut self, v: &Value, path: &str) -> Option<Route> {
        let map = self.mapping(v, path, ROUTE_FIELDS)?;
        let errors_before = self.doc.diagnostics.len();
        let mut route = Route::default();
        if let Some(items) = self.list(map, path, "methods") {
            for (i, item) in items.iter().enumerate() {
                let here = format!("{path}.methods[{i}]");
                let Some(m) = self.string(item, &here, "GET") else {
                    continue;
                };
                if m.is_empty() || m.len() > 32 || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    let hint = if m.bytes().all(|b| b.is_ascii_alphabetic()) && !m.is_empty() {
                        format!(
                            "HTTP methods are case-sensitive and upper-case: write `{}`",
                            m.to_ascii_uppercase()
                        )
                    } else {
                        "write a method such as `GET` or `POST`".into()
                    };
                    self.report(
                        &join(path, "methods"),
                        &here,
                        format!("`{m}` is not an HTTP method"),
                        Some(hint),
                    );
                    continue;
                }
                if !route.methods.iter().any(|x| x == m) {
                    route.methods.push(m.to_owned());
                }
            }
        }
        if let Some(items) = self.list(map, path, "paths") {
            for (i, item) in items.iter().enumerate() {
                let here = format!("{path}.paths[{i}]");
                let Some(p) = self.string(item, &here, "/v1/charges/{id}") else {
                    continue;
                };
                match PathPattern::parse(p) {
                    Ok(p) => route.paths.push(p),
                    Err(e) => self.report(&join(path, "paths"), &here, e.message, e.hint),
                }
            }
        }
        if map.is_empty() {
            self.error(
                path,
                "this route matches everything".into(),
                Some("give `methods` and/or `paths`, or omit `routes` to match every route".into()),
            );
        }
        if self.doc.diagnostics.len() != errors_before {
            return None;
        }
        Some(route)
    }

    fn header(&mut self, v: &Value, path: &str) -> Option<HeaderMatch> {
        let map = self.mapping(v, path, HEADER_FIELDS)?;
        let errors_before = self.doc.diagnostics.len();
        let name = self
            .required(
                map,
                path,
                "name",
                "add `name:` with the header's name, such as `x-tenant`",
            )
            .and_then(|v| self.string(v, &join(path, "name"), "x-tenant"))
            .and_then(|s| match HeaderKey::new(s) {
                Ok(k) => Some(k),
                Err(e) => {
                    self.error(
                        &join(path, "name"),
                        e,
                        Some("header names are letters, digits and `-`".into()),
                    );
                    None
                }
            });
        let given: Vec<&str> = ["exact", "present", "regex"]
            .into_iter()
            .filter(|k| map.contains_key(*k))
            .collect();
        if given.len() != 1 {
            self.error(
                path,
                format!("a header condition needs exactly one of `exact`, `present`, `regex` (found {})", given.len()),
                Some("for example `exact: acme` or `present: true`".into()),
            );
            return None;
        }
        let key = given[0];
        let here = join(path, key);
        let condition = match (key, &map[key]) {
            ("present", Value::Bool(b)) => Some(HeaderCondition::Present(*b)),
            ("present", other) => {
                self.error(
                    &here,
                    format!("expected `true` or `false`, found {}", type_name(other)),
                    None,
                );
                None
            }
            ("exact", v) => self
                .string(v, &here, "acme")
                .map(|s| HeaderCondition::Exact(s.to_owned())),
            (_, v) => self
                .string(v, &here, "^[a-z]+$")
                .and_then(|s| match HeaderRegex::new(s) {
                    Ok(r) => Some(HeaderCondition::Regex(r)),
                    Err(e) => {
                        self.error(
                            &here,
                            format!("bad regex: {e}"),
                            Some("the regex must match the whole value; keep it small".into()),
                        );
                        None
                    }
                }),
        };
        if self.doc.diagnostics.len() != errors_before {
            return None;
        }
        Some(HeaderMatch {
            name: name?,
            condition: condition?,
        })
    }
}

/// A CIDR such as `10.0.0.0/8`; a bare address means a single host. Host bits must be
/// zero, because `10.1.2.3/8` is usually a typo for a narrower range.
fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net: IpNet = match s.parse() {
        Ok(n) => n,
        Err(_) => match s.parse::<std::net::IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(
                    "write an address with a prefix length, such as `10.0.0.0/8` or `fd00::/8`"
                        .into(),
                )
            }
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "the address has bits set past the prefix: did you mean `{}`?",
            net.trunc()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_file_lines() {
        let docs = split_documents("---\na: 1\n---\n\n# c\nb: 2\n...\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].0, 2);
        assert_eq!(docs[1].0, 4);
        assert_eq!(docs[1].1, "\n# c\nb: 2\n");
    }

    #[test]
    fn cidrs_must_be_exact() {
        assert!(parse_cidr("10.0.0.0/8").is_ok());
        assert_eq!(parse_cidr("10.1.2.3").unwrap().prefix_len(), 32);
        assert!(parse_cidr("10.1.0.0/8").unwrap_err().contains("10.0.0.0/8"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("fd00::/8").is_ok());
    }
}
