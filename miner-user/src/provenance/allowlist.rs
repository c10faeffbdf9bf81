//! The signed allowlist: SHA-256 hashes an operator vouches for (in-house
//! builds, vendored agents) that no package manager knows.
//!
//! The file is a plain list of `<sha256 hex> [name]` lines; a detached
//! ed25519 signature over its exact bytes proves the operator wrote it.
//! Without the signature an attacker who can write the file could allowlist
//! their miner, so a list whose signature does not verify is refused
//! whole, never partially trusted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};

use super::ProvenanceError;

#[derive(Debug)]
pub struct Allowlist {
    path: PathBuf,
    /// sha256 → optional name from the list.
    hashes: HashMap<[u8; 32], Option<String>>,
}

impl Allowlist {
    /// Reads and verifies the list. The signature is checked over the raw
    /// bytes before anything is parsed.
    pub fn load(
        path: &Path,
        signature: &Path,
        public_key: &str,
    ) -> Result<Allowlist, ProvenanceError> {
        let key =
            parse_public_key(public_key).map_err(|reason| ProvenanceError::PublicKey { reason })?;
        let bytes = std::fs::read(path).map_err(|source| ProvenanceError::AllowlistRead {
            path: path.to_path_buf(),
            source,
        })?;
        let sig_bytes =
            std::fs::read(signature).map_err(|source| ProvenanceError::SignatureRead {
                path: signature.to_path_buf(),
                source,
            })?;
        Allowlist::verify(path, &bytes, signature, &sig_bytes, &key)
    }

    pub fn verify(
        path: &Path,
        bytes: &[u8],
        sig_path: &Path,
        sig_bytes: &[u8],
        key: &VerifyingKey,
    ) -> Result<Allowlist, ProvenanceError> {
        let sig = decode_signature(sig_bytes).map_err(|got| ProvenanceError::SignatureFormat {
            path: sig_path.to_path_buf(),
            got,
        })?;
        // Strict: rejects malleable signatures and weak keys.
        key.verify_strict(bytes, &sig)
            .map_err(|_| ProvenanceError::BadSignature {
                path: path.to_path_buf(),
                signature: sig_path.to_path_buf(),
            })?;
        let hashes = parse(bytes).map_err(|(line, reason)| ProvenanceError::AllowlistLine {
            path: path.to_path_buf(),
            line,
            reason,
        })?;
        Ok(Allowlist {
            path: path.to_path_buf(),
            hashes,
        })
    }

    /// `Some(name)` when listed (the name may be absent).
    pub fn get(&self, sha256: &[u8; 32]) -> Option<Option<&str>> {
        self.hashes.get(sha256).map(|n| n.as_deref())
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// 32 bytes as hex or base64 (whitespace ignored).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| e.to_string())?
    } else {
        STANDARD
            .decode(text)
            .map_err(|e| format!("neither hex nor base64 ({e})"))?
    };
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("got {} bytes, expected 32", bytes.len()))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| "not a valid ed25519 public key".to_string())
}

/// 64 raw bytes, or base64 text of them. Error: what we got.
fn decode_signature(bytes: &[u8]) -> Result<Signature, String> {
    if let Ok(raw) = <[u8; 64]>::try_from(bytes) {
        return Ok(Signature::from_bytes(&raw));
    }
    let text =
        std::str::from_utf8(bytes).map_err(|_| format!("{} bytes of binary", bytes.len()))?;
    let decoded = STANDARD
        .decode(text.trim())
        .map_err(|_| format!("{} bytes, not base64", bytes.len()))?;
    let raw: [u8; 64] = decoded
        .as_slice()
        .try_into()
        .map_err(|_| format!("base64 of {} bytes", decoded.len()))?;
    Ok(Signature::from_bytes(&raw))
}

type Hashes = HashMap<[u8; 32], Option<String>>;

