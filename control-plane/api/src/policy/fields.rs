//! Field checks shared by the checkers of every policy kind, so that each kind reports a
//! wrong type, an unknown field or a missing value the same way: one diagnostic with
//! file, line, column, field path and a hint.

use serde_yaml::{Mapping, Value};

use super::diagnostic::{did_you_mean, Diagnostic};
use super::lines::LineIndex;

/// `path.key`, or `key` at the top.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// How a YAML value's type is named in messages.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// One YAML document being checked: where it came from and what was found wrong so far.
pub(super) struct Document<'a> {
    pub file: &'a str,
    pub index: &'a LineIndex,
    pub diagnostics: Vec<Diagnostic>,
}

/// A checker of one document of some policy kind.
pub(super) trait FieldChecks<'a> {
    fn document(&mut self) -> &mut Document<'a>;

    /// Reports a problem with the field `path`, located at `locate` (which may be deeper).
    fn report(&mut self, locate: &str, path: &str, message: String, hint: Option<String>) {
        let doc = self.document();
        let (line, column) = doc.index.locate(locate);
        doc.diagnostics.push(Diagnostic {
            file: doc.file.to_owned(),
            line,
            column,
            path: path.to_owned(),
            message,
            hint,
        });
    }

    /// Reports a problem with the field `path`, located there.
    fn error(&mut self, path: &str, message: String, hint: impl Into<Option<String>>) {
        self.report(path, path, message, hint.into());
    }

    /// The mapping at `path`, with every key a known field; unknown keys are reported.
    fn mapping<'v>(&mut self, v: &'v Value, path: &str, fields: &[&str]) -> Option<&'v Mapping> {
        let Value::Mapping(map) = v else {
            self.error(
                path,
                format!(
                    "expected a mapping (`key: value` lines), found {}",
                    type_name(v)
                ),
                Some(format!("allowed fields here: {}", fields.join(", "))),
            );
            return None;
        };
        for key in map.keys() {
            let Some(key) = key.as_str() else {
                self.error(
                    path,
                    format!("a key here is {}, not a field name", type_name(key)),
                    None,
                );
                continue;
            };
            if !fields.contains(&key) {
                let hint = match did_you_mean(key, fields) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("allowed fields here: {}", fields.join(", ")),
                };
                self.report(
                    &join(path, key),
                    path,
                    format!("unknown field `{key}`"),
                    Some(hint),
                );
            }
        }
        Some(map)
    }

    /// The string at `path`.
    fn string<'v>(&mut self, v: &'v Value, path: &str, example: &str) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.error(
                    path,
                    format!("expected a string, found {}", type_name(other)),
                    Some(format!("write it as `{example}`")),
                );
                None
            }
        }
    }
}
