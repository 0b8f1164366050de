//! Human and JSON output: aligned tables, times, sizes, progress bars.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, UNIX_EPOCH};

use eventfold::{ContentType, RecordedEvent};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Buffered stdout; every write returns the I/O error (a closed pipe ends the
/// command quietly, see `main`).
pub fn stdout() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::new(io::stdout().lock())
}

/// Writes `value` as one JSON line.
pub fn json_line<W: Write, T: Serialize>(out: &mut W, value: &T) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// An RFC 3339 UTC time with milliseconds, from microseconds since the epoch.
pub fn time(micros: u64) -> String {
    /// The start of year 10000, which RFC 3339 cannot write.
    const YEAR_10000: u64 = 253_402_300_800_000_000;
    if micros == 0 {
        return "-".to_string();
    }
    match UNIX_EPOCH.checked_add(Duration::from_micros(micros)) {
        Some(t) if micros < YEAR_10000 => humantime::format_rfc3339_millis(t).to_string(),
        // The number, as `parse_time` reads it back.
        _ => micros.to_string(),
    }
}

/// Parses an RFC 3339 UTC time (`2024-05-01T12:00:00Z`) or a number of
/// microseconds since the epoch.
pub fn parse_time(s: &str) -> anyhow::Result<u64> {
    if let Ok(micros) = s.parse::<u64>() {
        return Ok(micros);
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        anyhow::anyhow!(
            "{s:?} is not a time ({e}): write it as 2024-05-01T12:00:00Z, or as microseconds since the epoch"
        )
    })?;
    let micros = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    Ok(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// A size in bytes for people: `12.3 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0usize;
    while v >= 1024.0 && unit.saturating_add(1) < UNITS.len() {
        v /= 1024.0;
        unit = unit.saturating_add(1);
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// A table printed with aligned columns. Rows are printed in pages so a long
/// read does not have to sit in memory; column widths only grow between pages.
pub struct Table<W: Write> {
    out: W,
    headers: Vec<&'static str>,
    widths: Vec<usize>,
    rows: Vec<Vec<String>>,
    printed_header: bool,
    /// Rows printed so far.
    pub count: u64,
}

const PAGE: usize = 1000;

impl<W: Write> Table<W> {
    /// A table with these column headers.
    pub fn new(out: W, headers: &[&'static str]) -> Self {
        Table {
            out,
            widths: headers.iter().map(|h| h.len()).collect(),
            headers: headers.to_vec(),
            rows: Vec::new(),
            printed_header: false,
            count: 0,
        }
    }

    /// Adds a row (one cell per header).
    pub fn row(&mut self, cells: Vec<String>) -> io::Result<()> {
        self.rows.push(cells);
        self.count = self.count.saturating_add(1);
        if self.rows.len() >= PAGE { self.flush_page() } else { Ok(()) }
    }

    fn flush_page(&mut self) -> io::Result<()> {
        for r in &self.rows {
            for (w, c) in self.widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        if !self.printed_header {
            let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
            write_row(&mut self.out, &self.widths, &header)?;
            self.printed_header = true;
        }
        for r in std::mem::take(&mut self.rows) {
            write_row(&mut self.out, &self.widths, &r)?;
        }
        Ok(())
    }

    /// Prints what is left and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_page()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn write_row<W: Write>(out: &mut W, widths: &[usize], cells: &[String]) -> io::Result<()> {
    let last = cells.len().saturating_sub(1);
    for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
        if i == last {
            // No padding after the last column: no trailing spaces.
            write!(out, "{c}")?;
        } else {
            write!(out, "{c:<w$}  ")?;
        }
    }
    writeln!(out)
}

/// Key/value lines with aligned keys.
pub fn pairs<W: Write>(out: &mut W, rows: &[(&str, String)]) -> io::Result<()> {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        writeln!(out, "{:<w$}  {v}", format!("{k}:"), w = w.saturating_add(1))?;
    }
    out.flush()
}

/// An event's payload on one line, shortened to `max` characters: the JSON
/// as stored (numbers, escapes and key order kept) without its line breaks
/// and indentation; a binary payload as a string of hex digits.
pub fn payload_preview(e: &RecordedEvent, max: usize) -> String {
    let text = match (e.content_type, std::str::from_utf8(&e.payload)) {
        (ContentType::Json, Ok(text)) => compact_json(text),
        (ContentType::Json, Err(_)) => String::from_utf8_lossy(&e.payload).into_owned(),
        // Binary (and any other encoding): what `payload_json` makes of it.
        _ => e.payload_json().map(|v| v.to_string()).unwrap_or_default(),
    };
    if text.chars().count() <= max {
        return text;
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// A JSON text for people: what it says, exactly as spelled (numbers,
/// escapes, key order), with the insignificant whitespace taken out.
pub fn compact_json(text: &str) -> String {
    reformat(text, None)
}

/// A JSON text for people, indented like `serde_json::to_string_pretty`
/// but with every token exactly as spelled: `1.50` stays `1.50` and an
/// integer of any length keeps its digits.
pub fn pretty_json(text: &str) -> String {
    reformat(text, Some("  "))
}

/// Copies the tokens of a JSON text, dropping the whitespace between them,
/// and lays them out on indented lines when `indent` is given. Works on any
/// text (it never fails); it is meant for stored JSON, which is valid.
fn reformat(text: &str, indent: Option<&str>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len().saturating_add(text.len() / 4));
    let mut depth = 0usize;
    let newline = |out: &mut String, depth: usize| {
        if let Some(unit) = indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(unit);
            }
        }
    };
    // `i` and `next` stay within two bytes of the text's length (at most
    // `isize::MAX`), so the additions below never saturate.
    let mut i = 0usize;
    while i < bytes.len() {
        let start = i;
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i = i.saturating_add(1),
            b'"' => {
                // A string, copied up to its closing quote (escapes included).
                i = i.saturating_add(1);
                while i < bytes.len() && bytes[i] != b'"' {
                    i = i.saturating_add(if bytes[i] == b'\\' { 2 } else { 1 });
                }
                i = i.saturating_add(1).min(bytes.len());
                out.push_str(&text[start..i]);
            }
            open @ (b'{' | b'[') => {
                i = i.saturating_add(1);
                let close = if open == b'{' { b'}' } else { b']' };
                let mut next = i;
                while next < bytes.len() && bytes[next].is_ascii_whitespace() {
                    next = next.saturating_add(1);
                }
                if bytes.get(next) == Some(&close) {
                    // Empty: `{}` and `[]` on one line.
                    out.push(char::from(open));
                    out.push(char::from(close));
                    i = next.saturating_add(1);
                } else {
                    out.push(char::from(open));
                    depth = depth.saturating_add(1);
                    newline(&mut out, depth);
                }
            }
            close @ (b'}' | b']') => {
                i = i.saturating_add(1);
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(char::from(close));
            }
            b',' => {
                i = i.saturating_add(1);
                out.push(',');
                newline(&mut out, depth);
            }
            b':' => {
                i = i.saturating_add(1);
                out.push_str(if indent.is_some() { ": " } else { ":" });
            }
            _ => {
                // A number or a literal: copied up to the next structural
                // byte or whitespace.
                while i < bytes.len() && !b" \t\n\r\",:[]{}".contains(&bytes[i]) {
                    i = i.saturating_add(1);
                }
                out.push_str(&text[start..i]);
            }
        }
    }
    out
}

