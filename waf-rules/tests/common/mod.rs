//! Verdict records for comparing two engines on the same corpus.
//!
//! With `WAF_VERDICTS=DIR`, the corpus tests write every verdict they compute (action,
//! score, each match with rule, target and fragment) to `DIR/<test>.txt`, one line per
//! request and paranoia level. An engine change meant to be invisible (a faster scan, a
//! skipped chain) is checked by running the tests before and after it and comparing the
//! files with `diff`.

use std::fmt::Write as _;
use std::io::Write as _;

use palisade_waf::Verdict;

/// Collects verdict lines and writes them when dropped, if `WAF_VERDICTS` is set.
pub struct VerdictLog {
    file: Option<std::path::PathBuf>,
    lines: String,
}

impl VerdictLog {
    pub fn new(test: &str) -> VerdictLog {
        let file = std::env::var_os("WAF_VERDICTS")
            .filter(|d| !d.is_empty())
            .map(|d| std::path::Path::new(&d).join(format!("{test}.txt")));
        VerdictLog {
            file,
            lines: String::new(),
        }
    }

    /// Records the verdict on the request named `case` at `paranoia`.
    pub fn record(&mut self, paranoia: u8, case: &str, v: &Verdict) {
        if self.file.is_none() {
            return;
        }
        let _ = write!(
            self.lines,
            "{paranoia} {case} {:?} {}/{}",
            v.action, v.score, v.threshold
        );
        for m in &v.matches {
            let _ = write!(self.lines, " | {} {} {:?}", m.rule_id, m.target, m.fragment);
        }
        self.lines.push('\n');
    }
}

impl Drop for VerdictLog {
    fn drop(&mut self) {
        let Some(path) = &self.file else { return };
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::File::create(path))
            .and_then(|mut f| f.write_all(self.lines.as_bytes()));
        if let Err(e) = written {
            eprintln!("WAF_VERDICTS: cannot write {}: {e}", path.display());
        }
    }
}
