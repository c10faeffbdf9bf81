//! Detection: a pure state machine from [`crate::event::Event`]s to
//! [`Verdict`]s.
//!
//! - [`stratum`]: classifies a flow's first bytes (pool protocol or not).
//! - [`cmdline`]: recognises miner command lines.
//! - [`cpu`]: sliding CPU history and the "sustained" judgement.
//! - [`fingerprint`]: the RandomX shape in saved MXCSR values, and kernel
//!   hints of mining set-up.
//! - [`detector`]: the state machine (process evidence, inheritance).
//! - `rules`: which evidence makes which verdict.
//! - [`verdict`]: what comes out.

pub mod cmdline;
pub mod config;
pub mod cpu;
pub mod detector;
pub mod fingerprint;
mod rules;
pub mod stratum;
pub mod verdict;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fingerprint;

pub use config::DetectorConfig;
pub use detector::{Detector, DetectorStats, Input};
pub use stratum::{Protocol, classify};
pub use verdict::*;
