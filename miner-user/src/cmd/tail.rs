//! Placeholder until the tail client lands.
#[derive(Debug, clap::Args)]
pub struct TailArgs {}
