//! `config::parse`: the operator's TOML. Whatever the text, the answer is a
//! config or one line naming the key (or the line) and the fix.

use proptest::prelude::*;

use super::cases;
use crate::config::{ConfigError, EMBEDDED, parse};

/// Every documented leaf key of the embedded config as (table path, key).
fn documented_keys() -> Vec<(String, String)> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<(String, String)>) {
        for (k, v) in t {
            match v {
                toml::Value::Table(sub) => {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, sub, out);
                }
                _ => out.push((prefix.to_owned(), k.clone())),
            }
        }
    }
    let t: toml::Table = toml::from_str(EMBEDDED).unwrap_or_default();
    let mut out = Vec::new();
    walk("", &t, &mut out);
    out
}

/// A TOML value of any type (as text).
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        ".{0,20}".prop_map(|s| toml::Value::String(s).to_string()),
        proptest::collection::vec(0u32..70_000, 0..4).prop_map(|v| format!("{v:?}")),
        Just("[\"a\", 1]".to_owned()),
        Just("{ x = 1 }".to_owned()),
    ]
}

fn one_line(e: &ConfigError) -> Result<(), TestCaseError> {
    let msg = e.to_string();
    prop_assert!(!msg.contains('\n'), "two lines: {}", msg);
    prop_assert!(msg.starts_with("config error: "), "{}", msg);
    Ok(())
}

proptest! {
    #![proptest_config(cases(5_000))]

    /// Any text at all: a config or one line, never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        if let Err(e) = parse(&text, "fuzz.toml") {
            one_line(&e)?;
        }
    }

    /// TOML-shaped noise: tables, keys and values from the real sections.
    #[test]
    fn toml_shaped_noise_is_answered_in_one_line(
        lines in proptest::collection::vec(
            prop_oneof![
                "\\[(sensor|detector|provenance|response|response\\.protect|alerts|metrics|tail)\\]",
                "[a-z_]{1,24} = [-0-9a-z\"\\[\\], .]{0,24}",
                "[#\\[\\]= \"a-z0-9]{0,30}",
            ],
            0..12,
        ),
    ) {
        if let Err(e) = parse(&lines.join("\n"), "fuzz.toml") {
            one_line(&e)?;
        }
    }
}

proptest! {
    #![proptest_config(cases(2_000))]

    /// Any value of any type on a documented key is accepted, or refused
    /// with an error naming exactly that key.
    #[test]
    fn a_bad_value_is_blamed_on_its_key(k in any::<prop::sample::Index>(), value in toml_value()) {
        let keys = documented_keys();
        prop_assume!(!keys.is_empty());
        let (table, key) = &keys[k.index(keys.len())];
        let text = format!("[{table}]\n{key} = {value}\n");
        if let Err(e) = parse(&text, "fuzz.toml") {
            one_line(&e)?;
            let dotted = format!("{table}.{key}");
            let named = e.key().is_some_and(|got| got == dotted || got.starts_with(&format!("{dotted}[")) || got.starts_with(&format!("{dotted}.")));
            prop_assert!(named, "{} = {}: {}", dotted, value, e);
        }
    }

    /// A key the documented config does not have is refused by name.
    #[test]
    fn an_unknown_key_is_refused_by_name(t in any::<prop::sample::Index>(), key in "[a-z][a-z_]{0,20}") {
        let keys = documented_keys();
        let table = &keys[t.index(keys.len())].0;
        prop_assume!(!keys.iter().any(|(tt, kk)| tt == table && *kk == key));
        prop_assume!(!keys.iter().any(|(tt, _)| *tt == format!("{table}.{key}")));
        let err = parse(&format!("[{table}]\n{key} = 1\n"), "fuzz.toml")
            .err()
            .ok_or_else(|| TestCaseError::fail(format!("{table}.{key} accepted")))?;
        one_line(&err)?;
        let dotted = format!("{table}.{key}");
        prop_assert_eq!(err.key(), Some(dotted.as_str()), "{}", err);
    }
}