/// The columns of an event table.
pub const EVENT_HEADERS: [&str; 6] = ["POSITION", "STREAM", "VERSION", "TYPE", "RECORDED", "DATA"];

/// One event as a row of [`EVENT_HEADERS`].
pub fn event_row(e: &RecordedEvent) -> Vec<String> {
    vec![
        e.position.to_string(),
        e.stream_id.clone(),
        e.version.to_string(),
        e.event_type.clone(),
        time(e.recorded_at),
        payload_preview(e, 60),
    ]
}

/// A spinner on stderr when it is a terminal, for work of unknown length.
pub fn spinner(what: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let s = ProgressBar::new_spinner();
    s.set_message(what.to_string());
    s.enable_steady_tick(Duration::from_millis(120));
    s
}

/// A progress bar on stderr when it is a terminal; hidden otherwise, so
/// piped and scripted runs stay quiet.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout is serde_json's, and every token is kept as spelled.
    #[test]
    fn json_for_people_keeps_every_token() {
        let text = r#" { "z" : [1, 2 ,{"a":"x,\"}{ :"}], "e":{ }, "l":[ ],
            "n":null ,"t":true,"s":"caf\u00e9 [ok]" } "#;
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        // With values that serde_json spells the same way, the output is
        // serde_json's, apart from key order (sorted there, kept here).
        let ordered = r#"{"e":{},"l":[],"n":null,"s":"caf\u00e9 [ok]","t":true,"z":[1,2,{"a":"x,\"}{ :"}]}"#;
        assert_eq!(
            pretty_json(ordered).replace("\\u00e9", "é"),
            serde_json::to_string_pretty(&value).unwrap()
        );
        assert_eq!(
            compact_json(text),
            r#"{"z":[1,2,{"a":"x,\"}{ :"}],"e":{},"l":[],"n":null,"t":true,"s":"caf\u00e9 [ok]"}"#
        );
        let numbers = r#"{"big": 12345678901234567890123, "f": 1.50, "e": -1E+2}"#;
        assert_eq!(compact_json(numbers), r#"{"big":12345678901234567890123,"f":1.50,"e":-1E+2}"#);
        assert_eq!(
            pretty_json(numbers),
            "{\n  \"big\": 12345678901234567890123,\n  \"f\": 1.50,\n  \"e\": -1E+2\n}"
        );
        assert_eq!(pretty_json("7"), "7");
        // Not JSON: no panic, some text back.
        for junk in ["{", "}", "\"abc", "\"\\", "[[", "]]]", ":,"] {
            let _ = (pretty_json(junk), compact_json(junk));
        }
    }

    /// Guards times past what RFC 3339 can write (year 10000 on; a
    /// `recorded_at` is any number an import gives): the number, which
    /// `parse_time` reads back, not a panic.
    #[test]
    fn times_past_year_9999_are_numbers() {
        assert_eq!(time(1_000), "1970-01-01T00:00:00.001Z");
        assert_eq!(time(253_402_300_799_999_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(time(253_402_300_800_000_000), "253402300800000000");
        assert_eq!(parse_time(&time(u64::MAX)).unwrap(), u64::MAX);
    }
}
