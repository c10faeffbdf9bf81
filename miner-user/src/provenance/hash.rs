//! File identity and content digests.
//!
//! SHA-256 is what we report and what the allowlist lists; MD5 only exists
//! because dpkg's md5sums use it. Both come from one read pass so a binary
//! is read once however many databases judge it.

use std::fs::Metadata;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

use md5::Md5;
use sha2::{Digest, Sha256};

/// Identity of a file's content without reading it: a rewrite in place
/// changes size or mtime, a replacement changes the inode. Two processes
/// running the same binary share one key, so it is hashed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl FileKey {
    pub fn of(meta: &Metadata) -> Self {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digests {
    pub sha256: [u8; 32],
    /// Only computed when a dpkg database may need it.
    pub md5: Option<[u8; 16]>,
}

impl Digests {
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Large enough that syscall overhead vanishes, small enough to live on
/// each worker's stack-adjacent heap without mattering.
const CHUNK: usize = 256 * 1024;

/// Hashes everything `r` yields; returns the digests and the bytes read.
pub(crate) fn hash_reader(r: &mut impl Read, want_md5: bool) -> io::Result<(Digests, u64)> {
    let mut sha = Sha256::new();
    let mut md5 = want_md5.then(Md5::new);
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha.update(&buf[..n]);
        if let Some(m) = md5.as_mut() {
            m.update(&buf[..n]);
        }
        total += n as u64;
    }
    let digests = Digests {
        sha256: sha.finalize().into(),
        md5: md5.map(|m| m.finalize().into()),
    };
    Ok((digests, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_yields_both_known_digests() {
        let (d, n) = hash_reader(&mut &b"abc"[..], true).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            d.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(d.md5.unwrap()),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        let (d, _) = hash_reader(&mut &b""[..], false).unwrap();
        assert_eq!(d.md5, None);
        assert_eq!(
            d.sha256_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
