//! Miner command lines: pool URLs, XMRig-family options, mining algorithms
//! and wallet-shaped user names. Catches a miner whose pool traffic is
//! hidden (TLS on 443), provided its options are on the command line.
//!
//! On its own this is weak (`grep -r stratum+tcp:// /etc` matches): rules
//! combine it with an unverified binary and sustained CPU.

use super::stratum::is_base58;

/// Options only miners take.
const MINER_OPTIONS: &[&str] = &[
    "--donate-level",
    "--donate-over-proxy",
    "--cpu-max-threads-hint",
    "--max-cpu-usage",
    "--cpu-priority",
    "--randomx-1gb-pages",
    "--randomx-mode",
    "--randomx-no-rdmsr",
    "--randomx-wrmsr",
    "--nicehash",
    "--rig-id",
    "--coin",
    // monerod (and its forks) mining in the node itself.
    "--start-mining",
    "--mining-threads",
    "--bg-mining-enable",
];

/// Algorithm names as miners spell them (`-a`, `--algo`, `--algorithm`).
const ALGOS: &[&str] = &[
    "rx/",
    "randomx",
    "randomwow",
    "randomarq",
    "cn/",
    "cn-",
    "cryptonight",
    "argon2/",
    "ghostrider",
    "gr",
    "kawpow",
    "ethash",
    "etchash",
    "autolykos",
    "kheavyhash",
    "heavyhash",
    "yespower",
    "yescrypt",
    "sha256d",
    "scrypt",
    "x11",
    "x16r",
    "x16rv2",
    "x17",
    "x25x",
    "lyra2",
    "equihash",
    "neoscrypt",
    "astrobwt",
    "panthera",
    "flex",
    "verushash",
    "cuckatoo",
    "progpow",
    "firopow",
    "karlsenhash",
    "nexapow",
    "xelishash",
    "minotaurx",
];

/// The first miner indicator in `argv`, as a short human detail.
pub fn miner_cmdline(argv: &[String]) -> Option<String> {
    let mut has_pool_host = None;
    let mut has_user = false;
    for (i, arg) in argv.iter().enumerate() {
        let lower = arg.to_ascii_lowercase();
        if let Some(url) = stratum_url(&lower) {
            return Some(format!("pool URL {}", clip(url)));
        }
        let (opt, inline) = match lower.split_once('=') {
            Some((o, v)) if o.starts_with('-') => (o, Some(v)),
            _ => (lower.as_str(), None),
        };
        if MINER_OPTIONS.contains(&opt) {
            return Some(format!("miner option {}", clip(arg)));
        }
        let value = || {
            inline
                .map(str::to_owned)
                .or_else(|| argv.get(i + 1).map(|v| v.to_ascii_lowercase()))
        };
        match opt {
            "-a" | "--algo" | "--algorithm" => {
                if let Some(v) = value().filter(|v| is_algo(v)) {
                    return Some(format!("mining algorithm {}", clip(&v)));
                }
            }
            "-u" | "--user" | "--wallet" | "--login" => {
                let v = inline
                    .map(str::to_owned)
                    .or_else(|| argv.get(i + 1).cloned());
                if let Some(v) = v {
                    if is_wallet(&v) {
                        return Some(format!("wallet {}", clip(&v)));
                    }
                    has_user = true;
                }
            }
            "-o" | "--url" | "--pool" => {
                if let Some(v) = value().filter(|v| is_host_port(v)) {
                    has_pool_host = Some(v);
                }
            }
            _ => {
                // `-arx/0`, `-u4…` glued short options.
                if let Some(v) = arg
                    .strip_prefix("-a")
                    .filter(|v| v.len() > 3 && is_algo(&v.to_ascii_lowercase()))
                {
                    return Some(format!("mining algorithm {}", clip(v)));
                }
                if let Some(v) = arg.strip_prefix("-u").filter(|v| is_wallet(v)) {
                    return Some(format!("wallet {}", clip(v)));
                }
            }
        }
    }
    match has_pool_host {
        Some(host) if has_user => Some(format!("pool {} with a user", clip(&host))),
        _ => None,
    }
}

/// `stratum+tcp://`, `stratum+ssl://`, `stratum+tls://`, `stratum1+tcp://`,
/// `stratum2+tcp://`, `stratums://`, `stratum://`… anywhere in the argument
/// (also `--url=…`, `-ostratum…`).
fn stratum_url(lower: &str) -> Option<&str> {
    let start = lower.find("stratum")?;
    let rest = &lower[start + "stratum".len()..];
    let rest = rest
        .strip_prefix(|c: char| c.is_ascii_digit())
        .unwrap_or(rest);
    let rest = rest.strip_prefix('s').unwrap_or(rest);
    let rest = match rest.strip_prefix('+') {
        Some(r) => r.trim_start_matches(|c: char| c.is_ascii_alphanumeric()),
        None => rest,
    };
    rest.starts_with("://").then(|| &lower[start..])
}

fn is_algo(v: &str) -> bool {
    ALGOS.iter().any(|a| {
        if a.ends_with('/') || a.ends_with('-') {
            v.starts_with(a)
        } else {
            v == *a || v.starts_with(a) && a.len() > 3
        }
    })
}

