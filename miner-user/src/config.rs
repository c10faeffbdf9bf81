//! Configuration: TOML file (embedded default) + flags → validated `Config`.
//!
//! Sections are owned by the modules they configure; this file composes
//! them and turns every failure into one line that names the key (full
//! dotted path) and the fix, because the operator reading it is looking at a
//! crash-looping pod and should not have to read code.
//!
//! Order of resolution, as in ripgrep's low/high args: parse the file (or
//! the embedded example, `config/minerwatch.toml`), reject unknown keys and
//! wrong types, validate values, then apply flags and validate again.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detect::DetectorConfig;
use crate::provenance::ProvenanceConfig;
use crate::response::ResponseConfig;
use crate::sensor::SensorConfig;
pub use crate::sinks::config::{AlertsConfig, MetricsConfig, TailConfig};

/// The documented example config; also the configuration used when no
/// `--config` is given, so the docs cannot describe different defaults from
/// the ones in force (a test checks it equals `Config::default()`).
pub const EMBEDDED: &str = include_str!("../../config/minerwatch.toml");

/// Where the embedded config is said to come from in error messages.
pub const EMBEDDED_ORIGIN: &str = "built-in default config";

pub use crate::invalid::Invalid;

/// Why the daemon refuses to start. `Display` is the whole message: one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "config error: cannot read {}: {source}; pass an existing file to --config, or omit --config to use the built-in defaults",
        path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("config error: {origin}: line {line}, column {column}: TOML syntax: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config error: {origin}: key `{key}`: {problem}")]
    Key {
        origin: String,
        key: String,
        problem: String,
    },
    #[error("config error: flag `{flag}`: {problem}")]
    Flag { flag: &'static str, problem: String },
}

impl ConfigError {
    /// The process exit code for a config error (usage error, as sysexits'
    /// EX_USAGE family and clap use): distinct from a runtime failure (1).
    pub const EXIT_CODE: i32 = 2;

    /// The dotted key named by the error, if any (for tests and logs).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { key, .. } => Some(key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sensor: SensorConfig,
    pub detector: DetectorConfig,
    pub provenance: ProvenanceConfig,
    pub response: ResponseConfig,
    pub alerts: AlertsConfig,
    pub metrics: MetricsConfig,
    pub tail: TailConfig,
}

/// Command-line flags that override the file. Boolean flags can only turn a
/// setting on: a flag's absence means "as the file says", not "off".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--metrics-addr` → `metrics.addr`.
    pub metrics_addr: Option<String>,
    /// `--alerts-file` → `alerts.file`.
    pub alerts_file: Option<PathBuf>,
    /// `--webhook-url` → `alerts.webhook_url`.
    pub webhook_url: Option<String>,
    /// `--socket` → `tail.socket`.
    pub socket: Option<PathBuf>,
    /// `--enforce` → `response.enforce` (see `Config::apply`).
    pub enforce: bool,
    /// `--require-all` → `sensor.require_all`.
    pub require_all: bool,
}

/// Which flag sets which key, so an impossible flag value is reported as
/// the flag the operator typed rather than a key in a file they did not.
const FLAG_KEYS: &[(&str, &str)] = &[
    ("metrics.addr", "--metrics-addr"),
    ("alerts.file", "--alerts-file"),
    ("alerts.webhook_url", "--webhook-url"),
    ("tail.socket", "--socket"),
];

impl Config {
    /// Every section's own check; the first failure wins.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.sensor.validate()?;
        self.detector.validate()?;
        self.provenance.validate()?;
        self.response.validate()?;
        self.alerts.validate()?;
        self.metrics.validate()?;
        self.tail.validate()?;
        Ok(())
    }

    /// Applies flags over the file's values and validates the result.
    pub fn apply(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        if let Some(addr) = &o.metrics_addr {
            self.metrics.addr = addr.clone();
        }
        if let Some(file) = &o.alerts_file {
            self.alerts.file = Some(file.clone());
        }
        if let Some(url) = &o.webhook_url {
            self.alerts.webhook_url = Some(url.clone());
        }
        if let Some(socket) = &o.socket {
            self.tail.socket = socket.clone();
        }
        if o.require_all {
            self.sensor.require_all = true;
        }
        if o.enforce {
            self.response.mode = crate::response::Mode::Enforce;
        }
        self.validate().map_err(
            |inv| match FLAG_KEYS.iter().find(|(key, _)| *key == inv.key) {
                Some((_, flag)) => ConfigError::Flag {
                    flag,
                    problem: inv.fix,
                },
                None => ConfigError::Key {
                    origin: "flags".into(),
                    key: inv.key,
                    problem: inv.fix,
                },
            },
        )
    }
}

