//! `minerwatch check PATH…`: the provenance verdict of files, offline, as
//! the daemon would judge them. Usable in CI or an image build to fail on
//! unverified binaries.
//!
//! Exit code: 0 all verified, 1 any unverified, 2 an error (unreadable path,
//! an allowlist that cannot be trusted). Errors win: a refused allowlist
//! makes every verdict after it less than what was asked for.
//! `/proc/PID/exe` checks that running process (memfd, deleted, its root).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::event::{Provenance, Reason};
use crate::provenance::{ProvenanceConfig, Verifier};

pub const EXIT_VERIFIED: i32 = 0;
pub const EXIT_UNVERIFIED: i32 = 1;
pub const EXIT_ERROR: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("writing the report failed")]
    Write(#[from] io::Error),
}

/// Checks `paths` and writes one line per path (human or JSON lines).
/// Returns the exit code; `Err` only when the report cannot be written.
pub fn check(
    paths: &[PathBuf],
    cfg: &ProvenanceConfig,
    json: bool,
    out: &mut impl Write,
) -> Result<i32, CheckError> {
    let mut code = EXIT_VERIFIED;
    let verifier = match Verifier::new(cfg) {
        Ok(v) => v,
        Err(e) => {
            // Still check the files, without the allowlist: the user sees
            // both what is wrong with it and what it would have had to cover.
            write_error(out, json, None, &chain(&e))?;
            code = EXIT_ERROR;
            Verifier::without_allowlist(cfg)
        }
    };
    for path in paths {
        match verifier.check_path(path) {
            Ok(p) => {
                write_verdict(out, json, path, &p)?;
                let this = if p.reasons.contains(&Reason::Unreadable) {
                    EXIT_ERROR
                } else if p.is_verified() {
                    EXIT_VERIFIED
                } else {
                    EXIT_UNVERIFIED
                };
                code = code.max(this);
            }
            Err(e) => {
                write_error(out, json, Some(path), &chain(&e))?;
                code = EXIT_ERROR;
            }
        }
    }
    Ok(code)
}

/// `verified    /usr/bin/python3 -> /usr/bin/python3.11  packaged (python3.11-minimal)  sha256 …`
fn write_verdict(out: &mut impl Write, json: bool, input: &Path, p: &Provenance) -> io::Result<()> {
    if json {
        let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert("input".into(), json!(input.to_string_lossy()));
        }
        return writeln!(out, "{v}");
    }
    let verdict = if p.is_verified() {
        "verified"
    } else {
        "unverified"
    };
    let input = input.to_string_lossy();
    let shown = match p.path.as_deref() {
        Some(resolved) if resolved != input => format!("{input} -> {resolved}"),
        _ => input.into_owned(),
    };
    let reasons: Vec<String> = p.reasons.iter().map(|r| reason_name(*r)).collect();
    let mut line = format!("{verdict:<10}  {shown}  {}", reasons.join(","));
    if let Some(pkg) = &p.package {
        line.push_str(&format!(" ({pkg})"));
    }
    if let Some(sha) = &p.sha256 {
        line.push_str(&format!("  sha256 {sha}"));
    }
    writeln!(out, "{line}")
}

fn write_error(
    out: &mut impl Write,
    json: bool,
    input: Option<&Path>,
    message: &str,
) -> io::Result<()> {
    if json {
        let mut v = json!({ "error": message });
        if let Some(p) = input {
            v["input"] = json!(p.to_string_lossy());
        }
        return writeln!(out, "{v}");
    }
    match input {
        Some(p) => writeln!(out, "{:<10}  {}  {message}", "error", p.display()),
        None => writeln!(out, "{:<10}  {message}", "error"),
    }
}

/// The documented reason string (`not-packaged`).
fn reason_name(r: Reason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{r:?}"))
}

