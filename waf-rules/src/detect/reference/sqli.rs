//! The SQL detector as it was before the fast paths (commit 551b54c), kept verbatim but
//! for its unit tests and the visibility of `word_class`. It exists only so that
//! `differential` can check that the optimized `sqli`, `word_class`,
//! `keyword_is_whole_word_only` and `keyword_stands_alone` return exactly what this
//! straightforward version returns; it is compiled in test builds only (`#[cfg(test)]`
//! in `detect/mod.rs`) and never used by the engine.

/// Literals of which one must occur for any judged shape to form: every shape starts with
/// a string (a quote), or needs a logic operator or a statement keyword. The engine uses
/// them as the detector's prefilter; the set operations are listed too so that every word
/// `has_keywords` looks for is a literal, and a value whose scan saw none of them as a
/// word skips that search.
pub(crate) const SQLI_REQUIRED: &[&str] = &[
    "'",
    "\"",
    "and",
    "or",
    "xor",
    "not",
    "&&",
    "||",
    "select",
    "insert",
    "update",
    "delete",
    "drop",
    "create",
    "alter",
    "truncate",
    "exec",
    "execute",
    "declare",
    "shutdown",
    "waitfor",
    "union",
    "intersect",
    "except",
];

/// Tokens looked at; enough for every shape below and bounded work per value.
const MAX_TOKENS: usize = 24;

/// Fingerprint prefixes (`$` marks the end of the value) that are an injection when the
/// value is read from its start in the given context.
const PREFIX_SHAPES: &[&str] = &[
    // after closing a string
    "s&1o", "s&1c", "s&1$", "s&1;", "s&1)", "s&so", "s&sc", "s&f(", "s&v", "s&(", "s&no", "so1&",
    "so1c", "sos&", "sosc", "sof(", "s;E", "s;k", "sc$", "s)&", "s);", "s)c", "sk1", "s&n(", "s1c",
    // after a number or bare value
    "1&1o", "1&so", "1&f(", "1&v", "1&(", "1;E", "1)&1o", "1&1c", "1&1$", "n&1o", "n&so",
    // a statement from the first byte
    "Eok", "Ef(", "Ev", "E1,", "E1k", "E(E",
];

/// Shapes that are an injection wherever they occur; `?` stands for any token (so `UE?`
/// needs something after UNION SELECT: a search for the words alone is not an attack).
const ANYWHERE_SHAPES: &[&str] = &[
    "UE?", "U(E", "Eok", ";Ek", ";Eo", ";Ef", ";Ev", ";E1", ";E$",
];

/// Whether `shape` matches `print` at `at` (`?` matches any token but the end mark).
fn shape_at(print: &[u8], at: usize, shape: &[u8]) -> bool {
    print.len() >= at + shape.len()
        && shape
            .iter()
            .zip(&print[at..])
            .all(|(s, p)| if *s == b'?' { *p != b'$' } else { s == p })
}

#[derive(Clone, Copy)]
struct Token {
    class: u8,
    start: usize,
    end: usize,
}

/// Tokens needed to judge every prefix shape (the longest has 5, plus the end mark).
const PREFIX_TOKENS: usize = 6;

/// Returns the span of the first injection-shaped fragment, if any.
/// `keywords_seen` is false when the prefilter proved the value holds no keyword word nor
/// `&&`/`||` (then the search for them is skipped); pass true when unknown.
pub(crate) fn sqli(value: &[u8], keywords_seen: bool) -> Option<(usize, usize)> {
    if value.len() < 2 {
        return None;
    }
    // Without a logic operator, set operation or statement keyword only the prefix shapes
    // that open with a string can form, and they are judged on the first few tokens: prose
    // with apostrophes costs a handful of tokens, not a full tokenization per context.
    let keywords = keywords_seen && has_keywords(value);
    let starts_quoted = matches!(value.trim_ascii_start().first(), Some(b'\'' | b'"'));
    let mut tokens = Tokens::default();
    let mut print = [0u8; MAX_TOKENS + 1];
    for quote in [None, Some(b'\''), Some(b'"')] {
        match quote {
            Some(q) if memchr::memchr(q, value).is_none() => continue,
            None if !keywords && !starts_quoted => continue,
            _ => {}
        }
        // Without keywords only the prefix shapes can match, and every one of them has at
        // least two tokens: two tokens that start none of them settle the context (prose
        // such as `don't ring`: a string, then a plain word) without the rest.
        if !keywords {
            tokens.len = 0;
            if !tokenize(value, quote, &mut tokens, 2) && !starts_a_prefix_shape(&tokens) {
                continue;
            }
        }
        let limit = if keywords { MAX_TOKENS } else { PREFIX_TOKENS };
        tokens.len = 0;
        let complete = tokenize(value, quote, &mut tokens, limit);
        let tokens = tokens.as_slice();
        for (p, t) in print.iter_mut().zip(tokens) {
            *p = t.class;
        }
        let mut len = tokens.len();
        if complete {
            print[len] = b'$';
            len += 1;
        }
        let print = &print[..len];
        let span = |from: usize, n: usize| {
            let last = (from + n).min(tokens.len()).saturating_sub(1);
            Some((tokens[from].start, tokens[last.max(from)].end))
        };
        // Shapes differ in their first token, so most are rejected on one byte.
        let first = print.first().copied();
        for shape in PREFIX_SHAPES {
            let shape = shape.as_bytes();
            if first == Some(shape[0]) && print.starts_with(shape) {
                return span(0, shape.len());
            }
        }
        if keywords {
            for shape in ANYWHERE_SHAPES {
                let shape = shape.as_bytes();
                if let Some(at) = (0..tokens.len()).find(|&at| shape_at(print, at, shape)) {
                    return span(at, shape.len());
                }
            }
        }
    }
    None
}

