//! Property tests of every parser of outside input reachable through the
//! crate's API: arbitrary bytes never panic, and each parser keeps its
//! promises (round trips, rejections, classifications that do not move
//! under whitespace and field order). Parsers behind private modules have
//! their property tests beside them (`process/procfs/props.rs`,
//! `provenance/props.rs`).
//!
//! Case counts are set per property (`cases(N)`): large for cheap pure
//! parsers, smaller where a case builds files or signs data. A panic in
//! any case fails its test, so a green run is "N cases, 0 panics".

mod config;
mod decode;
mod stratum;
mod text;

/// A proptest configuration running `n` cases, no persisted regressions
/// (the source tree stays clean; a failure prints its minimal input).
pub(crate) fn cases(n: u32) -> proptest::prelude::ProptestConfig {
    proptest::prelude::ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    }
}
