//! A directory (or any collection) of policy files, checked as a whole.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use palisade_spiffe::TrustDomain;

use super::compile::ServicePolicy;
use super::diagnostic::{Diagnostic, Diagnostics};
use super::files::{policy_files, read_policy_file};
use super::load::{parse_file, Resource};
use super::model::{AuthorizationPolicy, MeshConfig, Source};

/// Every valid resource of a set of files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet {
    /// The mesh-wide settings; the built-in defaults when no file has a `MeshConfig`.
    pub mesh: MeshConfig,
    pub mesh_source: Option<Source>,
    /// Ordered by `(namespace, name)`.
    pub policies: Vec<AuthorizationPolicy>,
    pub files: usize,
}

impl PolicySet {
    /// Builds the set from `(file name, contents)` pairs, checking every file and the set
    /// as a whole (duplicate names, several `MeshConfig`s). Any problem refuses the whole
    /// set: applying the valid part of a broken change would enforce something nobody
    /// wrote, so the caller keeps its last good set instead.
    pub fn from_sources<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, Diagnostics> {
        let mut set = PolicySet::default();
        let mut diagnostics = Vec::new();
        let mut seen: HashMap<(String, String), Source> = HashMap::new();
        for (file, text) in files {
            set.files += 1;
            let (resources, mut problems) = parse_file(file, text);
            diagnostics.append(&mut problems);
            for resource in resources {
                match resource {
                    Resource::Mesh(mesh, source) => {
                        if let Some(first) = &set.mesh_source {
                            diagnostics.push(Diagnostic {
                                file: source.file.clone(),
                                line: source.line,
                                column: 1,
                                path: "metadata.name".into(),
                                message: format!(
                                    "a second MeshConfig (`{}`); the first is at {first}",
                                    mesh.name
                                ),
                                hint: Some("keep one MeshConfig for the whole mesh".into()),
                            });
                            continue;
                        }
                        set.mesh = mesh;
                        set.mesh_source = Some(source);
                    }
                    Resource::Policy(policy) => {
                        let source = policy.source.clone().unwrap_or(Source {
                            file: file.to_owned(),
                            line: 1,
                        });
                        let key = (policy.namespace.clone(), policy.name.clone());
                        if let Some(first) = seen.get(&key) {
                            diagnostics.push(Diagnostic {
                                file: source.file.clone(),
                                line: source.line,
                                column: 1,
                                path: "metadata.name".into(),
                                message: format!(
                                    "duplicate AuthorizationPolicy `{}` in namespace `{}`; the first is at {first}",
                                    policy.name, policy.namespace
                                ),
                                hint: Some("rename one of them, or merge their rules".into()),
                            });
                            continue;
                        }
                        seen.insert(key, source);
                        set.policies.push(policy);
                    }
                }
            }
        }
        if !diagnostics.is_empty() {
            return Err(Diagnostics(diagnostics));
        }
        set.policies
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(set)
    }

    /// Reads every `*.yaml` / `*.yml` file under `dir` (recursively, in name order).
    /// Entries whose names start with `.` are skipped: a Kubernetes ConfigMap mount holds
    /// each file twice, once under a hidden `..data` directory.
    pub fn load_dir(dir: &Path) -> Result<Self, Diagnostics> {
        let files = policy_files(dir);
        let mut problems: Vec<Diagnostic> = files
            .unreadable
            .iter()
            .map(|(dir, reason)| Diagnostic {
                file: dir.display().to_string(),
                line: 1,
                column: 1,
                path: String::new(),
                message: format!("cannot read the directory: {reason}"),
                hint: Some("give a directory of policy YAML files".into()),
            })
            .collect();
        let mut sources = Vec::new();
        for path in files.paths {
            let name = path.display().to_string();
            match read_policy_file(&path) {
                Ok(text) => sources.push((name, text)),
                Err(message) => problems.push(Diagnostic {
                    file: name,
                    line: 1,
                    column: 1,
                    path: String::new(),
                    message,
                    hint: None,
                }),
            }
        }
        let result = Self::from_sources(sources.iter().map(|(n, t)| (n.as_str(), t.as_str())));
        match (result, problems.is_empty()) {
            (Ok(set), true) => Ok(set),
            (Ok(_), false) => Err(Diagnostics(problems)),
            (Err(Diagnostics(mut more)), _) => {
                problems.append(&mut more);
                Err(Diagnostics(problems))
            }
        }
    }

    /// The policies protecting the service `service` of namespace `namespace`.
    pub fn policies_for<'s>(
        &'s self,
        namespace: &'s str,
        service: &'s str,
    ) -> impl Iterator<Item = &'s AuthorizationPolicy> + 's {
        self.policies
            .iter()
            .filter(move |p| p.namespace == namespace && p.target_service == service)
    }

    /// `(namespace, service)` of every service some policy targets.
    pub fn services(&self) -> BTreeSet<(&str, &str)> {
        self.policies
            .iter()
            .map(|p| (p.namespace.as_str(), p.target_service.as_str()))
            .collect()
    }

    /// Compiles what one service's proxy enforces.
    pub fn compile_service(
        &self,
        trust_domain: &TrustDomain,
        namespace: &str,
        service: &str,
    ) -> ServicePolicy {
        let policies: Vec<&AuthorizationPolicy> = self.policies_for(namespace, service).collect();
        ServicePolicy::compile(trust_domain, self.mesh.default_action, &policies)
    }
}
