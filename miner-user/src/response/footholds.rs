//! Footholds: persistence that names the miner. Incident write-ups tell
//! responders to check cron, systemd units, rc.local, ld.so.preload, shell
//! profiles and freshly changed authorized_keys; this lists every line that
//! references the miner's path, file name or hash. Report only: nothing is
//! ever edited or deleted.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

/// Where a persistence line lives. snake_case names are stable: the
/// `kind` of each entry of a `"action":"footholds"` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FootholdKind {
    Cron,
    Systemd,
    RcLocal,
    LdPreload,
    ShellProfile,
    AuthorizedKeys,
}

impl FootholdKind {
    pub const ALL: [FootholdKind; 6] = [
        FootholdKind::Cron,
        FootholdKind::Systemd,
        FootholdKind::RcLocal,
        FootholdKind::LdPreload,
        FootholdKind::ShellProfile,
        FootholdKind::AuthorizedKeys,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Foothold {
    pub kind: FootholdKind,
    pub path: String,
    /// 1-based; 0 for a whole-file finding (a fresh authorized_keys).
    pub line: usize,
    pub text: String,
}

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct Needles {
    pub paths: Vec<String>,
    pub names: Vec<String>,
    pub sha256: Option<String>,
}

impl Needles {
    /// From the miner's executable path: the path itself and its file name
    /// (if specific enough to be meaningful).
    pub fn for_exe(exe: Option<&str>, sha256: Option<&str>) -> Needles {
        let mut n = Needles {
            sha256: sha256.map(str::to_owned),
            ..Default::default()
        };
        if let Some(p) = exe.filter(|p| p.starts_with('/')) {
            let clean = p.trim_end_matches(" (deleted)").to_owned();
            if let Some(name) = Path::new(&clean).file_name().and_then(|s| s.to_str()) {
                // Short or generic names (sh, python3) would match everything.
                if name.len() >= 4 && !GENERIC.contains(&name) {
                    n.names.push(name.to_owned());
                }
            }
            n.paths.push(clean);
        }
        n
    }

    fn matches(&self, line: &str) -> bool {
        self.paths.iter().any(|p| line.contains(p.as_str()))
            || self.sha256.as_deref().is_some_and(|h| line.contains(h))
            || self.names.iter().any(|n| contains_word(line, n))
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.names.is_empty() && self.sha256.is_none()
    }
}

const GENERIC: &[&str] = &[
    "bash", "dash", "python", "python3", "perl", "node", "java", "ruby", "sleep", "curl", "wget",
];

fn contains_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + word.len()..].chars().next();
        let sep = |c: Option<char>| {
            c.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
        };
        sep(before) && sep(after)
    })
}

/// Files to look at under `root` (`/` or a container's `/proc/PID/root`).
fn candidates(root: &Path) -> Vec<(FootholdKind, PathBuf)> {
    let mut out = Vec::new();
    let j = |p: &str| root.join(p.trim_start_matches('/'));
    let mut add_dir = |kind: FootholdKind, dir: PathBuf, depth: u32| {
        walk(&dir, depth, &mut |p| out.push((kind, p)))
    };
    add_dir(FootholdKind::Cron, j("/etc/cron.d"), 1);
    for d in [
        "/etc/cron.hourly",
        "/etc/cron.daily",
        "/etc/cron.weekly",
        "/etc/cron.monthly",
        "/var/spool/cron",
    ] {
        add_dir(FootholdKind::Cron, j(d), 3);
    }
    for d in [
        "/etc/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
        "/run/systemd/system",
    ] {
        add_dir(FootholdKind::Systemd, j(d), 3);
    }
    add_dir(FootholdKind::ShellProfile, j("/etc/profile.d"), 1);
    out.push((FootholdKind::Cron, j("/etc/crontab")));
    out.push((FootholdKind::RcLocal, j("/etc/rc.local")));
    out.push((FootholdKind::LdPreload, j("/etc/ld.so.preload")));
    for f in ["/etc/profile", "/etc/bash.bashrc", "/etc/environment"] {
        out.push((FootholdKind::ShellProfile, j(f)));
    }
    let mut homes = vec![j("/root")];
    if let Ok(rd) = std::fs::read_dir(j("/home")) {
        homes.extend(rd.flatten().map(|e| e.path()));
    }
    for h in homes {
        for f in [
            ".bashrc",
            ".profile",
            ".bash_profile",
            ".bash_login",
            ".zshrc",
        ] {
            out.push((FootholdKind::ShellProfile, h.join(f)));
        }
        walk(&h.join(".config/systemd/user"), 2, &mut |p| {
            out.push((FootholdKind::Systemd, p))
        });
        out.push((FootholdKind::AuthorizedKeys, h.join(".ssh/authorized_keys")));
        out.push((
            FootholdKind::AuthorizedKeys,
            h.join(".ssh/authorized_keys2"),
        ));
    }
    out
}

