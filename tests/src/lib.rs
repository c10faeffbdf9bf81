//! Shared pieces of the end-to-end tests: the simulated miner and pool live
//! in src/bin; tests/ holds the scenarios.

/// The value after `flag` on a helper binary's command line
/// (`--seconds 30`), if the flag is there with a value.
pub fn flag(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn flag_values_by_name() {
        let args: Vec<String> = ["bin", "--seconds", "30", "--tls", "--addr"]
            .map(String::from)
            .into();
        assert_eq!(super::flag(&args, "--seconds").as_deref(), Some("30"));
        assert_eq!(super::flag(&args, "--tls").as_deref(), Some("--addr"));
        assert_eq!(super::flag(&args, "--addr"), None, "no value after it");
        assert_eq!(super::flag(&args, "--log"), None);
    }
}
