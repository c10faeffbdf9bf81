//! `text`: what stands between a process's chosen strings and the
//! operator's terminal.

use proptest::prelude::*;

use super::cases;
use crate::text::{defang, escape, escape_bytes, is_hidden, to_json_line};

/// Inverts `escape` (test-only): proves it loses nothing.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next()? {
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'x' => {
                let h: String = [it.next()?, it.next()?].iter().collect();
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            'u' => {
                if it.next()? != '{' {
                    return None;
                }
                let h: String = it.by_ref().take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

proptest! {
    #![proptest_config(cases(10_000))]

    /// Escaped text shows nothing a terminal acts on, and is injective: it
    /// decodes back to exactly the original.
    #[test]
    fn escape_is_safe_and_lossless(s in "\\PC*|.*|[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{200b}-\\u{200f}\\u{202a}-\\u{202e}a\\\\]{0,40}") {
        let e = escape(&s);
        prop_assert!(!e.chars().any(is_hidden), "{:?} -> {:?}", s, e);
        prop_assert_eq!(unescape(&e), Some(s.clone()));
        prop_assert!(!defang(&s).chars().any(is_hidden));
    }

    /// Every byte string becomes printable ASCII.
    #[test]
    fn escaped_bytes_are_printable_ascii(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let e = escape_bytes(&b);
        prop_assert!(e.bytes().all(|c| (0x20..0x7f).contains(&c)), "{:?}", e);
    }

    /// JSON lines: one line, no raw control or invisible character, and
    /// they parse back to the same string.
    #[test]
    fn json_lines_are_one_safe_line_and_round_trip(s in "\\PC*|[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{2028}\\u{2029}\\u{202e}\\u{e0041}a\"\\\\]{0,40}") {
        let line = to_json_line(&serde_json::json!({ "comm": s })).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let body = std::str::from_utf8(&line[..line.len() - 1]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!body.chars().any(is_hidden), "{:?}", body);
        let back: serde_json::Value = serde_json::from_str(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back["comm"].as_str(), Some(s.as_str()));
    }
}