fn walk(dir: &Path, depth: u32, f: &mut dyn FnMut(PathBuf)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() && depth > 1 => walk(&p, depth - 1, f),
            Ok(t) if t.is_file() || t.is_symlink() => f(p),
            _ => {}
        }
    }
}

/// Scan persistence under `root` for the needles; also report
/// authorized_keys files changed within `fresh` (their keys are how an
/// intruder comes back, whatever they name).
pub fn scan(root: &Path, needles: &Needles, now: SystemTime, fresh: Duration) -> Vec<Foothold> {
    let mut found = Vec::new();
    for (kind, path) in candidates(root) {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.len() > 4 << 20 {
            continue;
        }
        let shown = path.display().to_string();
        if kind == FootholdKind::AuthorizedKeys
            && let Ok(m) = meta.modified()
            && now.duration_since(m).unwrap_or_default() <= fresh
        {
            found.push(Foothold {
                kind,
                path: shown.clone(),
                line: 0,
                text: "changed within the last day".into(),
            });
        }
        if needles.is_empty() {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            if needles.matches(line) {
                found.push(Foothold {
                    kind,
                    path: shown.clone(),
                    line: i + 1,
                    text: line.chars().take(300).collect(),
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `kind` names of a footholds action line.
    #[test]
    fn kinds_serialise_to_their_stable_names() {
        let names = FootholdKind::ALL.map(|k| serde_json::to_string(&k).unwrap());
        assert_eq!(
            names,
            [
                "\"cron\"",
                "\"systemd\"",
                "\"rc_local\"",
                "\"ld_preload\"",
                "\"shell_profile\"",
                "\"authorized_keys\""
            ]
        );
    }

    #[test]
    fn finds_cron_systemd_and_preload_lines_naming_the_miner() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let w = |p: &str, body: &str| {
            let f = r.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, body).unwrap();
        };
        w(
            "/etc/crontab",
            "# m h dom mon dow user command\n*/5 * * * * root /tmp/.x/kworkerd -o pool:3333\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n",
        );
        w(
            "/var/spool/cron/crontabs/root",
            "@reboot /dev/shm/kworkerd\n",
        );
        w(
            "/etc/systemd/system/sysupdate.service",
            "[Service]\nExecStart=/tmp/.x/kworkerd\n",
        );
        w("/etc/ld.so.preload", "/usr/local/lib/libprocesshider.so\n");
        w("/root/.bashrc", "alias ll='ls -l'\n");
        w("/root/.ssh/authorized_keys", "ssh-ed25519 AAAA intruder\n");
        let n = Needles::for_exe(Some("/tmp/.x/kworkerd"), Some(&"ab".repeat(32)));
        let found = scan(r, &n, SystemTime::now(), Duration::from_secs(86_400));
        let kinds: Vec<(FootholdKind, usize)> = found.iter().map(|f| (f.kind, f.line)).collect();
        assert!(kinds.contains(&(FootholdKind::Cron, 2)), "{found:?}");
        assert!(
            found
                .iter()
                .any(|f| f.path.ends_with("crontabs/root") && f.line == 1),
            "name match in another dir: {found:?}"
        );
        assert!(kinds.contains(&(FootholdKind::Systemd, 2)));
        assert!(
            kinds.contains(&(FootholdKind::AuthorizedKeys, 0)),
            "fresh authorized_keys reported"
        );
        assert!(
            !found.iter().any(|f| f.path.ends_with(".bashrc")),
            "benign lines are not reported"
        );
        assert!(!found.iter().any(|f| f.text.contains("run-parts")));
    }

    #[test]
    fn generic_names_are_not_needles() {
        let n = Needles::for_exe(Some("/usr/bin/python3"), None);
        assert_eq!(n.names, Vec::<String>::new());
        assert!(contains_word("run /opt/x/kworkerd now", "kworkerd"));
        assert!(!contains_word("kworkerd2", "kworkerd"));
    }
}
