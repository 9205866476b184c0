//! A directory (or any collection) of policy files, checked as a whole.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use palisade_spiffe::TrustDomain;

use super::compile::ServicePolicy;
use super::diagnostic::{Diagnostic, Diagnostics};
use super::load::{parse_file, Resource};
use super::model::{AuthorizationPolicy, MeshConfig, Source};

/// Largest policy file read; a bigger one is refused rather than read into memory.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Most files read from one directory tree.
const MAX_FILES: usize = 10_000;

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
        let mut paths = Vec::new();
        let mut problems = Vec::new();
        collect(dir, &mut paths, &mut problems);
        let mut sources = Vec::new();
        for path in paths {
            let name = path.display().to_string();
            match read_limited(&path) {
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

fn collect(dir: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Diagnostic {
                file: dir.display().to_string(),
                line: 1,
                column: 1,
                path: String::new(),
                message: format!("cannot read the directory: {e}"),
                hint: Some("give a directory of policy YAML files".into()),
            });
            return;
        }
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    names.sort();
    for path in names {
        if out.len() >= MAX_FILES {
            return;
        }
        if path.is_dir() {
            collect(&path, out, problems);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn read_limited(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("the file is larger than {MAX_FILE_BYTES} bytes"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read the file as UTF-8 text: {e}"))
}
