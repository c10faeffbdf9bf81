//! `cargo xtask bench` (filled in with the benchmark issue).
pub fn bench(_quick: bool) -> anyhow::Result<()> {
    anyhow::bail!("bench is not implemented yet")
}
