use std::os::fd::FromRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Child, Command};

use ed25519_dalek::{Signer, SigningKey};
use md5::Digest as _;

use super::*;
use crate::provenance::Allowlist;

fn cfg() -> ProvenanceConfig {
    ProvenanceConfig {
        rpm: false,
        ..Default::default()
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(md5::Md5::digest(bytes))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A fake root filesystem with a dpkg database:
/// - usr/bin/good: listed, matching md5
/// - usr/bin/tampered: listed, content changed after install
/// - usr/bin/aliased: listed as bin/aliased (usrmerge)
/// - usr/bin/python3 -> python3.11 (listed)
/// - tmp/dropper, opt/.cache/miner, opt/agent: not listed
fn fixture_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in ["var/lib/dpkg/info", "usr/bin", "tmp", "opt/.cache"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("var/lib/dpkg/status"), "Package: fixture\n").unwrap();
    let files: &[(&str, &[u8])] = &[
        ("usr/bin/good", b"good binary"),
        ("usr/bin/tampered", b"miner pretending to be packaged"),
        ("usr/bin/aliased", b"aliased binary"),
        ("usr/bin/python3.11", b"python"),
        ("tmp/dropper", b"dropper"),
        ("opt/.cache/miner", b"miner"),
        ("opt/agent", b"in-house agent"),
    ];
    for (p, content) in files {
        std::fs::write(r.join(p), content).unwrap();
    }
    std::os::unix::fs::symlink("python3.11", r.join("usr/bin/python3")).unwrap();
    let md5sums = format!(
        "{}  usr/bin/good\n{}  usr/bin/tampered\n{}  bin/aliased\n{}  usr/bin/python3.11\n",
        md5_hex(b"good binary"),
        md5_hex(b"the original"),
        md5_hex(b"aliased binary"),
        md5_hex(b"python"),
    );
    std::fs::write(r.join("var/lib/dpkg/info/fixture.md5sums"), md5sums).unwrap();
    root
}

/// (path asked, verdict, reasons, package, path judged)
type Case = (
    &'static str,
    ProvenanceVerdict,
    &'static [Reason],
    Option<&'static str>,
    &'static str,
);

#[test]
fn fixture_package_database_decides_each_verdict() {
    use Reason::*;
    let root = fixture_root();
    let v = Verifier::without_allowlist(&cfg());
    let cases: &[Case] = &[
        (
            "/usr/bin/good",
            ProvenanceVerdict::Verified,
            &[Packaged],
            Some("fixture"),
            "/usr/bin/good",
        ),
        (
            "/usr/bin/tampered",
            ProvenanceVerdict::Unverified,
            &[HashMismatch],
            None,
            "/usr/bin/tampered",
        ),
        (
            "/usr/bin/aliased",
            ProvenanceVerdict::Verified,
            &[Packaged],
            Some("fixture"),
            "/usr/bin/aliased",
        ),
        (
            "/usr/bin/python3",
            ProvenanceVerdict::Verified,
            &[Packaged],
            Some("fixture"),
            "/usr/bin/python3.11",
        ),
        (
            "/tmp/dropper",
            ProvenanceVerdict::Unverified,
            &[NotPackaged, WritableDir],
            None,
            "/tmp/dropper",
        ),
        (
            "/opt/.cache/miner",
            ProvenanceVerdict::Unverified,
            &[NotPackaged, HiddenDir],
            None,
            "/opt/.cache/miner",
        ),
    ];
    for (path, verdict, reasons, package, resolved) in cases {
        let p = v.check_path_in(root.path(), Path::new(path)).unwrap();
        assert_eq!(p.verdict, *verdict, "{path}: {p:?}");
        assert_eq!(p.reasons, *reasons, "{path}");
        assert_eq!(p.package.as_deref(), *package, "{path}");
        assert_eq!(p.path.as_deref(), Some(*resolved), "{path}");
    }
    let good = v
        .check_path_in(root.path(), Path::new("/usr/bin/good"))
        .unwrap();
    assert_eq!(
        good.sha256.as_deref(),
        Some(sha256_hex(b"good binary").as_str())
    );
}

#[test]
fn dpkg_disabled_means_nothing_is_packaged() {
    let root = fixture_root();
    let v = Verifier::without_allowlist(&ProvenanceConfig {
        dpkg: false,
        ..cfg()
    });
    let p = v
        .check_path_in(root.path(), Path::new("/usr/bin/good"))
        .unwrap();
    assert_eq!(p.reasons, vec![Reason::NotPackaged]);
}

#[test]
fn a_reinstalled_package_database_is_reread() {
    let root = fixture_root();
    let v = Verifier::without_allowlist(&cfg());
    let r = root.path();
    assert!(
        !v.check_path_in(r, Path::new("/opt/agent"))
            .unwrap()
            .is_verified()
    );
    // dpkg installs a package owning /opt/agent: new md5sums, new status.
    std::fs::write(
        r.join("var/lib/dpkg/info/agent.md5sums"),
        format!("{}  opt/agent\n", md5_hex(b"in-house agent")),
    )
    .unwrap();
    std::fs::write(
        r.join("var/lib/dpkg/status"),
        "Package: fixture\n\nPackage: agent\n",
    )
    .unwrap();
    // The verdict cache is keyed by the file, which dpkg would have replaced.
    std::fs::write(r.join("opt/agent.new"), b"in-house agent").unwrap();
    std::fs::rename(r.join("opt/agent.new"), r.join("opt/agent")).unwrap();
    let p = v.check_path_in(r, Path::new("/opt/agent")).unwrap();
    assert_eq!(p.package.as_deref(), Some("agent"), "{p:?}");
}

fn signed_allowlist(dir: &Path, text: &str, signer: &SigningKey) -> (PathBuf, PathBuf) {
    let (list, sig) = (dir.join("allowlist"), dir.join("allowlist.sig"));
    std::fs::write(&list, text).unwrap();
    std::fs::write(&sig, signer.sign(text.as_bytes()).to_bytes()).unwrap();
    (list, sig)
}

#[test]
fn a_signed_allowlist_verifies_listed_hashes_and_flags_the_rest() {
    let root = fixture_root();
    let keys = tempfile::tempdir().unwrap();
    let signer = SigningKey::from_bytes(&[42u8; 32]);
    let text = format!(
        "# ops-approved\n{} in-house agent\n",
        sha256_hex(b"in-house agent")
    );
    let (list, _) = signed_allowlist(keys.path(), &text, &signer);
    let cfg = ProvenanceConfig {
        allowlist: Some(list),
        allowlist_public_key: Some(hex::encode(signer.verifying_key().to_bytes())),
        ..cfg()
    };
    cfg.validate().unwrap();
    let v = Verifier::new(&cfg).unwrap();
    assert_eq!(v.allowlist().map(Allowlist::len), Some(1));
    let agent = v
        .check_path_in(root.path(), Path::new("/opt/agent"))
        .unwrap();
    assert_eq!(
        (agent.verdict, agent.reasons),
        (ProvenanceVerdict::Verified, vec![Reason::Allowlisted])
    );
    let dropper = v
        .check_path_in(root.path(), Path::new("/tmp/dropper"))
        .unwrap();
    assert_eq!(
        dropper.reasons,
        vec![
            Reason::NotPackaged,
            Reason::WritableDir,
            Reason::AllowlistMiss
        ]
    );
    // Packaged binaries need no allowlist entry.
    let good = v
        .check_path_in(root.path(), Path::new("/usr/bin/good"))
        .unwrap();
    assert_eq!(good.reasons, vec![Reason::Packaged]);
}

#[test]
fn an_allowlist_with_a_bad_signature_is_refused_at_load() {
    let keys = tempfile::tempdir().unwrap();
    let signer = SigningKey::from_bytes(&[42u8; 32]);
    let (list, _) = signed_allowlist(keys.path(), &format!("{}\n", "ab".repeat(32)), &signer);
    // An attacker appends their miner's hash after signing.
    let mut text = std::fs::read_to_string(&list).unwrap();
    text.push_str(&format!("{} xmrig\n", "cd".repeat(32)));
    std::fs::write(&list, text).unwrap();
    let cfg = ProvenanceConfig {
        allowlist: Some(list),
        allowlist_public_key: Some(hex::encode(signer.verifying_key().to_bytes())),
        ..cfg()
    };
    let err = Verifier::new(&cfg)
        .err()
        .expect("a tampered allowlist must not load");
    assert!(matches!(err, ProvenanceError::BadSignature { .. }), "{err}");
    assert!(Verifier::without_allowlist(&cfg).allowlist().is_none());
}

fn exe_id(pid: u32) -> ExeId {
    let meta = std::fs::metadata(format!("/proc/{pid}/exe")).unwrap();
    ExeId {
        dev: meta.dev(),
        ino: meta.ino(),
        nlink: meta.nlink() as u32,
        ..Default::default()
    }
}

/// Kills and reaps the child however the test ends.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd`, retrying ETXTBSY: another test thread may have forked
/// while our copy of the binary was still open for writing.
fn spawn(mut cmd: Command) -> Reap {
    for _ in 0..50 {
        match cmd.spawn() {
            Ok(c) => return Reap(c),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("spawn: {e}"),
        }
    }
    panic!("spawn: text file busy");
}

/// Whether the host has a dpkg database; if not, `test` is counted skipped.
fn have_dpkg(test: &str) -> bool {
    let ok = Path::new("/var/lib/dpkg/status").exists();
    if !ok {
        crate::test_skip::skip(test, "dpkg", "no dpkg database on this machine");
    }
    ok
}

#[test]
fn a_running_packaged_binary_verifies_through_proc() {
    if !have_dpkg("provenance::verifier::tests::a_running_packaged_binary_verifies_through_proc") {
        return;
    }
    let mut cmd = Command::new("/bin/sleep");
    cmd.arg("5");
    let child = spawn(cmd);
    let pid = child.0.id();
    let v = Verifier::without_allowlist(&cfg());
    let (p, stats) = v.check_pid_stats(pid, &exe_id(pid), "/bin/sleep");
    assert_eq!(p.verdict, ProvenanceVerdict::Verified, "{p:?}");
    assert_eq!(p.package.as_deref(), Some("coreutils"));
    assert_eq!(p.path.as_deref(), Some("/usr/bin/sleep"));
    assert!(stats.bytes_hashed > 0 && !stats.cache_hit);
    let (again, stats) = v.check_pid_stats(pid, &exe_id(pid), "/bin/sleep");
    assert_eq!(again, p);
    assert!(stats.cache_hit && stats.bytes_hashed == 0);
}

#[test]
fn a_recycled_pid_is_unreadable_not_judged() {
    let v = Verifier::without_allowlist(&cfg());
    let me = std::process::id();
    let mut other = exe_id(me);
    other.ino += 1;
    let p = v.check_pid(me, &other, "/usr/bin/xmrig");
    assert_eq!(p.reasons, vec![Reason::Unreadable]);
    assert_eq!(p.sha256, None);
}

#[test]
fn an_exited_process_is_judged_by_the_path_it_execd() {
    if !have_dpkg("provenance::verifier::tests::an_exited_process_is_judged_by_the_path_it_execd") {
        return;
    }
    let mut child = spawn(Command::new("/usr/bin/true"));
    let pid = child.0.id();
    let exe = exe_id_of_path("/usr/bin/true");
    child.0.wait().unwrap();
    let v = Verifier::without_allowlist(&cfg());
    let p = v.check_pid(pid, &exe, "/usr/bin/true");
    assert_eq!(p.verdict, ProvenanceVerdict::Verified, "{p:?}");
    // ... but not when the path now names another file.
    let mut stale = exe.clone();
    stale.ino += 1;
    assert_eq!(
        v.check_pid(pid, &stale, "/usr/bin/true").reasons,
        vec![Reason::Unreadable]
    );
}

fn exe_id_of_path(path: &str) -> ExeId {
    let meta = std::fs::metadata(path).unwrap();
    ExeId {
        dev: meta.dev(),
        ino: meta.ino(),
        nlink: 1,
        ..Default::default()
    }
}

#[test]
fn a_memfd_process_is_unverified_whatever_its_bytes() {
    let bytes = std::fs::read("/bin/sleep").unwrap();
    // SAFETY: NUL-terminated name; flags 0 so the child inherits the fd.
    let fd = unsafe { libc::memfd_create(c"kworker".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
    // SAFETY: fd was just created and is owned here alone.
    let mut memfd = unsafe { File::from_raw_fd(fd) };
    io::Write::write_all(&mut memfd, &bytes).unwrap();
    let mut cmd = Command::new(format!("/proc/self/fd/{fd}"));
    cmd.arg("5");
    let child = spawn(cmd);
    drop(memfd);
    let pid = child.0.id();
    let mut exe = exe_id(pid);
    exe.memfd = true;
    let v = Verifier::without_allowlist(&cfg());
    let p = v.check_pid(pid, &exe, &format!("/proc/self/fd/{fd}"));
    assert_eq!(p.verdict, ProvenanceVerdict::Unverified);
    assert_eq!(p.reasons, vec![Reason::NotPackaged, Reason::Memfd], "{p:?}");
    assert_eq!(p.path.as_deref(), Some("memfd:kworker"));
    assert_eq!(
        p.sha256,
        Some(sha256_hex(&bytes)),
        "hashed through /proc/PID/exe"
    );
}

#[test]
fn a_binary_deleted_after_exec_is_unverified() {
    // tempfile's default `.tmpXXXX` would add hidden-dir
    let dir = tempfile::Builder::new()
        .prefix("mw-deleted")
        .tempdir()
        .unwrap();
    let copy = dir.path().join("sleep");
    std::fs::copy("/bin/sleep", &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(&copy);
    cmd.arg("5");
    let child = spawn(cmd);
    let pid = child.0.id();
    let exe = exe_id(pid);
    std::fs::remove_file(&copy).unwrap();
    let v = Verifier::without_allowlist(&cfg());
    let p = v.check_pid(pid, &exe, copy.to_str().unwrap());
    assert_eq!(p.verdict, ProvenanceVerdict::Unverified);
    assert_eq!(
        p.reasons,
        vec![Reason::NotPackaged, Reason::Deleted, Reason::WritableDir],
        "{p:?}"
    );
    assert_eq!(p.path.as_deref(), copy.to_str());
    assert_eq!(
        p.sha256,
        Some(sha256_hex(&std::fs::read("/bin/sleep").unwrap()))
    );
}

#[test]
fn real_packaged_binaries_verify_on_this_machine() {
    if !have_dpkg("provenance::verifier::tests::real_packaged_binaries_verify_on_this_machine") {
        return;
    }
    let v = Verifier::without_allowlist(&cfg());
    v.warm_up();
    let ls = v.check_path(Path::new("/usr/bin/ls")).unwrap();
    assert_eq!(
        (ls.verdict, ls.package.as_deref()),
        (ProvenanceVerdict::Verified, Some("coreutils")),
        "{ls:?}"
    );
    // Symlink to the versioned interpreter: judged as the file it resolves to.
    if Path::new("/usr/bin/python3").exists() {
        let py = v.check_path(Path::new("/usr/bin/python3")).unwrap();
        assert!(py.is_verified(), "{py:?}");
        assert_ne!(py.path.as_deref(), Some("/usr/bin/python3"));
    }
    assert!(matches!(
        v.check_path(Path::new("/usr/bin")),
        Err(ProvenanceError::NotAFile { .. })
    ));
    assert!(matches!(
        v.check_path(Path::new("/nonexistent")),
        Err(ProvenanceError::Open { .. })
    ));
}

#[test]
fn proc_exe_paths_are_checked_as_processes() {
    assert_eq!(proc_exe_pid(Path::new("/proc/123/exe")), Some(123));
    for p in [
        "/proc/self/exe",
        "/proc/123/exe/x",
        "/proc/123",
        "/usr/bin/ls",
    ] {
        assert_eq!(proc_exe_pid(Path::new(p)), None, "{p}");
    }
    let v = Verifier::without_allowlist(&cfg());
    let p = v
        .check_path(Path::new(&format!("/proc/{}/exe", std::process::id())))
        .unwrap();
    // WritableDir as well when the checkout sits under /tmp.
    assert!(
        p.reasons.contains(&Reason::NotPackaged) && !p.is_verified(),
        "the test binary is not packaged: {p:?}"
    );
}

#[test]
fn a_database_in_another_root_vouches_as_the_image_not_the_host() {
    let root = fixture_root();
    let v = Verifier::without_allowlist(&cfg());
    let p = v
        .check_path_in(root.path(), Path::new("/usr/bin/good"))
        .unwrap();
    assert!(p.is_verified(), "{p:?}");
    assert!(p.is_image_vouched(), "{p:?}");
    assert_eq!(
        p.vouched_by,
        Some(VouchedBy {
            source: VouchSource::ImagePackageDb,
            database: "dpkg".into()
        })
    );
    // Unverified binaries carry no voucher.
    let d = v
        .check_path_in(root.path(), Path::new("/tmp/dropper"))
        .unwrap();
    assert_eq!(d.vouched_by, None);
    if have_dpkg(
        "provenance::verifier::tests::a_database_in_another_root_vouches_as_the_image_not_the_host",
    ) {
        let ls = v.check_path(Path::new("/usr/bin/ls")).unwrap();
        assert_eq!(
            ls.vouched_by.map(|b| b.source),
            Some(VouchSource::HostPackageDb),
            "the host's own root"
        );
    }
}

#[test]
fn the_signed_allowlist_outranks_an_image_database() {
    let root = fixture_root();
    let signer = SigningKey::from_bytes(&[7; 32]);
    let (list, sig) = signed_allowlist(
        root.path(),
        &format!("{} good\n", sha256_hex(b"good binary")),
        &signer,
    );
    let key = hex::encode(signer.verifying_key().to_bytes());
    let mut v = Verifier::without_allowlist(&cfg());
    v.set_allowlist(Some(Allowlist::load(&list, &sig, &key).unwrap()));
    let p = v
        .check_path_in(root.path(), Path::new("/usr/bin/good"))
        .unwrap();
    assert_eq!(
        p.vouched_by.as_ref().map(|b| b.source),
        Some(VouchSource::Allowlist)
    );
    assert!(p.is_verified() && !p.reasons.contains(&Reason::AllowlistMiss));
}

/// `sleep 30` exec'd from a real overlay mounted over /usr/bin (lower: the
/// real /usr/bin; upper: tmpfs, another file system) in a private mount
/// namespace, so the host is untouched. The kernel records the overlay's
/// device; `stat()` reports the lower layer's.
fn sleep_from_an_overlay_over_usr_bin(scratch: &Path) -> Reap {
    let s = scratch.display();
    let script = format!(
        "mount -t tmpfs tmpfs {s} && mkdir {s}/u {s}/w && \
         mount -t overlay overlay -o lowerdir=/usr/bin,upperdir={s}/u,workdir={s}/w /usr/bin && \
         exec /usr/bin/sleep 30"
    );
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    spawn(c)
}

/// The kernel's identity of what `pid` runs from an overlay at `mount`:
/// that mount's superblock device (mountinfo field 3) and the inode.
fn identity_on_overlay(pid: u32, mount: &str) -> Option<ExeId> {
    let meta = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    let (major, minor) = mountinfo
        .lines()
        .filter(|l| l.split_whitespace().nth(4) == Some(mount) && l.contains(" - overlay "))
        .filter_map(|l| l.split_whitespace().nth(2)?.split_once(':'))
        .next_back()?;
    Some(ExeId {
        dev: libc::makedev(major.parse().ok()?, minor.parse().ok()?),
        ino: meta.ino(),
        nlink: 1,
        name: "sleep".into(),
        ..Default::default()
    })
}

#[test]
fn a_packaged_binary_run_from_an_overlay_mount_stays_verified() {
    const TEST: &str =
        "provenance::verifier::tests::a_packaged_binary_run_from_an_overlay_mount_stays_verified";
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if !have_dpkg(TEST) {
        return;
    }
    if euid != 0 {
        crate::test_skip::skip(TEST, "root", "mount namespaces need root");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let child = sleep_from_an_overlay_over_usr_bin(scratch.path());
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    let exe = loop {
        let link = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if link == Path::new("/usr/bin/sleep")
            && let Some(id) = identity_on_overlay(pid, "/usr/bin")
        {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "sleep did not start from the overlay"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let meta = std::fs::metadata(format!("/proc/{pid}/exe")).unwrap();
    assert_ne!(
        exe.dev,
        meta.dev(),
        "the premise: kernel and stat() disagree on the device"
    );

    let v = Verifier::without_allowlist(&cfg());
    v.warm_up();
    let p = v.check_pid(pid, &exe, "/usr/bin/sleep");
    assert!(p.is_verified(), "{p:?}");
    assert_eq!(p.package.as_deref(), Some("coreutils"), "{p:?}");
    assert_eq!(
        p.vouched_by.as_ref().map(|b| b.source),
        Some(VouchSource::HostPackageDb),
        "the process's root is the host's"
    );

    // Another inode on the same overlay is a stranger's binary: refused.
    let other = ExeId {
        ino: exe.ino + 1,
        ..exe.clone()
    };
    let q = Verifier::without_allowlist(&cfg()).check_pid(pid, &other, "/usr/bin/sleep");
    assert_eq!(q.reasons, vec![Reason::Unreadable], "{q:?}");
    drop(child);
}
