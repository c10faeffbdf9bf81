//! Counted skips for unit tests, the same protocol as the tests crate's
//! `common::skip`: a line on stderr and one in the file named by
//! `MINERWATCH_SKIP_LOG` (`test<TAB>need<TAB>reason`), which `cargo xtask
//! test` counts as skipped, never passed, and which fails CI when this
//! machine has the named need.

/// Marks the calling test as skipped; the caller returns right after.
/// `need` is one of the names `cargo xtask test` knows how to probe
/// (`root`, `btf`, `dpkg`, `python3`, …).
pub fn skip(test: &str, need: &str, reason: &str) {
    eprintln!("\n!!! SKIPPED {test} (needs {need}): {reason} !!!\n");
    if let Some(path) = std::env::var_os("MINERWATCH_SKIP_LOG") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{test}\t{need}\t{reason}");
        }
    }
}