/// Error: (1-based line, what is wrong).
fn parse(bytes: &[u8]) -> Result<Hashes, (usize, String)> {
    let text = std::str::from_utf8(bytes).map_err(|e| (0, format!("not UTF-8 ({e})")))?;
    let mut hashes = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let (hash, name) = match line.split_once(char::is_whitespace) {
            Some((h, n)) => (h, Some(n.trim().to_string())),
            None => (line, None),
        };
        let mut sha = [0u8; 32];
        hex::decode_to_slice(hash, &mut sha)
            .map_err(|_| (i + 1, format!("`{hash}` is not 64 hex characters")))?;
        hashes.insert(sha, name);
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    pub(crate) fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    const LIST: &str = "# in-house builds\n\
        ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  agent v1\n\
        \n\
        E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\n";

    #[test]
    fn a_good_signature_loads_the_list_in_either_encoding() {
        let k = key();
        let sig = k.sign(LIST.as_bytes()).to_bytes();
        let pk = hex::encode(k.verifying_key().to_bytes());
        let dir = tempfile::tempdir().unwrap();
        let (list, raw, b64) = (
            dir.path().join("l"),
            dir.path().join("l.sig"),
            dir.path().join("l.b64"),
        );
        std::fs::write(&list, LIST).unwrap();
        std::fs::write(&raw, sig).unwrap();
        std::fs::write(&b64, format!("{}\n", STANDARD.encode(sig))).unwrap();
        for sig_path in [&raw, &b64] {
            let a = Allowlist::load(&list, sig_path, &pk).unwrap();
            assert_eq!(a.len(), 2);
            let mut abc = [0u8; 32];
            hex::decode_to_slice(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                &mut abc,
            )
            .unwrap();
            assert_eq!(a.get(&abc), Some(Some("agent v1")));
            assert_eq!(a.get(&[0; 32]), None);
        }
        let b64_key = STANDARD.encode(k.verifying_key().to_bytes());
        assert!(Allowlist::load(&list, &raw, &b64_key).is_ok());
    }

    #[test]
    fn a_bad_signature_refuses_the_whole_list() {
        let k = key();
        let pk = k.verifying_key();
        let tampered = LIST.replace("agent v1", "agent v2");
        let sig = k.sign(LIST.as_bytes()).to_bytes();
        let p = Path::new("/etc/minerwatch/allowlist");
        let s = Path::new("/etc/minerwatch/allowlist.sig");
        let err = Allowlist::verify(p, tampered.as_bytes(), s, &sig, &pk).unwrap_err();
        assert!(matches!(err, ProvenanceError::BadSignature { .. }), "{err}");
        assert!(err.to_string().contains("refused"), "{err}");
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(matches!(
            Allowlist::verify(p, LIST.as_bytes(), s, &sig, &other),
            Err(ProvenanceError::BadSignature { .. })
        ));
        let err = Allowlist::verify(p, LIST.as_bytes(), s, b"short", &pk).unwrap_err();
        assert!(
            matches!(err, ProvenanceError::SignatureFormat { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_signed_but_malformed_line_is_reported_with_its_number() {
        let k = key();
        let text =
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nnot-a-hash x\n";
        let sig = k.sign(text.as_bytes()).to_bytes();
        let err = Allowlist::verify(
            Path::new("a"),
            text.as_bytes(),
            Path::new("a.sig"),
            &sig,
            &k.verifying_key(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ProvenanceError::AllowlistLine { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn public_keys_parse_from_hex_or_base64_only_at_32_bytes() {
        let pk = key().verifying_key().to_bytes();
        assert!(parse_public_key(&hex::encode(pk)).is_ok());
        assert!(parse_public_key(&format!(" {} \n", STANDARD.encode(pk))).is_ok());
        assert!(
            parse_public_key(&STANDARD.encode([1u8; 31]))
                .unwrap_err()
                .contains("31 bytes")
        );
        assert!(parse_public_key("zz").is_err());
    }
}
