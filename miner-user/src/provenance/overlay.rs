//! The kernel's identity of a file on overlayfs, which `stat()` does not
//! report.
//!
//! At exec the kernel records `exe_file->f_inode`: the overlay inode, whose
//! `i_sb->s_dev` is the overlay's own anonymous device and whose `i_ino` is
//! the real (upper or lower) inode number. `stat()` on the same file answers
//! with that inode number too, but, when the layers sit on different file
//! systems and `xino` is off, with the *layer's* pseudo device instead of
//! the overlay's (measured: kernel 0:40, `stat` 0:42 for a binary in an
//! overlay over /usr with its upper dir on tmpfs). Compared naively, every
//! binary run from such a mount looks like "another file" and a packaged
//! `/usr/bin/python3` ends up unreadable, hence unverified.
//!
//! So when the device differs, the open file is asked where it lives: on
//! overlayfs (`fstatfs`), its mount (`mnt_id` in `/proc/self/fdinfo`) is
//! looked up in a mountinfo that lists it, and the kernel's device must be
//! that mount's superblock device and its inode the one `stat()` reports.
//! A recycled pid running another file still fails: the inode differs, or
//! the file is not on that overlay at all.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `OVERLAYFS_SUPER_MAGIC` from linux/magic.h.
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// Is `file` the file the kernel identified as (`dev`, `ino`) (userspace
/// `st_dev` encoding)? True for a plain match; on overlayfs, also when
/// `dev` is the overlay's superblock device. `mountinfos` are the
/// `/proc/PID/mountinfo` files to search for the file's mount (the target
/// process's own, whose namespace holds its root) before our own.
pub fn same_file(file: &File, dev: u64, ino: u64, mountinfos: &[&Path]) -> bool {
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if (meta.dev(), meta.ino()) == (dev, ino) {
        return true;
    }
    meta.ino() == ino && is_overlay(file) && overlay_dev(file, mountinfos) == Some(dev)
}

/// Like [`same_file`], for a path (opened here).
pub fn same_path(path: &Path, dev: u64, ino: u64, mountinfos: &[&Path]) -> bool {
    File::open(path).is_ok_and(|f| same_file(&f, dev, ino, mountinfos))
}

fn is_overlay(file: &File) -> bool {
    let mut sfs = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs writes a statfs into the buffer we own; the fd is open.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), sfs.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: fstatfs returned 0, so the struct is initialised.
    let sfs = unsafe { sfs.assume_init() };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs by arch
    let ftype = sfs.f_type as i64;
    ftype == OVERLAYFS_SUPER_MAGIC
}

/// The superblock device (userspace encoding) of the mount `file` was
/// opened through.
fn overlay_dev(file: &File, mountinfos: &[&Path]) -> Option<u64> {
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).ok()?;
    let mnt_id = mnt_id(&fdinfo)?;
    let own = Path::new("/proc/self/mountinfo");
    mountinfos
        .iter()
        .copied()
        .chain(std::iter::once(own))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .find_map(|text| mount_dev(&text, mnt_id))
}

fn mnt_id(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Field 3 (`major:minor`) of the mountinfo line with mount id `id`, as
/// `st_dev`; only for an overlay mount.
fn mount_dev(mountinfo: &str, id: u64) -> Option<u64> {
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.next()?.parse::<u64>().ok()? != id {
            return None;
        }
        let _parent = fields.next()?;
        let (major, minor) = fields.next()?.split_once(':')?;
        // After the optional fields, " - fstype source options".
        let fstype = line.split(" - ").nth(1)?.split_whitespace().next()?;
        (fstype == "overlay").then_some(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
47 27 0:40 / /tmp/ov/merged rw,relatime - overlay overlay rw,lowerdir=/usr/bin,upperdir=/t/u,workdir=/t/w
48 27 0:41 / /tmp/other rw,relatime shared:7 master:2 - tmpfs tmpfs rw
";

    #[test]
    fn the_overlay_mount_gives_its_superblock_device() {
        assert_eq!(mount_dev(MOUNTINFO, 47), Some(libc::makedev(0, 40)));
        // Not an overlay, or not listed: no answer, so no match.
        assert_eq!(mount_dev(MOUNTINFO, 48), None);
        assert_eq!(mount_dev(MOUNTINFO, 22), None);
        assert_eq!(mount_dev(MOUNTINFO, 99), None);
    }

    #[test]
    fn fdinfo_names_the_mount() {
        assert_eq!(
            mnt_id("pos:\t0\nflags:\t0100000\nmnt_id:\t47\nino:\t5\n"),
            Some(47)
        );
        assert_eq!(mnt_id("pos:\t0\n"), None);
    }

    #[test]
    fn a_plain_file_matches_only_its_own_identity() {
        let f = File::open("/proc/self/exe").expect("own exe");
        let m = f.metadata().expect("stat");
        assert!(same_file(&f, m.dev(), m.ino(), &[]));
        assert!(!same_file(&f, m.dev() + 1, m.ino(), &[]));
        assert!(!same_file(&f, m.dev(), m.ino() + 1, &[]));
    }
}
