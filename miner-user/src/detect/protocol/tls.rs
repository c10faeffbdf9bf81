//! The TLS ClientHello: what a TLS flow still shows before encryption —
//! the server name (SNI), the ALPN list, and the client's shape as a JA4
//! fingerprint (FoxIO's JA4, TLS over TCP): `t13d1516h2_<ciphers>_<exts>`,
//! i.e. protocol, TLS version, SNI present (`d`) or not (`i`), cipher and
//! extension counts, first and last character of the first ALPN value
//! (`00` without ALPN), then truncated SHA-256 hashes of the sorted cipher
//! list and of the sorted extension list with the signature algorithms.
//! GREASE values are left out everywhere, as JA4 specifies.
//!
//! A miner's TLS client (XMRig, built on OpenSSL) sends no ALPN; nearly
//! every HTTP client does (`h2`, `http/1.1`).

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// Highest version offered (`supported_versions`, else the legacy
    /// `client_version`).
    pub version: u16,
    pub ciphers: Vec<u16>,
    /// Extension types in the order sent.
    pub extensions: Vec<u16>,
    pub sni: Option<String>,
    /// ALPN protocol names, in order.
    pub alpn: Vec<String>,
    pub signature_algorithms: Vec<u16>,
    /// Every extension was inside the buffer (the fingerprint is whole).
    pub complete: bool,
}

/// RFC 8701 GREASE values (`0x?a?a`).
fn grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// A TLS record header `16 03 0x` (x ≤ 4) holding a ClientHello (type 1).
pub fn is_client_hello(b: &[u8]) -> bool {
    b.len() >= 3 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04 && b.get(5).is_none_or(|&t| t == 1)
}

/// Parses the ClientHello at the start of `b` as far as it is there.
/// `None` unless `b` holds at least the fixed part up to the cipher list.
pub fn client_hello(b: &[u8]) -> Option<ClientHello> {
    if !is_client_hello(b) || b.get(5) != Some(&1) {
        return None;
    }
    let record_end = 5 + usize::from(u16_at(b, 3)?);
    let hs_len =
        (usize::from(*b.get(6)?) << 16) | (usize::from(*b.get(7)?) << 8) | usize::from(*b.get(8)?);
    // The hello as the sender framed it (a hello split over two records is
    // read up to the first record's end).
    let end = (9 + hs_len).min(record_end);
    let mut h = ClientHello {
        version: u16_at(b, 9)?,
        ..ClientHello::default()
    };
    let mut i = 9 + 2 + 32;
    i += 1 + usize::from(*b.get(i)?); // session id
    let cs_len = usize::from(u16_at(b, i)?);
    i += 2;
    let mut j = i;
    while j + 1 < i + cs_len {
        let Some(c) = u16_at(b, j) else { break };
        if !grease(c) {
            h.ciphers.push(c);
        }
        j += 2;
    }
    if j < i + cs_len {
        return Some(h); // cut inside the cipher list
    }
    i += cs_len;
    let Some(&comp) = b.get(i) else {
        return Some(h);
    };
    i += 1 + usize::from(comp);
    let Some(ext_total) = u16_at(b, i) else {
        return Some(h);
    };
    i += 2;
    let ext_end = (i + usize::from(ext_total)).min(end);
    while i + 4 <= ext_end {
        let (Some(ty), Some(len)) = (u16_at(b, i), u16_at(b, i + 2)) else {
            return Some(h);
        };
        let body_at = i + 4;
        let len = usize::from(len);
        let Some(body) = b.get(body_at..body_at + len) else {
            // Cut inside this extension: its type still counts.
            if !grease(ty) {
                h.extensions.push(ty);
            }
            return Some(h);
        };
        if !grease(ty) {
            h.extensions.push(ty);
        }
        match ty {
            0x0000 => h.sni = server_name(body),
            0x0010 => h.alpn = alpn(body),
            0x000d => h.signature_algorithms = u16_list(body),
            0x002b => {
                if let Some(v) = u16_list_u8len(body)
                    .into_iter()
                    .filter(|v| !grease(*v))
                    .max()
                {
                    h.version = v;
                }
            }
            _ => {}
        }
        i = body_at + len;
    }
    h.complete = i == ext_end && ext_end == end && end <= b.len();
    Some(h)
}

fn server_name(body: &[u8]) -> Option<String> {
    // server_name_list: u16 length, then (type u8, u16 length, name).
    let name_type = *body.get(2)?;
    let len = usize::from(u16_at(body, 3)?);
    let name = body.get(5..5 + len)?;
    (name_type == 0 && !name.is_empty() && name.iter().all(|c| c.is_ascii_graphic()))
        .then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
}

fn alpn(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(total) = u16_at(body, 0) else {
        return out;
    };
    let end = (2 + usize::from(total)).min(body.len());
    let mut i = 2;
    while i < end {
        let n = usize::from(body[i]);
        let Some(p) = body.get(i + 1..i + 1 + n) else {
            break;
        };
        out.push(String::from_utf8_lossy(p).into_owned());
        i += 1 + n;
    }
    out
}

/// A list of u16 behind a u16 length.
fn u16_list(body: &[u8]) -> Vec<u16> {
    let Some(total) = u16_at(body, 0) else {
        return Vec::new();
    };
    let end = (2 + usize::from(total)).min(body.len());
    (2..end)
        .step_by(2)
        .filter_map(|i| u16_at(body, i))
        .collect()
}

/// `supported_versions` in a ClientHello: a u8 length, then u16 values.
fn u16_list_u8len(body: &[u8]) -> Vec<u16> {
    let Some(&total) = body.first() else {
        return Vec::new();
    };
    let end = (1 + usize::from(total)).min(body.len());
    (1..end)
        .step_by(2)
        .filter_map(|i| u16_at(body, i))
        .collect()
}