/// Whether the classes of the first two tokens open some prefix shape.
fn starts_a_prefix_shape(tokens: &Tokens) -> bool {
    let [first, second] = [tokens.buf[0].class, tokens.buf[1].class];
    PREFIX_SHAPES
        .iter()
        .any(|shape| shape.as_bytes()[..2] == [first, second])
}

/// Whether the value holds `&&`, `||` or a whole word that is a logic operator, a set
/// operation or a statement keyword (the engine's literal prefilter also fires on
/// substrings such as `or` in `outdoor`).
fn has_keywords(v: &[u8]) -> bool {
    let doubled = |b: u8| memchr::memchr_iter(b, v).any(|i| v.get(i + 1) == Some(&b));
    if doubled(b'|') || doubled(b'&') {
        return true;
    }
    let mut i = 0;
    while i < v.len() {
        if is_word_start(v[i]) {
            let start = i;
            while i < v.len() && is_word(v[i]) {
                i += 1;
            }
            // Logic operators, set operations and statements have 2 to 9 letters.
            if (2..=9).contains(&(i - start))
                && matches!(word_class(&v[start..i]), b'&' | b'U' | b'E')
            {
                return true;
            }
        } else {
            i += 1;
        }
    }
    false
}

/// Tokens of one tokenization, on the stack: the detector allocates nothing.
struct Tokens {
    buf: [Token; MAX_TOKENS],
    len: usize,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens {
            buf: [Token {
                class: 0,
                start: 0,
                end: 0,
            }; MAX_TOKENS],
            len: 0,
        }
    }
}

impl Tokens {
    fn as_slice(&self) -> &[Token] {
        &self.buf[..self.len]
    }

    fn push(&mut self, t: Token) {
        if self.len < MAX_TOKENS {
            self.buf[self.len] = t;
            self.len += 1;
        }
    }
}

/// Keywords the tokenizer classes, by first letter so a word is compared with a handful
/// of candidates instead of every keyword.
const KEYWORDS: [&[(&[u8], u8)]; 26] = [
    &[(b"AND", b'&'), (b"ALTER", b'E'), (b"AS", b'k')],
    &[(b"BETWEEN", b'o')],
    &[(b"CREATE", b'E'), (b"CASE", b'k'), (b"COLLATE", b'o')],
    &[
        (b"DELETE", b'E'),
        (b"DROP", b'E'),
        (b"DECLARE", b'E'),
        (b"DIV", b'o'),
        (b"DATABASE", b'k'),
        (b"DELAY", b'k'),
    ],
    &[
        (b"EXCEPT", b'U'),
        (b"EXEC", b'E'),
        (b"EXECUTE", b'E'),
        (b"ELSE", b'k'),
        (b"END", b'k'),
    ],
    &[(b"FALSE", b'1'), (b"FROM", b'k')],
    &[(b"GROUP", b'k'), (b"GLOB", b'o')],
    &[(b"HAVING", b'k')],
    &[
        (b"INTERSECT", b'U'),
        (b"INSERT", b'E'),
        (b"IS", b'o'),
        (b"IN", b'o'),
        (b"INTO", b'k'),
        (b"INFORMATION_SCHEMA", b'k'),
        (b"ILIKE", b'o'),
        (b"ISNULL", b'o'),
    ],
    &[],
    &[],
    &[(b"LIKE", b'o'), (b"LIMIT", b'k')],
    &[(b"MOD", b'o')],
    &[(b"NOT", b'&'), (b"NULL", b'1'), (b"NOTNULL", b'o')],
    &[(b"OR", b'&'), (b"ORDER", b'k'), (b"OFFSET", b'k')],
    &[(b"PROCEDURE", b'k')],
    &[],
    &[(b"RLIKE", b'o'), (b"REGEXP", b'o')],
    &[
        (b"SELECT", b'E'),
        (b"SHUTDOWN", b'E'),
        (b"SOUNDS", b'o'),
        (b"SIMILAR", b'o'),
        (b"SET", b'k'),
    ],
    &[
        (b"TRUNCATE", b'E'),
        (b"TRUE", b'1'),
        (b"TABLE", b'k'),
        (b"THEN", b'k'),
        (b"TOP", b'k'),
    ],
    &[(b"UNION", b'U'), (b"UPDATE", b'E')],
    &[(b"VALUES", b'k')],
    &[(b"WAITFOR", b'E'), (b"WHERE", b'k'), (b"WHEN", b'k')],
    &[(b"XOR", b'&')],
    &[],
    &[],
];

