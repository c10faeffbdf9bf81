//! The recording format: everything the detector consumes, in order, one
//! JSON object per line. Its one home: the record type, the writer and the
//! reader. `run --record` writes it (through [`crate::sinks::recorder`]),
//! `replay` reads it, the detector tests and the bench generate it.
//!
//! The detector's inputs are events and ticks (time passes even when
//! nothing happens: windows close, CPU goes stale), so both are lines: a
//! serde [`Event`] (`{"kind":"exec",…}`), or `{"kind":"tick","time":N}`
//! (N = monotonic ns). Lines are fed in file order, events at their own
//! time, so the same file always gives the same verdicts. Blank lines are
//! skipped.

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::detect::Input;
use crate::event::Event;
use crate::time::Mono;

/// One line of a recording.
// Each value is moved once, straight into the detector; boxing the event
// would add an allocation per line to the replay hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Tick(Mono),
    Event(Event),
}

impl Record {
    pub fn time(&self) -> Mono {
        match self {
            Record::Tick(t) => *t,
            Record::Event(e) => e.time(),
        }
    }

    /// The detector input and the time it happens at.
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

/// Parses one line (without its newline).
pub fn parse_line(line: &str) -> Result<Record, serde_json::Error> {
    match serde_json::from_str::<Event>(line) {
        Ok(e) => Ok(Record::Event(e)),
        Err(err) => match serde_json::from_str::<TickLine>(line) {
            Ok(t) => Ok(Record::Tick(t.time)),
            Err(_) => Err(err),
        },
    }
}

/// Writes one record as a line (with newline). Strings are escaped as in
/// every other JSON minerwatch writes ([`crate::text::to_json_writer`]).
pub fn write(w: &mut impl Write, record: &Record) -> io::Result<()> {
    match record {
        Record::Event(e) => write_event(w, e),
        Record::Tick(t) => write_tick(w, *t),
    }
}

pub fn write_event(w: &mut impl Write, event: &Event) -> io::Result<()> {
    crate::text::to_json_writer(&mut *w, event).map_err(io::Error::from)?;
    w.write_all(b"\n")
}

pub fn write_tick(w: &mut impl Write, time: Mono) -> io::Result<()> {
    let tick = TickLine {
        kind: TickKind::Tick,
        time,
    };
    crate::text::to_json_writer(&mut *w, &tick).map_err(io::Error::from)?;
    w.write_all(b"\n")
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the recording failed at line {line}")]
    Io {
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
}

/// Reads a recording: each record with its 1-based line number; blank
/// lines skipped; the first unreadable line is an error naming it.
pub fn read(reader: impl BufRead) -> impl Iterator<Item = Result<(usize, Record), ReadError>> {
    reader.lines().enumerate().filter_map(|(i, line)| {
        let line_no = i + 1;
        match line {
            Err(source) => Some(Err(ReadError::Io {
                line: line_no,
                source,
            })),
            Ok(l) if l.trim().is_empty() => None,
            Ok(l) => {
                Some(
                    parse_line(&l)
                        .map(|r| (line_no, r))
                        .map_err(|source| ReadError::Parse {
                            line: line_no,
                            source,
                        }),
                )
            }
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::{CpuSample, CpuUsage, Exit};

    /// An exit (with a hostile comm), a tick, a CPU sample, a tick: what a
    /// recording holds, for the writer's and the recorder's tests.
    pub(crate) fn sample() -> Vec<Record> {
        vec![
            Record::Event(Event::Exit(Exit {
                time: Mono(5),
                tgid: 3,
                status: 0,
                signal: 9,
                cpu_ns: 1,
                comm: "a\x1b[2J".into(),
            })),
            Record::Tick(Mono(1_000_000_000)),
            Record::Event(Event::CpuSample(CpuSample {
                time: Mono(1_000_000_001),
                interval_ns: 1_000_000_000,
                usage: vec![CpuUsage {
                    tgid: 3,
                    on_cpu_ns: 9,
                }],
            })),
            Record::Tick(Mono(2_000_000_000)),
        ]
    }

    #[test]
    fn records_round_trip_through_write_and_read() {
        let records = sample();
        let mut out = Vec::new();
        for r in &records {
            write(&mut out, r).expect("write");
        }
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.lines()
                .any(|l| l == r#"{"kind":"tick","time":1000000000}"#),
            "{text}"
        );
        let with_blank = format!("\n{text}\n");
        let back: Vec<Record> = read(with_blank.as_bytes())
            .map(|r| r.expect("reads").1)
            .collect();
        assert_eq!(back, records);
    }

    #[test]
    fn tick_lines_and_their_look_alikes() {
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
        assert!(parse_line(r#"{"kind":"tick","time":1,"x":2}"#).is_err());
        assert!(parse_line("not json").is_err());
    }

    #[test]
    fn a_bad_line_is_named_by_number() {
        let input = "{\"kind\":\"tick\",\"time\":1}\n\n{\"kind\":\"exec\"}\n";
        let errs: Vec<ReadError> = read(input.as_bytes()).filter_map(Result::err).collect();
        assert!(
            matches!(errs.as_slice(), [ReadError::Parse { line: 3, .. }]),
            "{errs:?}"
        );
    }
}