/// A coin address as pools take it for a user name, with optional
/// `.worker`, `+difficulty` or `/email` suffix: Monero (4…/8…, 95 or 106
/// base58), Ethereum-style (0x + 40 hex), Bitcoin bech32 (bc1…).
pub(crate) fn is_wallet(v: &str) -> bool {
    let addr = v.split(['.', '+', '/', ':']).next().unwrap_or("");
    let b = addr.as_bytes();
    let monero = matches!(b.first(), Some(b'4') | Some(b'8'))
        && (b.len() == 95 || b.len() == 106)
        && b.iter().all(|&c| is_base58(c));
    let eth = addr.len() == 42
        && (addr.starts_with("0x") || addr.starts_with("0X"))
        && b[2..].iter().all(u8::is_ascii_hexdigit);
    let lower = addr.to_ascii_lowercase();
    let bech32 = lower.starts_with("bc1")
        && (42..=62).contains(&lower.len())
        && lower[3..]
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    monero || eth || bech32
}

/// `host:port` with a non-trivial host and a numeric port (a pool given to
/// `-o`; `-o out.txt` and `-o ProxyCommand=…` are not).
fn is_host_port(v: &str) -> bool {
    let Some((host, port)) = v.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':'))
        && (2..=5).contains(&port.len())
        && port.bytes().all(|c| c.is_ascii_digit())
}

fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

    #[test]
    fn recognises_miner_command_lines() {
        let w = WALLET;
        let cases: Vec<(&str, Vec<String>, bool)> = vec![
            (
                "xmrig url",
                argv(&["./x", "-o", "stratum+tcp://pool:3333", "-u", "a"]),
                true,
            ),
            (
                "xmrig tls url glued",
                argv(&["kthreadd", "--url=stratum+ssl://pool.example:443"]),
                true,
            ),
            (
                "stratum2",
                argv(&["m", "-P", "stratum2+tcp://0xabc.rig@eth.pool:4444"]),
                true,
            ),
            (
                "ethminer autodetect",
                argv(&["m", "-P", "stratums://w@pool:5555"]),
                true,
            ),
            (
                "donate level",
                argv(&["/dev/shm/.k", "--donate-level=1", "-c", "c.json"]),
                true,
            ),
            (
                "donate level split",
                argv(&["sys", "--donate-level", "0"]),
                true,
            ),
            (
                "throttle hint",
                argv(&["sys", "--cpu-max-threads-hint=50"]),
                true,
            ),
            (
                "algo",
                argv(&["m", "-a", "rx/0", "-o", "1.2.3.4:443"]),
                true,
            ),
            ("algo long", argv(&["m", "--algo=ghostrider"]), true),
            ("algo glued", argv(&["cpuminer", "-ayespowerr16"]), true),
            ("coin", argv(&["m", "--coin", "monero"]), true),
            (
                "monerod mining",
                vec![
                    "monerod".into(),
                    "--regtest".into(),
                    "--start-mining".into(),
                    WALLET.into(),
                    "--mining-threads".into(),
                    "1".into(),
                ],
                true,
            ),
            (
                "monerod mining, glued",
                vec!["monerod".into(), format!("--start-mining={w}")],
                true,
            ),
            (
                "wallet user",
                vec![
                    "m".into(),
                    "-o".into(),
                    "p.example:443".into(),
                    "-u".into(),
                    format!("{w}.rig1"),
                ],
                true,
            ),
            ("wallet glued", vec!["m".into(), format!("-u{w}")], true),
            (
                "eth wallet",
                argv(&[
                    "m",
                    "--user",
                    "0x5f2d2a1b9c7e4d3f8a6b0c1d2e3f4a5b6c7d8e9f.rig",
                ]),
                true,
            ),
            (
                "host:port with user",
                argv(&[
                    "m",
                    "-o",
                    "pool.example:14444",
                    "-u",
                    "me@example.com",
                    "-p",
                    "x",
                ]),
                true,
            ),
            // Benign look-alikes.
            (
                "curl output file and user",
                argv(&["curl", "-o", "out.html", "-u", "bob:pw", "https://x"]),
                false,
            ),
            (
                "ssh option",
                argv(&["ssh", "-o", "ProxyCommand=nc %h %p", "host"]),
                false,
            ),
            (
                "gcc",
                argv(&["cc1", "-quiet", "-o", "/tmp/cc.s", "-O2", "main.c"]),
                false,
            ),
            (
                "tar -a",
                argv(&["tar", "-a", "-cf", "x.tar.xz", "dir"]),
                false,
            ),
            ("sort --algo-ish", argv(&["sort", "-u", "file"]), false),
            ("xz", argv(&["xz", "-9", "-T0", "big.tar"]), false),
            (
                "monerod node, not mining",
                argv(&[
                    "monerod",
                    "--data-dir",
                    "/var/lib/monero",
                    "--rpc-bind-port",
                    "18081",
                ]),
                false,
            ),
            ("ls -a", argv(&["ls", "-a", "/tmp"]), false),
            ("ls -agr", argv(&["ls", "-agr"]), false),
            (
                "python script",
                argv(&["python3", "-u", "server.py"]),
                false,
            ),
        ];
        for (name, argv, want) in cases {
            assert_eq!(
                miner_cmdline(&argv).is_some(),
                want,
                "case: {name}: {:?}",
                miner_cmdline(&argv)
            );
        }
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }
}