/// Reads, parses and validates the config file, or the embedded default when
/// `path` is `None`.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        None => parse(EMBEDDED, EMBEDDED_ORIGIN),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?;
            parse(&text, &p.display().to_string())
        }
    }
}

/// Parses and validates TOML text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let cfg: Config = deserialize(text, origin)?;
    cfg.validate().map_err(|inv| ConfigError::Key {
        origin: origin.to_owned(),
        key: inv.key,
        problem: inv.fix,
    })?;
    Ok(cfg)
}

/// TOML text → `T`, with syntax errors located by line and shape errors by
/// the full dotted key (`detector.pool_ports[2]`).
fn deserialize<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| syntax_error(text, origin, &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let (key, problem) = describe(&key, e.inner().message());
        ConfigError::Key {
            origin: origin.to_owned(),
            key,
            problem,
        }
    })
}

fn syntax_error(text: &str, origin: &str, e: &toml::de::Error) -> ConfigError {
    let start = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
    let before = text.get(..start).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConfigError::Syntax {
        origin: origin.to_owned(),
        line,
        column,
        message: first_line(e.message()).to_owned(),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim_end()
}

/// Turns serde's messages (stable formats from `serde::de::Error`'s provided
/// methods) into the key and an operator's wording. Unrecognised messages
/// pass through unchanged: a clumsy message beats a wrong one.
fn describe(path: &str, message: &str) -> (String, String) {
    let message = first_line(message);
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let names = backticked(rest);
        let key = match names.first() {
            Some(field) if !path.ends_with(field.as_str()) => join_key(path, field),
            _ => path.to_owned(),
        };
        let valid = if names.len() > 1 {
            names[1..].join(", ")
        } else {
            "none".to_owned()
        };
        return (key, format!("unknown key; valid keys: {valid}"));
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let names = backticked(rest);
        let got = names.first().cloned().unwrap_or_default();
        let valid = if names.len() > 1 {
            names[1..].join(", ")
        } else {
            "none".to_owned()
        };
        return (
            path.to_owned(),
            format!("{got:?} is not a valid value; use one of {valid}"),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((got, expected)) = rest.split_once(", expected ")
    {
        return (
            path.to_owned(),
            format!(
                "expected {}, got {}",
                expected_words(expected),
                got_words(got)
            ),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid value: ")
        && let Some((got, expected)) = rest.split_once(", expected ")
    {
        if let Some(max) = int_max(expected) {
            let n = backticked(got)
                .into_iter()
                .next()
                .unwrap_or_else(|| got.to_owned());
            let problem = if n.starts_with('-') {
                format!("{n} is negative; expected a non-negative integer")
            } else {
                format!("{n} is above the maximum {max}")
            };
            return (path.to_owned(), problem);
        }
        return (
            path.to_owned(),
            format!("expected {}, got {got}", expected_words(expected)),
        );
    }
    (path.to_owned(), message.to_owned())
}

fn join_key(path: &str, field: &str) -> String {
    if path.is_empty() || path == "." {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// The `a`, `b` names in "unknown field `x`, expected one of `a`, `b`".
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn int_max(expected: &str) -> Option<u64> {
    Some(match expected {
        "u8" => u8::MAX as u64,
        "u16" => u16::MAX as u64,
        "u32" => u32::MAX as u64,
        "u64" | "usize" => u64::MAX,
        _ => return None,
    })
}

fn expected_words(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a string" | "path string" => "a string".into(),
        "a sequence" => "a list".into(),
        e if e.starts_with("struct ") || e == "a map" => "a table".into(),
        e => e.to_owned(),
    }
}

fn got_words(got: &str) -> String {
    let kind = got.split([' ', '`', '"']).next().unwrap_or(got);
    match kind {
        "string" => "a string".into(),
        "integer" => "an integer".into(),
        "floating" => "a float".into(),
        "boolean" => "a boolean".into(),
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        _ => got.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(text, "/etc/x.toml") {
            Ok(cfg) => panic!("accepted {text:?}: {cfg:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn embedded_example_equals_defaults() {
        let cfg = parse(EMBEDDED, EMBEDDED_ORIGIN).expect("embedded config parses");
        assert_eq!(
            cfg,
            Config::default(),
            "config/minerwatch.toml and Default disagree"
        );
        assert_eq!(load(None).expect("load(None)"), Config::default());
    }

    /// Every key of a section this file documents appears in the example,
    /// set or commented out, and every commented-out example is a real key
    /// with a valid value.
    #[test]
    fn example_documents_every_key() {
        let uncommented: String = EMBEDDED
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if looks_like_assignment(rest) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let full = parse(&uncommented, "uncommented example")
            .unwrap_or_else(|e| panic!("commented-out examples must be valid: {e}"));
        assert!(full.alerts.file.is_some() && full.alerts.webhook_url.is_some());
        assert!(full.sensor.cgroup_path.is_some());

        let mut all = Config::default();
        all.alerts.file = Some("/x".into());
        all.alerts.webhook_url = Some("http://x".into());
        all.sensor.cgroup_path = Some("/x".into());
        let value = toml::Value::try_from(&all).expect("config serialises");
        let doc: toml::Table = uncommented.parse().expect("uncommented parses");
        for (section, table) in value.as_table().expect("a table") {
            if PENDING_SECTIONS.contains(&section.as_str()) {
                continue;
            }
            let Some(table) = table.as_table() else {
                continue;
            };
            for key in table.keys() {
                let documented = doc
                    .get(section)
                    .and_then(|s| s.as_table())
                    .is_some_and(|s| s.contains_key(key));
                assert!(
                    documented,
                    "`{section}.{key}` is not in config/minerwatch.toml"
                );
            }
        }
    }

    /// Sections whose keys the example does not document yet (their
    /// tables say "keys: see below"). Remove a name once its keys are
    /// written into config/minerwatch.toml; the test then guards them too.
    const PENDING_SECTIONS: &[&str] = &[];

    fn looks_like_assignment(s: &str) -> bool {
        s.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
        })
    }

    #[test]
    fn unknown_key_names_path_and_valid_keys() {
        assert_eq!(
            err("[alerts]\nfle = \"/tmp/a\"\n"),
            "config error: /etc/x.toml: key `alerts.fle`: unknown key; valid keys: stdout, file, \
             webhook_url, webhook_queue, webhook_timeout_ms, webhook_retries, webhook_backoff_ms"
        );
    }

    #[test]
    fn unknown_section_names_valid_sections() {
        assert_eq!(
            err("[alert]\nstdout = true\n"),
            "config error: /etc/x.toml: key `alert`: unknown key; valid keys: sensor, detector, \
             provenance, response, alerts, metrics, tail"
        );
    }

    #[test]
    fn wrong_type_names_expected_and_got() {
        assert_eq!(
            err("[sensor]\nring_buffer_bytes = \"8M\"\n"),
            "config error: /etc/x.toml: key `sensor.ring_buffer_bytes`: expected a non-negative \
             integer, got a string"
        );
        assert_eq!(
            err("[alerts]\nstdout = 1\n"),
            "config error: /etc/x.toml: key `alerts.stdout`: expected true or false, got an integer"
        );
        assert_eq!(
            err("[tail]\nsocket = 5\n"),
            "config error: /etc/x.toml: key `tail.socket`: expected a string, got an integer"
        );
        assert_eq!(
            err("alerts = 3\n"),
            "config error: /etc/x.toml: key `alerts`: expected a table, got an integer"
        );
    }

    #[test]
    fn negative_integer_is_out_of_range() {
        assert_eq!(
            err("[tail]\nclient_queue = -1\n"),
            "config error: /etc/x.toml: key `tail.client_queue`: -1 is negative; expected a non-negative integer"
        );
    }

    #[test]
    fn list_elements_are_named_by_index() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Detector {
            #[allow(dead_code)]
            pool_ports: Vec<u16>,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            #[allow(dead_code)]
            detector: Detector,
        }
        let e = deserialize::<Doc>(
            "[detector]\npool_ports = [3333, 4444, \"x\"]\n",
            "/etc/x.toml",
        )
        .expect_err("a string in a port list");
        assert_eq!(
            e.to_string(),
            "config error: /etc/x.toml: key `detector.pool_ports[2]`: expected a non-negative \
             integer, got a string"
        );
        let e = deserialize::<Doc>("[detector]\npool_ports = [3333, 70000]\n", "/etc/x.toml")
            .expect_err("a port above 65535");
        assert_eq!(
            e.to_string(),
            "config error: /etc/x.toml: key `detector.pool_ports[1]`: 70000 is above the maximum 65535"
        );
    }

    #[test]
    fn integer_above_type_maximum() {
        assert_eq!(
            err("[sensor]\nring_buffer_bytes = 8589934592\n"),
            "config error: /etc/x.toml: key `sensor.ring_buffer_bytes`: 8589934592 is above the maximum 4294967295"
        );
    }

    #[test]
    fn impossible_values_name_key_and_fix() {
        let cases: &[(&str, &str)] = &[
            (
                "[metrics]\naddr = \"x\"\n",
                "key `metrics.addr`: \"x\" is not an address; use IP:PORT such as 0.0.0.0:9747 or [::]:9747",
            ),
            (
                "[metrics]\naddr = \"0.0.0.0:70000\"\n",
                "key `metrics.addr`: port 70000 is above 65535; use IP:PORT such as 0.0.0.0:9747 or [::]:9747",
            ),
            (
                "[sensor]\nring_buffer_bytes = 5000\n",
                "key `sensor.ring_buffer_bytes`: 5000 is not a power of two ≥ 4096; use e.g. 8388608 (8 MiB)",
            ),
            (
                "[sensor]\nfpu_nudge_ms = 5\n",
                "key `sensor.fpu_nudge_ms`: 5 is out of range; use 0 (off) or 10..=10000 (default 250)",
            ),
            (
                "[sensor]\nquiet_fork_ms = 5000\n",
                "key `sensor.quiet_fork_ms`: 5000 is out of range; use 0 (off) or 1..=1000 (default 100)",
            ),
            (
                "[detector.fingerprint_allow]\npaths = [\"monerod\"]\n",
                "key `detector.fingerprint_allow.paths[0]`: \"monerod\" is not an absolute path; use e.g. \"/usr/bin/monerod\" or a directory ending in /",
            ),
            (
                "[tail]\nclient_queue = 0\n",
                "key `tail.client_queue`: 0 is out of range; use 1..=1000000 (default 4096)",
            ),
            (
                "[tail]\nsocket = \"run/x.sock\"\n",
                "key `tail.socket`: \"run/x.sock\" is not an absolute path; use e.g. \"/run/minerwatch/minerwatch.sock\"",
            ),
            (
                "[alerts]\nwebhook_url = \"ftp://x\"\n",
                "key `alerts.webhook_url`: \"ftp://x\" is not an http:// or https:// URL; use e.g. \"https://hooks.example.com/minerwatch\"",
            ),
            (
                "[alerts]\nfile = \"alerts.jsonl\"\n",
                "key `alerts.file`: \"alerts.jsonl\" is not an absolute path; use e.g. \"/var/log/minerwatch/alerts.jsonl\"",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                err(text),
                format!("config error: /etc/x.toml: {want}"),
                "case {text:?}"
            );
        }
    }

    #[test]
    fn syntax_error_names_the_line() {
        assert_eq!(
            err("[alerts]\nstdout = true\nfile = \n"),
            "config error: /etc/x.toml: line 3, column 8: TOML syntax: string values must be quoted, expected literal string"
        );
    }

    #[test]
    fn missing_file_says_what_to_do() {
        let e = load(Some(Path::new("/nonexistent/minerwatch.toml"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config error: cannot read /nonexistent/minerwatch.toml: No such file or directory (os \
             error 2); pass an existing file to --config, or omit --config to use the built-in defaults"
        );
    }

    #[test]
    fn every_error_is_one_line() {
        for text in [
            "[alerts]\nfle = 1",
            "x = [",
            "[sensor]\nring_buffer_bytes = 1",
            "[metrics]\naddr = 1",
        ] {
            let e = err(text);
            assert!(!e.contains('\n'), "{e:?}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let mut cfg = parse("[metrics]\naddr = \"127.0.0.1:1\"\n", "f").expect("parses");
        cfg.apply(&Overrides {
            metrics_addr: Some("127.0.0.1:2".into()),
            alerts_file: Some("/var/tmp/a.jsonl".into()),
            socket: Some("/tmp/m.sock".into()),
            require_all: true,
            ..Overrides::default()
        })
        .expect("valid flags");
        assert_eq!(cfg.metrics.addr, "127.0.0.1:2");
        assert_eq!(
            cfg.alerts.file.as_deref(),
            Some(Path::new("/var/tmp/a.jsonl"))
        );
        assert_eq!(cfg.tail.socket, Path::new("/tmp/m.sock"));
        assert!(cfg.sensor.require_all);
    }

    #[test]
    fn bad_flag_value_names_the_flag() {
        let mut cfg = Config::default();
        let e = cfg
            .apply(&Overrides {
                metrics_addr: Some("localhost".into()),
                ..Overrides::default()
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "config error: flag `--metrics-addr`: \"localhost\" is not an address; use IP:PORT such as 0.0.0.0:9747 or [::]:9747"
        );
    }

    #[test]
    fn listen_addresses() {
        for ok in ["0.0.0.0:9747", "127.0.0.1:0", "[::]:9747", "[::1]:80"] {
            assert!(parse_listen_addr_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "9747",
            ":9747",
            "host:9747",
            "0.0.0.0",
            "[::]:99999",
            "1.2.3.4:-1",
        ] {
            assert!(!parse_listen_addr_ok(bad), "{bad}");
        }
    }

    fn parse_listen_addr_ok(s: &str) -> bool {
        crate::sinks::config::parse_listen_addr(s).is_ok()
    }
}
