//! `kind: WafPolicy`: the WAF settings of one service, written by a security team next to
//! the authorization policies and checked with the same file:line:field diagnostics.
//!
//! A `WafPolicy` maps one to one onto [`palisade_waf::WafSettings`], which is what the
//! control plane pushes to the service's proxies. Fields not written keep the secure
//! defaults (block, paranoia 1, threshold 5), so a policy only ever says what it changes.
//! Exclusions must name rule ids and tags that exist in the rule set: a typo there would
//! otherwise exclude nothing and leave the security team believing a false positive is
//! switched off (or, worse, believing a rule is on when they meant to exclude another).

use std::collections::{BTreeMap, BTreeSet};

use palisade_waf::{Exclusion, Mode, OverLimit, RouteSettings, RuleSet, WafSettings};
use serde_yaml::{Mapping, Value};

use super::diagnostic::{did_you_mean, Diagnostic};
use super::fields::{join, type_name, Document, FieldChecks};
use super::lines::LineIndex;
use super::load::split_documents;
use super::model::{Source, API_VERSION, DEFAULT_NAMESPACE};
use super::pattern::PathPattern;

pub const KIND_WAF_POLICY: &str = "WafPolicy";

/// Largest `bodyLimit` accepted: the proxy buffers up to this much per request.
pub const MAX_BODY_LIMIT: usize = 64 * 1024 * 1024;

const TOP_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const METADATA_FIELDS: &[&str] = &["name", "namespace", "labels", "annotations"];
const SPEC_FIELDS: &[&str] = &[
    "targetService",
    "mode",
    "paranoia",
    "threshold",
    "bodyLimit",
    "overLimit",
    "exclusions",
    "routes",
];
const ROUTE_FIELDS: &[&str] = &["mode", "paranoia", "threshold", "exclusions"];
const EXCLUSION_FIELDS: &[&str] = &["rules", "tags", "args", "routes"];
const MODES: &[&str] = &["off", "detect", "block"];
const OVER_LIMITS: &[&str] = &["reject", "inspectPrefix"];

/// One `WafPolicy` resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WafPolicy {
    pub name: String,
    pub namespace: String,
    /// The service whose proxies apply `settings`, in the policy's namespace.
    pub target_service: String,
    pub settings: WafSettings,
    pub source: Source,
}

/// The rule ids and tags an exclusion may name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownRules {
    pub ids: BTreeSet<u32>,
    pub tags: BTreeSet<String>,
}

impl KnownRules {
    pub fn from_rule_set(rules: &RuleSet) -> Self {
        let mut known = KnownRules::default();
        for rule in rules.rules() {
            known.ids.insert(rule.id);
            known.tags.extend(rule.tags);
        }
        known
    }
}

/// Reads the `WafPolicy` documents of one file; documents of other kinds (and YAML syntax
/// errors, which [`super::parse_file`] reports) are left alone. A policy with a problem is
/// left out and its problems returned.
pub fn parse_waf_file(
    file: &str,
    text: &str,
    known: &KnownRules,
) -> (Vec<WafPolicy>, Vec<Diagnostic>) {
    let mut policies = Vec::new();
    let mut diagnostics = Vec::new();
    for (first_line, doc) in split_documents(text) {
        let Ok(value) = serde_yaml::from_str::<Value>(&doc) else {
            continue;
        };
        if value.get("kind").and_then(Value::as_str) != Some(KIND_WAF_POLICY) {
            continue;
        }
        let index = LineIndex::build(&doc, first_line);
        let mut checker = Checker {
            doc: Document {
                file,
                index: &index,
                diagnostics: Vec::new(),
            },
            known,
        };
        let policy = checker.resource(&value);
        if checker.doc.diagnostics.is_empty() {
            policies.extend(policy);
        }
        diagnostics.append(&mut checker.doc.diagnostics);
    }
    (policies, diagnostics)
}

struct Checker<'a> {
    doc: Document<'a>,
    known: &'a KnownRules,
}

impl<'a> FieldChecks<'a> for Checker<'a> {
    fn document(&mut self) -> &mut Document<'a> {
        &mut self.doc
    }
}

fn choice_hint(got: &str, allowed: &[&str]) -> String {
    match did_you_mean(got, allowed) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("expected one of: {}", allowed.join(", ")),
    }
}

