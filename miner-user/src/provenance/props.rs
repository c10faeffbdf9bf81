//! Property tests of the provenance parsers: the package databases (dpkg
//! md5sums and diversions, `rpm -q` output) and the signed allowlist. A
//! database can be corrupt or written by an attacker with a foothold; the
//! allowlist arrives as a file: any bytes must be survived, and the
//! promises kept (a path verifies only with its exact digest; a list is
//! used only with a valid signature over its exact bytes).

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;

use super::allowlist::Allowlist;
use super::dpkg::{DpkgIndex, PackageMatch};
use super::hash::Digests;
use super::rpm::match_output;
use crate::proptests::cases;

/// A dpkg database in a temp root: one md5sums file per package.
fn dpkg_root(packages: &[(String, Vec<u8>)], diversions: &[u8]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let info = root.path().join("var/lib/dpkg/info");
    std::fs::create_dir_all(&info).expect("mkdir");
    for (name, text) in packages {
        std::fs::write(info.join(format!("{name}.md5sums")), text).expect("write");
    }
    std::fs::write(root.path().join("var/lib/dpkg/diversions"), diversions).expect("write");
    root
}

fn path_bytes() -> impl Strategy<Value = String> {
    "(usr/)?(bin|sbin|lib|opt|etc)/[a-zA-Z0-9 ._+-]{1,24}"
}

proptest! {
    #![proptest_config(cases(300))]

    /// Arbitrary md5sums and diversions content: the index builds, and
    /// counts what it could not read.
    #[test]
    fn dpkg_survives_arbitrary_databases(
        md5sums in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..4),
        diversions in proptest::collection::vec(any::<u8>(), 0..300),
        probe in any::<[u8; 16]>(),
    ) {
        let pkgs: Vec<(String, Vec<u8>)> = md5sums
            .into_iter()
            .enumerate()
            .map(|(i, t)| (format!("pkg{i}"), t))
            .collect();
        let root = dpkg_root(&pkgs, &diversions);
        let index = DpkgIndex::build(root.path())
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .ok_or_else(|| TestCaseError::fail("no index"))?;
        let _ = index.lookup(Path::new("/usr/bin/x"), &probe);
    }

    /// Generated md5sums: each listed path verifies with its digest only;
    /// any other digest is a mismatch naming the package; an unlisted
    /// path is not listed. usrmerge aliases (`bin/` ≡ `usr/bin/`) hold.
    #[test]
    fn dpkg_lookup_needs_path_and_digest(
        files in proptest::collection::btree_map(path_bytes(), any::<[u8; 16]>(), 1..20),
        other in any::<[u8; 16]>(),
        binary_mode in any::<bool>(),
    ) {
        let text: String = files
            .iter()
            .map(|(p, md5)| format!("{}{}{p}\n", hex::encode(md5), if binary_mode { " *" } else { "  " }))
            .collect();
        let root = dpkg_root(&[("coreutils".into(), text.into_bytes())], b"");
        let index = DpkgIndex::build(root.path())
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .ok_or_else(|| TestCaseError::fail("no index"))?;
        prop_assert_eq!(index.malformed_lines, 0);
        for (p, md5) in &files {
            let abs = format!("/{p}");
            prop_assert_eq!(
                index.lookup(Path::new(&abs), md5),
                PackageMatch::Owned { package: "coreutils".into() },
                "{}", abs
            );
            let alias = match p.strip_prefix("usr/") {
                Some(rest) if rest.starts_with("bin/") || rest.starts_with("sbin/") || rest.starts_with("lib/") => format!("/{rest}"),
                Some(_) => abs.clone(),
                None if p.starts_with("bin/") || p.starts_with("sbin/") || p.starts_with("lib/") => format!("/usr/{p}"),
                None => abs.clone(),
            };
            prop_assert_eq!(
                index.lookup(Path::new(&alias), md5),
                PackageMatch::Owned { package: "coreutils".into() },
                "usrmerge alias {}", alias
            );
            if &other != md5 && !files.values().any(|m| m == &other) {
                prop_assert_eq!(
                    index.lookup(Path::new(&abs), &other),
                    PackageMatch::Mismatch { package: "coreutils".into() }
                );
            }
        }
        prop_assert_eq!(
            index.lookup(Path::new("/nonexistent/not-listed"), &other),
            PackageMatch::NotListed
        );
    }
}

