//! SQL injection by token sequence.
//!
//! The value is tokenized three times, as if it started inside no quote, a single-quoted
//! string and a double-quoted string (an injection first has to break out of wherever the
//! application put it). Each token gets a one-letter class; the first tokens form a
//! fingerprint judged against shapes that only SQL produces (`s&so`: a string closes, a
//! logic operator, a comparison). A few shapes are also searched anywhere (`UE`: UNION
//! SELECT, `;E` followed by SQL: a stacked statement).

/// Literals of which one must occur for any judged shape to form: every shape starts with
/// a string (a quote), or needs a logic operator or a statement keyword. The engine uses
/// them as the detector's prefilter; the set operations are listed too so that every word
/// `find_keywords` looks for is a literal, and a value whose scan saw none of them as a
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

impl Token {
    const EMPTY: Token = Token {
        class: 0,
        start: 0,
        end: 0,
    };
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
    // With logic operators (prose: `and`, `or`, `not`) the context without a quote is
    // judged too, but on its first tokens only unless a shape searched anywhere may form.
    let found = if keywords_seen {
        find_keywords(value)
    } else {
        Keywords {
            logic: false,
            anywhere: false,
        }
    };
    let anywhere = found.logic && found.anywhere;
    let starts_quoted = matches!(value.trim_ascii_start().first(), Some(b'\'' | b'"'));
    for quote in [None, Some(b'\''), Some(b'"')] {
        // In a quoted context the value first closes the string it was put in.
        let opening = match quote {
            Some(q) => match opening_string_end(value, q) {
                Some(end) => Some(end),
                None => continue,
            },
            None if !found.logic && !starts_quoted => continue,
            None => None,
        };
        // Without the shapes searched anywhere only the prefix shapes can match, and every
        // one of them has at least two tokens: two tokens that start none of them settle
        // the context (prose such as `don't ring`: a string, then a plain word) without the
        // rest. A value that ends within those two tokens is judged on them.
        if !anywhere {
            let mut buf = [Token::EMPTY; 2];
            let mut two = Tokens::new(&mut buf);
            let complete = tokenize(value, opening, &mut two);
            let len = two.len;
            if complete {
                if let Some(span) = judge(&buf[..len], true, false) {
                    return Some(span);
                }
                continue;
            }
            if !starts_a_prefix_shape(buf[0].class, buf[1].class) {
                continue;
            }
        }
        let mut buf = [Token::EMPTY; MAX_TOKENS];
        let limit = if anywhere { MAX_TOKENS } else { PREFIX_TOKENS };
        let mut tokens = Tokens::new(&mut buf[..limit]);
        let complete = tokenize(value, opening, &mut tokens);
        let len = tokens.len;
        if let Some(span) = judge(&buf[..len], complete, anywhere) {
            return Some(span);
        }
    }
    None
}

/// Judges the tokens of one context: a prefix shape from the first token, then (with
/// `anywhere`) the shapes searched anywhere. `complete` adds the end mark.
fn judge(tokens: &[Token], complete: bool, anywhere: bool) -> Option<(usize, usize)> {
    let mut print = [0u8; MAX_TOKENS + 1];
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
    // Every prefix shape has two tokens or more: a pair that starts none rules them out.
    if print.len() >= 2 && starts_a_prefix_shape(print[0], print[1]) {
        for shape in PREFIX_SHAPES {
            let shape = shape.as_bytes();
            if print.starts_with(shape) {
                return span(0, shape.len());
            }
        }
    }
    if anywhere {
        // The first shape of the list found anywhere wins, at its first position: one pass
        // over the positions, trying at each the shapes before the best found so far.
        let mut best: Option<(usize, usize)> = None;
        for at in 0..tokens.len() {
            if print[at] >= 128 || (ANYWHERE_FIRST >> print[at]) & 1 == 0 {
                continue;
            }
            let before = best.map_or(ANYWHERE_SHAPES.len(), |(k, _)| k);
            if let Some(k) = ANYWHERE_SHAPES[..before]
                .iter()
                .position(|shape| shape_at(print, at, shape.as_bytes()))
            {
                best = Some((k, at));
            }
        }
        if let Some((k, at)) = best {
            return span(at, ANYWHERE_SHAPES[k].len());
        }
    }
    None
}

/// The classes that open a shape searched anywhere (bit `c` for class byte `c`).
const ANYWHERE_FIRST: u128 = {
    let mut set = 0u128;
    let mut s = 0;
    while s < ANYWHERE_SHAPES.len() {
        let first = ANYWHERE_SHAPES[s].as_bytes()[0];
        assert!(first < 128 && first != b'?');
        set |= 1 << first;
        s += 1;
    }
    set
};

/// For each class that opens a prefix shape, the set of classes that follow it in one
/// (bit `c` for class byte `c`; classes are ASCII).
static PREFIX_PAIRS: [u128; 128] = prefix_pairs();

const fn prefix_pairs() -> [u128; 128] {
    let mut pairs = [0u128; 128];
    let mut s = 0;
    while s < PREFIX_SHAPES.len() {
        let shape = PREFIX_SHAPES[s].as_bytes();
        assert!(shape.len() >= 2 && shape[0] < 128 && shape[1] < 128);
        pairs[shape[0] as usize] |= 1u128 << shape[1];
        s += 1;
    }
    pairs
}