/// The class of a word: `U` set operation, `E` statement, `&` logic operator, `o`
/// operator word, `1` constant, `k` other keyword, `n` any other name.
pub(crate) fn word_class(word: &[u8]) -> u8 {
    let Some(first) = word.first().filter(|b| b.is_ascii_alphabetic()) else {
        return b'n';
    };
    KEYWORDS[usize::from(first.to_ascii_lowercase() - b'a')]
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map_or(b'n', |&(_, class)| class)
}

/// Whether a hit of prefilter literal `literal` counts only when it stands alone as a
/// word. A longer keyword of the classes that wake the tokenizer (logic operators, set
/// operations, statements) containing it must itself be a prefilter literal counted the
/// same way: `or` qualifies (`door` is no keyword; `xor` is its own literal), `exec` does
/// not (`execute` is a statement keyword but no literal).
pub(crate) fn keyword_is_whole_word_only(literal: &[u8]) -> bool {
    literal.iter().all(u8::is_ascii_alphabetic)
        && KEYWORDS
            .iter()
            .flat_map(|bucket| bucket.iter())
            .all(|(keyword, class)| {
                let contains = keyword.len() > literal.len()
                    && keyword
                        .windows(literal.len())
                        .any(|w| w.eq_ignore_ascii_case(literal));
                !matches!(class, b'&' | b'U' | b'E')
                    || !contains
                    || (SQLI_REQUIRED
                        .iter()
                        .any(|r| r.as_bytes().eq_ignore_ascii_case(keyword))
                        && keyword_is_whole_word_only(keyword))
            })
}

/// Whether the keyword found at `start..end` of `v` is a word of its own for the
/// tokenizer. Glued to a word before it or to word bytes after it, the tokenizer reads a
/// longer token (`door`, `order`), never the keyword, so such a hit cannot form a judged
/// shape.
pub(crate) fn keyword_stands_alone(v: &[u8], start: usize, end: usize) -> bool {
    // A digit before does not glue: the digits of a MySQL executable comment
    // (`/*!50000select`) are skipped and the keyword read on its own.
    let glued_before = start > 0 && is_word_start(v[start - 1]);
    let glued_after = v.get(end).is_some_and(|&b| is_word(b));
    !glued_before && !glued_after
}

/// Bytes that start a word: letters, `_`, `$` and any byte of a non-ASCII character.
const WORD_START: u8 = 1;
/// Bytes that continue a word: those, digits and `.`.
const WORD: u8 = 2;

const fn word_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 {
            t[b] = WORD_START | WORD;
        } else if c.is_ascii_digit() || c == b'.' {
            t[b] = WORD;
        }
        b += 1;
    }
    t
}

/// One lookup per byte: the tokenizer and the keyword check test every byte.
static WORD_TABLE: [u8; 256] = word_table();

fn is_word_start(b: u8) -> bool {
    WORD_TABLE[usize::from(b)] & WORD_START != 0
}

fn is_word(b: u8) -> bool {
    WORD_TABLE[usize::from(b)] & WORD != 0
}

