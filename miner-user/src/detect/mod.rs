//! Detection: a pure state machine from [`crate::event::Event`]s to
//! [`Verdict`]s.
//!
//! - [`protocol`]: what a flow's bytes speak: pool protocol or not, through
//!   proxies, WebSocket and TLS ([`stratum`] is its application classifier).
//! - [`cmdline`]: recognises miner command lines.
//! - [`cpu`]: sliding CPU history and the "sustained" judgement.
//! - [`fingerprint`]: the RandomX shape in saved MXCSR values, and kernel
//!   hints of mining set-up.
//! - [`detector`]: the state machine (process evidence, inheritance).
//! - [`chain`]: a verdict's ancestors (the infection chain).
//! - `rules`: which evidence makes which verdict.
//! - [`verdict`]: what comes out.

pub mod chain;
pub mod cmdline;
pub mod config;
pub mod cpu;
pub mod detector;
pub mod fingerprint;
pub mod protocol;
mod rules;
pub mod verdict;

pub use protocol::stratum;

#[cfg(test)]
mod protocol_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fingerprint;
#[cfg(test)]
mod tests_image;

pub use chain::{ChainConfig, ChainLink};
pub use config::DetectorConfig;
pub use detector::{Detector, DetectorStats, Input};
pub use stratum::{Protocol, classify};
pub use verdict::*;
