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
