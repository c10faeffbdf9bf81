//! The verdict on one executable: read it once, ask every source that can
//! vouch for it, and say why when none does.
//!
//! Order of judgement:
//! 1. content: dpkg (then rpm) for the path it sits at; the signed
//!    allowlist for anything not packaged;
//! 2. fileless (`memfd`) and `deleted` binaries are unverified whatever their
//!    content, because nothing on disk backs what is running;
//! 3. an unverified binary collects location reasons (`writable-dir`,
//!    `hidden-dir`). A verified one does not: its content is vouched for.

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::allowlist::Allowlist;
use super::cache::BoundedCache;
use super::dpkg::{DpkgDbs, PackageMatch};
use super::hash::{Digests, FileKey, hash_reader};
use super::ima::{Ima, ImaStatus};
use super::overlay;
use super::paths::{ExeLink, in_root, location_reasons, resolve_in_root};
use super::rpm::Rpm;
use super::{ProvenanceConfig, ProvenanceError};
use crate::event::{ExeId, Provenance, ProvenanceVerdict, Reason, VouchSource, VouchedBy};

/// What one check cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckStats {
    /// Wall time of the whole check (hashing, lookups), seconds.
    pub seconds: f64,
    /// 0 when the digests came from the cache.
    pub bytes_hashed: u64,
    /// The binary was not read: its digests or verdict were cached.
    pub cache_hit: bool,
}

/// A root filesystem, held open: a container's root stays reachable through
/// the fd even if the process we found it through exits mid-check.
struct Root {
    /// Usable as a path prefix (`/proc/<our pid>/fd/N`, valid for children
    /// such as `rpm --root` too, unlike `/proc/self`).
    prefix: PathBuf,
    /// (dev, ino) of the root directory.
    key: (u64, u64),
    _fd: Option<File>,
}

impl Root {
    fn of_pid(proc_root: &Path, pid: u32) -> io::Result<Root> {
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(proc_root.join(pid.to_string()).join("root"))?;
        let meta = fd.metadata()?;
        Ok(Root {
            prefix: PathBuf::from(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                fd.as_raw_fd()
            )),
            key: (meta.dev(), meta.ino()),
            _fd: Some(fd),
        })
    }

    fn at(path: &Path) -> io::Result<Root> {
        let meta = std::fs::metadata(path)?;
        Ok(Root {
            prefix: path.to_path_buf(),
            key: (meta.dev(), meta.ino()),
            _fd: None,
        })
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct VerdictKey {
    file: FileKey,
    root: (u64, u64),
    link: ExeLink,
}

/// Why a check gave up.
enum Miss {
    /// The process exited (or is a zombie): try the path it exec'd.
    Gone,
    /// /proc/PID/exe is not the file the kernel reported: the pid was
    /// reused, or the file was replaced between exec and now.
    NotTheExe,
    Io(io::Error),
}

fn classify(e: io::Error) -> Miss {
    if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) {
        Miss::Gone
    } else {
        Miss::Io(e)
    }
}

