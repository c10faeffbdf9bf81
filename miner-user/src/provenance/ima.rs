//! IMA (Integrity Measurement Architecture) signatures.
//!
//! Where the kernel appraises files, a `security.ima` xattr can carry a
//! signature over the file. Checking it needs the keys on the `.ima`
//! keyring, which user space cannot read back, and re-implementing the
//! appraisal format is out of scope. So today an IMA xattr is recorded as
//! "present but unverifiable" and has **no effect** on the verdict: a
//! forged xattr is trivial to write, and trusting presence alone would turn
//! it into a free pass. Kernels without IMA (this one) skip it entirely.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

const SECURITYFS_IMA: &str = "/sys/kernel/security/ima";
const XATTR: &CStr = c"security.ima";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImaStatus {
    /// The kernel has no IMA (or securityfs is not mounted).
    Unavailable,
    NoXattr,
    /// An xattr is there; we cannot verify it (see module docs).
    PresentUnverifiable,
}

pub(crate) struct Ima {
    available: bool,
}

impl Ima {
    pub fn detect() -> Ima {
        Ima::detect_at(Path::new(SECURITYFS_IMA))
    }

    pub fn detect_at(securityfs_ima: &Path) -> Ima {
        Ima {
            available: securityfs_ima.is_dir(),
        }
    }

    pub fn status(&self, file: &File) -> ImaStatus {
        if !self.available {
            return ImaStatus::Unavailable;
        }
        // SAFETY: valid fd and NUL-terminated name; a NULL buffer of size 0
        // only asks for the value's length.
        let len =
            unsafe { libc::fgetxattr(file.as_raw_fd(), XATTR.as_ptr(), std::ptr::null_mut(), 0) };
        if len > 0 {
            ImaStatus::PresentUnverifiable
        } else {
            ImaStatus::NoXattr
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_without_ima_are_skipped() {
        let f = File::open("/proc/self/exe").unwrap();
        let none = tempfile::tempdir().unwrap();
        assert_eq!(
            Ima::detect_at(&none.path().join("ima")).status(&f),
            ImaStatus::Unavailable
        );
        // Present securityfs, file without the xattr.
        assert_eq!(Ima::detect_at(none.path()).status(&f), ImaStatus::NoXattr);
    }
}
