//! Quarantine: move a miner's executable out of reach, named by its
//! SHA-256, with a record to undo it. Memfd and deleted executables have
//! no file to move; their bytes are saved from /proc/PID/exe before the kill
//! so the analyst still gets the sample.

use std::{
    fs,
    io::{Read, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no quarantined file with hash {0}; see `minerwatch quarantine list`")]
    NotFound(String),
    #[error("{0} already exists; move it away before restoring")]
    Exists(String),
    #[error("{0} is not a file quarantined from a path (memfd/deleted samples cannot be restored)")]
    NoOrigin(String),
    #[error("quarantine record {path} is unreadable: {reason}")]
    BadRecord { path: String, reason: String },
    #[error("restored file hash {got} != quarantined hash {want}")]
    HashMismatch { got: String, want: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QuarantineError + '_ {
    move |source| QuarantineError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What was quarantined, from where, and why: enough to restore it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub sha256: String,
    /// Where it was; `None` for a sample saved from a memfd or deleted file.
    pub original_path: Option<String>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime_ns: i128,
    pub mtime_ns: i128,
    /// RFC 3339.
    pub quarantined_at: String,
    pub rule: String,
    pub tgid: u32,
}

fn ensure_dir(dir: &Path) -> Result<(), QuarantineError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

/// Copy `src` into `dir/<sha>.bin` (0400), hashing on the way.
fn store(src: &Path, dir: &Path) -> Result<(String, u64), QuarantineError> {
    let mut input = fs::File::open(src).map_err(io(src))?;
    let tmp = dir.join(format!(".incoming-{}", std::process::id()));
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o400)
        .open(&tmp)
        .map_err(io(&tmp))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io(src))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io(&tmp))?;
        size += n as u64;
    }
    out.sync_all().map_err(io(&tmp))?;
    let sha = hex::encode(hasher.finalize());
    let dst = dir.join(format!("{sha}.bin"));
    fs::rename(&tmp, &dst).map_err(io(&dst))?;
    Ok((sha, size))
}

fn write_record(dir: &Path, rec: &QuarantineRecord) -> Result<(), QuarantineError> {
    let path = dir.join(format!("{}.json", rec.sha256));
    let body = serde_json::to_vec_pretty(rec).map_err(|e| QuarantineError::BadRecord {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(&path))?;
    f.write_all(&body).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))
}

fn times(m: &fs::Metadata) -> (i128, i128) {
    (
        m.atime() as i128 * 1_000_000_000 + m.atime_nsec() as i128,
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
    )
}

/// Move the file at `path` into quarantine. The original is removed only
/// after the copy is on disk.
pub fn quarantine_path(
    dir: &Path,
    path: &Path,
    rule: &str,
    tgid: u32,
    now: &str,
) -> Result<QuarantineRecord, QuarantineError> {
    ensure_dir(dir)?;
    let meta = fs::metadata(path).map_err(io(path))?;
    let (sha, size) = store(path, dir)?;
    let (atime_ns, mtime_ns) = times(&meta);
    let rec = QuarantineRecord {
        sha256: sha,
        original_path: Some(path.display().to_string()),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size,
        atime_ns,
        mtime_ns,
        quarantined_at: now.to_owned(),
        rule: rule.to_owned(),
        tgid,
    };
    write_record(dir, &rec)?;
    fs::remove_file(path).map_err(io(path))?;
    Ok(rec)
}

/// Save the bytes a process runs (memfd, deleted file) for the analyst.
pub fn save_from_proc(
    dir: &Path,
    proc_root: &Path,
    pid: u32,
    rule: &str,
    now: &str,
) -> Result<QuarantineRecord, QuarantineError> {
    ensure_dir(dir)?;
    let exe = proc_root.join(pid.to_string()).join("exe");
    let meta = fs::metadata(&exe).map_err(io(&exe))?;
    let (sha, size) = store(&exe, dir)?;
    let (atime_ns, mtime_ns) = times(&meta);
    let rec = QuarantineRecord {
        sha256: sha,
        original_path: None,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size,
        atime_ns,
        mtime_ns,
        quarantined_at: now.to_owned(),
        rule: rule.to_owned(),
        tgid: pid,
    };
    write_record(dir, &rec)?;
    Ok(rec)
}

