//! The append-only alert file: one JSON object per line, every line whole.
//!
//! A reader (a SIEM shipper, `jq`, a test) must never meet half a line.
//! Lines are written with one `write(2)` on an O_APPEND file and synced;
//! a write that fails part-way (disk full) is cut back off. A crash or a
//! power loss can still leave a partial last line: the next start cuts it
//! off, keeps its bytes in `<file>.torn` for the record, and says so.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::alerts::AlertError;
use super::line_writer::LineOut;

/// At most this much of a torn line is kept in `<file>.torn`.
const TORN_KEEP: u64 = 1 << 20;

pub struct AlertFile {
    path: PathBuf,
    file: File,
}

impl AlertFile {
    /// Opens (creating it mode 0600, and its directory mode 0700) and
    /// repairs a torn last line.
    pub fn open(path: &Path) -> Result<AlertFile, AlertError> {
        crate::sinks::create_private_parent(path)
            .map_err(|(path, source)| AlertError::CreateDir { path, source })?;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .read(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| AlertError::Open {
                path: path.to_owned(),
                source,
            })?;
        let mut f = AlertFile {
            path: path.to_owned(),
            file,
        };
        f.repair_torn_tail()?;
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Cut an incomplete last line (no newline) back to the end of the
    /// last whole line, keeping its bytes in `<file>.torn`.
    fn repair_torn_tail(&mut self) -> Result<(), AlertError> {
        let len = self
            .file
            .metadata()
            .map_err(|source| self.write_err(source))?
            .len();
        if len == 0 {
            return Ok(());
        }
        let mut last = [0u8];
        self.file
            .read_exact_at(&mut last, len - 1)
            .map_err(|source| self.write_err(source))?;
        if last[0] == b'\n' {
            return Ok(());
        }
        // Find the last newline, reading backwards.
        let mut end = len;
        let cut = loop {
            let start = end.saturating_sub(64 * 1024);
            let mut buf = vec![0u8; (end - start) as usize];
            self.file
                .read_exact_at(&mut buf, start)
                .map_err(|source| self.write_err(source))?;
            if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
                break start + i as u64 + 1;
            }
            if start == 0 {
                break 0;
            }
            end = start;
        };
        let torn_len = len - cut;
        let mut fragment = vec![0u8; torn_len.min(TORN_KEEP) as usize];
        self.file
            .read_exact_at(&mut fragment, cut)
            .map_err(|source| self.write_err(source))?;
        fragment.push(b'\n');
        let torn = torn_path(&self.path);
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&torn)
            .and_then(|mut t| t.write_all(&fragment))
            .map_err(|source| AlertError::Write {
                path: torn.clone(),
                source,
            })?;
        self.file
            .set_len(cut)
            .map_err(|source| self.write_err(source))?;
        log::warn!(
            "alert file {}: removed an incomplete last line ({torn_len} bytes) left by a crash or a full disk; its bytes are in {}",
            self.path.display(),
            torn.display()
        );
        Ok(())
    }

    /// One `write(2)` of the whole line on an O_APPEND file: concurrent
    /// writers (a second daemon, logrotate's copytruncate) cannot interleave
    /// inside it. Then fdatasync, because an alert lost in a crash is the
    /// one that mattered. A write that fails part-way is cut back off, so
    /// the file holds whole lines only.
    pub fn append(&mut self, line: &[u8]) -> Result<(), AlertError> {
        let before = self.file.metadata().map(|m| m.len()).ok();
        let wrote = loop {
            match self.file.write(line) {
                Ok(n) => break Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        let failure = match wrote {
            Ok(n) if n == line.len() => None,
            Ok(n) => Some(AlertError::ShortWrite {
                path: self.path.clone(),
                wrote: n,
                len: line.len(),
            }),
            Err(source) => Some(self.write_err(source)),
        };
        if let Some(e) = failure {
            if let Some(b) = before {
                let _ = self.file.set_len(b);
            }
            return Err(e);
        }
        self.file
            .sync_data()
            .map_err(|source| self.write_err(source))
    }

    fn write_err(&self, source: io::Error) -> AlertError {
        AlertError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

impl LineOut for AlertFile {
    fn write_line(&mut self, line: &[u8]) -> Result<(), String> {
        self.append(line).map_err(|e| e.to_string())
    }
}

/// `alerts.jsonl` → `alerts.jsonl.torn`.
pub fn torn_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".torn");
    PathBuf::from(p)
}
