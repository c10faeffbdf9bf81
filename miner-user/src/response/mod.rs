pub mod config;

pub use config::ResponseConfig;
