//! dpkg's record of which package installed which file with which MD5
//! (`/var/lib/dpkg/info/*.md5sums`, lines of `md5  path`).
//!
//! A file is packaged only if the path is listed *and* its MD5 matches: an
//! attacker who overwrites `/usr/bin/ls` gets `hash-mismatch`, not a pass.
//! (MD5 is weak against collisions, but forging a second file for an
//! existing packaged digest is a preimage attack, which MD5 still resists.)
//! Someone with root can rewrite md5sums too; that is outside what a package
//! database can prove, and why the signed allowlist exists.
//!
//! Paths are stored as 64-bit hashes (plus digest and package): a full
//! desktop database has ~90k files, and the index must stay a few MiB. A
//! hash collision could at worst compare a file with another packaged
//! file's digest, which still requires packaged content.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::cache::BoundedCache;
use super::hash::FileKey;
use super::paths::in_root;

const INFO_DIR: &str = "/var/lib/dpkg/info";
const STATUS: &str = "/var/lib/dpkg/status";
const DIVERSIONS: &str = "/var/lib/dpkg/diversions";

/// Top-level directories that usrmerge turned into symlinks into `/usr`:
/// dpkg may list `/bin/ls` while the kernel reports `/usr/bin/ls` (this
/// machine), or the other way round. Both sides are keyed as `usr/...`;
/// the MD5 must still match, so aliasing cannot verify foreign content.
const USRMERGED: &[&[u8]] = &[b"bin", b"sbin", b"lib", b"lib32", b"lib64", b"libx32"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PackageMatch {
    Owned { package: String },
    Mismatch { package: String },
    NotListed,
}

#[derive(Clone, Copy)]
struct Entry {
    path: u64,
    md5: [u8; 16],
    package: u32,
}

pub(crate) struct DpkgIndex {
    entries: Vec<Entry>,
    packages: Vec<String>,
    /// Wall time of the build, for the log (measured, not estimated).
    pub build_seconds: f64,
    pub malformed_lines: usize,
}

impl DpkgIndex {
    /// Reads every md5sums file under `root`. `None`: no dpkg database.
    pub fn build(root: &Path) -> io::Result<Option<DpkgIndex>> {
        let started = Instant::now();
        let dir = match std::fs::read_dir(in_root(root, Path::new(INFO_DIR))) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut index = DpkgIndex {
            entries: Vec::new(),
            packages: Vec::new(),
            build_seconds: 0.0,
            malformed_lines: 0,
        };
        for entry in dir {
            let entry = entry?;
            let name = entry.file_name();
            let Some(package) = name.as_bytes().strip_suffix(b".md5sums") else {
                continue;
            };
            let text = match std::fs::read(entry.path()) {
                Ok(t) => t,
                // removed by a concurrent dpkg run: the next status change rebuilds
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            index.add_md5sums(&String::from_utf8_lossy(package), &text);
        }
        index.entries.sort_unstable_by_key(|e| e.path);
        if let Ok(text) = std::fs::read(in_root(root, Path::new(DIVERSIONS))) {
            index.add_diversions(&text);
        }
        index.build_seconds = started.elapsed().as_secs_f64();
        Ok(Some(index))
    }

    fn add_md5sums(&mut self, package: &str, text: &[u8]) {
        let pkg = self.packages.len() as u32;
        self.packages.push(package.to_string());
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match parse_md5sums_line(line) {
                Some((md5, path)) => self.entries.push(Entry {
                    path: path_key(path),
                    md5,
                    package: pkg,
                }),
                None => self.malformed_lines += 1,
            }
        }
    }

    /// `dpkg-divert` moves a packaged file elsewhere (`/usr/bin/x` →
    /// `/usr/bin/x.distrib`); md5sums still list the original path, so the
    /// new path inherits the original's entries. Groups of three lines:
    /// from, to, diverting package.
    fn add_diversions(&mut self, text: &[u8]) {
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        let mut extra = Vec::new();
        for group in lines.chunks_exact(3) {
            let (from, to) = (path_key(group[0]), path_key(group[1]));
            extra.extend(
                self.entries_for(from)
                    .iter()
                    .map(|e| Entry { path: to, ..*e }),
            );
        }
        if !extra.is_empty() {
            self.entries.extend(extra);
            self.entries.sort_unstable_by_key(|e| e.path);
        }
    }

    fn entries_for(&self, key: u64) -> &[Entry] {
        let start = self.entries.partition_point(|e| e.path < key);
        let end = start + self.entries[start..].partition_point(|e| e.path == key);
        &self.entries[start..end]
    }

    /// `path` is absolute inside the root the index was built from.
    pub fn lookup(&self, path: &Path, md5: &[u8; 16]) -> PackageMatch {
        let entries = self.entries_for(path_key(path.as_os_str().as_bytes()));
        let name = |e: &Entry| {
            self.packages
                .get(e.package as usize)
                .cloned()
                .unwrap_or_default()
        };
        if let Some(e) = entries.iter().find(|e| &e.md5 == md5) {
            return PackageMatch::Owned { package: name(e) };
        }
        match entries.first() {
            Some(e) => PackageMatch::Mismatch { package: name(e) },
            None => PackageMatch::NotListed,
        }
    }

    pub fn files(&self) -> usize {
        self.entries.len()
    }
}

/// `d41d8cd98f00b204e9800998ecf8427e  usr/bin/x` (md5sum's text format; a
/// `*` marks binary mode). Paths may contain spaces.
fn parse_md5sums_line(line: &[u8]) -> Option<([u8; 16], &[u8])> {
    let (hex_md5, rest) = (line.get(..32)?, line.get(32..)?);
    let path = rest
        .strip_prefix(b"  ")
        .or_else(|| rest.strip_prefix(b" *"))?;
    let mut md5 = [0u8; 16];
    hex::decode_to_slice(hex_md5, &mut md5).ok()?;
    (!path.is_empty()).then_some((md5, path))
}

/// FNV-1a of the path without leading slashes, usrmerge-aliased.
fn path_key(path: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let fnv = |h: u64, bytes: &[u8]| {
        bytes
            .iter()
            .fold(h, |h, &b| (h ^ b as u64).wrapping_mul(PRIME))
    };
    let mut p = path;
    while let Some(rest) = p.strip_prefix(b"/") {
        p = rest;
    }
    let first = p.split(|&b| b == b'/').next().unwrap_or_default();
    let mut h = OFFSET;
    if USRMERGED.contains(&first) {
        h = fnv(h, b"usr/");
    }
    fnv(h, p)
}

/// Indexes per root filesystem, built lazily and shared.
///
/// Keyed by the identity of the root's `var/lib/dpkg/status` rather than by
/// the root directory: dpkg rewrites status on every install or upgrade, so
/// the key changes exactly when the index goes stale; and containers of one
/// image (each with its own overlay root) see the same lower-layer status
/// file and share one index.
pub(crate) struct DpkgDbs {
    indexes: Mutex<BoundedCache<FileKey, Option<Arc<DpkgIndex>>>>,
}

/// Distinct package databases kept; a big host database is ~3 MiB, an image's
/// usually a tenth of that.
const MAX_INDEXES: usize = 8;

impl DpkgDbs {
    pub fn new() -> Self {
        DpkgDbs {
            indexes: Mutex::new(BoundedCache::new(MAX_INDEXES)),
        }
    }

    /// The index for `root`, or `None` when `root` has no dpkg database.
    pub fn index_for(&self, root: &Path) -> Option<Arc<DpkgIndex>> {
        let status = std::fs::metadata(in_root(root, Path::new(STATUS))).ok()?;
        let key = FileKey::of(&status);
        // Held across the build on purpose: two workers missing at once
        // would otherwise both read the whole database.
        let mut indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = indexes.get(&key) {
            return found.clone();
        }
        let built = match DpkgIndex::build(root) {
            Ok(i) => i.map(Arc::new),
            Err(e) => {
                log::warn!(
                    "dpkg database under {} unreadable, binaries there count as not packaged: {e}",
                    root.display()
                );
                None
            }
        };
        if let Some(i) = &built {
            log::info!(
                "dpkg index for {}: {} files from {} packages in {:.3}s",
                root.display(),
                i.files(),
                i.packages.len(),
                i.build_seconds
            );
        }
        indexes.insert(key, built.clone());
        built
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5(text: &str) -> [u8; 16] {
        let mut out = [0u8; 16];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    }

    const LS: &str = "7987cf330ff5bb94015dfbb9eae5a99f";
    const OTHER: &str = "00000000000000000000000000000001";

    fn index(md5sums: &[(&str, &str)], diversions: &str) -> DpkgIndex {
        let mut i = DpkgIndex {
            entries: Vec::new(),
            packages: Vec::new(),
            build_seconds: 0.0,
            malformed_lines: 0,
        };
        for (pkg, text) in md5sums {
            i.add_md5sums(pkg, text.as_bytes());
        }
        i.entries.sort_unstable_by_key(|e| e.path);
        i.add_diversions(diversions.as_bytes());
        i
    }

    #[test]
    fn looks_up_by_path_and_md5_with_usrmerge_aliases() {
        let i = index(
            &[
                ("coreutils", &format!("{LS}  bin/ls\n")),
                (
                    "util-linux",
                    &format!("{OTHER}  usr/sbin/x y\nnot a line\n"),
                ),
            ],
            "",
        );
        assert_eq!(i.malformed_lines, 1);
        let owned = PackageMatch::Owned {
            package: "coreutils".into(),
        };
        let cases: &[(&str, &str, PackageMatch)] = &[
            ("/bin/ls", LS, owned.clone()),
            ("/usr/bin/ls", LS, owned.clone()),
            (
                "/usr/bin/ls",
                OTHER,
                PackageMatch::Mismatch {
                    package: "coreutils".into(),
                },
            ),
            (
                "/sbin/x y",
                OTHER,
                PackageMatch::Owned {
                    package: "util-linux".into(),
                },
            ),
            ("/usr/local/bin/ls", LS, PackageMatch::NotListed), // same bytes, unowned path
            ("/usr/bin/lsx", LS, PackageMatch::NotListed),
        ];
        for (path, sum, want) in cases {
            assert_eq!(&i.lookup(Path::new(path), &md5(sum)), want, "{path}");
        }
    }

    #[test]
    fn diverted_files_inherit_the_original_entry() {
        let i = index(
            &[
                ("postgresql-common", &format!("{LS}  usr/bin/pg_config\n")),
                ("libpq-dev", &format!("{OTHER}  usr/bin/pg_config\n")),
            ],
            "/usr/bin/pg_config\n/usr/bin/pg_config.libpq-dev\npostgresql-common\n",
        );
        assert_eq!(
            i.lookup(Path::new("/usr/bin/pg_config.libpq-dev"), &md5(OTHER)),
            PackageMatch::Owned {
                package: "libpq-dev".into()
            }
        );
        assert_eq!(
            i.lookup(Path::new("/usr/bin/pg_config"), &md5(LS)),
            PackageMatch::Owned {
                package: "postgresql-common".into()
            }
        );
    }

    #[test]
    fn parses_md5sums_lines() {
        assert_eq!(
            parse_md5sums_line(format!("{LS}  bin/ls").as_bytes()),
            Some((md5(LS), &b"bin/ls"[..]))
        );
        assert_eq!(
            parse_md5sums_line(format!("{LS} *bin/ls").as_bytes()),
            Some((md5(LS), &b"bin/ls"[..]))
        );
        for bad in [
            "",
            "zz",
            &format!("{LS}  "),
            &format!("{LS} bin/ls"),
            &format!("g{}  x", &LS[1..]),
        ] {
            assert_eq!(parse_md5sums_line(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_root_without_dpkg_has_no_index() {
        let root = tempfile::tempdir().unwrap();
        assert!(DpkgIndex::build(root.path()).unwrap().is_none());
        assert!(DpkgDbs::new().index_for(root.path()).is_none());
    }
}
