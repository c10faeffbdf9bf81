pub mod config;
pub mod verdict;

pub use config::DetectorConfig;
pub use verdict::*;