/// The error and its causes on one line: the cause (ENOENT, EACCES) is
/// what tells the user what to fix.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn run(paths: &[PathBuf], cfg: &ProvenanceConfig, json: bool) -> (i32, String) {
        let mut out = Vec::new();
        let code = check(paths, cfg, json, &mut out).unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    fn cfg() -> ProvenanceConfig {
        ProvenanceConfig {
            rpm: false,
            ..Default::default()
        }
    }

    /// A non-packaged executable in a visible temp dir (under /tmp).
    fn dropped() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix("mw-check")
            .tempdir()
            .unwrap();
        let p = dir.path().join("xmrig");
        std::fs::write(&p, b"\x7fELF not really").unwrap();
        (dir, p)
    }

    #[test]
    fn exit_codes_follow_the_worst_verdict() {
        let (_d, bad) = dropped();
        let packaged = PathBuf::from("/usr/bin/ls");
        let have_dpkg = Path::new("/var/lib/dpkg/status").exists();
        if have_dpkg {
            let (code, out) = run(std::slice::from_ref(&packaged), &cfg(), false);
            assert_eq!(code, EXIT_VERIFIED, "{out}");
            assert!(
                out.starts_with("verified") && out.contains("packaged (coreutils)"),
                "{out}"
            );
        }
        let (code, out) = run(&[packaged.clone(), bad.clone()], &cfg(), false);
        assert_eq!(code, EXIT_UNVERIFIED, "{out}");
        assert!(out.contains("not-packaged,writable-dir"), "{out}");
        let (code, out) = run(
            &[bad, PathBuf::from("/nonexistent/x"), packaged],
            &cfg(),
            false,
        );
        assert_eq!(code, EXIT_ERROR);
        assert!(
            out.contains("error       /nonexistent/x  cannot open /nonexistent/x: No such file"),
            "{out}"
        );
        assert_eq!(out.lines().count(), 3, "every path reported: {out}");
    }

    #[test]
    fn json_lines_carry_the_input_and_the_provenance() {
        let (_d, bad) = dropped();
        let (code, out) = run(&[bad.clone(), PathBuf::from("/nonexistent")], &cfg(), true);
        assert_eq!(code, EXIT_ERROR);
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["input"], json!(bad.to_string_lossy()));
        assert_eq!(lines[0]["verdict"], "unverified");
        assert_eq!(lines[0]["reasons"], json!(["not-packaged", "writable-dir"]));
        assert_eq!(lines[0]["sha256"].as_str().map(str::len), Some(64));
        assert_eq!(lines[1]["input"], "/nonexistent");
        assert!(lines[1]["error"].as_str().unwrap().contains("No such file"));
    }

    #[test]
    fn a_refused_allowlist_is_reported_and_the_files_still_checked() {
        let (dir, bad) = dropped();
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let list = dir.path().join("allowlist");
        let sha = crate::provenance::Verifier::without_allowlist(&cfg())
            .check_path(&bad)
            .unwrap()
            .sha256
            .unwrap();
        std::fs::write(&list, format!("{sha} xmrig\n")).unwrap();
        let signed_by_someone_else =
            SigningKey::from_bytes(&[10u8; 32]).sign(&std::fs::read(&list).unwrap());
        std::fs::write(
            dir.path().join("allowlist.sig"),
            signed_by_someone_else.to_bytes(),
        )
        .unwrap();
        let with_list = ProvenanceConfig {
            allowlist: Some(list.clone()),
            allowlist_public_key: Some(hex::encode(key.verifying_key().to_bytes())),
            ..cfg()
        };
        let (code, out) = run(std::slice::from_ref(&bad), &with_list, false);
        assert_eq!(code, EXIT_ERROR, "{out}");
        assert!(out.lines().next().unwrap().contains("refused"), "{out}");
        assert!(
            out.lines().nth(1).unwrap().starts_with("unverified"),
            "{out}"
        );
        // Properly signed, the same list verifies the file.
        std::fs::write(
            dir.path().join("allowlist.sig"),
            key.sign(&std::fs::read(&list).unwrap()).to_bytes(),
        )
        .unwrap();
        let (code, out) = run(&[bad], &with_list, false);
        assert_eq!(code, EXIT_VERIFIED, "{out}");
        assert!(out.contains("allowlisted"), "{out}");
    }
}