pub fn list(dir: &Path) -> Result<Vec<QuarantineRecord>, QuarantineError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let text = fs::read_to_string(&p).map_err(io(&p))?;
            let rec: QuarantineRecord =
                serde_json::from_str(&text).map_err(|err| QuarantineError::BadRecord {
                    path: p.display().to_string(),
                    reason: err.to_string(),
                })?;
            out.push(rec);
        }
    }
    out.sort_by(|a, b| {
        a.quarantined_at
            .cmp(&b.quarantined_at)
            .then(a.sha256.cmp(&b.sha256))
    });
    Ok(out)
}

/// Put a quarantined file back where it was, with its mode, owner and
/// times, and check its hash.
pub fn restore(dir: &Path, sha: &str) -> Result<PathBuf, QuarantineError> {
    let rec = list(dir)?
        .into_iter()
        .find(|r| r.sha256 == sha)
        .ok_or_else(|| QuarantineError::NotFound(sha.into()))?;
    let original = rec
        .original_path
        .clone()
        .ok_or_else(|| QuarantineError::NoOrigin(sha.into()))?;
    let dst = PathBuf::from(&original);
    if dst.exists() {
        return Err(QuarantineError::Exists(original));
    }
    let src = dir.join(format!("{sha}.bin"));
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    fs::copy(&src, &dst).map_err(io(&dst))?;
    let got = hex::encode(Sha256::digest(fs::read(&dst).map_err(io(&dst))?));
    if got != rec.sha256 {
        let _ = fs::remove_file(&dst);
        return Err(QuarantineError::HashMismatch {
            got,
            want: rec.sha256,
        });
    }
    fs::set_permissions(&dst, fs::Permissions::from_mode(rec.mode)).map_err(io(&dst))?;
    std::os::unix::fs::chown(&dst, Some(rec.uid), Some(rec.gid)).map_err(io(&dst))?;
    set_times(&dst, rec.atime_ns, rec.mtime_ns).map_err(io(&dst))?;
    fs::remove_file(&src).map_err(io(&src))?;
    let json = dir.join(format!("{sha}.json"));
    fs::remove_file(&json).map_err(io(&json))?;
    Ok(dst)
}

fn set_times(path: &Path, atime_ns: i128, mtime_ns: i128) -> std::io::Result<()> {
    let ts = |ns: i128| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as _,
    };
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let times = [ts(atime_ns), ts(mtime_ns)];
    // SAFETY: valid C string and two timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_then_restore_gives_back_an_identical_file() {
        let tmp = tempfile::tempdir().unwrap();
        let qdir = tmp.path().join("q");
        let file = tmp.path().join("drop/.x/miner");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, b"\x7fELF pretend miner").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::chown(&file, Some(1234), Some(5678)).unwrap();
        set_times(&file, 1_000_000_000_123, 2_000_000_000_456).unwrap();
        let before = fs::metadata(&file).unwrap();
        let want = hex::encode(Sha256::digest(fs::read(&file).unwrap()));

        let rec = quarantine_path(
            &qdir,
            &file,
            "pool_protocol_unverified",
            42,
            "2026-11-23T00:00:00Z",
        )
        .unwrap();
        assert_eq!(rec.sha256, want);
        assert!(!file.exists(), "moved away");
        assert_eq!(fs::metadata(&qdir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(list(&qdir).unwrap(), vec![rec.clone()]);

        let back = restore(&qdir, &want).unwrap();
        assert_eq!(back, file);
        let after = fs::metadata(&file).unwrap();
        assert_eq!(hex::encode(Sha256::digest(fs::read(&file).unwrap())), want);
        assert_eq!(after.mode() & 0o7777, 0o751);
        assert_eq!((after.uid(), after.gid()), (1234, 5678));
        assert_eq!(
            (after.mtime(), after.mtime_nsec()),
            (before.mtime(), before.mtime_nsec())
        );
        assert!(list(&qdir).unwrap().is_empty());
        assert!(matches!(
            restore(&qdir, &want),
            Err(QuarantineError::NotFound(_))
        ));
    }

    #[test]
    fn a_running_process_executable_can_be_saved() {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let rec = save_from_proc(tmp.path(), Path::new("/proc"), child.id(), "r", "t").unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let want = hex::encode(Sha256::digest(fs::read("/bin/sleep").unwrap()));
        assert_eq!(rec.sha256, want);
        assert_eq!(rec.original_path, None);
        assert!(matches!(
            restore(tmp.path(), &want),
            Err(QuarantineError::NoOrigin(_))
        ));
    }
}
