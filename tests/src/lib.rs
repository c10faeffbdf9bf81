//! Shared pieces of the end-to-end tests: the simulated miner and pool live
//! in src/bin; tests/ holds the scenarios.