/// Whether the classes of the first two tokens open some prefix shape.
fn starts_a_prefix_shape(first: u8, second: u8) -> bool {
    second < 128
        && PREFIX_PAIRS
            .get(usize::from(first))
            .is_some_and(|followers| (followers >> second) & 1 != 0)
}

/// What the search for keywords found in a value.
#[derive(Clone, Copy)]
struct Keywords {
    /// `&&`, `||` or a whole word that is a logic operator, a set operation or a statement
    /// keyword (the engine's literal prefilter also fires on substrings such as `or` in
    /// `outdoor`). Without one, only the prefix shapes that open with a string can form.
    logic: bool,
    /// Whether a shape searched anywhere may form in some context. Each holds a set
    /// operation (`UE?`, `U(E`) or a statement keyword right after a `;` (`;E$`) or right
    /// before an operator (`Eok`); the tokenizer reads such keywords only from words this
    /// search examines. Without one, only the prefix shapes can form, and they are judged
    /// on the first tokens.
    anywhere: bool,
}

/// Reads the words of `v` (a word starts at a word-start byte the scan reaches outside a
/// word), and also the one place inside such a word where the tokenizer may start a word
/// of its own: the letters that end it, after a digit, `.` or no-break space
/// (`\xa0select`). The tokenizer starts a word only after a byte that no word continues
/// through, or that it skips: nowhere else.
fn find_keywords(v: &[u8]) -> Keywords {
    let doubled = |b: u8| memchr::memchr_iter(b, v).any(|i| v.get(i + 1) == Some(&b));
    let mut found = Keywords {
        logic: doubled(b'|') || doubled(b'&'),
        anywhere: false,
    };
    let mut i = 0;
    while i < v.len() {
        if !is_word_start(v[i]) || lone_no_break_space(v, i) {
            i += 1;
            continue;
        }
        let start = i;
        // Where the letters that end the word start.
        let mut letters = if BYTE_CLASS[usize::from(v[i])] & LETTER == 0 {
            i + 1
        } else {
            i
        };
        i += 1;
        loop {
            i += ascii_letters(&v[i..]);
            match v.get(i) {
                Some(_) if continues_word(v, i) => {
                    letters = i + 1;
                    i += 1;
                }
                _ => break,
            }
        }
        match wakes(&v[start..i], found.logic) {
            b'&' => found.logic = true,
            class @ (b'U' | b'E') => {
                found.logic = true;
                found.anywhere |= may_form_anywhere(v, class, i);
            }
            _ => {}
        }
        if letters > start && letters < i && tokenizer_word_may_follow(v[letters - 1]) {
            let class = wakes(&v[letters..i], true);
            found.anywhere |= matches!(class, b'U' | b'E') && may_form_anywhere(v, class, i);
        }
        if found.logic && found.anywhere {
            break;
        }
    }
    found
}

/// How many ASCII letters `v` starts with. Eight bytes at a time: prose is mostly words
/// of letters, and the keyword search reads every one.
fn ascii_letters(v: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES << 7;
    let mut n = 0;
    while let Some(chunk) = v.get(n..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*chunk);
        // Lowercased, without the high bit: adding to each byte then carries into no other.
        let low = (x | (ONES * 0x20)) & !HIGH;
        let from_a = low + ONES * u64::from(0x80 - b'a');
        let past_z = low + ONES * u64::from(0x80 - b'z' - 1);
        let others = !(from_a & !past_z & !x) & HIGH;
        if others != 0 {
            return n + (others.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + v[n..]
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .count()
}

/// Whether a set operation (`class` `U`) or statement keyword (`E`) ending at `end` may
/// take part in a shape searched anywhere, if the tokenizer reads it as a token of its own.
fn may_form_anywhere(v: &[u8], class: u8, end: usize) -> bool {
    class == b'U' || memchr::memchr(b';', v).is_some() || may_be_followed_by_operator(v, end)
}

/// Whether the token after a word ending at `end` may be an operator. After the bytes it
/// skips, the tokenizer reads a word if one starts there (an operator only if it is an
/// operator word, and ALL or DISTINCT are dropped: the token after them counts); anything
/// else may be an operator, or skipped up to one.
fn may_be_followed_by_operator(v: &[u8], end: usize) -> bool {
    let mut i = end;
    while i < v.len() && BYTE_CLASS[usize::from(v[i])] & SKIP != 0 {
        i += 1;
    }
    let Some(&b) = v.get(i) else {
        return false;
    };
    if !is_word_start(b) {
        return true;
    }
    let start = i;
    while i < v.len() && continues_word(v, i) {
        i += 1;
    }
    matches!(token_class(&v[start..i]), b'o' | b'\0')
}

/// Whether the tokenizer may start a word right after byte `b`: `b` ends the word it is
/// in (no word continues through it), or is skipped (the no-break space is both).
fn tokenizer_word_may_follow(b: u8) -> bool {
    let class = BYTE_CLASS[usize::from(b)];
    class & WORD_START == 0 || class & SKIP != 0
}

/// The class of `word` (see `token_class`) if it may be a set operation (`U`), a statement
/// (`E`) or, unless `statements_only`, a logic operator (`&`); 0 when it is none of them.
/// Most words have a first letter and length that no such keyword has, and are told apart
/// without the hash probe.
fn wakes(word: &[u8], statements_only: bool) -> u8 {
    let Some(&first) = word.first() else {
        return 0;
    };
    let lengths = WAKING_LENGTHS[usize::from(first & 31)] >> if statements_only { 16 } else { 0 };
    if word.len() >= 16 || (lengths >> word.len()) & 1 == 0 {
        return 0;
    }
    token_class(word)
}

/// For each first letter (its low five bits), the lengths of the logic operators, set
/// operations and statements that start with it (bit `n` for `n` letters), and above
/// bit 16 those of the set operations and statements alone.
static WAKING_LENGTHS: [u32; 32] = waking_lengths();

const fn waking_lengths() -> [u32; 32] {
    let mut table = [0u32; 32];
    let mut b = 0;
    while b < KEYWORDS.len() {
        let bucket = KEYWORDS[b];
        let mut k = 0;
        while k < bucket.len() {
            let (word, class) = bucket[k];
            let slot = (word[0] & 31) as usize;
            if matches!(class, b'&' | b'U' | b'E') {
                assert!(word.len() < 16 && word[0].is_ascii_uppercase());
                table[slot] |= 1 << word.len();
            }
            if matches!(class, b'U' | b'E') {
                table[slot] |= 1 << (16 + word.len());
            }
            k += 1;
        }
        b += 1;
    }
    table
}

/// The tokens of one tokenization, in a buffer on the stack whose length is the number of
/// tokens wanted: the detector allocates nothing.
struct Tokens<'b> {
    buf: &'b mut [Token],
    len: usize,
}

impl<'b> Tokens<'b> {
    fn new(buf: &'b mut [Token]) -> Self {
        Tokens { buf, len: 0 }
    }

    fn push(&mut self, t: Token) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = t;
            self.len += 1;
        }
    }

    fn full(&self) -> bool {
        self.len >= self.buf.len()
    }
}

