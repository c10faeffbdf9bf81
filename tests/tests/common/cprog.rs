//! C test programs (tests/c/), compiled at test time with the system `cc`
//! into a directory of the test's choosing: unpackaged binaries, built the
//! way their real counterparts are (`-frounding-math`, `-ffast-math`).

use std::path::{Path, PathBuf};

/// The C sources' directory.
pub fn sources() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("c")
}

/// Compiles `tests/c/<name>.c` with `flags` into `dir/<out>`.
pub fn compile(name: &str, flags: &[&str], dir: &Path, out: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let dst = dir.join(out);
    let src = sources().join(format!("{name}.c"));
    let result = std::process::Command::new("cc")
        .args(flags)
        .arg(&src)
        .arg("-o")
        .arg(&dst)
        .arg("-lm")
        .output()
        .map_err(|e| format!("running cc: {e} (gcc is needed to build the C test programs)"))?;
    if !result.status.success() {
        return Err(format!(
            "cc {} failed: {}",
            src.display(),
            String::from_utf8_lossy(&result.stderr)
        ));
    }
    Ok(dst)
}

/// A real TLS ClientHello (rustls, SNI `name`), as a service's TLS client
/// sends it first on a new connection.
pub fn client_hello(name: &str) -> Vec<u8> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let server = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), server).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls");
    }
    out
}

/// A TCP server on an ephemeral loopback port outside `avoid` that accepts
/// connections and holds them open, reading and discarding what arrives.
pub struct Holder {
    pub port: u16,
}

impl Holder {
    pub fn start(avoid: &[u16]) -> Holder {
        for _ in 0..20 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = l.local_addr().expect("addr").port();
            if avoid.contains(&port) {
                continue;
            }
            std::thread::spawn(move || {
                for s in l.incoming().flatten() {
                    std::thread::spawn(move || {
                        use std::io::Read as _;
                        let mut s = s;
                        let mut buf = [0u8; 4096];
                        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                    });
                }
            });
            return Holder { port };
        }
        panic!("no free port outside the pool-port set");
    }
}
