//! Framing of the config watch: newline-delimited JSON, with a bound on line length.
//!
//! The bound keeps a broken or hostile peer from making the proxy buffer without limit:
//! a line longer than the bound is an error, not a reason to grow.

use bytes::{Buf, Bytes, BytesMut};

/// The longest line accepted by default (4 MiB): a snapshot of a large mesh fits with
/// room to spare.
pub const DEFAULT_MAX_LINE: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a line of the stream is longer than {limit} bytes without a newline")]
    LineTooLong { limit: usize },
}

/// Splits a byte stream into lines. Feed it chunks as they arrive with [`push`] and
/// take complete lines with [`next_line`]; a trailing `\r` is removed.
///
/// [`push`]: LineFramer::push
/// [`next_line`]: LineFramer::next_line
#[derive(Debug)]
pub struct LineFramer {
    buf: BytesMut,
    max_line: usize,
    /// How far `buf` is known to hold no newline, so each byte is scanned once.
    scanned: usize,
}

impl LineFramer {
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_line,
            scanned: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete line (without its newline), `None` when more bytes are needed,
    /// or an error once the pending line exceeds the bound.
    pub fn next_line(&mut self) -> Result<Option<Bytes>, FrameError> {
        match memchr_newline(&self.buf[self.scanned..]) {
            Some(offset) => {
                let end = self.scanned + offset;
                if end > self.max_line {
                    return Err(FrameError::LineTooLong {
                        limit: self.max_line,
                    });
                }
                let mut line = self.buf.split_to(end).freeze();
                self.buf.advance(1);
                self.scanned = 0;
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                Ok(Some(line))
            }
            None => {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_line {
                    return Err(FrameError::LineTooLong {
                        limit: self.max_line,
                    });
                }
                Ok(None)
            }
        }
    }

    /// Bytes received after the last complete line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

fn memchr_newline(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

/// Whether a line is a keep-alive rather than a message: blank, or whitespace only.
pub fn is_keep_alive(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(framer: &mut LineFramer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(line) = framer.next_line().expect("within the bound") {
            out.push(line.to_vec());
        }
        out
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut framer = LineFramer::new(64);
        framer.push(b"{\"a\":1}\n{\"b\"");
        assert_eq!(lines(&mut framer), vec![b"{\"a\":1}".to_vec()]);
        framer.push(b":2}\r\n\n");
        assert_eq!(lines(&mut framer), vec![b"{\"b\":2}".to_vec(), Vec::new()]);
        assert_eq!(framer.pending(), 0);
    }

    #[test]
    fn refuses_an_oversized_line_without_newline() {
        let mut framer = LineFramer::new(8);
        framer.push(b"0123456789");
        assert_eq!(
            framer.next_line(),
            Err(FrameError::LineTooLong { limit: 8 })
        );
    }

    #[test]
    fn refuses_an_oversized_line_that_is_complete() {
        let mut framer = LineFramer::new(4);
        framer.push(b"ok\n0123456789\n");
        assert_eq!(framer.next_line().unwrap().as_deref(), Some(&b"ok"[..]));
        assert!(matches!(
            framer.next_line(),
            Err(FrameError::LineTooLong { limit: 4 })
        ));
    }

    #[test]
    fn a_line_exactly_at_the_bound_passes() {
        let mut framer = LineFramer::new(4);
        framer.push(b"abcd");
        assert_eq!(framer.next_line(), Ok(None));
        framer.push(b"\n");
        assert_eq!(framer.next_line().unwrap().as_deref(), Some(&b"abcd"[..]));
    }

    #[test]
    fn keep_alives_are_blank_lines() {
        assert!(is_keep_alive(b""));
        assert!(is_keep_alive(b"  \t"));
        assert!(!is_keep_alive(b"{}"));
    }
}
