//! Where each key of a YAML document is, by field path (`spec.rules[0].callers`).
//!
//! `serde_yaml` reports positions for syntax and type errors only; the checks that follow
//! parsing (a bad CIDR, an unknown field, a duplicate name) need the line of the field
//! they complain about. This index reads the block-style YAML that policy files are
//! written in: block mappings and sequences, comments, quoted keys, block scalars. A key
//! it cannot see (inside a flow collection such as `{a: 1}`) resolves to its nearest
//! indexed parent, so a position is always on or just above the offending text.

use std::collections::HashMap;

/// 1-based line and column of each key and each sequence item of one document.
#[derive(Debug, Default)]
pub struct LineIndex {
    positions: HashMap<String, (usize, usize)>,
    first_line: usize,
}

struct Entry {
    col: usize,
    path: String,
    is_item: bool,
    next_item: usize,
}

impl LineIndex {
    /// Indexes `text`, whose first line is line `first_line` (1-based) of its file.
    pub fn build(text: &str, first_line: usize) -> Self {
        let mut index = Self {
            positions: HashMap::new(),
            first_line,
        };
        let mut stack: Vec<Entry> = Vec::new();
        let mut root_items = 0usize;
        let mut block_scalar_col: Option<usize> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = first_line + i;
            let indent = raw.len() - raw.trim_start_matches(' ').len();
            if let Some(col) = block_scalar_col {
                if raw.trim().is_empty() || indent > col {
                    continue;
                }
                block_scalar_col = None;
            }
            let content = strip_comment(raw);
            if content.trim().is_empty() || content.starts_with("---") || content.starts_with("...")
            {
                continue;
            }
            let mut col = indent;
            let mut rest = content[indent..].trim_end();
            loop {
                if rest == "-" || rest.starts_with("- ") {
                    while stack
                        .last()
                        .is_some_and(|top| top.col > col || (top.col == col && top.is_item))
                    {
                        stack.pop();
                    }
                    let (parent, n) = match stack.last_mut() {
                        Some(top) => {
                            top.next_item += 1;
                            (top.path.clone(), top.next_item - 1)
                        }
                        None => {
                            root_items += 1;
                            (String::new(), root_items - 1)
                        }
                    };
                    let path = format!("{parent}[{n}]");
                    index
                        .positions
                        .entry(path.clone())
                        .or_insert((line, col + 1));
                    stack.push(Entry {
                        col,
                        path,
                        is_item: true,
                        next_item: 0,
                    });
                    let after = &rest[1..];
                    let trimmed = after.trim_start_matches(' ');
                    col += 1 + (after.len() - trimmed.len());
                    rest = trimmed;
                    if rest.is_empty() {
                        break;
                    }
                    continue;
                }
                if let Some((key, value)) = split_key(rest) {
                    while stack.last().is_some_and(|top| top.col >= col) {
                        stack.pop();
                    }
                    let path = match stack.last() {
                        Some(top) => format!("{}.{key}", top.path),
                        None => key.to_owned(),
                    };
                    index
                        .positions
                        .entry(path.clone())
                        .or_insert((line, col + 1));
                    stack.push(Entry {
                        col,
                        path,
                        is_item: false,
                        next_item: 0,
                    });
                    if value.starts_with('|') || value.starts_with('>') {
                        block_scalar_col = Some(col);
                    }
                }
                break;
            }
        }
        index
    }

    /// The position of `path`, or of its nearest indexed parent, or the document's start.
    pub fn locate(&self, path: &str) -> (usize, usize) {
        let mut path = path;
        loop {
            if let Some(&pos) = self.positions.get(path) {
                return pos;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => return (self.first_line, 1),
            }
        }
    }
}

/// The line without its comment. A `#` starts a comment at the start of the line or
/// after a space, outside quotes.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut quote: Option<u8> = None;
    for (i, &b) in bytes.iter().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'"' | b'\'' => quote = Some(b),
                b'#' if i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t' => {
                    return &line[..i];
                }
                _ => {}
            },
        }
    }
    line
}

/// `(key, value)` when the text is `key: value` or `key:`; quoted keys lose their quotes.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let first = text.as_bytes().first()?;
    if matches!(first, b'"' | b'\'') {
        let close = text[1..].find(*first as char)? + 1;
        let after = text[close + 1..].trim_start();
        let value = after.strip_prefix(':')?;
        if !value.is_empty() && !value.starts_with(' ') {
            return None;
        }
        return Some((&text[1..close], value.trim()));
    }
    if matches!(first, b'[' | b'{' | b'|' | b'>' | b'&' | b'*' | b'!') {
        return None;
    }
    let bytes = text.as_bytes();
    let colon = (0..bytes.len())
        .find(|&i| bytes[i] == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' '))?;
    Some((text[..colon].trim_end(), text[colon + 1..].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
apiVersion: palisade.dev/v1alpha1   # a comment: with colon
kind: AuthorizationPolicy
metadata:
  name: payments
spec:
  targetService: payments
  rules:
  - name: orders
    callers:
      - spiffeId: spiffe://td/ns/shop/sa/orders
      - namespace: shop
    routes:
    - methods: [POST]
      paths: [\"/v1/charges\"]
  - name: |
      multi
      line: not a key
    \"action\": deny
";

    #[test]
    fn finds_keys_and_items_by_path() {
        let index = LineIndex::build(DOC, 10);
        assert_eq!(index.locate("apiVersion"), (10, 1));
        assert_eq!(index.locate("metadata.name"), (13, 3));
        assert_eq!(index.locate("spec.rules"), (16, 3));
        assert_eq!(index.locate("spec.rules[0]"), (17, 3));
        assert_eq!(index.locate("spec.rules[0].name"), (17, 5));
        assert_eq!(index.locate("spec.rules[0].callers[0].spiffeId"), (19, 9));
        assert_eq!(index.locate("spec.rules[0].callers[1]"), (20, 7));
        assert_eq!(index.locate("spec.rules[0].routes[0].paths"), (23, 7));
        assert_eq!(index.locate("spec.rules[1]"), (24, 3));
        assert_eq!(index.locate("spec.rules[1].action"), (27, 5));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_parent() {
        let index = LineIndex::build(DOC, 1);
        assert_eq!(index.locate("spec.rules[0].routes[0].paths[3]"), (14, 7));
        assert_eq!(index.locate("spec.rules[1].name.x"), (15, 5));
        assert_eq!(index.locate("nothing"), (1, 1));
    }
}
