//! The rpm database, queried through the `rpm` command.
//!
//! Parsing the database ourselves means tracking three storage formats
//! (Berkeley DB, NDB, SQLite); the `rpm` binary already does. It is only
//! used where both the command and a database exist, with a timeout because
//! a locked database can make `rpm` wait indefinitely.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::dpkg::PackageMatch;
use super::hash::Digests;
use super::paths::in_root;

/// Database locations, old and new (rpm ≥ 4.16 moved it).
const DB_DIRS: &[&str] = &["/var/lib/rpm", "/usr/lib/sysimage/rpm"];

/// `FILEDIGESTALGO` values (RFC 4880 hash ids) we can compare.
const ALGO_MD5: u32 = 1;
const ALGO_SHA256: u32 = 8;

pub(crate) struct Rpm {
    binary: Option<PathBuf>,
    timeout: Duration,
}

impl Rpm {
    pub fn detect(enabled: bool, timeout: Duration) -> Rpm {
        let binary = if enabled { find_in_path("rpm") } else { None };
        Rpm { binary, timeout }
    }

    #[cfg(test)]
    pub fn available(&self) -> bool {
        self.binary.is_some()
    }

    /// `None`: rpm does not apply to this root (no command or no database).
    pub fn lookup(&self, root: &Path, path: &Path, digests: &Digests) -> Option<PackageMatch> {
        let binary = self.binary.as_ref()?;
        if !DB_DIRS.iter().any(|d| in_root(root, Path::new(d)).is_dir()) {
            return None;
        }
        let mut cmd = Command::new(binary);
        if root != Path::new("/") {
            cmd.arg("--root").arg(root);
        }
        cmd.args([
            "-qf",
            "--qf",
            "@@%{NAME}\t%{FILEDIGESTALGO}\n[%{FILENAMES}\t%{FILEDIGESTS}\n]",
            "--",
        ])
        .arg(path);
        let out = run_with_timeout(cmd, self.timeout)?;
        Some(match_output(&out, path.as_os_str().as_bytes(), digests))
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// stdout of a command that exited within `timeout`; killed otherwise.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Option<Vec<u8>> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Read on a thread: a package's file list can exceed the pipe buffer,
    // and rpm would block writing it while we wait for it to exit.
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                log::warn!(
                    "rpm query timed out after {timeout:?}; counting the file as not packaged by rpm"
                );
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    reader.join().ok()?.ok()
}

/// Output: per owning package `@@NAME\tALGO` then `path\tdigest` lines.
pub(super) fn match_output(out: &[u8], path: &[u8], digests: &Digests) -> PackageMatch {
    let mut result = PackageMatch::NotListed;
    let mut package = String::new();
    let mut algo = ALGO_MD5; // rpm < 4.6 has no FILEDIGESTALGO and used MD5
    for line in out.split(|&b| b == b'\n') {
        if let Some(header) = line.strip_prefix(b"@@") {
            let mut fields = header.split(|&b| b == b'\t');
            package = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
            algo = fields
                .next()
                .and_then(|a| std::str::from_utf8(a).ok()?.parse().ok())
                .unwrap_or(ALGO_MD5);
            continue;
        }
        let Some(tab) = line.iter().rposition(|&b| b == b'\t') else {
            continue;
        };
        if &line[..tab] != path {
            continue;
        }
        let want = String::from_utf8_lossy(&line[tab + 1..]).to_ascii_lowercase();
        let have = match algo {
            ALGO_SHA256 => Some(hex::encode(digests.sha256)),
            ALGO_MD5 => digests.md5.map(hex::encode),
            _ => None,
        };
        if have.as_deref() == Some(want.as_str()) {
            return PackageMatch::Owned { package };
        }
        result = PackageMatch::Mismatch {
            package: package.clone(),
        };
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_rpm_is_skipped() {
        let disabled = Rpm::detect(false, Duration::from_secs(1));
        assert!(!disabled.available());
        let d = Digests {
            sha256: [0; 32],
            md5: None,
        };
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            disabled.lookup(root.path(), Path::new("/usr/bin/ls"), &d),
            None
        );
        // Enabled on this machine: no rpm command, or (elsewhere) no database in this root.
        let enabled = Rpm::detect(true, Duration::from_secs(1));
        assert_eq!(
            enabled.lookup(root.path(), Path::new("/usr/bin/ls"), &d),
            None
        );
    }

    #[test]
    fn matches_query_output_by_path_and_algorithm() {
        let d = Digests {
            sha256: [0xab; 32],
            md5: Some([0xcd; 16]),
        };
        let sha = hex::encode([0xab; 32]);
        let out = format!(
            "@@coreutils\t8\n/usr/bin/cat\t{}\n/usr/bin/ls\t{sha}\n@@old\t1\n/usr/bin/ls\t{}\n",
            "0".repeat(64),
            hex::encode([0xcd; 16])
        );
        assert_eq!(
            match_output(out.as_bytes(), b"/usr/bin/ls", &d),
            PackageMatch::Owned {
                package: "coreutils".into()
            }
        );
        let tampered = Digests {
            sha256: [1; 32],
            md5: Some([1; 16]),
        };
        assert_eq!(
            match_output(out.as_bytes(), b"/usr/bin/ls", &tampered),
            PackageMatch::Mismatch {
                package: "old".into()
            }
        );
        assert_eq!(
            match_output(b"", b"/usr/bin/ls", &d),
            PackageMatch::NotListed
        );
    }

    #[test]
    fn a_command_past_its_timeout_is_killed() {
        let mut cmd = Command::new("sleep");
        cmd.arg("5");
        let started = Instant::now();
        assert_eq!(run_with_timeout(cmd, Duration::from_millis(100)), None);
        assert!(started.elapsed() < Duration::from_secs(2));
        let mut cmd = Command::new("echo");
        cmd.arg("hi");
        assert_eq!(
            run_with_timeout(cmd, Duration::from_secs(5)),
            Some(b"hi\n".to_vec())
        );
    }
}
