//! The `[response]` configuration section: what minerwatch may do to a
//! confirmed miner, and what it must never touch.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::detect::{Rule, Severity};
use crate::invalid::Invalid;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Verdicts say what would have been done (`would`); nothing is touched.
    #[default]
    Observe,
    /// Take the actions of the policy.
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// SIGKILL the process and its tree through pidfds.
    Kill,
    /// Refuse the tree's TCP connects and every connect to its pool endpoints.
    BlockEgress,
    /// Move the executable into the quarantine directory.
    Quarantine,
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Kill => "kill",
            ActionKind::BlockEgress => "block_egress",
            ActionKind::Quarantine => "quarantine",
        }
    }
}

/// Actions for verdicts at or above a severity (and optionally one rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    pub min_severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    pub actions: Vec<ActionKind>,
}

/// Never act on anything matching these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Protect {
    /// Executable paths (exact) or directory prefixes ending in `/`.
    pub paths: Vec<String>,
    /// SHA-256 of executables (hex).
    pub sha256: Vec<String>,
    pub uids: Vec<u32>,
    /// cgroup path prefixes (e.g. `/system.slice/backup.service`).
    pub cgroups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    /// `observe` (default) or `enforce` (also `--enforce`).
    pub mode: Mode,
    /// First matching entry wins, most severe first.
    pub policy: Vec<PolicyEntry>,
    pub protect: Protect,
    /// Root-only directory for quarantined executables.
    pub quarantine_dir: PathBuf,
    /// How long after a kill the kill is confirmed (pidfd poll), ms.
    pub kill_timeout_ms: u64,
    /// Report persistence (cron, systemd, rc.local, ld.so.preload, shell
    /// profiles, fresh authorized_keys) that names the miner, with each verdict.
    pub footholds: bool,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            mode: Mode::Observe,
            policy: vec![
                PolicyEntry {
                    min_severity: Severity::Critical,
                    rule: None,
                    actions: vec![
                        ActionKind::Kill,
                        ActionKind::BlockEgress,
                        ActionKind::Quarantine,
                    ],
                },
                PolicyEntry {
                    min_severity: Severity::High,
                    rule: None,
                    actions: vec![ActionKind::BlockEgress],
                },
            ],
            protect: Protect::default(),
            quarantine_dir: PathBuf::from(crate::defaults::QUARANTINE_DIR),
            kill_timeout_ms: 1000,
            footholds: true,
        }
    }
}

impl ResponseConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        for (i, p) in self.policy.iter().enumerate() {
            if p.actions.is_empty() {
                return Err(Invalid::new(
                    format!("response.policy[{i}].actions"),
                    "is empty; list at least one of kill, block_egress, quarantine or remove the entry",
                ));
            }
        }
        for (i, h) in self.protect.sha256.iter().enumerate() {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Invalid::new(
                    format!("response.protect.sha256[{i}]"),
                    format!("{h:?} is not a SHA-256; use 64 hex digits"),
                ));
            }
        }
        if !self.quarantine_dir.is_absolute() {
            return Err(Invalid::new(
                "response.quarantine_dir",
                "must be an absolute path",
            ));
        }
        if !(100..=10_000).contains(&self.kill_timeout_ms) {
            return Err(Invalid::new(
                "response.kill_timeout_ms",
                "use 100..=10000 (default 1000)",
            ));
        }
        Ok(())
    }

    /// The actions the policy names for a verdict.
    pub fn actions_for(&self, rule: Rule, severity: Severity) -> Vec<ActionKind> {
        self.policy
            .iter()
            .find(|p| severity >= p.min_severity && p.rule.is_none_or(|r| r == rule))
            .map(|p| p.actions.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_kills_critical_and_blocks_high() {
        let c = ResponseConfig::default();
        assert_eq!(
            c.actions_for(Rule::PoolProtocolUnverified, Severity::Critical),
            vec![
                ActionKind::Kill,
                ActionKind::BlockEgress,
                ActionKind::Quarantine
            ]
        );
        assert_eq!(
            c.actions_for(Rule::PoolProtocolUnverified, Severity::High),
            vec![ActionKind::BlockEgress]
        );
        assert!(
            c.actions_for(Rule::PoolProtocolUnverified, Severity::Medium)
                .is_empty()
        );
        assert_eq!(c.mode, Mode::Observe);
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut c = ResponseConfig::default();
        c.protect.sha256 = vec!["abc".into()];
        assert_eq!(c.validate().unwrap_err().key, "response.protect.sha256[0]");
        let mut c = ResponseConfig::default();
        c.policy[0].actions.clear();
        assert_eq!(c.validate().unwrap_err().key, "response.policy[0].actions");
    }
}