/// Tokenizes up to `limit` tokens; returns whether the whole value was consumed.
fn tokenize(v: &[u8], quote: Option<u8>, out: &mut Tokens, limit: usize) -> bool {
    let mut i = 0;
    if let Some(q) = quote {
        let end = string_end(v, 0, q);
        out.push(Token {
            class: b's',
            start: 0,
            end,
        });
        i = end + 1;
    }
    while i < v.len() && out.len < limit.min(MAX_TOKENS) {
        let b = v[i];
        let start = i;
        if b.is_ascii_whitespace() || b == 0x0b || b == 0 || b == 0xa0 {
            i += 1;
            continue;
        }
        match b {
            b'\'' | b'"' => {
                let end = string_end(v, i + 1, b);
                emit(out, b's', start, end.min(v.len()));
                i = end + 1;
            }
            b'`' => {
                let end = string_end(v, i + 1, b);
                emit(out, b'n', start, end.min(v.len()));
                i = end + 1;
            }
            b'0'..=b'9' => {
                i += 1;
                while i < v.len() && (v[i].is_ascii_alphanumeric() || v[i] == b'.') {
                    i += 1;
                }
                emit(out, b'1', start, i);
            }
            b'.' if v.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < v.len() && (v[i].is_ascii_alphanumeric() || v[i] == b'.') {
                    i += 1;
                }
                emit(out, b'1', start, i);
            }
            b'/' if v.get(i + 1) == Some(&b'*') => {
                if v.get(i + 2) == Some(&b'!') {
                    // MySQL executable comment: its content is SQL.
                    i += 3;
                    while i < v.len() && v[i].is_ascii_digit() {
                        i += 1;
                    }
                    continue;
                }
                let end =
                    memchr::memmem::find(&v[i + 2..], b"*/").map_or(v.len(), |p| i + 2 + p + 2);
                if v[end..].iter().all(u8::is_ascii_whitespace) {
                    emit(out, b'c', start, end);
                }
                i = end;
            }
            b'*' if v.get(i + 1) == Some(&b'/') => i += 2,
            b'-' if v.get(i + 1) == Some(&b'-') => {
                comment_to_eol(v, &mut i, out);
            }
            b'#' => comment_to_eol(v, &mut i, out),
            b'@' => {
                i += 1;
                while i < v.len() && (v[i] == b'@' || is_word(v[i])) {
                    i += 1;
                }
                emit(out, b'v', start, i);
            }
            b'(' | b')' | b',' | b';' => {
                i += 1;
                emit(out, b, start, i);
            }
            b'|' if v.get(i + 1) == Some(&b'|') => {
                i += 2;
                emit(out, b'&', start, i);
            }
            b'&' if v.get(i + 1) == Some(&b'&') => {
                i += 2;
                emit(out, b'&', start, i);
            }
            b'=' | b'<' | b'>' | b'!' | b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'~' | b'|'
            | b'&' | b':' => {
                i += 1;
                while i < v.len() && matches!(v[i], b'=' | b'<' | b'>' | b'!') {
                    i += 1;
                }
                emit(out, b'o', start, i);
            }
            _ if is_word_start(b) => {
                while i < v.len() && is_word(v[i]) {
                    i += 1;
                }
                let word = &v[start..i];
                let mut class = word_class(word);
                if word.eq_ignore_ascii_case(b"all") || word.eq_ignore_ascii_case(b"distinct") {
                    class = b'\0';
                } else if class == b'n' {
                    let mut j = i;
                    while j < v.len() && v[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if v.get(j) == Some(&b'(') {
                        class = b'f';
                    }
                }
                emit(out, class, start, i);
            }
            _ => i += 1,
        }
    }
    i >= v.len()
}

/// Appends a token; class `\0` marks ALL and DISTINCT, which only qualify a set
/// operation: dropping them keeps `UNION ALL SELECT` the same shape as `UNION SELECT`.
fn emit(out: &mut Tokens, class: u8, start: usize, end: usize) {
    if class != b'\0' {
        out.push(Token { class, start, end });
    }
}

fn comment_to_eol(v: &[u8], i: &mut usize, out: &mut Tokens) {
    let start = *i;
    match memchr::memchr(b'\n', &v[*i..]) {
        Some(p) => *i += p + 1,
        None => {
            *i = v.len();
            out.push(Token {
                class: b'c',
                start,
                end: v.len(),
            });
        }
    }
}

/// Index of the closing quote (or `v.len()` when unterminated); `\x` and doubled quotes
/// do not close.
fn string_end(v: &[u8], mut i: usize, q: u8) -> usize {
    while i < v.len() {
        if v[i] == b'\\' {
            i += 2;
            continue;
        }
        if v[i] == q {
            if v.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i;
        }
        i += 1;
    }
    v.len()
}
