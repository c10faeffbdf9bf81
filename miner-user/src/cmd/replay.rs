//! `minerwatch replay FILE`: runs the detector over a recording and prints
//! its verdicts as JSON lines. The format is [`crate::recording`]'s.

use std::io::{self, BufRead, Write};

use serde::Serialize;

use crate::config::Invalid;
use crate::detect::{Detector, DetectorConfig, DetectorStats};
use crate::recording::{self, ReadError, Record};
use crate::time::Mono;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("invalid detector configuration")]
    Config(#[from] Invalid),
    #[error(transparent)]
    Read(#[from] ReadError),
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
    for item in recording::read(reader) {
        let (line_no, record) = item?;
        stats.lines = line_no;
        match record {
            Record::Tick(_) => stats.ticks += 1,
            Record::Event(_) => stats.events += 1,
        }
        let (input, time) = record.into_input();
        stats.first_time.get_or_insert(time);
        stats.last_time = Some(time);
        for v in det.step(input, time) {
            crate::text::to_json_writer(&mut *out, &v).map_err(|e| ReplayError::Write {
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
    fn bad_line_names_its_number() {
        let input = "{\"kind\":\"tick\",\"time\":1}\n\n{\"kind\":\"exec\"}\n";
        let err = replay(input.as_bytes(), DetectorConfig::default(), &mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, ReplayError::Read(ReadError::Parse { line: 3, .. })),
            "{err}"
        );
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
