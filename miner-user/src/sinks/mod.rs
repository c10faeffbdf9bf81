//! Operator interfaces: where verdicts and events leave the daemon.
//!
//! Each sink has one job and never slows detection: alert lines
//! ([`alerts`], with the optional [`webhook`]), the Prometheus endpoint
//! ([`metrics`] served by [`http`]), the live stream for `minerwatch tail`
//! ([`tail`]), `--print-events` lines ([`print`]) and the replayable
//! recording ([`recorder`]). [`lifecycle`]
//! has what shutdown needs.

pub mod alert_file;
pub mod alerts;
pub mod config;
pub mod http;
pub mod lifecycle;
pub mod line_writer;
pub mod metrics;
pub mod print;
pub mod recorder;
pub mod tail;
pub mod webhook;

use std::path::{Path, PathBuf};

/// Creates the directory `path` is to live in, mode 0700, if it is
/// missing: the alert file and the tail socket are for root alone. An
/// existing directory is left as the operator made it.
pub(crate) fn create_private_parent(path: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    use std::os::unix::fs::DirBuilderExt;
    match path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        Some(dir) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| (dir.to_owned(), e)),
        None => Ok(()),
    }
}
