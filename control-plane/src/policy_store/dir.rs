//! Reading a policy directory, and noticing when it changed.
//!
//! Polling rather than inotify: it works the same on every platform and on Kubernetes
//! ConfigMap mounts (whose updates are symlink swaps that file watchers often miss), and a
//! policy directory is small. A poll first compares the file list with sizes and mtimes,
//! which costs one `stat` per file; only when that changed (or every few polls, to catch
//! a same-size rewrite within one mtime tick) are the contents read and hashed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use palisade_api::policy::{policy_files, read_policy_file, Diagnostic};
use sha2::{Digest, Sha256};

/// The file list with sizes and modification times: cheap to take, compared every poll.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    entries: Vec<(PathBuf, u64, Option<SystemTime>)>,
    /// Directories that could not be read, with the reason.
    unreadable: Vec<(PathBuf, String)>,
}

/// Every policy file's name and text, and the problems met reading them.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub files: Vec<(String, String)>,
    pub problems: Vec<Diagnostic>,
    /// SHA-256 over names, texts and problems, hex: equal digests mean nothing changed.
    pub digest: String,
}

/// Every `*.yaml` / `*.yml` file under `dir` (recursively, in name order), skipping
/// entries whose names start with `.` (a ConfigMap mount holds each file twice, once under
/// a hidden `..data` directory) — the same selection as `PolicySet::load_dir`.
pub fn list(dir: &Path) -> Listing {
    let files = policy_files(dir);
    let entries = files
        .paths
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        })
        .collect();
    Listing {
        entries,
        unreadable: files.unreadable,
    }
}

/// Reads the files of `listing`.
pub fn read(listing: &Listing) -> Contents {
    let mut contents = Contents::default();
    for (dir, reason) in &listing.unreadable {
        contents.problems.push(problem(
            dir,
            format!("cannot read the directory: {reason}"),
            Some("give a directory of policy YAML files".into()),
        ));
    }
    for (path, _, _) in &listing.entries {
        match read_policy_file(path) {
            Ok(text) => contents.files.push((path.display().to_string(), text)),
            Err(message) => contents.problems.push(problem(path, message, None)),
        }
    }
    let mut hash = Sha256::new();
    for (name, text) in &contents.files {
        for part in [name.as_bytes(), text.as_bytes()] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
    }
    for d in &contents.problems {
        hash.update(d.to_string().as_bytes());
    }
    contents.digest = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    contents
}

fn problem(path: &Path, message: String, hint: Option<String>) -> Diagnostic {
    Diagnostic {
        file: path.display().to_string(),
        line: 1,
        column: 1,
        path: String::new(),
        message,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_and_digest_follow_the_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "x: 1\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        std::fs::write(dir.path().join("..data/a.yaml"), "hidden").unwrap();
        let first = list(dir.path());
        let read_first = read(&first);
        assert_eq!(read_first.files.len(), 1);
        assert!(read_first.problems.is_empty());
        assert_eq!(list(dir.path()), first);
        assert_eq!(read(&first).digest, read_first.digest);

        std::fs::write(dir.path().join("a.yaml"), "x: 2\n").unwrap();
        let second = read(&list(dir.path()));
        assert_ne!(second.digest, read_first.digest);

        let gone = read(&list(&dir.path().join("missing")));
        assert!(gone.problems[0]
            .message
            .starts_with("cannot read the directory"));
    }
}
