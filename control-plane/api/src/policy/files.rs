//! Which files of a policy directory are read, and how: shared by `palisadectl policy
//! lint` (through `PolicySet::load_dir`) and the control plane's directory poller, so both
//! always see the same files.

use std::path::{Path, PathBuf};

/// Largest policy file read; a bigger one is refused rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Most files read from one directory tree.
pub const MAX_FILES: usize = 10_000;

/// The policy files under a directory, and the directories that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFiles {
    /// In name order, depth first.
    pub paths: Vec<PathBuf>,
    /// Directories that could not be read, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Every `*.yaml` / `*.yml` file under `dir` (recursively, in name order, at most
/// `MAX_FILES`). Entries whose names start with `.` are skipped: a Kubernetes ConfigMap
/// mount holds each file twice, once under a hidden `..data` directory.
pub fn policy_files(dir: &Path) -> PolicyFiles {
    let mut files = PolicyFiles::default();
    collect(dir, &mut files);
    files
}

fn collect(dir: &Path, files: &mut PolicyFiles) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            files.unreadable.push((dir.to_owned(), e.to_string()));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    paths.sort();
    for path in paths {
        if files.paths.len() >= MAX_FILES {
            return;
        }
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.paths.push(path);
        }
    }
}

/// The text of one policy file, or what was wrong reading it.
pub fn read_policy_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("the file is larger than {MAX_FILE_BYTES} bytes"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read the file as UTF-8 text: {e}"))
}
