//! The proxy's log lines: tracing-subscriber's flattened JSON, written more cheaply.
//!
//! Every answered request writes an access line on each side (`palisade::access`), so the
//! formatter is on the request path. tracing-subscriber's JSON formatter pushes each few
//! bytes serde_json writes through a UTF-8 check and a `fmt::Write` adapter, and formats
//! the timestamp field by field: about 22,000 instructions per access line, as much as
//! the whole outbound side's own request handling. [`JsonLines`] writes the same bytes
//! (same keys in the same order, serde_json's own value and escaping rules) into one
//! buffer and hands it over once, for about a quarter of that.
//!
//! The lines it does not write itself go to the stock formatter unchanged: events inside
//! a span (the stock line adds `span` and `spans`) and records bridged from the `log`
//! crate (whose level and target come from their `log.*` fields).

use std::cell::RefCell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serializer as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of the proxy's binary: flattened JSON lines, as
/// `tracing_subscriber::fmt().json().flatten_event(true)` writes them.
pub struct JsonLines {
    stock: Format<Json>,
}

impl Default for JsonLines {
    fn default() -> Self {
        Self {
            stock: tracing_subscriber::fmt::format().json().flatten_event(true),
        }
    }
}

/// The target of the events `tracing-log` makes from `log` records.
const LOG_BRIDGE_TARGET: &str = "log";

thread_local! {
    /// One line's bytes, reused by every event on this thread.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The last second formatted on this thread and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let in_span = event.parent().is_some() || ctx.lookup_current().is_some();
        if in_span || event.metadata().target() == LOG_BRIDGE_TARGET {
            return self.stock.format_event(ctx, writer, event);
        }
        let Some(now) = Timestamp::now() else {
            return self.stock.format_event(ctx, writer, event);
        };
        // A `Debug` value that logs while being formatted finds the buffer taken and
        // gets one of its own.
        let line = LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut buffer) => write_line(&mut buffer, now, event, &mut writer),
            Err(_) => write_line(&mut Vec::new(), now, event, &mut writer),
        });
        line.map_err(|_| fmt::Error)
    }
}

/// Writes one event as a line into `writer`, using `buffer` as scratch.
fn write_line(
    buffer: &mut Vec<u8>,
    now: Timestamp,
    event: &Event<'_>,
    writer: &mut Writer<'_>,
) -> Result<(), LineError> {
    buffer.clear();
    encode(buffer, now, event)?;
    buffer.push(b'\n');
    let text = std::str::from_utf8(buffer).map_err(|_| LineError)?;
    writer.write_str(text).map_err(|_| LineError)
}

#[derive(Debug)]
struct LineError;

/// `{"timestamp":…,"level":…,<fields>,"target":…}`, as the stock formatter orders them.
fn encode(out: &mut Vec<u8>, now: Timestamp, event: &Event<'_>) -> Result<(), LineError> {
    out.extend_from_slice(b"{\"timestamp\":\"");
    now.write(out);
    out.extend_from_slice(b"\",\"level\":\"");
    out.extend_from_slice(event.metadata().level().as_str().as_bytes());
    out.push(b'"');
    let mut fields = Fields { out, failed: false };
    event.record(&mut fields);
    if fields.failed {
        return Err(LineError);
    }
    out.extend_from_slice(b",\"target\":");
    push_str(out, event.metadata().target()).map_err(|_| LineError)?;
    out.push(b'}');
    Ok(())
}

/// `value` as a JSON string, as serde_json writes it. Most strings need no escape: they
/// are copied whole after a check eight bytes at a time, where serde_json looks each
/// byte up and writes through its formatter (~10 instructions a byte); the others are
/// left to serde_json.
fn push_str(out: &mut Vec<u8>, value: &str) -> serde_json::Result<()> {
    if needs_escape(value.as_bytes()) {
        return serde_json::Serializer::new(out).serialize_str(value);
    }
    out.reserve(value.len() + 2);
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
    Ok(())
}

/// Whether any byte is one serde_json escapes in a string: a control character
/// (below 0x20), `"` or `\`.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Non-zero exactly when some byte of `word` is below `n` (for n <= 0x80): a borrow
    // only starts at such a byte, and it sets that byte's high bit.
    let below = |word: u64, n: u64| word.wrapping_sub(ONES * n) & !word & HIGHS != 0;
    let escapes = |word: [u8; 8]| {
        let word = u64::from_ne_bytes(word);
        below(word, 0x20)
            || below(word ^ (ONES * u64::from(b'"')), 1)
            || below(word ^ (ONES * u64::from(b'\\')), 1)
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if escapes(word) {
            return true;
        }
    }
    // The last bytes as one more word, padded with a byte that needs no escape.
    let rest = chunks.remainder();
    let mut word = [b'a'; 8];
    word[..rest.len()].copy_from_slice(rest);
    escapes(word)
}

/// Writes each field as `,"name":value` with serde_json, the way tracing-serde's map
/// visitor does: the same methods, so that the kinds it leaves to `record_debug` (errors,
/// 128-bit integers, bytes) go there here too.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    failed: bool,
}

