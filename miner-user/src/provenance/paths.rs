//! Where a binary sits, as evidence, and how to find it inside another
//! process's root filesystem.
//!
//! Miners are dropped where anyone can write (`/tmp`, `/dev/shm`) and hidden
//! in dot-directories; a packaged binary almost never lives there. These
//! reasons only ever add suspicion to an unverified binary.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::event::Reason;

/// What `readlink /proc/PID/exe` says the process runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ExeLink {
    File(PathBuf),
    /// Unlinked after (or before, via an fd) exec; the path it had.
    Deleted(PathBuf),
    /// `memfd_create` + `fexecve`: never had a path. `memfd:NAME`.
    Memfd(String),
}

impl ExeLink {
    /// `nlink` is the file's link count now: the kernel appends
    /// " (deleted)" to unlinked files, but a file may also just be named so.
    /// memfds have no links and the suffix too, so they are tested first.
    pub fn parse(link: &Path, nlink: u64) -> ExeLink {
        let b = link.as_os_str().as_bytes();
        if let Some(rest) = b.strip_prefix(b"/memfd:") {
            let name = rest.strip_suffix(b" (deleted)").unwrap_or(rest);
            return ExeLink::Memfd(format!("memfd:{}", String::from_utf8_lossy(name)));
        }
        if nlink == 0 {
            let p = b.strip_suffix(b" (deleted)").unwrap_or(b);
            return ExeLink::Deleted(PathBuf::from(OsStr::from_bytes(p)));
        }
        ExeLink::File(link.to_path_buf())
    }

    /// The path to judge the location of and look up in package databases.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ExeLink::File(p) | ExeLink::Deleted(p) => Some(p),
            ExeLink::Memfd(_) => None,
        }
    }

    pub fn display(&self) -> String {
        match self {
            ExeLink::File(p) | ExeLink::Deleted(p) => p.to_string_lossy().into_owned(),
            ExeLink::Memfd(name) => name.clone(),
        }
    }
}

/// Directories where any user can drop a file. Checked by prefix because a
/// subdirectory the attacker created inside them is just as writable to
/// them, whatever its own mode.
const DROP_DIRS: &[&str] = &[
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/run/shm",
    "/run/user",
    "/run/lock",
    "/var/lock",
    "/dev/mqueue",
];

/// `writable-dir` and `hidden-dir` for `path` (absolute, inside `root`).
pub(crate) fn location_reasons(root: &Path, path: &Path) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if in_writable_dir(root, path) {
        reasons.push(Reason::WritableDir);
    }
    let hidden = path
        .components()
        .any(|c| matches!(c, Component::Normal(s) if s.as_bytes().first() == Some(&b'.')));
    if hidden {
        reasons.push(Reason::HiddenDir);
    }
    reasons
}

fn in_writable_dir(root: &Path, path: &Path) -> bool {
    if DROP_DIRS.iter().any(|d| path.starts_with(d)) {
        return true;
    }
    // Any world-writable or sticky ancestor: without the sticky bit anyone
    // can rename our subdirectory away and put theirs in its place; with it,
    // the directory is still a shared drop zone. "/" itself is never one.
    path.ancestors()
        .skip(1)
        .filter(|a| a.parent().is_some())
        .any(|dir| {
            std::fs::metadata(in_root(root, dir))
                .map(|m| m.permissions().mode() & 0o1002 != 0)
                .unwrap_or(false)
        })
}

/// `path` (absolute, as seen by a process whose root is `root`) as a path
/// we can open.
pub(crate) fn in_root(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Resolves symlinks in `path` as if `root` were `/`: an absolute link
/// inside a container (`/usr/bin/python3 -> /usr/bin/python3.11`) must not
/// escape to the host's file of the same name. Returns the absolute path
/// inside `root`.
pub(crate) fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    const MAX_LINKS: u32 = 40; // the kernel's own limit (ELOOP)
    let mut out = PathBuf::from("/");
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut links = 0;
    while let Some(name) = pending.pop() {
        match name.as_bytes() {
            b"." | b"" => continue,
            b".." => {
                out.pop();
                continue;
            }
            _ => {}
        }
        let candidate = out.join(&name);
        let full = in_root(root, &candidate);
        let meta = std::fs::symlink_metadata(&full)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = std::fs::read_link(&full)?;
            if target.is_absolute() {
                out = PathBuf::from("/");
            }
            push_components(&mut pending, &target);
        } else {
            out = candidate;
        }
    }
    Ok(out)
}

/// Pushes `path`'s components so that popping yields them in order.
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    let comps: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    stack.extend(comps.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exe_links() {
        let cases: &[(&str, u64, ExeLink)] = &[
            ("/usr/bin/ls", 1, ExeLink::File("/usr/bin/ls".into())),
            ("/tmp/x (deleted)", 0, ExeLink::Deleted("/tmp/x".into())),
            ("/memfd:xm (deleted)", 0, ExeLink::Memfd("memfd:xm".into())),
            ("/memfd: (deleted)", 0, ExeLink::Memfd("memfd:".into())),
            // benign look-alike: a real file that is merely named so
            (
                "/opt/a (deleted)",
                1,
                ExeLink::File("/opt/a (deleted)".into()),
            ),
        ];
        for (link, nlink, want) in cases {
            assert_eq!(&ExeLink::parse(Path::new(link), *nlink), want, "{link}");
        }
    }

    #[test]
    fn location_reasons_flag_drop_and_dot_dirs_only() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("srv/open/sub")).unwrap();
        std::fs::set_permissions(
            root.path().join("srv/open"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let cases: &[(&str, &[Reason])] = &[
            ("/usr/bin/ls", &[]),
            ("/tmp/x", &[Reason::WritableDir]),
            ("/dev/shm/.x/y", &[Reason::WritableDir, Reason::HiddenDir]),
            ("/run/user/1000/m", &[Reason::WritableDir]),
            ("/home/u/.cache/m", &[Reason::HiddenDir]),
            ("/srv/open/sub/m", &[Reason::WritableDir]),
            ("/usr/bin/.hidden", &[Reason::HiddenDir]),
            ("/tmpfoo/bin", &[]), // a prefix of the name, not of the path
        ];
        for (p, want) in cases {
            assert_eq!(location_reasons(root.path(), Path::new(p)), *want, "{p}");
        }
    }

    #[test]
    fn resolves_symlinks_without_leaving_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("usr/bin/python3.11"), b"py").unwrap();
        std::os::unix::fs::symlink("python3.11", r.join("usr/bin/python3")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3", r.join("usr/bin/py")).unwrap();
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        for p in [
            "/usr/bin/python3",
            "/usr/bin/py",
            "/bin/python3",
            "/usr/bin/../bin/py",
        ] {
            assert_eq!(
                resolve_in_root(r, Path::new(p)).unwrap(),
                Path::new("/usr/bin/python3.11"),
                "{p}"
            );
        }
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert!(resolve_in_root(r, Path::new("/loop")).is_err());
        assert!(resolve_in_root(r, Path::new("/nope")).is_err());
    }
}
