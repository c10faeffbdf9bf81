pub mod config;

pub use config::ProvenanceConfig;