impl Fields<'_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>) {
        if self.failed {
            return;
        }
        self.out.push(b',');
        let key = push_str(self.out, field.name());
        let written = key.and_then(|()| {
            self.out.push(b':');
            value(self.out)
        });
        self.failed = written.is_err();
    }
}

impl Visit for Fields<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| {
            serde_json::Serializer::new(out).serialize_bool(value)
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| {
            serde_json::Serializer::new(out).collect_str(&format_args!("{value:?}"))
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| {
            serde_json::Serializer::new(out).serialize_u64(value)
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| {
            serde_json::Serializer::new(out).serialize_i64(value)
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, |out| {
            serde_json::Serializer::new(out).serialize_f64(value)
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| push_str(out, value));
    }
}

/// A wall-clock reading as the stock formatter prints it: RFC 3339 in UTC with
/// microseconds, `2026-12-06T13:42:41.877525Z`.
#[derive(Debug, Clone, Copy)]
struct Timestamp {
    secs: u64,
    micros: u32,
}

/// 9999-12-31T23:59:59Z: later years are printed with a sign by the stock formatter.
const LAST_FOUR_DIGIT_SECOND: u64 = 253_402_300_799;

impl Timestamp {
    /// Now, or `None` before 1970 or after 9999 (left to the stock formatter).
    fn now() -> Option<Self> {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        Self::from_unix(since.as_secs(), since.subsec_micros())
    }

    fn from_unix(secs: u64, micros: u32) -> Option<Self> {
        (secs <= LAST_FOUR_DIGIT_SECOND).then_some(Self { secs, micros })
    }

    fn write(self, out: &mut Vec<u8>) {
        // Lines come many to a second: the date and time of day are formatted once each.
        SECOND.with(|second| {
            let mut second = second.borrow_mut();
            if second.0 != self.secs {
                *second = (self.secs, civil(self.secs));
            }
            out.extend_from_slice(&second.1);
        });
        let mut fraction = *b".000000Z";
        let mut micros = self.micros;
        for digit in fraction[1..7].iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        out.extend_from_slice(&fraction);
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second, for years 1970 to 9999 (proleptic Gregorian
/// calendar; Howard Hinnant's `civil_from_days`).
fn civil(secs: u64) -> [u8; 19] {
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    // Days since 0000-03-01, so that leap days end a year.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    let mut text = *b"0000-00-00T00:00:00";
    put_digits(&mut text[0..4], year);
    put_digits(&mut text[5..7], month);
    put_digits(&mut text[8..10], day);
    put_digits(&mut text[11..13], of_day / 3_600);
    put_digits(&mut text[14..16], of_day / 60 % 60);
    put_digits(&mut text[17..19], of_day % 60);
    text
}

fn put_digits(slot: &mut [u8], mut value: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing::Level;
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// Runs `emit` under the stock formatter and under [`JsonLines`], as `main` installs
    /// them, and returns both outputs, one line per event.
    fn both(emit: impl Fn()) -> (Vec<String>, Vec<String>) {
        let stock = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(Level::TRACE)
            .with_writer(stock.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &emit);
        let ours = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .event_format(JsonLines::default())
            .with_max_level(Level::TRACE)
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &emit);
        (stock.lines(), ours.lines())
    }

    /// The lines without their timestamps (the two runs read the clock at different
    /// times); the timestamps are compared by [`timestamps_are_the_stock_formatters`].
    fn untimed(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .map(|line| {
                let (head, rest) = line.split_at(r#"{"timestamp":""#.len());
                assert_eq!(head, r#"{"timestamp":""#, "{line}");
                let end = rest.find('"').unwrap();
                format!("{head}{}", &rest[end..])
            })
            .collect()
    }

    #[derive(Debug)]
    struct Failure;

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("it \"broke\"\n\tbadly")
        }
    }

    impl std::error::Error for Failure {}

    #[test]
    fn lines_are_the_stock_formatters_byte_for_byte() {
        let (stock, ours) = both(|| {
            let status: u16 = 403;
            tracing::info!(
                target: "palisade::access",
                event = "access",
                request_id = %"0af7651916cd43dd8448eb211c80319c",
                direction = "inbound",
                method = %http::Method::GET,
                path = %"/v1/charges/42",
                status = status,
                peer = "spiffe://palisade.local/ns/shop/sa/orders",
                service = "payments",
                duration_ms = 2.6276149999999996,
                "request answered"
            );
            tracing::warn!(
                text = "quote \" backslash \\ controls \u{1} \u{1f} \u{7f} tab\t newline\n é ✓ 😀",
                debug = ?("tuple", 1, [0.5, -0.0]),
                negative = -42i64,
                big = u64::MAX,
                wide = i128::MIN,
                wider = u128::MAX,
                yes = true,
                no = false,
                tiny = 1e-7,
                huge = 1.5e300,
                nan = f64::NAN,
                infinite = f64::NEG_INFINITY,
                error = &Failure as &(dyn std::error::Error + 'static),
                "message with \"quotes\" and {} argument", "one"
            );
            tracing::error!(r#type = "keyword", dotted.name = 1, "");
            tracing::debug!(message = "explicit");
            tracing::trace!(target: "weird \"target\"", "t");
            tracing::info!(only = 1);
        });
        assert_eq!(stock.len(), 6);
        assert_eq!(untimed(&ours), untimed(&stock));
    }

    /// Every string, whatever needs escaping in it and wherever (both sides of each
    /// eight-byte boundary), is written as serde_json writes it.
    #[test]
    fn strings_are_serde_json_s() {
        let mut values: Vec<String> = (0u8..=0x7f)
            .map(|b| char::from(b).to_string())
            .chain(["é", "✓", "😀", "\u{7f}\u{80}", ""].map(str::to_owned))
            .collect();
        for special in [
            '"', '\\', '\n', '\u{0}', '\u{1f}', ' ', '\u{7f}', 'é', '!', '#', '[',
        ] {
            for len in 0..20 {
                for at in 0..len {
                    let mut value: Vec<char> = "abcdefghijklmnopqrst"[..len].chars().collect();
                    value[at] = special;
                    values.push(value.into_iter().collect());
                }
            }
        }
        for value in values {
            let mut ours = Vec::new();
            push_str(&mut ours, &value).expect("writing to a Vec cannot fail");
            let expected = serde_json::to_vec(&value).expect("a string serializes");
            assert_eq!(ours, expected, "{value:?}");
            let escaped = value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
            assert_eq!(needs_escape(value.as_bytes()), escaped, "{value:?}");
        }
    }

    #[test]
    fn events_in_spans_are_left_to_the_stock_formatter() {
        let (stock, ours) = both(|| {
            let span = tracing::info_span!("connection", peer = "a");
            let _entered = span.enter();
            tracing::info!(n = 1, "inside");
            let explicit = tracing::info_span!("explicit");
            drop(_entered);
            tracing::info!(parent: &explicit, "child");
        });
        assert!(
            stock.iter().all(|line| line.contains(r#""span":"#)),
            "{stock:?}"
        );
        assert_eq!(untimed(&ours), untimed(&stock));
    }

    /// tracing drops an event dispatched while another is being formatted; whatever it
    /// does, both formatters do the same, and the line buffer is not borrowed twice.
    #[test]
    fn a_debug_value_that_logs_while_formatted() {
        struct Logs;
        impl fmt::Debug for Logs {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                tracing::info!(inner = 1, "nested");
                f.write_str("outer value")
            }
        }
        let (stock, ours) = both(|| tracing::info!(value = ?Logs, "outer"));
        assert_eq!(untimed(&ours), untimed(&stock));
        assert!(ours.last().unwrap().contains("outer value"));
    }

    /// The stock formatter's timestamp of an instant, read back from a line it wrote
    /// just before and just after ours.
    #[test]
    fn timestamps_are_the_stock_formatters() {
        fn stamp(line: &str) -> String {
            line.split('"').nth(3).unwrap().to_owned()
        }
        // Three tries: a second boundary may fall between the readings.
        for _ in 0..3 {
            let (before, _) = both(|| tracing::info!("x"));
            let now = Timestamp::now().unwrap();
            let (after, _) = both(|| tracing::info!("x"));
            let mut ours = Vec::new();
            now.write(&mut ours);
            let ours = String::from_utf8(ours).unwrap();
            let (before, after) = (stamp(&before[0]), stamp(&after[0]));
            assert_eq!(ours.len(), before.len());
            assert!(before <= ours && ours <= after, "{before} {ours} {after}");
            if before[..19] == after[..19] {
                return;
            }
        }
        panic!("the second changed between the readings three times");
    }

    #[test]
    fn civil_dates_across_leap_years_and_centuries() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_399, 999_999, "2000-02-28T23:59:59.999999Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.000005Z"),
            (951_868_800, 0, "2000-03-01T00:00:00.000000Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000000Z"),
            (4_107_542_399, 0, "2100-02-28T23:59:59.000000Z"),
            (1_796_564_322, 877_525, "2026-12-06T13:38:42.877525Z"),
            (1_709_164_800, 120_000, "2024-02-29T00:00:00.120000Z"),
            (LAST_FOUR_DIGIT_SECOND, 0, "9999-12-31T23:59:59.000000Z"),
        ];
        for (secs, micros, expected) in cases {
            let mut out = Vec::new();
            Timestamp::from_unix(secs, micros).unwrap().write(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{secs}");
        }
        assert!(Timestamp::from_unix(LAST_FOUR_DIGIT_SECOND + 1, 0).is_none());
    }

    /// Day by day over four centuries, the date follows from the one before.
    #[test]
    fn civil_dates_are_consecutive() {
        let days_in = |year: u64, month: u64| match month {
            2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in 0..146_097u64 {
            let text = civil(days * 86_400 + 86_399);
            let expected = format!("{year:04}-{month:02}-{day:02}T23:59:59");
            assert_eq!(std::str::from_utf8(&text).unwrap(), expected);
            day += 1;
            if day > days_in(year, month) {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }
}
