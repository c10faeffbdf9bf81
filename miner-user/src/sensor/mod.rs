pub mod config;

pub use config::SensorConfig;