pub struct Verifier {
    proc_root: PathBuf,
    dpkg: Option<DpkgDbs>,
    rpm: Rpm,
    ima: Ima,
    allowlist: Option<Allowlist>,
    digests: Mutex<BoundedCache<FileKey, Digests>>,
    verdicts: Mutex<BoundedCache<VerdictKey, Provenance>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking worker leaves a cache that is still consistent (entries
    // are inserted whole), so poisoning is not a reason to stop verifying.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Verifier {
    /// Fails when an allowlist is configured but cannot be trusted (unread-
    /// able, bad signature). The daemon logs that and continues with
    /// [`Verifier::without_allowlist`]; `check` reports it.
    pub fn new(cfg: &ProvenanceConfig) -> Result<Verifier, ProvenanceError> {
        let mut v = Verifier::without_allowlist(cfg);
        if let (Some(list), Some(sig)) = (&cfg.allowlist, cfg.signature_path()) {
            let key = cfg
                .allowlist_public_key
                .as_deref()
                .ok_or(ProvenanceError::MissingPublicKey)?;
            let loaded = Allowlist::load(list, &sig, key)?;
            log::info!(
                "allowlist {}: {} hashes, signature verified",
                list.display(),
                loaded.len()
            );
            v.allowlist = Some(loaded);
        }
        Ok(v)
    }

    pub fn without_allowlist(cfg: &ProvenanceConfig) -> Verifier {
        Verifier {
            proc_root: PathBuf::from(crate::defaults::PROC_PATH),
            dpkg: cfg.dpkg.then(DpkgDbs::new),
            rpm: Rpm::detect(cfg.rpm, Duration::from_millis(cfg.rpm_timeout_ms)),
            ima: Ima::detect(),
            allowlist: None,
            digests: Mutex::new(BoundedCache::new(cfg.cache_size)),
            verdicts: Mutex::new(BoundedCache::new(cfg.cache_size)),
        }
    }

    /// Replaces the signed allowlist (tests; a config reload).
    pub fn set_allowlist(&mut self, allowlist: Option<Allowlist>) {
        self.allowlist = allowlist;
    }

    pub fn allowlist(&self) -> Option<&Allowlist> {
        self.allowlist.as_ref()
    }

    /// Builds the host's package index now. Otherwise the first exec after
    /// start waits for it (0.2-0.4 s for dpkg's 90k files on a desktop-sized
    /// install), and every job queued behind that exec waits too.
    pub fn warm_up(&self) {
        if let (Some(dbs), Some(root)) = (&self.dpkg, self.host_root()) {
            let _ = dbs.index_for(&root.prefix);
        }
    }

    /// The verdict on what process `pid` runs. `exe` is the kernel's view at
    /// exec; if /proc/PID/exe is another file now, the answer is
    /// `unreadable` rather than a verdict on a stranger's binary.
    pub fn check_pid(&self, pid: u32, exe: &ExeId, filename: &str) -> Provenance {
        self.check_pid_stats(pid, exe, filename).0
    }

    pub fn check_pid_stats(
        &self,
        pid: u32,
        exe: &ExeId,
        filename: &str,
    ) -> (Provenance, CheckStats) {
        let started = Instant::now();
        let mut stats = CheckStats::default();
        let prov = match self.try_check_pid(pid, exe, &mut stats) {
            Ok(p) => p,
            // Short-lived processes (an exec storm of /bin/true) are gone
            // before a worker gets to them: judge the path they exec'd if it
            // is still the same file.
            Err(Miss::Gone) => self
                .check_exited(exe, filename, &mut stats)
                .unwrap_or_else(|| unreadable(filename)),
            Err(Miss::NotTheExe) => unreadable(filename),
            Err(Miss::Io(e)) => {
                log::debug!(
                    "provenance of pid {pid} ({}) unreadable: {e}",
                    crate::text::escape(filename)
                );
                unreadable(filename)
            }
        };
        stats.seconds = started.elapsed().as_secs_f64();
        (prov, stats)
    }

    fn try_check_pid(
        &self,
        pid: u32,
        exe: &ExeId,
        stats: &mut CheckStats,
    ) -> Result<Provenance, Miss> {
        let dir = self.proc_root.join(pid.to_string());
        let exe_link = dir.join("exe");
        let meta = std::fs::metadata(&exe_link).map_err(classify)?;
        if !same_file(exe, &meta)
            && !overlay::same_path(&exe_link, exe.dev, exe.ino, &[&dir.join("mountinfo")])
        {
            return Err(Miss::NotTheExe);
        }
        let link = std::fs::read_link(&exe_link).map_err(classify)?;
        let kind = ExeLink::parse(&link, meta.nlink());
        // A stat is enough to look the verdict up; the root is only held
        // open (three syscalls more) when it must be read.
        let root_meta = std::fs::metadata(dir.join("root")).map_err(classify)?;
        let root_key = (root_meta.dev(), root_meta.ino());
        let open_root = || {
            let root = Root::of_pid(&self.proc_root, pid)?;
            if root.key != root_key {
                return Err(io::Error::other("process changed root while being checked"));
            }
            Ok(root)
        };
        let key = FileKey::of(&meta);
        let prov = self.judge_file(
            root_key,
            open_root,
            kind,
            key,
            || File::open(&exe_link),
            stats,
        )?;
        // The links were read one by one; had the pid been recycled in
        // between, the exe would now be another file.
        match std::fs::metadata(&exe_link) {
            Ok(m) if (m.dev(), m.ino()) != (key.dev, key.ino) => Err(Miss::NotTheExe),
            _ => Ok(prov),
        }
    }

    fn check_exited(
        &self,
        exe: &ExeId,
        filename: &str,
        stats: &mut CheckStats,
    ) -> Option<Provenance> {
        if exe.unknown || exe.memfd || !filename.starts_with('/') {
            return None;
        }
        let root = self.host_root()?;
        let resolved = resolve_in_root(&root.prefix, Path::new(filename)).ok()?;
        let full = in_root(&root.prefix, &resolved);
        let meta = std::fs::metadata(&full).ok()?;
        let host_mounts = self.proc_root.join("1/mountinfo");
        if !same_file(exe, &meta) && !overlay::same_path(&full, exe.dev, exe.ino, &[&host_mounts]) {
            return None; // a container's path, or replaced since
        }
        let key = FileKey::of(&meta);
        self.judge_file(
            root.key,
            || Ok(root),
            ExeLink::File(resolved),
            key,
            || File::open(&full),
            stats,
        )
        .ok()
    }

    /// The host's root: pid 1's (we may run in a container with hostPID),
    /// else our own.
    fn host_root(&self) -> Option<Root> {
        Root::of_pid(&self.proc_root, 1)
            .or_else(|_| Root::at(Path::new("/")))
            .ok()
    }

    /// The verdict on a file, offline. `/proc/PID/exe` judges that process
    /// (its root, memfd, deleted) as the daemon would.
    pub fn check_path(&self, path: &Path) -> Result<Provenance, ProvenanceError> {
        if let Some(pid) = proc_exe_pid(path) {
            return Ok(self.check_pid(
                pid,
                &ExeId {
                    unknown: true,
                    ..Default::default()
                },
                "",
            ));
        }
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            let cwd = std::env::current_dir().map_err(|source| ProvenanceError::Open {
                path: path.to_path_buf(),
                source,
            })?;
            cwd.join(path)
        };
        self.check_path_in(Path::new("/"), &abs)
    }

