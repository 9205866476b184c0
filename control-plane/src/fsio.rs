//! Crash-safe file primitives for the control plane's state.
//!
//! Every state file is replaced atomically (temp file in the same directory, fsync,
//! rename, fsync of the directory), so a crash leaves either the old or the new content,
//! never a mix. The audit log is append-only and each line is synced before the issued
//! certificate leaves the process.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of files only the control plane's user may read (keys, token hashes, state).
pub const PRIVATE_FILE: u32 = 0o600;
/// Mode of files anyone may read (the trust bundle, certificates).
pub const PUBLIC_FILE: u32 = 0o644;
/// Mode of the data directory and its sub-directories.
pub const PRIVATE_DIR: u32 = 0o700;

/// Marks temp files so that a later start can recognise and remove leftovers of a crash.
const TEMP_MARKER: &str = ".tmp-";

/// An I/O failure, with the file it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct FsError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and parents) with owner-only permissions if it does not exist yet.
pub fn create_private_dir(dir: &Path) -> Result<(), FsError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
        .map_err(err("cannot create directory", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR))
        .map_err(err("cannot set permissions of", dir))
}

/// Restricts an existing directory to its owner (a data directory the operator made
/// beforehand may have been created world-readable).
pub fn restrict_dir(dir: &Path) -> Result<(), FsError> {
    fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR))
        .map_err(err("cannot set permissions of", dir))
}

/// Replaces `path` with `contents` atomically, with the given permission bits.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}{TEMP_MARKER}{:016x}",
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .map_err(err("cannot create temp file", &temp))?;
        file.write_all(contents)
            .map_err(err("cannot write temp file", &temp))?;
        file.sync_all()
            .map_err(err("cannot sync temp file", &temp))?;
        fs::rename(&temp, path).map_err(err("cannot rename temp file onto", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Appends one line to `path` (created owner-only if absent) and syncs it to disk.
pub fn append_line_synced(path: &Path, line: &[u8]) -> Result<(), FsError> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(PRIVATE_FILE)
        .open(path)
        .map_err(err("cannot open for appending", path))?;
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line);
    buf.push(b'\n');
    file.write_all(&buf)
        .map_err(err("cannot append to", path))?;
    file.sync_data().map_err(err("cannot sync", path))
}

/// Renames `from` to `to`, replacing `to`; a missing `from` is not an error.
pub fn rename_if_exists(from: &Path, to: &Path) -> Result<(), FsError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err("cannot rename", from)(e)),
    }
}

/// Reads a whole file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, FsError> {
    fs::read(path).map_err(err("cannot read", path))
}

/// Removes `path`, tolerating that it is already gone.
pub fn remove(path: &Path) -> Result<(), FsError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err("cannot remove", path)(e)),
    }
}

/// Removes the temp files a crash mid-write may have left in `dir`; they were never
/// renamed into place, so they hold nothing the state depends on.
pub fn remove_stale_temps(dir: &Path) -> Result<usize, FsError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(err("cannot list", dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(err("cannot list", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(TEMP_MARKER) {
            remove(&entry.path())?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Makes the directory's entries (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("cannot sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one", PRIVATE_FILE).unwrap();
        write_atomic(&path, b"two", PRIVATE_FILE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn stale_temps_are_removed_and_real_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".state.json.tmp-0123"), b"{half").unwrap();
        fs::write(dir.path().join("state.json"), b"{}").unwrap();
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
        assert!(dir.path().join("state.json").exists());
    }

    #[test]
    fn appended_lines_accumulate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        append_line_synced(&path, b"a").unwrap();
        append_line_synced(&path, b"b").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"a\nb\n");
    }
}
