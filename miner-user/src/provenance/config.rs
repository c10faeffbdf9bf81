//! The `[provenance]` configuration section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvenanceConfig {
    /// Hashing threads. Each binary is hashed once (then cached), so two
    /// workers keep up with an exec storm while leaving the sensor its core.
    pub workers: usize,
    /// Jobs waiting for a worker. When full, new jobs are dropped and
    /// counted, never waited on: a flood of execs must not stall the sensor.
    pub queue_size: usize,
    /// Binaries whose hashes and verdicts are remembered, keyed by
    /// (dev, inode, size, mtime); the oldest entry is evicted when full.
    pub cache_size: usize,
    /// Verify against dpkg's md5sums (`/var/lib/dpkg/info/*.md5sums`) in the
    /// process's root filesystem, where present.
    pub dpkg: bool,
    /// Verify against the rpm database through the `rpm` command, where both
    /// exist; skipped silently elsewhere.
    pub rpm: bool,
    /// A stuck `rpm` query (a locked database) is killed after this long and
    /// the binary counts as not packaged by rpm.
    pub rpm_timeout_ms: u64,
    /// Signed allowlist: lines of `<sha256 hex> [name]`, `#` comments.
    /// Hashes listed here verify wherever the binary sits.
    pub allowlist: Option<PathBuf>,
    /// Detached ed25519 signature over the exact allowlist bytes (64 raw
    /// bytes or base64). Default: the allowlist path with `.sig` appended.
    pub allowlist_signature: Option<PathBuf>,
    /// The ed25519 public key the signature must verify with: 32 bytes as
    /// base64 or hex. Required with `allowlist`.
    pub allowlist_public_key: Option<String>,
}

impl Default for ProvenanceConfig {
    fn default() -> Self {
        ProvenanceConfig {
            workers: 2,
            queue_size: 1024,
            cache_size: 4096,
            dpkg: true,
            rpm: true,
            rpm_timeout_ms: 2000,
            allowlist: None,
            allowlist_signature: None,
            allowlist_public_key: None,
        }
    }
}

impl ProvenanceConfig {
    /// Impossible values, as one error naming the key (`provenance.<key>`).
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(1..=64).contains(&self.workers) {
            return Err(Invalid::new(
                "provenance.workers",
                format!("{} is out of range; use 1..=64 (default 2)", self.workers),
            ));
        }
        if !(1..=1_048_576).contains(&self.queue_size) {
            return Err(Invalid::new(
                "provenance.queue_size",
                format!(
                    "{} is out of range; use 1..=1048576 (default 1024)",
                    self.queue_size
                ),
            ));
        }
        if !(16..=1_048_576).contains(&self.cache_size) {
            return Err(Invalid::new(
                "provenance.cache_size",
                format!(
                    "{} is out of range; use 16..=1048576 (default 4096)",
                    self.cache_size
                ),
            ));
        }
        if !(100..=60_000).contains(&self.rpm_timeout_ms) {
            return Err(Invalid::new(
                "provenance.rpm_timeout_ms",
                format!(
                    "{} is out of range; use 100..=60000 (default 2000)",
                    self.rpm_timeout_ms
                ),
            ));
        }
        match (&self.allowlist, &self.allowlist_public_key) {
            (Some(_), None) => {
                return Err(Invalid::new(
                    "provenance.allowlist_public_key",
                    "required with provenance.allowlist; set the ed25519 public key \
                     (32 bytes, base64 or hex) the allowlist is signed with",
                ));
            }
            (_, Some(key)) => {
                if let Err(reason) = super::parse_public_key(key) {
                    return Err(Invalid::new(
                        "provenance.allowlist_public_key",
                        format!("{reason}; give the 32-byte ed25519 public key as base64 or hex"),
                    ));
                }
            }
            (None, None) => {}
        }
        if self.allowlist.is_none() && self.allowlist_signature.is_some() {
            return Err(Invalid::new(
                "provenance.allowlist_signature",
                "set without provenance.allowlist; set the allowlist path too, or remove this key",
            ));
        }
        Ok(())
    }

    /// Where the allowlist's signature is read from, if an allowlist is set.
    pub fn signature_path(&self) -> Option<PathBuf> {
        let list = self.allowlist.as_ref()?;
        Some(self.allowlist_signature.clone().unwrap_or_else(|| {
            let mut s = list.clone().into_os_string();
            s.push(".sig");
            PathBuf::from(s)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = ProvenanceConfig::default();
        c.validate().unwrap();
        assert_eq!((c.workers, c.queue_size, c.cache_size), (2, 1024, 4096));
        assert!(c.dpkg && c.rpm);
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string();
        let cases: Vec<(&str, ProvenanceConfig)> = vec![
            (
                "provenance.workers",
                ProvenanceConfig {
                    workers: 0,
                    ..Default::default()
                },
            ),
            (
                "provenance.queue_size",
                ProvenanceConfig {
                    queue_size: 0,
                    ..Default::default()
                },
            ),
            (
                "provenance.cache_size",
                ProvenanceConfig {
                    cache_size: 1,
                    ..Default::default()
                },
            ),
            (
                "provenance.rpm_timeout_ms",
                ProvenanceConfig {
                    rpm_timeout_ms: 0,
                    ..Default::default()
                },
            ),
            (
                "provenance.allowlist_public_key",
                ProvenanceConfig {
                    allowlist: Some("/etc/a".into()),
                    ..Default::default()
                },
            ),
            (
                "provenance.allowlist_public_key",
                ProvenanceConfig {
                    allowlist: Some("/etc/a".into()),
                    allowlist_public_key: Some("not a key".into()),
                    ..Default::default()
                },
            ),
            (
                "provenance.allowlist_signature",
                ProvenanceConfig {
                    allowlist_signature: Some("/etc/a.sig".into()),
                    ..Default::default()
                },
            ),
        ];
        for (want, cfg) in cases {
            assert_eq!(cfg.validate().unwrap_err().key, want, "{cfg:?}");
        }
        let ok = ProvenanceConfig {
            allowlist: Some("/etc/a".into()),
            allowlist_public_key: Some(key),
            ..Default::default()
        };
        ok.validate().unwrap();
        assert_eq!(ok.signature_path(), Some(PathBuf::from("/etc/a.sig")));
    }

    #[test]
    fn parses_from_toml_and_rejects_unknown_keys() {
        let c: ProvenanceConfig = toml::from_str("workers = 3\ndpkg = false").unwrap();
        assert_eq!(c.workers, 3);
        assert!(!c.dpkg);
        assert_eq!(c.cache_size, 4096);
        assert!(toml::from_str::<ProvenanceConfig>("trusted_dirs = []").is_err());
    }
}
