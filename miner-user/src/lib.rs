//! minerwatch: detects cryptominers from kernel events.
//!
//! Data flows one way: kernel → [`sensor`] (load, read, decode) → [`event`]
//! → [`process`] table → [`detect`] → sinks ([`sinks`], [`response`]).
//! Everything from [`event`] on runs without a kernel and replays from a
//! recording.

pub mod background;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod defaults;
pub mod detect;
pub mod enrich;
pub mod event;
pub mod invalid;
pub mod process;
#[cfg(test)]
mod proptests;
pub mod provenance;
pub mod recording;
pub mod response;
pub mod sensor;
pub mod shrink;
pub mod sinks;
#[cfg(test)]
mod test_skip;
pub mod text;
pub mod time;