/// Keywords the tokenizer classes, by first letter. The tokenizer looks words up in
/// `KEYWORD_HASH`, built from this table at compile time.
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

/// The class of a word for the tokenizer: `U` set operation, `E` statement, `&` logic
/// operator, `o` operator word, `1` constant, `k` other keyword, `n` any other name, or
/// `\0` for ALL and DISTINCT (see `emit`). One hash probe: the keywords but INFORMATION_SCHEMA have 2 to
/// 9 letters, packed 5 bits each into a key no other word has.
fn token_class(word: &[u8]) -> u8 {
    if !(2..=KEYWORD_LETTERS_MAX).contains(&word.len()) {
        return if word.eq_ignore_ascii_case(b"INFORMATION_SCHEMA") {
            b'k'
        } else {
            b'n'
        };
    }
    let mut key = 0u64;
    for &b in word {
        if BYTE_CLASS[usize::from(b)] & LETTER == 0 {
            return b'n';
        }
        key = key << 5 | u64::from(b & 31);
    }
    let entry = KEYWORD_HASH[keyword_slot(key)];
    if entry & KEY_MASK == key {
        (entry >> CLASS_SHIFT) as u8
    } else {
        b'n'
    }
}

/// Letters of the longest keyword in `KEYWORD_HASH`.
const KEYWORD_LETTERS_MAX: usize = 9;
/// An entry of `KEYWORD_HASH` is the key in its low bits and the class above.
const CLASS_SHIFT: u32 = 56;
const KEY_MASK: u64 = (1 << CLASS_SHIFT) - 1;
/// A multiplier under which no two keys of `KEYWORD_HASH` share a slot (checked when the
/// table is built, at compile time).
const KEYWORD_HASH_MULTIPLIER: u64 = 0xb94b_62e1_e571_e90f;
const KEYWORD_SLOTS_LOG2: u32 = 7;

const fn keyword_slot(key: u64) -> usize {
    (key.wrapping_mul(KEYWORD_HASH_MULTIPLIER) >> (64 - KEYWORD_SLOTS_LOG2)) as usize
}

/// `KEYWORDS` (but INFORMATION_SCHEMA, compared apart) plus ALL and DISTINCT (class `\0`),
/// by the slot of their key; an empty slot holds 0, which no word's key is.
static KEYWORD_HASH: [u64; 1 << KEYWORD_SLOTS_LOG2] = keyword_hash();

const fn keyword_hash() -> [u64; 1 << KEYWORD_SLOTS_LOG2] {
    const fn insert(table: &mut [u64; 1 << KEYWORD_SLOTS_LOG2], word: &[u8], class: u8) {
        assert!(word.len() >= 2 && word.len() <= KEYWORD_LETTERS_MAX);
        let mut key = 0u64;
        let mut i = 0;
        while i < word.len() {
            assert!(word[i].is_ascii_alphabetic());
            key = key << 5 | (word[i] & 31) as u64;
            i += 1;
        }
        let slot = keyword_slot(key);
        assert!(
            table[slot] == 0,
            "two keywords share a slot: pick another multiplier"
        );
        table[slot] = key | (class as u64) << CLASS_SHIFT;
    }
    let mut table = [0u64; 1 << KEYWORD_SLOTS_LOG2];
    let mut b = 0;
    while b < KEYWORDS.len() {
        let bucket = KEYWORDS[b];
        let mut k = 0;
        while k < bucket.len() {
            let (word, class) = bucket[k];
            if !matches!(word, b"INFORMATION_SCHEMA") {
                insert(&mut table, word, class);
            }
            k += 1;
        }
        b += 1;
    }
    insert(&mut table, b"ALL", b'\0');
    insert(&mut table, b"DISTINCT", b'\0');
    table
}

