//! Makes the syscalls the kernel hints watch, for real, changing nothing:
//! opens `nr_hugepages` for writing and closes it without a write, asks
//! for large `MAP_HUGETLB` mappings (they fail without reserved huge pages;
//! the attempt is what counts) and opens `/dev/cpu/0/msr` for writing (it
//! does not exist on most test machines). Each step prints its result.
//!
//! Usage: hint_syscalls STEP... where STEP is one of
//! `sysctl`, `sysctl-open` (the same through open(2), not openat),
//! `sysfs`, `sysfs-node`, `hugetlb-256m`, `hugetlb-2g`, `msr`, `repeat`
//! (the sysctl open 100 times), and the look-alikes that must report
//! nothing: `sysctl-read`, `hugetlb-2m`, `plain-256m`.

use std::ffi::CString;

const SYSCTL: &str = "/proc/sys/vm/nr_hugepages";
const SYSFS: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
const SYSFS_NODE: &str = "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages";
const MSR: &str = "/dev/cpu/0/msr";

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// openat(2) (glibc's open) for writing, then close: no byte is written.
fn open_write(path: &str, flags: i32) -> String {
    let c = CString::new(path).expect("path");
    // SAFETY: a valid NUL-terminated path; the fd is closed right away.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        return format!("open {path}: errno {}", errno());
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    format!("open {path}: ok")
}

/// The legacy open(2) syscall, as static musl binaries make it.
fn sys_open_write(path: &str) -> String {
    let c = CString::new(path).expect("path");
    // SAFETY: SYS_open with a valid path and flags; the fd is closed.
    let fd = unsafe { libc::syscall(libc::SYS_open, c.as_ptr(), libc::O_WRONLY) } as i32;
    if fd < 0 {
        return format!("SYS_open {path}: errno {}", errno());
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    format!("SYS_open {path}: ok")
}

fn map(len: usize, flags: i32) -> String {
    // SAFETY: an anonymous private mapping; unmapped at once if granted.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return format!("mmap {} MiB flags {flags:#x}: errno {}", len >> 20, errno());
    }
    // SAFETY: p is the mapping of len bytes just made.
    unsafe { libc::munmap(p, len) };
    format!("mmap {} MiB flags {flags:#x}: ok", len >> 20)
}

fn main() {
    let steps: Vec<String> = std::env::args().skip(1).collect();
    if steps.is_empty() {
        eprintln!("usage: hint_syscalls STEP...");
        std::process::exit(2);
    }
    for step in &steps {
        let out = match step.as_str() {
            "sysctl" => open_write(SYSCTL, libc::O_WRONLY),
            "sysctl-open" => sys_open_write(SYSCTL),
            "sysfs" => open_write(SYSFS, libc::O_WRONLY),
            "sysfs-node" => open_write(SYSFS_NODE, libc::O_WRONLY),
            "hugetlb-256m" => map(256 << 20, libc::MAP_HUGETLB),
            "hugetlb-2g" => map(2080 << 20, libc::MAP_HUGETLB),
            "msr" => open_write(MSR, libc::O_WRONLY),
            "repeat" => {
                let mut last = String::new();
                for _ in 0..100 {
                    last = open_write(SYSCTL, libc::O_WRONLY);
                }
                format!("100 × {last}")
            }
            "sysctl-read" => open_write(SYSCTL, libc::O_RDONLY),
            "hugetlb-2m" => map(2 << 20, libc::MAP_HUGETLB),
            "plain-256m" => map(256 << 20, 0),
            other => {
                eprintln!("unknown step {other}");
                std::process::exit(2);
            }
        };
        println!("{step}: {out}");
    }
}
