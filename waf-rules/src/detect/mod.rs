//! Detectors that judge meaning rather than words: a value is flagged only when it forms a
//! meaningful fragment of SQL or HTML/JS, so prose such as "union was a great select" or
//! "Don't drop the table, Bob" passes (the idea behind libinjection's fingerprints).

mod sqli;
mod xss;

pub(crate) use sqli::{
    keyword_is_whole_word_only, keyword_stands_alone, sql_tautology, sqli, SQLI_REQUIRED,
    TAUTOLOGY_REQUIRED,
};
pub(crate) use xss::{xss, XSS_NEEDS};
