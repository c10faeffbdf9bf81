//! `minerwatch run --record FILE.jsonl`: every input the detector consumes,
//! in order, so `minerwatch replay` reproduces its verdicts exactly. The
//! format is [`crate::recording`]'s; this is the daemon's file around it.
//! Recording must never stop detection: a write failure is logged once and
//! recording stops, the daemon carries on.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::event::Event;
use crate::recording;
use crate::time::Mono;

/// At most this much recording sits in memory unwritten.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("creating recording {} failed: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing recording {} failed: {source}; recording stopped", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub struct Recorder {
    out: Option<BufWriter<File>>,
    path: PathBuf,
    last_flush: Instant,
    lines: u64,
}

impl Recorder {
    /// Creates (or truncates) the recording, mode 0600: it holds every
    /// command line on the host.
    pub fn create(path: &Path) -> Result<Recorder, RecorderError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| RecorderError::Create {
                path: path.to_owned(),
                source,
            })?;
        Ok(Recorder {
            out: Some(BufWriter::with_capacity(256 * 1024, file)),
            path: path.to_owned(),
            last_flush: Instant::now(),
            lines: 0,
        })
    }

    pub fn event(&mut self, ev: &Event) {
        self.line(|out| recording::write_event(out, ev));
    }

    pub fn tick(&mut self, now: Mono) {
        self.line(|out| recording::write_tick(out, now));
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// False once a write failed and recording stopped.
    pub fn is_recording(&self) -> bool {
        self.out.is_some()
    }

    /// Writes out everything buffered (the daemon calls this at shutdown).
    pub fn flush(&mut self) -> Result<(), RecorderError> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        self.last_flush = Instant::now();
        let res = out.flush();
        res.map_err(|source| self.fail(source))
    }

    fn line(&mut self, write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>) {
        let Some(out) = &mut self.out else { return };
        if let Err(e) = write(out) {
            let e = self.fail(e);
            log::error!("{e}");
            return;
        }
        self.lines += 1;
        if self.last_flush.elapsed() >= FLUSH_INTERVAL
            && let Err(e) = self.flush()
        {
            log::error!("{e}");
        }
    }

    fn fail(&mut self, source: io::Error) -> RecorderError {
        self.out = None;
        RecorderError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::error!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::Record;

    #[test]
    fn records_events_and_ticks_in_order_and_reads_them_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rec.jsonl");
        let inputs = recording::tests::sample();
        let mut rec = Recorder::create(&path).expect("create");
        for input in &inputs {
            match input {
                Record::Event(ev) => rec.event(ev),
                Record::Tick(t) => rec.tick(*t),
            }
        }
        rec.flush().expect("flush");
        assert_eq!(rec.lines(), 4);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.lines()
                .any(|l| l == r#"{"kind":"tick","time":1000000000}"#),
            "{text}"
        );
        let back: Vec<Record> = recording::read(text.as_bytes())
            .map(|r| r.expect("parses").1)
            .collect();
        assert_eq!(back, inputs);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn buffered_lines_reach_the_file_within_a_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rec.jsonl");
        let mut rec = Recorder::create(&path).expect("create");
        rec.tick(Mono(1));
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "",
            "buffered"
        );
        std::thread::sleep(FLUSH_INTERVAL + Duration::from_millis(50));
        rec.tick(Mono(2));
        assert_eq!(
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count(),
            2
        );
    }

    #[test]
    fn write_failure_stops_recording_without_panicking() {
        // /dev/full fails every write with ENOSPC (present on every Linux).
        let mut rec = Recorder::create(Path::new("/dev/full")).expect("open /dev/full");
        for i in 0..100_000 {
            rec.tick(Mono(i));
        }
        assert!(rec.flush().is_err() || !rec.is_recording());
        assert!(!rec.is_recording());
        rec.tick(Mono(1));
    }
}
