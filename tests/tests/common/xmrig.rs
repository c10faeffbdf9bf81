//! The real XMRig 6.16.0 (fetched and cached by `cargo xtask test`, see
//! xtask/src/fixtures.rs), prepared the way an intruder drops it: a renamed
//! copy in a directory of the test's choosing, a `config.json` beside it
//! and no command-line arguments, and a few random bytes appended so every
//! run has a fresh SHA-256 (no hash list can know it).
//!
//! Safety settings, always: loopback pools only, no huge pages, no MSR
//! reads or writes, RandomX light mode (256 MiB cache, no 2 GiB dataset),
//! one thread, bounded by the caller's timeout.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub const ENV: &str = "MINERWATCH_XMRIG";
const CACHED: &str = ".cache/minerwatch/xmrig-6.16.0/xmrig";

/// The cached binary, or why there is none (the caller skips, naming it).
pub fn binary() -> Result<PathBuf, String> {
    let path = std::env::var_os(ENV)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(CACHED)))
        .ok_or_else(|| format!("{ENV} unset and no HOME"))?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the real XMRig is not at {} (run `cargo xtask test`, which fetches it from npm)",
            path.display()
        ))
    }
}

/// How the dropped miner reaches its pool.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    /// `host:port` as XMRig's `url`.
    pub url: String,
    pub tls: bool,
    /// `socks5://host:port` or `host:port` of a SOCKS5 proxy, if any.
    pub socks5: Option<String>,
    /// Algorithm to ask for (`rx/0` by default; `cn/r` etc. for tests of
    /// what the fingerprint must not rely on).
    pub algo: Option<String>,
}

impl PoolSpec {
    pub fn plain(url: impl Into<String>) -> PoolSpec {
        PoolSpec {
            url: url.into(),
            tls: false,
            socks5: None,
            algo: None,
        }
    }
}

/// A dropped XMRig: `dir/name` plus `dir/config.json`. Run it with
/// [`Dropped::command`] (no arguments: XMRig reads the config beside its
/// binary).
pub struct Dropped {
    pub path: PathBuf,
    pub config: PathBuf,
}

impl Dropped {
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.path);
        c.current_dir(self.path.parent().unwrap_or(Path::new("/")));
        c
    }
}

/// Copies XMRig to `dir/name` with a unique tail and writes a safe
/// `config.json` for `pool` beside it.
pub fn drop_into(src: &Path, dir: &Path, name: &str, pool: &PoolSpec) -> std::io::Result<Dropped> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let mut bytes = std::fs::read(src)?;
    // A unique tail: ELF loaders ignore bytes past the last segment.
    let nonce = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
    bytes.extend_from_slice(nonce.as_bytes());
    std::fs::write(&path, &bytes)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    let config = dir.join("config.json");
    std::fs::write(&config, config_json(pool))?;
    Ok(Dropped { path, config })
}

/// XMRig's config with every safety setting on.
pub fn config_json(pool: &PoolSpec) -> String {
    let socks = pool
        .socks5
        .as_deref()
        .map(|s| format!("\"socks5\": \"{s}\","))
        .unwrap_or_default();
    let algo = pool
        .algo
        .as_deref()
        .map(|a| format!("\"algo\": \"{a}\","))
        .unwrap_or_default();
    format!(
        r#"{{
  "autosave": false,
  "background": false,
  "colors": false,
  "donate-level": 1,
  "donate-over-proxy": 0,
  "randomx": {{"init": 1, "mode": "light", "1gb-pages": false, "rdmsr": false, "wrmsr": false, "cache_qos": false, "numa": false}},
  "cpu": {{"enabled": true, "huge-pages": false, "huge-pages-jit": false, "hw-aes": null, "priority": 0, "memory-pool": false, "yield": true, "max-threads-hint": 50, "asm": true}},
  "opencl": false,
  "cuda": false,
  "pools": [{{
    {algo}
    {socks}
    "url": "{url}",
    "user": "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A",
    "pass": "x",
    "keepalive": true,
    "nicehash": false,
    "tls": {tls}
  }}],
  "print-time": 10,
  "health-print-time": 0,
  "retries": 100,
  "retry-pause": 1,
  "syslog": false,
  "watch": false,
  "pause-on-battery": false,
  "pause-on-active": false
}}
"#,
        url = pool.url,
        tls = pool.tls,
    )
}
