//! Errors raised while loading a rule set. Each names the file and, where known, the line,
//! the rule id and the field, so an operator can fix the file without guessing.

use std::path::PathBuf;

/// Why a rule set was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The rules directory or a file in it could not be read.
    #[error("cannot read rules from {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML did not parse or did not fit the rule schema.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A rule parsed but one of its fields is unusable (bad regex, unknown target...).
    #[error("{file}:{line}: rule {id}: field `{field}`: {message}")]
    Invalid {
        file: String,
        line: usize,
        id: u32,
        field: &'static str,
        message: String,
    },
    /// Two rules share an id; ids must be unique across all files of a set.
    #[error("rule id {id} is defined in both {first} and {second}; give each rule its own id")]
    DuplicateId {
        id: u32,
        first: String,
        second: String,
    },
    /// The literal automaton could not be built (too many or too large literals).
    #[error("cannot compile the literal prefilter: {0}")]
    Automaton(String),
    /// The directory holds no rule files; refusing avoids silently running without a WAF.
    #[error(
        "no rule files (*.yaml, *.yml) found in {0}; point --rules at the directory holding them"
    )]
    Empty(PathBuf),
}