/// Whether a hit of prefilter literal `literal` counts only when it stands alone as a
/// word. A longer keyword of the classes that wake the tokenizer (logic operators, set
/// operations, statements) containing it must itself be a prefilter literal counted the
/// same way: `or` qualifies (`door` is no keyword; `xor` is its own literal), `exec` does
/// not (`execute` is a statement keyword but no literal).
pub(crate) fn keyword_is_whole_word_only(literal: &[u8]) -> bool {
    !literal.is_empty()
        && literal.iter().all(u8::is_ascii_alphabetic)
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
    let glued_before =
        start > 0 && is_word_start(v[start - 1]) && !lone_no_break_space(v, start - 1);
    let glued_after = end < v.len() && continues_word(v, end);
    !glued_before && !glued_after
}

/// Bytes that start a word: letters, `_`, `$` and any byte of a non-ASCII character.
const WORD_START: u8 = 1;
/// Bytes that continue a word: those, digits and `.`.
const WORD: u8 = 2;
/// Bytes skipped between tokens: ASCII whitespace, vertical tab, NUL and no-break space.
const SKIP: u8 = 4;
/// Bytes that continue a number: ASCII letters and digits, and `.`.
const NUMBER: u8 = 8;
/// ASCII letters.
const LETTER: u8 = 16;

const fn byte_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 {
            t[b] = WORD_START | WORD;
        } else if c.is_ascii_digit() || c == b'.' {
            t[b] = WORD;
        }
        if c.is_ascii_whitespace() || c == 0x0b || c == 0 || c == 0xa0 {
            t[b] |= SKIP;
        }
        if c.is_ascii_alphanumeric() || c == b'.' {
            t[b] |= NUMBER;
        }
        if c.is_ascii_alphabetic() {
            t[b] |= LETTER;
        }
        b += 1;
    }
    t
}

/// One lookup per byte: the tokenizer and the keyword check test every byte.
static BYTE_CLASS: [u8; 256] = byte_classes();

fn is_word_start(b: u8) -> bool {
    BYTE_CLASS[usize::from(b)] & WORD_START != 0
}

/// Whether `v[i]` is a no-break space standing alone: 0xA0 after an ASCII byte (or first)
/// is no UTF-8 continuation byte but Latin-1's no-break space, which MySQL reads as
/// whitespace (`1;%A0drop%A0table`). It ends a word and is skipped; after a lead byte it
/// stays part of its character (`à` is C3 A0).
fn lone_no_break_space(v: &[u8], i: usize) -> bool {
    v[i] == 0xa0 && (i == 0 || v[i - 1] < 0x80)
}

/// Whether the word being read continues through `v[i]`.
fn continues_word(v: &[u8], i: usize) -> bool {
    is_word(v[i]) && !lone_no_break_space(v, i)
}

fn is_word(b: u8) -> bool {
    BYTE_CLASS[usize::from(b)] & WORD != 0
}

fn is_number(b: u8) -> bool {
    BYTE_CLASS[usize::from(b)] & NUMBER != 0
}