impl ClientHello {
    /// `t13d1516h2`: the readable first part of JA4.
    pub fn ja4_a(&self) -> String {
        let v = match self.version {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            _ => "00",
        };
        let sni = if self.sni.is_some() { 'd' } else { 'i' };
        let alpn = match self.alpn.first().map(|a| a.as_bytes()) {
            None | Some([]) => "00".to_owned(),
            Some(a) => {
                let (f, l) = (a[0], a[a.len() - 1]);
                if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                    format!("{}{}", f as char, l as char)
                } else {
                    // JA4: first and last character of the hex form.
                    let hex = format!("{f:02x}{l:02x}");
                    format!("{}{}", &hex[..1], &hex[3..])
                }
            }
        };
        format!(
            "t{v}{sni}{:02}{:02}{alpn}",
            self.ciphers.len().min(99),
            self.extensions.len().min(99)
        )
    }

    /// The whole JA4 when every extension was seen; otherwise the first
    /// part and `_partial` (the counts and hashes would be wrong).
    pub fn ja4(&self) -> String {
        if !self.complete {
            return format!("{}_partial", self.ja4_a());
        }
        let mut ciphers = self.ciphers.clone();
        ciphers.sort_unstable();
        let mut exts: Vec<u16> = self
            .extensions
            .iter()
            .copied()
            .filter(|&e| e != 0x0000 && e != 0x0010)
            .collect();
        exts.sort_unstable();
        let b = hash12(&hex_list(&ciphers));
        let c = if self.extensions.is_empty() {
            "000000000000".to_owned()
        } else {
            let mut text = hex_list(&exts);
            if !self.signature_algorithms.is_empty() {
                text.push('_');
                text.push_str(&hex_list(&self.signature_algorithms));
            }
            hash12(&text)
        };
        format!("{}_{b}_{c}", self.ja4_a())
    }
}

fn hex_list(v: &[u16]) -> String {
    v.iter()
        .map(|x| format!("{x:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn hash12(text: &str) -> String {
    if text.is_empty() {
        return "000000000000".to_owned();
    }
    let d = Sha256::digest(text.as_bytes());
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A ClientHello with the given extensions (type, body).
    pub fn hello(ciphers: &[u16], exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut ext = Vec::new();
        for (t, body) in exts {
            ext.extend_from_slice(&t.to_be_bytes());
            ext.extend_from_slice(&(body.len() as u16).to_be_bytes());
            ext.extend_from_slice(body);
        }
        let mut hs = vec![0x03, 0x03];
        hs.extend_from_slice(&[0x11; 32]);
        hs.push(0);
        hs.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
        for c in ciphers {
            hs.extend_from_slice(&c.to_be_bytes());
        }
        hs.extend_from_slice(&[0x01, 0x00]);
        hs.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        hs.extend_from_slice(&ext);
        let mut msg = vec![0x01];
        msg.extend_from_slice(&(hs.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&hs);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        rec.extend_from_slice(&msg);
        rec
    }

    pub fn sni_ext(name: &str) -> (u16, Vec<u8>) {
        let n = name.as_bytes();
        let mut b = ((n.len() + 3) as u16).to_be_bytes().to_vec();
        b.push(0);
        b.extend_from_slice(&(n.len() as u16).to_be_bytes());
        b.extend_from_slice(n);
        (0, b)
    }

    pub fn alpn_ext(protos: &[&str]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for p in protos {
            list.push(p.len() as u8);
            list.extend_from_slice(p.as_bytes());
        }
        let mut b = (list.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(&list);
        (0x10, b)
    }

    #[test]
    fn fingerprints_a_browser_like_hello() {
        let h = hello(
            &[0x1a1a, 0x1301, 0x1302, 0xc02b],
            &[
                (0x0a0a, vec![]),
                sni_ext("Example.COM"),
                alpn_ext(&["h2", "http/1.1"]),
                (0x002b, vec![4, 0x03, 0x04, 0x03, 0x03]),
                (0x000d, vec![0, 4, 0x04, 0x03, 0x08, 0x04]),
            ],
        );
        let p = client_hello(&h).unwrap();
        assert!(p.complete);
        assert_eq!(p.sni.as_deref(), Some("example.com"));
        assert_eq!(p.alpn, ["h2", "http/1.1"]);
        assert_eq!(
            p.ja4_a(),
            "t13d0304h2",
            "GREASE cipher and extension left out"
        );
        let ja4 = p.ja4();
        assert_eq!(ja4.len(), 10 + 1 + 12 + 1 + 12, "{ja4}");
        // Hash of the sorted ciphers, as the JA4 reference computes it.
        assert_eq!(&ja4[11..23], &hash12("1301,1302,c02b"));
        assert_eq!(&ja4[24..], &hash12("000d,002b_0403,0804"));
    }

    #[test]
    fn no_alpn_no_sni_and_cut_hellos() {
        let h = hello(&[0xc02f, 0xc030], &[(0x000b, vec![1, 0])]);
        let p = client_hello(&h).unwrap();
        assert_eq!(p.ja4_a(), "t12i020100");
        assert!(p.alpn.is_empty());
        let cut = client_hello(&h[..h.len() - 1]).unwrap();
        assert!(!cut.complete);
        assert!(cut.ja4().ends_with("_partial"));
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), None);
        // Non-alphanumeric ALPN: hex of first and last byte.
        let h = hello(&[0x1301], &[alpn_ext(&["\u{1}x\u{2}"])]);
        assert_eq!(client_hello(&h).unwrap().ja4_a(), "t12i010102");
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = client_hello(&b);
            let mut framed = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
            framed.extend_from_slice(&b);
            if let Some(h) = client_hello(&framed) {
                let _ = h.ja4();
            }
        }
    }
}
