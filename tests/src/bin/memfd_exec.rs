//! Fileless start, as droppers do it: copy a binary into an anonymous
//! memory file (`memfd_create`) and `fexecve` it, so no file on disk runs.
//! Usage: memfd_exec BINARY NAME [ARGS...]

use std::{ffi::CString, io::Write, os::fd::FromRawFd};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: memfd_exec BINARY NAME [ARGS...]");
        std::process::exit(2);
    }
    let bytes = match std::fs::read(&args[1]) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("memfd_exec: {}: {e}", args[1]);
            std::process::exit(2);
        }
    };
    let name = CString::new(args[2].clone()).unwrap_or_default();
    // SAFETY: valid C string; returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        eprintln!("memfd_create failed");
        std::process::exit(2);
    }
    // SAFETY: fd is ours; File closes it only if we return (fexecve failed).
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    if f.write_all(&bytes).is_err() {
        std::process::exit(2);
    }
    let cargs: Vec<CString> = args[2..]
        .iter()
        .map(|a| CString::new(a.as_str()).unwrap_or_default())
        .collect();
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: NUL-terminated argv/envp that outlive the call.
    unsafe { libc::fexecve(fd, argv.as_ptr(), envp.as_ptr()) };
    eprintln!("fexecve failed: {}", std::io::Error::last_os_error());
    std::process::exit(2);
}
