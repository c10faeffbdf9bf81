//! Preflight: say precisely what is missing before aya says something
//! opaque. Each check names the fix.

use std::path::{Path, PathBuf};

use super::SensorError;
use crate::defaults::{BTF_PATH, TRACEFS_PATH};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capabilities of this process (`CapEff` in /proc/self/status).
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn check_privileges() -> Result<(), SensorError> {
    let caps = effective_caps();
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        // SAFETY: geteuid has no preconditions.
        Err(SensorError::Privileges {
            euid: unsafe { libc::geteuid() },
        })
    }
}

pub fn check_btf() -> Result<(), SensorError> {
    if Path::new(BTF_PATH).exists() {
        Ok(())
    } else {
        Err(SensorError::NoBtf { path: BTF_PATH })
    }
}

/// Linux ≥ 5.8 (BPF ring buffer). Returns the release string.
pub fn check_kernel() -> Result<String, SensorError> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse::<u32>().ok());
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if (major, minor) >= (5, 8) {
        Ok(release)
    } else {
        Err(SensorError::OldKernel { release })
    }
}

/// Make sure tracefs is mounted (it is not on a fresh machine here); mount
/// it if we can.
pub fn ensure_tracefs() -> Result<(), SensorError> {
    let events = Path::new(TRACEFS_PATH).join("events");
    if events.exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    let target = std::ffi::CString::new(TRACEFS_PATH).map_err(|_| SensorError::Tracefs {
        reason: "bad path".into(),
    })?;
    let fstype = c"tracefs";
    // SAFETY: valid NUL-terminated strings; null data is allowed.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 && events.exists() {
        log::info!("mounted tracefs at {TRACEFS_PATH}");
        Ok(())
    } else {
        Err(SensorError::Tracefs {
            reason: std::io::Error::last_os_error().to_string(),
        })
    }
}

/// The cgroup v2 mount point: `/sys/fs/cgroup` on pure-v2 hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones (this machine). Parsed from
/// mountinfo rather than guessed.
pub fn find_cgroup2() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_cgroup2_mount(&info)
}

pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| {
            // Fields: id parent maj:min root mountpoint opts… - fstype source superopts
            let (pre, post) = line.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            (fstype == "cgroup2").then(|| pre.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .collect();
    found.sort_by_key(|p| p.as_os_str().len());
    found.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_on_hybrid_and_pure_hosts() {
        let hybrid = "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                      32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(
            parse_cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure =
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            parse_cgroup2_mount(pure),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(parse_cgroup2_mount("garbage\n\n - \n"), None);
    }

    #[test]
    fn this_kernel_passes_preflight() {
        check_kernel().unwrap();
        check_privileges().unwrap();
    }
}