proptest! {
    #![proptest_config(cases(10_000))]

    /// `rpm -q` output of any bytes: a verdict, never a panic; a matching
    /// digest is only ever found on the line of that exact path.
    #[test]
    fn rpm_output_of_any_bytes(
        out in proptest::collection::vec(any::<u8>(), 0..400),
        path in proptest::collection::vec(any::<u8>(), 0..20),
        sha in any::<[u8; 32]>(),
        md5 in proptest::option::of(any::<[u8; 16]>()),
    ) {
        let d = Digests { sha256: sha, md5 };
        let got = match_output(&out, &path, &d);
        if let PackageMatch::Owned { .. } = got {
            let sha_hex = hex::encode(sha);
            let md5_hex = md5.map(hex::encode).unwrap_or_default();
            let found = out.split(|&b| b == b'\n').any(|l| {
                l.iter().rposition(|&b| b == b'\t').is_some_and(|t| {
                    let want = String::from_utf8_lossy(&l[t + 1..]).to_ascii_lowercase();
                    l[..t] == path[..] && (want == sha_hex || (!md5_hex.is_empty() && want == md5_hex))
                })
            });
            prop_assert!(found);
        }
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn allowlist_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (any::<[u8; 32]>(), proptest::option::of("[a-z0-9_-]{1,12}")),
        0..10,
    )
    .prop_map(|rows| {
        rows.iter()
            .map(|(h, n)| match n {
                Some(n) => format!("{}  {n}  # comment\n", hex::encode(h)),
                None => format!("{}\n", hex::encode(h)),
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(cases(500))]

    /// A validly signed list loads with exactly its hashes; flipping any
    /// one bit of the list or of the signature refuses it.
    #[test]
    fn allowlist_needs_its_exact_signature(
        text in allowlist_text(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
        flip_sig in any::<bool>(),
        base64 in any::<bool>(),
    ) {
        use base64::Engine as _;
        let bytes = text.as_bytes().to_vec();
        let sig = key().sign(&bytes).to_bytes().to_vec();
        let sig_file = if base64 {
            base64::engine::general_purpose::STANDARD.encode(&sig).into_bytes()
        } else {
            sig.clone()
        };
        let vk = key().verifying_key();
        let (p, s) = (Path::new("allow.txt"), Path::new("allow.sig"));
        let list = Allowlist::verify(p, &bytes, s, &sig_file, &vk)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let lines = text.lines().count();
        prop_assert!(list.len() <= lines);
        for line in text.lines() {
            let mut h = [0u8; 32];
            hex::decode_to_slice(&line[..64], &mut h).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(list.get(&h).is_some());
        }
        if flip_sig {
            let mut bad = sig;
            let i = flip.index(bad.len());
            bad[i] ^= 1 << bit;
            prop_assert!(Allowlist::verify(p, &bytes, s, &bad, &vk).is_err());
        } else if !bytes.is_empty() {
            let mut bad = bytes.clone();
            let i = flip.index(bad.len());
            bad[i] ^= 1 << bit;
            prop_assert!(Allowlist::verify(p, &bad, s, &sig_file, &vk).is_err());
        }
    }
}

proptest! {
    #![proptest_config(cases(10_000))]

    /// Any list and signature bytes: refused with a typed error (almost
    /// always), never a panic, never accepted unsigned.
    #[test]
    fn allowlist_of_any_bytes_is_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        sig in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let vk = key().verifying_key();
        let res = Allowlist::verify(Path::new("a"), &bytes, Path::new("s"), &sig, &vk);
        prop_assert!(res.is_err(), "random bytes verified against a real key");
    }
}
