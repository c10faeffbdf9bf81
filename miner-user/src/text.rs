//! Text a monitored process chose, made safe to show.
//!
//! A miner picks its own comm, argv, file names and the bytes it sends. None
//! of them may move the operator's cursor, recolour or retitle a terminal,
//! start a fake line in a log, or hide text: everything minerwatch prints
//! goes through one of these functions.
//!
//! - [`escape`]: a process string for a human (tail table, log lines).
//!   Injective: backslashes are doubled, so `\x1b` on screen is always four
//!   characters a process sent, never an escape it smuggled in.
//! - [`escape_bytes`]: raw wire bytes (payload previews): printable ASCII
//!   as is, every other byte as `\xNN`.
//! - [`defang`]: for text already composed of escaped pieces (a tail
//!   `detail`, a whole log message): control and invisible characters are
//!   escaped, backslashes are left alone. Defence in depth, never the only
//!   layer.
//! - [`to_json_line`] / [`to_json_writer`]: JSON that escapes, on top of
//!   what JSON requires, DEL, the C1 controls and invisible format
//!   characters, so `cat alerts.jsonl` on an 8-bit terminal is as safe as
//!   `jq`. Always valid JSON; parses back to the same value.
//!
//! Invalid UTF-8 in comm, argv, file names and paths becomes U+FFFD once,
//! where the bytes enter (`sensor/decode.rs`, the /proc sweep): every string
//! downstream is valid UTF-8, and every JSON line is valid JSON.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;

use serde::Serialize;

/// Characters that must never reach a terminal or a log raw: C0, DEL and C1
/// controls, and format characters that are invisible or reorder text
/// (bidi overrides, zero-width, line/paragraph separators, tags).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// True if `s` needs no escaping for a human.
fn is_plain(s: &str, backslash: bool) -> bool {
    !s.chars().any(|c| is_hidden(c) || (backslash && c == '\\'))
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 && is_hidden(c) => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_hidden(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// A process string for a human: `\`, `\n`, `\r`, `\t` as two-character
/// escapes, other ASCII controls and DEL as `\xNN`, C1 controls and
/// invisible format characters as `\u{NNNN}`. Borrowed when nothing needed
/// escaping (the common case costs no allocation).
pub fn escape(s: &str) -> Cow<'_, str> {
    if is_plain(s, true) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// Wire bytes for a human, inside a quoted preview: printable ASCII as
/// is, `"` and `\` escaped, `\n`, `\r`, `\t`, every other byte as `\xNN`
/// (a payload is bytes, not text: UTF-8 is not assumed).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// Composed text (pieces already escaped, or written by us) for a human:
/// only control and invisible characters are escaped; `\` stays as is.
pub fn defang(s: &str) -> Cow<'_, str> {
    if is_plain(s, false) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_hidden(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// serde_json's compact output, plus `\uNNNN` escapes for the characters
/// [`is_hidden`] names that JSON itself allows raw.
struct SafeFormatter;

impl serde_json::ser::Formatter for SafeFormatter {
    fn write_string_fragment<W>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()>
    where
        W: ?Sized + io::Write,
    {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if !is_hidden(c) {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                write!(writer, "\\u{u:04x}")?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Serialises `value` as one compact JSON object with the extra escapes,
/// into `writer` (no newline).
pub fn to_json_writer<W: io::Write, T: Serialize + ?Sized>(
    writer: W,
    value: &T,
) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(writer, SafeFormatter);
    value.serialize(&mut ser)
}

/// `value` as one JSON line, newline-terminated, with the extra escapes.
pub fn to_json_line<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut line = Vec::with_capacity(256);
    to_json_writer(&mut line, value)?;
    line.push(b'\n');
    Ok(line)
}

/// `value` as a JSON string (no newline), with the extra escapes.
pub fn to_json_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::with_capacity(256);
    to_json_writer(&mut out, value)?;
    // The formatter writes only what serde_json would, or ASCII escapes.
    String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hostile inputs of issue 14, each with what a human sees.
    const CASES: &[(&str, &str, &str)] = &[
        ("plain", "xmrig --donate-level 1", "xmrig --donate-level 1"),
        ("CSI clear screen", "a\x1b[2Jb", "a\\x1b[2Jb"),
        ("OSC title", "\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
        ("CR overwrite", "ok\rALERT", "ok\\rALERT"),
        ("LF fake line", "x\n[WARN] fake", "x\\n[WARN] fake"),
        ("NUL", "a\0b", "a\\x00b"),
        ("DEL", "a\x7fb", "a\\x7fb"),
        ("C1 CSI", "a\u{9b}31mb", "a\\u{9b}31mb"),
        ("bidi override", "\u{202e}gifnoc", "\\u{202e}gifnoc"),
        ("zero width", "kwor\u{200b}ker", "kwor\\u{200b}ker"),
        ("tag characters", "a\u{e0041}", "a\\u{e0041}"),
        ("literal backslash-x", "\\x1b", "\\\\x1b"),
        ("replacement char", "k\u{fffd}", "k\u{fffd}"),
        ("non-ASCII letters", "café ключ 矿工", "café ключ 矿工"),
    ];

    #[test]
    fn escape_shows_every_hidden_character() {
        for (name, input, want) in CASES {
            assert_eq!(escape(input), *want, "case: {name}");
            assert!(!escape(input).chars().any(is_hidden), "case: {name}");
        }
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn defang_keeps_backslashes_and_escapes_the_rest() {
        assert_eq!(defang("a\\x1b"), "a\\x1b");
        assert_eq!(defang("a\x1b[2J\r\n"), "a\\x1b[2J\\r\\n");
        assert!(matches!(defang("plain \\ text"), Cow::Borrowed(_)));
    }

    #[test]
    fn escape_bytes_shows_every_byte_that_is_not_printable_ascii() {
        assert_eq!(
            escape_bytes(b"\x1b[2J\r\n\0\xff\xfe\"ok\" \\ \xc3\xa9\x7f"),
            "\\x1b[2J\\r\\n\\x00\\xff\\xfe\\\"ok\\\" \\\\ \\xc3\\xa9\\x7f"
        );
    }

    #[test]
    fn json_escapes_what_terminals_interpret_and_round_trips() {
        for (name, input, _) in CASES {
            let line = to_json_line(&serde_json::json!({ "comm": input })).expect("json");
            assert!(line.ends_with(b"\n"));
            let body = &line[..line.len() - 1];
            assert!(
                body.iter().all(|&b| b >= 0x20 && b != 0x7f),
                "case {name}: raw control byte in {body:?}"
            );
            let text = std::str::from_utf8(body).expect("utf-8");
            assert!(!text.chars().any(is_hidden), "case {name}: {text}");
            let back: serde_json::Value = serde_json::from_slice(body).expect("valid JSON");
            assert_eq!(back["comm"], *input, "case {name}");
        }
        assert_eq!(
            to_json_string(&"a\x1b\u{9b}\u{202e}\u{e0041}\r\n").expect("json"),
            r#""a\u001b\u009b\u202e\udb40\udc41\r\n""#
        );
    }
}