/// Tokenizes until `out` is full, starting with a string that ends at `opening` if given;
/// returns whether the whole value was consumed.
fn tokenize(v: &[u8], opening: Option<usize>, out: &mut Tokens) -> bool {
    let mut i = 0;
    if let Some(end) = opening {
        out.push(Token {
            class: b's',
            start: 0,
            end,
        });
        i = end + 1;
    }
    while i < v.len() && !out.full() {
        let b = v[i];
        let start = i;
        let class = BYTE_CLASS[usize::from(b)];
        if class & SKIP != 0 {
            i += 1;
            continue;
        }
        if class & WORD_START != 0 {
            i += 1;
            while i < v.len() && continues_word(v, i) {
                i += 1;
            }
            let mut class = token_class(&v[start..i]);
            if class == b'n' {
                let mut j = i;
                while j < v.len() && v[j].is_ascii_whitespace() {
                    j += 1;
                }
                if v.get(j) == Some(&b'(') {
                    class = b'f';
                }
            }
            emit(out, class, start, i);
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
                while i < v.len() && is_number(v[i]) {
                    i += 1;
                }
                emit(out, b'1', start, i);
            }
            b'.' if v.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < v.len() && is_number(v[i]) {
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

/// Where the string a value opens in a `q`-quoted context ends (`string_end` from the
/// first byte), or `None` when the value holds no `q`: such a context is not judged. The
/// search for the first quote or escape tells both at once.
fn opening_string_end(v: &[u8], q: u8) -> Option<usize> {
    let at = memchr::memchr2(q, b'\\', v)?;
    if v[at] == b'\\' {
        memchr::memchr(q, &v[at..])?;
    } else if v.get(at + 1) != Some(&q) {
        return Some(at);
    }
    Some(string_end(v, at + 2, q))
}

/// Index of the closing quote (or `v.len()` when unterminated); `\x` and doubled quotes
/// do not close.
fn string_end(v: &[u8], mut i: usize, q: u8) -> usize {
    while let Some(rest) = v.get(i..) {
        let Some(p) = memchr::memchr2(q, b'\\', rest) else {
            break;
        };
        let at = i + p;
        if v[at] == b'\\' || v.get(at + 1) == Some(&q) {
            i = at + 2;
            continue;
        }
        return at;
    }
    v.len()
}

/// Literals of which one must occur for `sql_tautology` to find a comparison: its
/// operators (`<=>`, `==` and `!=` hold `=`), the word operators with the start of their
/// right operand (prose says "like" and "is not" often, rarely before a number or a
/// quote; values reach the rule with their whitespace compressed).
pub(crate) const TAUTOLOGY_REQUIRED: &[&str] = &[
    "=",
    "<>",
    "regexp",
    "like'",
    "like\"",
    "like '",
    "like \"",
    "like -",
    "like 0",
    "like 1",
    "like 2",
    "like 3",
    "like 4",
    "like 5",
    "like 6",
    "like 7",
    "like 8",
    "like 9",
    "is not '",
    "is not \"",
    "is not -",
    "is not 0",
    "is not 1",
    "is not 2",
    "is not 3",
    "is not 4",
    "is not 5",
    "is not 6",
    "is not 7",
    "is not 8",
    "is not 9",
];

/// Returns the span of a comparison of two literals that holds (`1=1`, `'a'<>'b'`,
/// `42 LIKE 42`, `1 IS NOT 2`), or whose right side is a string left open for the
/// application's closing quote to end (`'x'!='y`), at the value's start or after a `,`
/// or `(` (a list item, a parenthesised condition). A comparison that fails (`11=1`) is
/// how data reads as often as an injection does; one that holds is a tautology probe.
pub(crate) fn sql_tautology(v: &[u8]) -> Option<(usize, usize)> {
    let mut at = 0;
    loop {
        if let Some(span) = holding_comparison(v, at) {
            return Some(span);
        }
        at += memchr::memchr2(b',', b'(', v.get(at..)?)? + 1;
    }
}

/// A literal operand: a number, or a quoted string (`open` when the value ends inside it).
#[derive(Clone, Copy)]
struct Literal<'v> {
    text: &'v [u8],
    open: bool,
}

impl Literal<'_> {
    fn number(&self) -> Option<f64> {
        std::str::from_utf8(self.text).ok()?.parse().ok()
    }

    /// SQL compares a number with a string as numbers, and strings case-insensitively
    /// under the usual collations.
    fn equals(&self, other: &Literal) -> bool {
        match (self.number(), other.number()) {
            (Some(a), Some(b)) => a == b,
            _ => self.text.eq_ignore_ascii_case(other.text),
        }
    }
}

/// `literal op literal` from `at` (after spaces and opening parentheses), ending the value
/// or followed by `)`, `;`, `,` or a comment; its span if it holds.
fn holding_comparison(v: &[u8], at: usize) -> Option<(usize, usize)> {
    let start = skip(v, at, |b| b.is_ascii_whitespace() || b == b'(');
    let (left, i) = literal(v, start)?;
    if left.open {
        return None;
    }
    let (equal, i) = comparison_operator(v, skip(v, i, |b| b.is_ascii_whitespace()))?;
    let (right, end) = literal(v, skip(v, i, |b| b.is_ascii_whitespace()))?;
    let rest = &v[skip(v, end, |b| b.is_ascii_whitespace())..];
    let closed =
        rest.is_empty() || matches!(rest[0], b')' | b';' | b',' | b'#') || rest.starts_with(b"--");
    (closed && (right.open || left.equals(&right) == equal)).then_some((start, end))
}

fn skip(v: &[u8], mut i: usize, what: impl Fn(u8) -> bool) -> usize {
    while i < v.len() && what(v[i]) {
        i += 1;
    }
    i
}

/// A number (`-1`, `4.2`) not glued to a word, or a string in `'` or `"`; with the index
/// after it.
fn literal(v: &[u8], i: usize) -> Option<(Literal<'_>, usize)> {
    match *v.get(i)? {
        q @ (b'\'' | b'"') => {
            let body = i + 1;
            Some(match memchr::memchr(q, &v[body..]) {
                Some(p) => (
                    Literal {
                        text: &v[body..body + p],
                        open: false,
                    },
                    body + p + 1,
                ),
                None => (
                    Literal {
                        text: &v[body..],
                        open: true,
                    },
                    v.len(),
                ),
            })
        }
        b'-' | b'0'..=b'9' => {
            let digits = |from: usize| skip(v, from, |b| b.is_ascii_digit());
            let first = usize::from(v[i] == b'-') + i;
            let mut end = digits(first);
            if end == first {
                return None;
            }
            if v.get(end) == Some(&b'.') && v.get(end + 1).is_some_and(u8::is_ascii_digit) {
                end = digits(end + 1);
            }
            if v.get(end).is_some_and(|&b| is_word(b)) {
                return None;
            }
            Some((
                Literal {
                    text: &v[i..end],
                    open: false,
                },
                end,
            ))
        }
        _ => None,
    }
}

/// An operator that compares for equality (`true`) or inequality (`false`), with the index
/// after it. Words must end there (`likes` is none).
fn comparison_operator(v: &[u8], i: usize) -> Option<(bool, usize)> {
    let rest = &v[i..];
    for (symbol, equal) in [
        (&b"<=>"[..], true),
        (b"==", true),
        (b"!=", false),
        (b"<>", false),
        (b"=", true),
    ] {
        if rest.starts_with(symbol) {
            return Some((equal, i + symbol.len()));
        }
    }
    let word = |at: usize| {
        let end = skip(v, at, |b| b.is_ascii_alphabetic());
        (&v[at..end], end)
    };
    let matching = |w: &[u8]| {
        [&b"like"[..], b"rlike", b"regexp"]
            .iter()
            .any(|m| w.eq_ignore_ascii_case(m))
    };
    let (first, end) = word(i);
    if matching(first) {
        return Some((true, end));
    }
    let negated = first.eq_ignore_ascii_case(b"not") || first.eq_ignore_ascii_case(b"is");
    if !negated || end == v.len() || !v[end].is_ascii_whitespace() {
        return None;
    }
    let (second, end) = word(skip(v, end, |b| b.is_ascii_whitespace()));
    let holds = if first.eq_ignore_ascii_case(b"is") {
        second.eq_ignore_ascii_case(b"not")
    } else {
        matching(second)
    };
    holds.then_some((false, end))
}

#[cfg(test)]
mod tests {
    use super::{
        ascii_letters, continues_word, find_keywords, is_word_start, judge, lone_no_break_space,
        opening_string_end, shape_at, sqli, token_class, tokenize, Token, Tokens, ANYWHERE_SHAPES,
        MAX_TOKENS, PREFIX_SHAPES,
    };
    use crate::test_rng::Rng;

    #[test]
    fn a_lone_no_break_space_separates_words_as_whitespace_does() {
        for attack in [
            &b"1;\xa0drop\xa0table users"[..],
            b"1\xa0or\xa01=1",
            b"\xa0union\xa0select\xa0password from users",
            b"x'\xa0or\xa0'1'='1",
        ] {
            let spaced: Vec<u8> = attack
                .iter()
                .map(|&b| if b == 0xa0 { b' ' } else { b })
                .collect();
            assert!(sqli(&spaced, true).is_some(), "{spaced:?}");
            assert!(sqli(attack, true).is_some(), "{attack:?}");
        }
        // Inside a UTF-8 character (`à` is C3 A0) the byte is part of a word.
        for prose in ["Voilà, or là-bas", "déjà vu and là select", "Р or Рselect"] {
            assert!(sqli(prose.as_bytes(), true).is_none(), "{prose}");
        }
        assert!(lone_no_break_space(b"\xa0x", 0));
        assert!(lone_no_break_space(b";\xa0x", 1));
        assert!(!lone_no_break_space("à".as_bytes(), 1));
        assert!(!continues_word(b"drop\xa0table", 4));
        assert!(continues_word("dropà".as_bytes(), 5));
        assert!(super::keyword_stands_alone(b"1;\xa0drop", 3, 7));
        assert!(!super::keyword_stands_alone("àdrop".as_bytes(), 2, 6));
    }

    #[test]
    fn every_prefix_shape_has_two_tokens_or_more() {
        // The two-token early exit in `sqli` relies on it.
        assert!(PREFIX_SHAPES.iter().all(|shape| shape.len() >= 2));
    }

    #[test]
    fn flags_injections() {
        for attack in [
            "1' or '1'='1",
            "' OR 1=1--",
            "admin'--",
            "1 union select null,version()",
            "-1 UNION ALL SELECT username, password FROM users",
            "1; drop table users",
            "1' and sleep(5)#",
            "x\" or \"a\"=\"a",
            "1 AND 1=1",
            "') or ('a'='a",
            "1 uNiOn/**/sElEcT 1,2",
            "select * from users",
            "x' union select password from users where 'a'='a",
            "1' union select @@version -- ",
        ] {
            assert!(sqli(attack.as_bytes(), true).is_some(), "missed {attack:?}");
        }
    }

    /// Pieces of prose and SQL, and bytes the tokenizer reads apart, joined at random.
    const PIECES: &[&[u8]] = &[
        b"select",
        b"SELECT",
        b"union",
        b"UnIoN",
        b"all",
        b"distinct",
        b"insert",
        b"update",
        b"delete",
        b"drop",
        b"exec",
        b"execute",
        b"declare",
        b"shutdown",
        b"waitfor",
        b"intersect",
        b"except",
        b"create",
        b"alter",
        b"truncate",
        b"and",
        b"or",
        b"not",
        b"xor",
        b"&&",
        b"||",
        b"&",
        b"|",
        b"from",
        b"where",
        b"into",
        b"null",
        b"true",
        b"like",
        b"in",
        b"is",
        b"between",
        b"as",
        b"information_schema",
        b"1",
        b"42",
        b"3.5",
        b".5",
        b"0x1f",
        b"'",
        b"\"",
        b"`",
        b"(",
        b")",
        b",",
        b";",
        b"=",
        b"<>",
        b"!=",
        b"-",
        b"--",
        b"#",
        b"/*",
        b"*/",
        b"/*!",
        b"/*!50000",
        b"@@version",
        b"@x",
        b"sleep",
        b"version",
        b"a",
        b"the",
        b"shoe",
        b"for",
        b"door",
        b"order",
        b"women's",
        b"don't",
        b"O'Neil",
        b"\\",
        b"\\'",
        b"''",
        b"\n",
        b"\t",
        b" ",
        b"\xc2\xa0",
        b"\xa0",
        b"\0",
        b"\x0b",
        b"\xc3\xa9",
        b"_",
        b"$",
        b".",
        b"5",
        b"x5",
        b"select5",
        b"5select",
        b"s.e",
        b"a.select",
        b"_select",
        b"$union",
        b"\xe9drop",
        b"\xa0.",
    ];

    /// A value for the differential tests: pieces of prose and SQL, or random bytes, with
    /// a mutation now and then.
    fn generated(rng: &mut Rng) -> Vec<u8> {
        let mut v = Vec::new();
        match rng.below(4) {
            0 => {
                let alphabet = b"ab'\" ;()=-*/!#@.0 \xa0\xc3\n&|`sx\\";
                for _ in 0..rng.below(40) {
                    v.push(alphabet[rng.below(alphabet.len())]);
                }
            }
            1 => {
                for _ in 0..rng.below(24) {
                    v.push(rng.next() as u8);
                }
            }
            _ => {
                for _ in 0..1 + rng.below(14) {
                    v.extend_from_slice(PIECES[rng.below(PIECES.len())]);
                    match rng.below(6) {
                        0 => {}
                        1 => v.push(rng.next() as u8),
                        2 => v.extend_from_slice(b"  "),
                        _ => v.push(b' '),
                    }
                }
            }
        }
        if !v.is_empty() && rng.below(4) == 0 {
            let at = rng.below(v.len());
            v[at] = rng.next() as u8;
        }
        v
    }

    /// What `find_keywords` must find as `logic`: `&&`, `||`, or a word that starts at a
    /// word-start byte reached outside a word, has 2 to 9 bytes and a waking class.
    fn logic_words(v: &[u8]) -> bool {
        if v.windows(2).any(|w| w == b"&&" || w == b"||") {
            return true;
        }
        let mut i = 0;
        while i < v.len() {
            if !is_word_start(v[i]) || lone_no_break_space(v, i) {
                i += 1;
                continue;
            }
            let start = i;
            i += 1;
            while i < v.len() && continues_word(v, i) {
                i += 1;
            }
            if (2..=9).contains(&(i - start))
                && matches!(token_class(&v[start..i]), b'&' | b'U' | b'E')
            {
                return true;
            }
        }
        false
    }

    /// The detector without its early exits: every context tokenized as far as the shapes
    /// searched anywhere look, and judged with them whenever the value holds a logic
    /// operator, set operation or statement keyword.
    fn unhurried(value: &[u8], keywords_seen: bool) -> Option<(usize, usize)> {
        if value.len() < 2 {
            return None;
        }
        let keywords = keywords_seen && logic_words(value);
        let starts_quoted = matches!(value.trim_ascii_start().first(), Some(b'\'' | b'"'));
        for quote in [None, Some(b'\''), Some(b'"')] {
            let opening = match quote {
                Some(q) => match opening_string_end(value, q) {
                    Some(end) => Some(end),
                    None => continue,
                },
                None if !keywords && !starts_quoted => continue,
                None => None,
            };
            let mut buf = [Token::EMPTY; MAX_TOKENS];
            let mut tokens = Tokens::new(&mut buf);
            let complete = tokenize(value, opening, &mut tokens);
            let len = tokens.len;
            if let Some(span) = judge(&buf[..len], complete, keywords) {
                return Some(span);
            }
        }
        None
    }

    /// Checks the early exits of `sqli` and the keyword search on one value: the same span
    /// as `unhurried`, and `anywhere` found wherever a tokenization of any context, however
    /// long, holds a shape searched anywhere.
    fn check(v: &[u8]) {
        let text = v.escape_ascii().to_string();
        for seen in [true, false] {
            assert_eq!(sqli(v, seen), unhurried(v, seen), "{text:?} {seen}");
        }
        let found = find_keywords(v);
        assert_eq!(found.logic, logic_words(v), "{text:?}");
        for opening in [
            None,
            opening_string_end(v, b'\''),
            opening_string_end(v, b'"'),
        ] {
            let mut buf = [Token::EMPTY; 512];
            let mut tokens = Tokens::new(&mut buf);
            let complete = tokenize(v, opening, &mut tokens);
            let len = tokens.len;
            let mut print: Vec<u8> = buf[..len].iter().map(|t| t.class).collect();
            if complete {
                print.push(b'$');
            }
            let formed = (0..print.len()).any(|at| {
                ANYWHERE_SHAPES
                    .iter()
                    .any(|s| shape_at(&print, at, s.as_bytes()))
            });
            assert!(!formed || found.anywhere, "{text:?}");
        }
    }

    #[test]
    fn ascii_letters_counts_as_bytewise() {
        let mut rng = Rng(0xa5c1_1e77);
        for _ in 0..20_000 {
            let v: Vec<u8> = (0..rng.below(20))
                .map(|_| match rng.below(3) {
                    0 => rng.next() as u8,
                    _ => b"azAZ@[`{\xc1\xe1\xfa\xdb "[rng.below(12)],
                })
                .collect();
            let bytewise = v.iter().take_while(|b| b.is_ascii_alphabetic()).count();
            assert_eq!(ascii_letters(&v), bytewise, "{v:?}");
        }
        for b in 0..=255u8 {
            let v = [b'a', b'b', b'c', b'd', b'e', b'f', b'g', b, b'h'];
            assert_eq!(
                ascii_letters(&v),
                if b.is_ascii_alphabetic() { 9 } else { 7 }
            );
        }
    }

    #[test]
    fn every_anywhere_shape_holds_what_find_keywords_looks_for() {
        for shape in ANYWHERE_SHAPES {
            let shape = shape.as_bytes();
            assert!(
                shape.contains(&b'U') || shape.windows(2).any(|w| w == b";E" || w == b"Eo"),
                "{shape:?}"
            );
        }
    }

    #[test]
    fn early_exits_answer_as_the_full_tokenization() {
        let mut rng = Rng(0x5eed_4201);
        let mut values: Vec<Vec<u8>> = (0..6000).map(|_| generated(&mut rng)).collect();
        values.extend(EXAMPLES.iter().map(|e| e.as_bytes().to_vec()));
        for v in &values {
            for end in 0..=v.len() {
                check(&v[..end]);
                check(&v[end..]);
            }
        }
    }

    /// Prose and SQL from the other tests and the benchmarks.
    const EXAMPLES: &[&str] = &[
        "Lightweight trail shoe for long runs on rocky ground and wet grass.",
        "Select your size and colour, then add the item to your basket to continue.",
        "Not suitable for road running or for use in snow and ice.",
        "Please note that sizes run small, so order one size up if you are between sizes.",
        "Union was a great select of workers; I'd select the blue ones from the list.",
        "Delivery 3: please don't ring the bell; leave it at the door if we're out.",
        "Trail runner model 3, women's edition",
        "1' or '1'='1",
        "' OR 1=1--",
        "1 union select null,version()",
        "-1 UNION ALL SELECT username, password FROM users",
        "1; drop table users",
        "1' and sleep(5)#",
        "x' union select password from users where 'a'='a",
        "1' union select @@version -- ",
        "1 uNiOn/**/sElEcT 1,2",
        "1 /*!50000union*/ /*!50000select*/ 1",
        "1;\u{a0}drop table users",
        "a\u{a0}union\u{a0}select 1",
        "x5union select 1",
        "1 or 1\u{a0}.union\u{a0}.select 1",
        "x or select all like table",
        "x or select distinct\u{a0}in set",
        "select 1 from t where a=1 and b=2 or c=3 and d=4 and e=5 or f=6 and g=7 union select 2",
    ];

    #[test]
    fn keywords_inside_other_keywords_are_not_whole_word_only() {
        assert!(super::keyword_is_whole_word_only(b"or"));
        assert!(super::keyword_is_whole_word_only(b"xor"));
        assert!(super::keyword_is_whole_word_only(b"select"));
        // `execute` contains it, but is a literal of its own.
        assert!(super::keyword_is_whole_word_only(b"exec"));
        assert!(!super::keyword_is_whole_word_only(b"&&"));
        // Rule files refuse empty literals; were one to come through, no panic.
        assert!(!super::keyword_is_whole_word_only(b""));
    }

    #[test]
    fn passes_prose_and_data() {
        for benign in [
            "union was a great select",
            "Don't drop the table, Bob",
            "I'd like to select a name from the list, or not",
            "Please update your profile; it's been a while",
            "O'Reilly and Sons",
            "The 2 or 3 best options",
            "It's 5 o'clock and we're late",
            "SELECT is a word; we use it",
            "3.14159",
            "john.doe+news@example.com",
            "{\"query\": \"{ user(id: 1) { name } }\"}",
            "We can't, won't and shouldn't",
            "The union members voted",
            "The 'and' operator returns true",
            "union select",
        ] {
            assert!(
                sqli(benign.as_bytes(), true).is_none(),
                "flagged {benign:?}"
            );
        }
    }

    #[test]
    fn tautologies_hold_and_failed_comparisons_pass() {
        use super::sql_tautology;
        for attack in [
            "1=1",
            "b,1=1",
            "42 like 42",
            "42<=>42",
            "11!=1",
            "1 is not 2",
            "'1' not regexp '2'",
            "'admin', '1'='1'",
            "'x'!='y",
            "(1=1)",
            "'1'=1--",
            "'A' = 'a';",
            "-1.5 == -1.50",
        ] {
            assert!(
                sql_tautology(attack.as_bytes()).is_some(),
                "missed {attack:?}"
            );
        }
        for benign in [
            "11=1",
            "1=11",
            "11!=11",
            "1 is not 1",
            "'1' not regexp '1'",
            "price=10",
            "1 = one",
            "2+2=4",
            "1=1 apple",
            "I like 42 of them",
            "10 likes 10",
            "1 is 1",
            "'open",
            "1abc=1abc",
            "=1",
            "",
            "(",
            "a,b,(c",
        ] {
            assert!(
                sql_tautology(benign.as_bytes()).is_none(),
                "flagged {benign:?}"
            );
        }
    }
}