impl Checker<'_> {
    fn integer(&mut self, v: &Value, path: &str, range: (u64, u64), hint: &str) -> Option<u64> {
        let n = match v {
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        match n {
            Some(n) if (range.0..=range.1).contains(&n) => Some(n),
            Some(n) => {
                self.error(
                    path,
                    format!("{n} is out of range {}..={}", range.0, range.1),
                    Some(hint.to_owned()),
                );
                None
            }
            None => {
                self.error(
                    path,
                    format!("expected a whole number, found {}", describe(v)),
                    Some(hint.to_owned()),
                );
                None
            }
        }
    }

    fn object_name(&mut self, v: &Value, path: &str, example: &str) -> Option<String> {
        let s = self.string(v, path, example)?;
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let ends_ok = s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric());
        if s.is_empty() || s.len() > 63 || !s.chars().all(ok_char) || !ends_ok {
            self.error(
                path,
                format!("`{s}` is not a valid name"),
                Some("use at most 63 lower-case letters, digits and `-`, starting and ending with a letter or digit".into()),
            );
            return None;
        }
        Some(s.to_owned())
    }

    fn resource(&mut self, doc: &Value) -> Option<WafPolicy> {
        let top = self.mapping(doc, "", TOP_FIELDS)?;
        match top.get("apiVersion") {
            Some(v) => {
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
            None => self.error(
                "",
                "missing field `apiVersion`".into(),
                Some(format!("add `apiVersion: {API_VERSION}`")),
            ),
        }
        let (name, namespace) = match top.get("metadata") {
            Some(v) => self.metadata(v),
            None => {
                self.error(
                    "",
                    "missing field `metadata`".into(),
                    Some("add `metadata:` with a `name:`".into()),
                );
                (None, None)
            }
        };
        let line = self.doc.index.locate("metadata.name").0;
        let Some(spec) = top.get("spec") else {
            self.error(
                "",
                "missing field `spec`".into(),
                Some("add a `spec:` with at least `targetService:`".into()),
            );
            return None;
        };
        let (target_service, settings) = self.spec(spec)?;
        Some(WafPolicy {
            name: name?,
            namespace: namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            target_service: target_service?,
            settings,
            source: Source {
                file: self.doc.file.to_owned(),
                line,
            },
        })
    }

    fn metadata(&mut self, v: &Value) -> (Option<String>, Option<String>) {
        let Some(m) = self.mapping(v, "metadata", METADATA_FIELDS) else {
            return (None, None);
        };
        let name = match m.get("name") {
            Some(v) => self.object_name(v, "metadata.name", "payments-waf"),
            None => {
                self.error(
                    "metadata",
                    "missing field `name`".into(),
                    Some("add `name:` with a lower-case name such as `payments-waf`".into()),
                );
                None
            }
        };
        let namespace = m
            .get("namespace")
            .and_then(|v| self.object_name(v, "metadata.namespace", "shop"));
        (name, namespace)
    }

    fn spec(&mut self, v: &Value) -> Option<(Option<String>, WafSettings)> {
        let spec = self.mapping(v, "spec", SPEC_FIELDS)?;
        let target = match spec.get("targetService") {
            Some(v) => self.object_name(v, "spec.targetService", "payments"),
            None => {
                self.error(
                    "spec",
                    "missing field `targetService`".into(),
                    Some(
                        "add `targetService:` with the name of the service these settings apply to"
                            .into(),
                    ),
                );
                None
            }
        };
        let mut settings = WafSettings::default();
        if let Some(mode) = self.mode(spec, "spec") {
            settings.mode = mode;
        }
        if let Some(p) = self.paranoia(spec, "spec") {
            settings.paranoia = p;
        }
        if let Some(t) = self.threshold(spec, "spec") {
            settings.threshold = t;
        }
        if let Some(v) = spec.get("bodyLimit") {
            let hint = format!("the largest body inspected, in bytes: 1 to {MAX_BODY_LIMIT}");
            if let Some(n) = self.integer(v, "spec.bodyLimit", (1, MAX_BODY_LIMIT as u64), &hint) {
                settings.body_limit = usize::try_from(n).unwrap_or(MAX_BODY_LIMIT);
            }
        }
        if let Some(v) = spec.get("overLimit") {
            match self.string(v, "spec.overLimit", "reject") {
                Some("reject") => settings.over_limit = OverLimit::Reject,
                Some("inspectPrefix") => settings.over_limit = OverLimit::InspectPrefix,
                Some(other) => self.error(
                    "spec.overLimit",
                    format!("unknown overLimit `{other}`"),
                    Some(choice_hint(other, OVER_LIMITS)),
                ),
                None => {}
            }
        }
        settings.exclusions = self.exclusions(spec, "spec", None);
        if let Some(v) = spec.get("routes") {
            settings.routes = self.routes(v, "spec.routes");
        }
        Some((target, settings))
    }

    fn mode(&mut self, map: &Mapping, path: &str) -> Option<Mode> {
        let here = join(path, "mode");
        match self.string(map.get("mode")?, &here, "block")? {
            "off" => Some(Mode::Off),
            "detect" => Some(Mode::Detect),
            "block" => Some(Mode::Block),
            other => {
                self.error(
                    &here,
                    format!("unknown mode `{other}`"),
                    Some(choice_hint(other, MODES)),
                );
                None
            }
        }
    }

    fn paranoia(&mut self, map: &Mapping, path: &str) -> Option<u8> {
        let v = map.get("paranoia")?;
        let n = self.integer(
            v,
            &join(path, "paranoia"),
            (1, 4),
            "paranoia is 1 (fewest false positives) to 4 (most rules)",
        )?;
        u8::try_from(n).ok()
    }

    fn threshold(&mut self, map: &Mapping, path: &str) -> Option<u32> {
        let v = map.get("threshold")?;
        let n = self.integer(
            v,
            &join(path, "threshold"),
            (1, u64::from(u32::MAX)),
            "the anomaly score that blocks a request: at least 1 (5 is one critical match)",
        )?;
        u32::try_from(n).ok()
    }

    fn routes(&mut self, v: &Value, path: &str) -> BTreeMap<String, RouteSettings> {
        let mut out = BTreeMap::new();
        let Value::Mapping(map) = v else {
            self.error(
                path,
                format!("expected a mapping of route names, found {}", type_name(v)),
                Some(
                    "write `routes:` followed by `route-name:` lines with the overrides under each"
                        .into(),
                ),
            );
            return out;
        };
        for (key, value) in map {
            let Some(route) = key.as_str().filter(|k| !k.is_empty()) else {
                self.error(
                    path,
                    format!("a route name here is {}, not a string", type_name(key)),
                    None,
                );
                continue;
            };
            let here = join(path, route);
            if !self.route_pattern(route, &here) {
                continue;
            }
            let Some(m) = self.mapping(value, &here, ROUTE_FIELDS) else {
                continue;
            };
            let settings = RouteSettings {
                mode: self.mode(m, &here),
                paranoia: self.paranoia(m, &here),
                threshold: self.threshold(m, &here),
                exclusions: self.exclusions(m, &here, Some(route)),
            };
            out.insert(route.to_owned(), settings);
        }
        // Two patterns that could match the same path (`/a/{id}` and `/a/{name}`) leave
        // the proxy unable to choose; it would ignore the second.
        let mut router = matchit::Router::new();
        for route in out.keys() {
            if let Err(e) = router.insert(route.as_str(), ()) {
                self.error(
                    &join(path, route),
                    format!("route `{route}` conflicts with another route: {e}"),
                    Some("give each route its own fixed path segments, or merge the two".into()),
                );
            }
        }
        out
    }

    /// Whether `route` is a path pattern (as policy routes are: `/login`,
    /// `/v1/charges/{id}`, `/static/{*rest}`), which is what the proxy matches a request's
    /// path against to find its route; reports it at `here` if not, since the proxy could
    /// only ignore it.
    fn route_pattern(&mut self, route: &str, here: &str) -> bool {
        match PathPattern::parse(route) {
            Ok(_) => true,
            Err(e) => {
                self.error(
                    here,
                    format!(
                        "a WAF route is a path pattern the request's path is matched against: {}",
                        e.message
                    ),
                    e.hint,
                );
                false
            }
        }
    }

    /// The exclusions of `map`; `route` is the route they sit under, if any.
    fn exclusions(&mut self, map: &Mapping, path: &str, route: Option<&str>) -> Vec<Exclusion> {
        let here = join(path, "exclusions");
        let Some(v) = map.get("exclusions") else {
            return Vec::new();
        };
        let Value::Sequence(items) = v else {
            self.error(
                &here,
                format!("expected a list of exclusions, found {}", type_name(v)),
                Some("write `exclusions:` followed by `- rules: [942100]` items".into()),
            );
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.exclusion(item, &format!("{here}[{i}]"), route))
            .collect()
    }

    fn exclusion(&mut self, v: &Value, path: &str, route: Option<&str>) -> Option<Exclusion> {
        let errors_before = self.doc.diagnostics.len();
        let map = self.mapping(v, path, EXCLUSION_FIELDS)?;
        let mut exclusion = Exclusion::default();
        for (i, item) in self.list(map, path, "rules").iter().enumerate() {
            let here = format!("{path}.rules[{i}]");
            let id = match item {
                Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                _ => None,
            };
            match id {
                Some(id) if self.known.ids.contains(&id) => exclusion.rules.push(id),
                Some(id) => {
                    let near = self
                        .known
                        .ids
                        .range(id.saturating_sub(5)..=id.saturating_add(5));
                    let near: Vec<String> = near.map(u32::to_string).collect();
                    let hint = if near.is_empty() {
                        "list the rule ids with `palisadectl waf test`, or see waf-rules/rules/"
                            .to_owned()
                    } else {
                        format!("rules near it: {}", near.join(", "))
                    };
                    self.error(&here, format!("no WAF rule has id {id}"), Some(hint));
                }
                None => self.error(
                    &here,
                    format!(
                        "expected a rule id (a whole number), found {}",
                        describe(item)
                    ),
                    Some("write the numeric id, such as `942100`".into()),
                ),
            }
        }
        for (i, item) in self.list(map, path, "tags").iter().enumerate() {
            let here = format!("{path}.tags[{i}]");
            let Some(tag) = self.string(item, &here, "sqli") else {
                continue;
            };
            if self.known.tags.contains(tag) {
                exclusion.tags.push(tag.to_owned());
            } else {
                let tags: Vec<&str> = self.known.tags.iter().map(String::as_str).collect();
                let hint = choice_hint(tag, &tags);
                self.error(
                    &here,
                    format!("no WAF rule has the tag `{tag}`"),
                    Some(hint),
                );
            }
        }
        for key in ["args", "routes"] {
            for (i, item) in self.list(map, path, key).iter().enumerate() {
                let here = format!("{path}.{key}[{i}]");
                match self.string(item, &here, "comment") {
                    Some("") => self.error(&here, format!("an empty name in `{key}`"), None),
                    Some(s) if key == "args" => exclusion.args.push(s.to_owned()),
                    // The proxy consults a route's own exclusions only on that route, so
                    // one naming another route could never apply.
                    Some(s) if route.is_some_and(|r| r != s) => self.error(
                        &here,
                        format!(
                            "an exclusion under route `{}` applies only there; it can never apply on `{s}`",
                            route.unwrap_or_default()
                        ),
                        Some(format!(
                            "move it to `spec.exclusions` with `routes: [\"{s}\"]`, or leave `routes` out"
                        )),
                    ),
                    Some(s) if self.route_pattern(s, &here) => exclusion.routes.push(s.to_owned()),
                    Some(_) => {}
                    None => {}
                }
            }
        }
        let names_nothing = exclusion.rules.is_empty()
            && exclusion.tags.is_empty()
            && exclusion.args.is_empty()
            && exclusion.routes.is_empty();
        if names_nothing && self.doc.diagnostics.len() == errors_before {
            self.error(
                path,
                "an empty exclusion would switch off every rule everywhere".into(),
                Some(
                    "name `rules`, `tags`, `args` or `routes`; to stop inspecting, set `mode: off`"
                        .into(),
                ),
            );
        }
        (self.doc.diagnostics.len() == errors_before).then_some(exclusion)
    }

    /// The items of the list `key`, or nothing (reporting anything that is not a list).
    /// `key: []` is refused as in the policy kinds: "nothing" and "everything" are both
    /// plausible readings, and here the second would switch rules off.
    fn list<'v>(&mut self, map: &'v Mapping, path: &str, key: &str) -> &'v [Value] {
        match map.get(key) {
            None => &[],
            Some(Value::Sequence(items)) if items.is_empty() => {
                self.error(
                    &join(path, key),
                    format!("`{key}` is an empty list"),
                    Some(format!("omit `{key}`, or list at least one entry")),
                );
                &[]
            }
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                self.error(
                    &join(path, key),
                    format!("expected a list, found {}", type_name(other)),
                    Some(format!("write `{key}: [a, b]`")),
                );
                &[]
            }
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("`{n}`"),
        Value::String(s) => format!("the string `{s}`"),
        other => type_name(other).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> KnownRules {
        KnownRules {
            ids: [942100, 942110, 941100].into_iter().collect(),
            tags: ["sqli", "xss"].into_iter().map(String::from).collect(),
        }
    }

    /// Every diagnostic as the CLI prints it, one after another.
    fn joined(problems: &[Diagnostic]) -> String {
        problems
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    const FULL: &str = "\
apiVersion: palisade.dev/v1alpha1
kind: WafPolicy
metadata:
  name: payments-waf
  namespace: shop
spec:
  targetService: payments
  mode: detect
  paranoia: 2
  threshold: 10
  bodyLimit: 4096
  overLimit: inspectPrefix
  exclusions:
    - rules: [942100]
      args: [comment]
  routes:
    /upload:
      mode: block
      paranoia: 1
      exclusions:
        - tags: [xss]
";

    #[test]
    fn a_full_policy_maps_onto_waf_settings() {
        let (policies, problems) = parse_waf_file("waf.yaml", FULL, &known());
        assert!(problems.is_empty(), "{problems:?}");
        let p = &policies[0];
        assert_eq!(
            (
                p.name.as_str(),
                p.namespace.as_str(),
                p.target_service.as_str()
            ),
            ("payments-waf", "shop", "payments")
        );
        assert_eq!(p.source.line, 4);
        let s = &p.settings;
        assert_eq!((s.mode, s.paranoia, s.threshold), (Mode::Detect, 2, 10));
        assert_eq!(
            (s.body_limit, s.over_limit),
            (4096, OverLimit::InspectPrefix)
        );
        assert_eq!(s.exclusions[0].rules, vec![942100]);
        assert_eq!(s.exclusions[0].args, vec!["comment".to_owned()]);
        let upload = &s.routes["/upload"];
        assert_eq!(
            (upload.mode, upload.paranoia, upload.threshold),
            (Some(Mode::Block), Some(1), None)
        );
        assert_eq!(upload.exclusions[0].tags, vec!["xss".to_owned()]);
    }

    #[test]
    fn unset_fields_keep_the_secure_defaults() {
        let text = "apiVersion: palisade.dev/v1alpha1\nkind: WafPolicy\nmetadata:\n  name: w\nspec:\n  targetService: web\n";
        let (policies, problems) = parse_waf_file("w.yaml", text, &known());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(policies[0].settings, WafSettings::default());
        assert_eq!(policies[0].namespace, DEFAULT_NAMESPACE);
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let broken = FULL
            .replace("paranoia: 2", "paranoia: 5")
            .replace("threshold: 10", "threshold: 0")
            .replace("[942100]", "[942101]")
            .replace("tags: [xss]", "tags: [xxs]")
            .replace("overLimit: inspectPrefix", "overLimit: inspect")
            .replace("mode: detect", "mode: detetc");
        let (policies, problems) = parse_waf_file("waf.yaml", &broken, &known());
        assert!(policies.is_empty());
        let all = joined(&problems);
        assert!(
            all.contains(
                "waf.yaml:8:3: spec.mode: unknown mode `detetc`\n    hint: did you mean `detect`?"
            ),
            "{all}"
        );
        assert!(
            all.contains("waf.yaml:9:3: spec.paranoia: 5 is out of range 1..=4"),
            "{all}"
        );
        assert!(
            all.contains("waf.yaml:10:3: spec.threshold: 0 is out of range"),
            "{all}"
        );
        assert!(
            all.contains("waf.yaml:12:3: spec.overLimit: unknown overLimit `inspect`"),
            "{all}"
        );
        assert!(all.contains("waf.yaml:14:7: spec.exclusions[0].rules[0]: no WAF rule has id 942101\n    hint: rules near it: 942100"), "{all}");
        assert!(all.contains("spec.routes./upload.exclusions[0].tags[0]: no WAF rule has the tag `xxs`\n    hint: did you mean `xss`?"), "{all}");
        assert_eq!(problems.len(), 6, "{all}");
    }

    /// A route's own exclusions are consulted only on that route: one naming another
    /// route could never apply, so it is refused with the way to say it instead.
    #[test]
    fn a_route_exclusion_naming_another_route_is_refused() {
        let own = FULL.replace(
            "        - tags: [xss]\n",
            "        - tags: [xss]\n          routes: [/upload]\n",
        );
        let (policies, problems) = parse_waf_file("waf.yaml", &own, &known());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            policies[0].settings.routes["/upload"].exclusions[0].routes,
            ["/upload"]
        );
        let other = FULL.replace(
            "        - tags: [xss]\n",
            "        - tags: [xss]\n          routes: [/login]\n",
        );
        let (policies, problems) = parse_waf_file("waf.yaml", &other, &known());
        assert!(policies.is_empty());
        let all = joined(&problems);
        assert!(all.contains("spec.routes./upload.exclusions[0].routes[0]: an exclusion under route `/upload` applies only there; it can never apply on `/login`\n    hint: move it to `spec.exclusions` with `routes: [\"/login\"]`, or leave `routes` out"), "{all}");
        assert_eq!(problems.len(), 1, "{all}");
    }

    /// The proxy finds a request's route by matching its path against these patterns:
    /// a route named any other way could only be ignored there, so it is refused here.
    #[test]
    fn routes_are_path_patterns_without_conflicts() {
        let text = FULL
            .replace("    /upload:\n", "    upload:\n")
            .replace(
                "      args: [comment]\n",
                "      args: [comment]\n      routes: [\"/v1/{id}\", cms-editor]\n",
            )
            .replace(
                "  routes:\n",
                "  routes:\n    /v1/{id}:\n      mode: detect\n    /v1/{name}:\n      mode: detect\n",
            );
        let (policies, problems) = parse_waf_file("waf.yaml", &text, &known());
        assert!(policies.is_empty());
        let all = joined(&problems);
        assert!(all.contains("spec.exclusions[0].routes[1]: a WAF route is a path pattern the request's path is matched against: path pattern `cms-editor` does not start with `/`\n    hint: write `/cms-editor`"), "{all}");
        assert!(
            all.contains("spec.routes.upload: a WAF route is a path pattern"),
            "{all}"
        );
        assert!(
            all.contains("spec.routes./v1/{name}: route `/v1/{name}` conflicts with another route"),
            "{all}"
        );
        assert_eq!(problems.len(), 3, "{all}");
    }

    #[test]
    fn other_kinds_and_syntax_errors_are_left_to_the_policy_parser() {
        let text = "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata:\n  name: m\nspec: {}\n---\nkind: [\n";
        let (policies, problems) = parse_waf_file("m.yaml", text, &known());
        assert!(policies.is_empty() && problems.is_empty());
    }

    #[test]
    fn an_empty_exclusion_is_refused() {
        let text = FULL.replace(
            "    - rules: [942100]\n      args: [comment]\n",
            "    - {}\n",
        );
        let (_, problems) = parse_waf_file("waf.yaml", &text, &known());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("switch off every rule"));
    }

    #[test]
    fn empty_lists_and_wrong_types_are_refused() {
        let text = FULL
            .replace(
                "    - rules: [942100]\n      args: [comment]\n",
                "    - rules: []\n      args: [comment]\n",
            )
            .replace("paranoia: 2", "paranoia: \"2\"");
        let (policies, problems) = parse_waf_file("waf.yaml", &text, &known());
        assert!(policies.is_empty());
        let all: Vec<String> = problems.iter().map(|d| d.to_string()).collect();
        assert_eq!(problems.len(), 2, "{all:?}");
        assert!(
            all[0].contains("spec.paranoia: expected a whole number, found the string `2`"),
            "{all:?}"
        );
        assert!(
            all[1].contains("spec.exclusions[0].rules: `rules` is an empty list"),
            "{all:?}"
        );
    }

    #[test]
    fn the_embedded_rule_set_is_known() {
        let rules = RuleSet::embedded().unwrap();
        let known = KnownRules::from_rule_set(&rules);
        assert_eq!(known.ids.len(), rules.len());
        assert!(known.tags.contains("sqli"), "{:?}", known.tags);
    }
}