    /// The verdict on `path` as if `root` were `/` (an image or container
    /// root on disk): symlinks resolve inside it, its package database
    /// judges.
    pub fn check_path_in(&self, root: &Path, path: &Path) -> Result<Provenance, ProvenanceError> {
        let open_err = |source| ProvenanceError::Open {
            path: path.to_path_buf(),
            source,
        };
        let root = Root::at(root).map_err(open_err)?;
        let resolved = resolve_in_root(&root.prefix, path).map_err(open_err)?;
        let full = in_root(&root.prefix, &resolved);
        let meta = std::fs::metadata(&full).map_err(open_err)?;
        if !meta.is_file() {
            return Err(ProvenanceError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mut stats = CheckStats::default();
        let key = FileKey::of(&meta);
        self.judge_file(
            root.key,
            || Ok(root),
            ExeLink::File(resolved),
            key,
            || File::open(&full),
            &mut stats,
        )
        .map_err(|m| match m {
            Miss::Io(e) => open_err(e),
            Miss::Gone => open_err(io::Error::from(io::ErrorKind::NotFound)),
            Miss::NotTheExe => open_err(io::Error::other("file replaced while being checked")),
        })
    }

    /// Digests from the cache or one read of `open()`, then the verdict.
    fn judge_file(
        &self,
        root_key: (u64, u64),
        open_root: impl FnOnce() -> io::Result<Root>,
        link: ExeLink,
        key: FileKey,
        open: impl FnOnce() -> io::Result<File>,
        stats: &mut CheckStats,
    ) -> Result<Provenance, Miss> {
        let vkey = VerdictKey {
            file: key,
            root: root_key,
            link,
        };
        if let Some(p) = lock(&self.verdicts).get(&vkey) {
            stats.cache_hit = true;
            return Ok(p.clone());
        }
        let cached = lock(&self.digests).get(&key).copied();
        let digests = match cached {
            Some(d) => {
                stats.cache_hit = true;
                d
            }
            None => {
                let mut file = open().map_err(classify)?;
                let meta = file.metadata().map_err(Miss::Io)?;
                if (meta.dev(), meta.ino()) != (key.dev, key.ino) {
                    return Err(Miss::NotTheExe);
                }
                let (d, n) = hash_reader(&mut file, self.dpkg.is_some()).map_err(Miss::Io)?;
                stats.bytes_hashed = n;
                if self.ima.status(&file) == ImaStatus::PresentUnverifiable {
                    log::debug!(
                        "{}: IMA xattr present but not verifiable here; ignored",
                        vkey.link.display()
                    );
                }
                lock(&self.digests).insert(key, d);
                d
            }
        };
        let root = open_root().map_err(classify)?;
        let prov = self.judge(&root, &vkey.link, &digests);
        lock(&self.verdicts).insert(vkey, prov.clone());
        Ok(prov)
    }

    fn judge(&self, root: &Root, link: &ExeLink, digests: &Digests) -> Provenance {
        let mut vouched = Vec::new();
        let mut against = Vec::new();
        let mut package = None;
        let mut vouched_by = None;
        let path = link.path();
        match path.map(|p| self.package_match(root, p, digests)) {
            Some((PackageMatch::Owned { package: p }, database)) => {
                vouched.push(Reason::Packaged);
                package = Some(p);
                // A database inside a container's (or chroot's) root came
                // with the image: as trustworthy as the image's author.
                let source = if self.is_host_root(root) {
                    VouchSource::HostPackageDb
                } else {
                    VouchSource::ImagePackageDb
                };
                vouched_by = Some(VouchedBy {
                    source,
                    database: database.to_owned(),
                });
            }
            Some((PackageMatch::Mismatch { .. }, _)) => against.push(Reason::HashMismatch),
            Some((PackageMatch::NotListed, _)) | None => against.push(Reason::NotPackaged),
        }
        // The operator's signed list outranks an image's own database.
        let image_only = vouched_by
            .as_ref()
            .is_some_and(|v| v.source == VouchSource::ImagePackageDb);
        if (vouched.is_empty() || image_only)
            && let Some(list) = &self.allowlist
        {
            match list.get(&digests.sha256) {
                Some(_) => {
                    vouched.push(Reason::Allowlisted);
                    vouched_by = Some(VouchedBy {
                        source: VouchSource::Allowlist,
                        database: list.path().display().to_string(),
                    });
                }
                None if vouched.is_empty() => against.push(Reason::AllowlistMiss),
                None => {}
            }
        }
        let fileless = match link {
            ExeLink::Memfd(_) => Some(Reason::Memfd),
            ExeLink::Deleted(_) => Some(Reason::Deleted),
            ExeLink::File(_) => None,
        };
        let (verdict, mut reasons) = match fileless {
            None if !vouched.is_empty() => (ProvenanceVerdict::Verified, vouched),
            _ => {
                // A deleted binary whose bytes a package vouches for is
                // usually a daemon upgraded under its feet: `deleted` alone
                // (with the package named) says so without `not-packaged`.
                against.extend(fileless);
                if let Some(p) = path {
                    against.extend(location_reasons(&root.prefix, p));
                }
                (ProvenanceVerdict::Unverified, against)
            }
        };
        reasons.sort();
        reasons.dedup();
        Provenance {
            verdict,
            reasons,
            sha256: Some(digests.sha256_hex()),
            path: Some(link.display()),
            package,
            vouched_by: (verdict == ProvenanceVerdict::Verified)
                .then_some(vouched_by)
                .flatten(),
        }
    }

    /// Is `root` the host's root filesystem (pid 1's, or ours when pid 1's
    /// is not visible)?
    fn is_host_root(&self, root: &Root) -> bool {
        let host = std::fs::metadata(self.proc_root.join("1/root"))
            .or_else(|_| std::fs::metadata("/"))
            .map(|m| (m.dev(), m.ino()));
        host.is_ok_and(|k| k == root.key)
    }

    /// The package databases' answer, and which database gave it.
    fn package_match(
        &self,
        root: &Root,
        path: &Path,
        digests: &Digests,
    ) -> (PackageMatch, &'static str) {
        if let (Some(dbs), Some(md5)) = (&self.dpkg, digests.md5)
            && let Some(index) = dbs.index_for(&root.prefix)
        {
            match index.lookup(path, &md5) {
                PackageMatch::NotListed => {}
                found => return (found, "dpkg"),
            }
        }
        let rpm = self
            .rpm
            .lookup(&root.prefix, path, digests)
            .unwrap_or(PackageMatch::NotListed);
        (rpm, "rpm")
    }
}

/// The kernel's identity unknown (or a sweep without one): nothing to
/// compare, trust the open.
fn same_file(exe: &ExeId, meta: &Metadata) -> bool {
    exe.unknown
        || (exe.dev == 0 && exe.ino == 0)
        || (exe.dev == meta.dev() && exe.ino == meta.ino())
}

fn unreadable(filename: &str) -> Provenance {
    Provenance {
        verdict: ProvenanceVerdict::Unverified,
        reasons: vec![Reason::Unreadable],
        sha256: None,
        path: (!filename.is_empty()).then(|| filename.to_string()),
        package: None,
        vouched_by: None,
    }
}

/// `/proc/<pid>/exe` → pid.
fn proc_exe_pid(path: &Path) -> Option<u32> {
    let rest = path.strip_prefix("/proc").ok()?;
    let mut parts = rest.components();
    let pid = parts.next()?.as_os_str().to_str()?.parse().ok()?;
    (parts.next()?.as_os_str() == "exe" && parts.next().is_none()).then_some(pid)
}

#[cfg(test)]
mod tests;
