//! Binary provenance: is this executable one we can vouch for?
//!
//! "Unsigned" on Linux has no single meaning, so a binary is `verified` only
//! when something independent of the binary vouches for its exact bytes:
//! the package manager (dpkg md5sums, the rpm database) for the path it sits
//! at, or a signed allowlist of SHA-256 hashes. Everything else is
//! `unverified`, with reasons that say how suspicious it is (fileless,
//! deleted, dropped in a writable or hidden directory).
//!
//! Hashing reads the whole file, so it never runs on the event path:
//! [`Service`] runs [`Verifier`] on a small bounded worker pool and feeds
//! verdicts back as [`crate::event::ProvenanceEvent`]s. Each binary is hashed
//! once (cache keyed by dev, inode, size, mtime).
//!
//! A process is judged through `/proc/PID/exe` (works for memfd and deleted
//! files) and against its own root filesystem (`/proc/PID/root`), so a
//! container's binaries are checked against the container's package
//! database, not the host's.

mod allowlist;
mod cache;
pub mod config;
mod dpkg;
mod hash;
mod ima;
pub mod overlay;
mod paths;
#[cfg(test)]
mod props;
mod rpm;
mod service;
mod verifier;

use std::io;
use std::path::PathBuf;

pub use allowlist::{Allowlist, parse_public_key};
pub use config::ProvenanceConfig;
pub use hash::FileKey;
pub(crate) use paths::ExeLink;
pub use service::{CheckResult, Job, Service};
pub use verifier::{CheckStats, Verifier};

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a regular file; only executables can be checked")]
    NotAFile { path: PathBuf },
    #[error("cannot read allowlist {path}; check `provenance.allowlist`")]
    AllowlistRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot read allowlist signature {path}; sign the allowlist (detached ed25519) \
         and set `provenance.allowlist_signature` (default: the allowlist path + .sig)"
    )]
    SignatureRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("allowlist signature {path}: got {got}, expected 64 raw bytes or their base64")]
    SignatureFormat { path: PathBuf, got: String },
    #[error(
        "allowlist {path} refused: signature {signature} does not verify with \
         `provenance.allowlist_public_key`; re-sign the allowlist or fix the key"
    )]
    BadSignature { path: PathBuf, signature: PathBuf },
    #[error("allowlist {path} line {line}: {reason}; expected `<sha256 hex> [name]`")]
    AllowlistLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("`provenance.allowlist_public_key`: {reason}")]
    PublicKey { reason: String },
    #[error("`provenance.allowlist` is set but `provenance.allowlist_public_key` is not")]
    MissingPublicKey,
    #[error("starting provenance worker {index} failed")]
    Spawn {
        index: usize,
        #[source]
        source: io::Error,
    },
}
