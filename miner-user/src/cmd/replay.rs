//! `minerwatch replay FILE`: runs the detector over a recording and prints
//! its verdicts as JSON lines.
//!
//! Recording format (written by `run --record`, read here): one JSON object
//! per line. `{"kind":"tick","time":N}` is a tick at `Mono(N)`; any other
//! line is a serde [`Event`]. Lines are fed in file order, events at their
//! own time, so the same file always gives the same verdicts. Blank lines
//! are skipped.

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::config::Invalid;
use crate::detect::{Detector, DetectorConfig, DetectorStats, Input};
use crate::event::Event;
use crate::time::Mono;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("invalid detector configuration")]
    Config(#[from] Invalid),
    #[error("reading the recording failed at line {line}")]
    Read {
        line: usize,
        #[source]
        source: io::Error,
    },
    #[error(
        "line {line} is neither an event nor a tick ({{\"kind\":\"tick\",\"time\":N}}); was it written by `run --record`?"
    )]
    Parse {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing verdicts failed")]
    Write {
        #[source]
        source: io::Error,
    },
}

/// What a replay saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplayStats {
    pub lines: usize,
    pub events: u64,
    pub ticks: u64,
    pub verdicts: u64,
    /// Time of the first and last input.
    pub first_time: Option<Mono>,
    pub last_time: Option<Mono>,
    pub detector: DetectorStats,
}

/// One line of a recording.
#[allow(clippy::large_enum_variant)] // read once, consumed at once
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Tick(Mono),
    Event(Event),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TickLine {
    kind: TickKind,
    time: Mono,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TickKind {
    Tick,
}

impl Record {
    pub fn time(&self) -> Mono {
        match self {
            Record::Tick(t) => *t,
            Record::Event(e) => e.time(),
        }
    }

    pub fn into_input(self) -> (Input, Mono) {
        match self {
            Record::Tick(t) => (Input::Tick, t),
            Record::Event(e) => {
                let t = e.time();
                (Input::Event(e), t)
            }
        }
    }
}

/// Parses one recording line.
pub fn parse_line(line: &str) -> Result<Record, serde_json::Error> {
    match serde_json::from_str::<Event>(line) {
        Ok(e) => Ok(Record::Event(e)),
        Err(err) => match serde_json::from_str::<TickLine>(line) {
            Ok(t) => Ok(Record::Tick(t.time)),
            Err(_) => Err(err),
        },
    }
}

/// The recording line for a tick at `time` (no newline).
pub fn tick_line(time: Mono) -> String {
    // Serialising a two-field struct cannot fail.
    serde_json::to_string(&TickLine {
        kind: TickKind::Tick,
        time,
    })
    .unwrap_or_else(|_| format!("{{\"kind\":\"tick\",\"time\":{}}}", time.0))
}

/// Writes a tick line (with newline).
pub fn write_tick(w: &mut impl Write, time: Mono) -> io::Result<()> {
    writeln!(w, "{}", tick_line(time))
}

/// Writes an event line (with newline).
pub fn write_event(w: &mut impl Write, event: &Event) -> io::Result<()> {
    serde_json::to_writer(&mut *w, event).map_err(io::Error::other)?;
    w.write_all(b"\n")
}

/// Replays a recording through a fresh detector, writing each verdict as
/// one JSON line to `out`.
pub fn replay(
    reader: impl BufRead,
    cfg: DetectorConfig,
    out: &mut impl Write,
) -> Result<ReplayStats, ReplayError> {
    cfg.validate()?;
    let mut det = Detector::new(cfg);
    let mut stats = ReplayStats::default();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|source| ReplayError::Read {
            line: line_no,
            source,
        })?;
        stats.lines = line_no;
        if line.trim().is_empty() {
            continue;
        }
        let record = parse_line(&line).map_err(|source| ReplayError::Parse {
            line: line_no,
            source,
        })?;
        match record {
            Record::Tick(_) => stats.ticks += 1,
            Record::Event(_) => stats.events += 1,
        }
        let (input, time) = record.into_input();
        stats.first_time.get_or_insert(time);
        stats.last_time = Some(time);
        for v in det.step(input, time) {
            serde_json::to_writer(&mut *out, &v).map_err(|e| ReplayError::Write {
                source: io::Error::other(e),
            })?;
            out.write_all(b"\n")
                .map_err(|source| ReplayError::Write { source })?;
            stats.verdicts += 1;
        }
    }
    out.flush()
        .map_err(|source| ReplayError::Write { source })?;
    stats.detector = det.stats();
    Ok(stats)
}

/// `minerwatch replay FILE` (`-` for stdin): verdicts as JSON lines on `out`.
pub fn run_file(
    path: &std::path::Path,
    cfg: DetectorConfig,
    out: &mut impl Write,
) -> anyhow::Result<ReplayStats> {
    use anyhow::Context as _;
    let stats = if path.as_os_str() == "-" {
        replay(std::io::stdin().lock(), cfg, out)?
    } else {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening the recording {}", path.display()))?;
        replay(std::io::BufReader::with_capacity(1 << 20, file), cfg, out)?
    };
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_lines_round_trip() {
        assert_eq!(tick_line(Mono(42)), r#"{"kind":"tick","time":42}"#);
        assert_eq!(
            parse_line(r#"{"kind":"tick","time":42}"#).unwrap(),
            Record::Tick(Mono(42))
        );
        assert_eq!(
            parse_line(r#"{"time":7,"kind":"tick"}"#).unwrap(),
            Record::Tick(Mono(7))
        );
        // Benign look-alikes of a tick are errors, not ticks.
        assert!(parse_line(r#"{"kind":"tick"}"#).is_err());
        assert!(parse_line(r#"{"kind":"tock","time":1}"#).is_err());
        assert!(parse_line("not json").is_err());
    }

    #[test]
    fn bad_line_names_its_number() {
        let input = format!("{}\n\n{{\"kind\":\"exec\"}}\n", tick_line(Mono(1)));
        let err = replay(input.as_bytes(), DetectorConfig::default(), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ReplayError::Parse { line: 3, .. }), "{err}");
    }

    #[test]
    fn invalid_config_is_refused() {
        let cfg = DetectorConfig {
            cpu_busy_cores: 2.0,
            ..DetectorConfig::default()
        };
        let err = replay(&b""[..], cfg, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ReplayError::Config(ref i) if i.key == "detector.cpu_busy_cores"));
    }
}
