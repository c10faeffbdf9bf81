//! From a verdict to a plan, on the pipeline's side and without I/O: which
//! actions the policy names, on which targets, and what is refused and why.
//! Observe mode stops here (`would`); enforce mode hands the steps to the
//! response thread.

use std::net::IpAddr;

use super::{
    ActionKind, ActionResult, Mode, Outcome, ResponseConfig, safety::Safety, target::Target,
};
use crate::detect::Verdict;

/// One action and the targets it may touch; `targets[0]` is the flagged
/// process.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub action: ActionKind,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Enforce mode: what the response thread is to do, in order.
    pub steps: Vec<Step>,
    /// Refusals, reported in both modes.
    pub refused: Vec<ActionResult>,
    /// Observe mode: what enforce mode would do.
    pub would: Vec<String>,
}

/// `scope[0]` is the flagged process, the rest the action scope (see
/// `daemon::scope`). A refusal of the flagged process refuses the action
/// for its whole scope (the scope exists because of it); a refusal of
/// another target removes that target only.
pub fn plan(
    cfg: &ResponseConfig,
    safety: &Safety,
    v: &Verdict,
    scope: &[Target],
    endpoints: &[(IpAddr, u16)],
) -> Plan {
    let mut out = Plan::default();
    let Some(flagged) = scope.first() else {
        return out;
    };
    for action in cfg.actions_for(v.rule, v.severity) {
        if let Some(reason) = safety.refusal(flagged, action) {
            out.refused.push(refused(action, flagged.tgid, reason));
            continue;
        }
        let mut targets = vec![flagged.clone()];
        if action != ActionKind::Quarantine {
            for t in &scope[1..] {
                if targets.iter().any(|x| x.tgid == t.tgid) {
                    continue;
                }
                match safety.refusal(t, action) {
                    Some(reason) => out.refused.push(refused(action, t.tgid, reason)),
                    None => targets.push(t.clone()),
                }
            }
        }
        match cfg.mode {
            Mode::Observe => out.would.push(describe(action, &targets, endpoints)),
            Mode::Enforce => out.steps.push(Step { action, targets }),
        }
    }
    out
}

fn refused(action: ActionKind, target: u32, reason: String) -> ActionResult {
    ActionResult {
        action,
        target,
        result: Outcome::Refused,
        reason,
        latency_ms: 0,
    }
}

pub fn format_endpoint(a: IpAddr, p: u16) -> String {
    match a {
        IpAddr::V4(v4) => format!("{v4}:{p}"),
        IpAddr::V6(v6) => format!("[{v6}]:{p}"),
    }
}

/// `kill 1234 (tree of 3)`, `block_egress 1234 -> [10.0.0.1:3333]`, …
pub fn describe(action: ActionKind, targets: &[Target], endpoints: &[(IpAddr, u16)]) -> String {
    let first = targets.first().map_or(0, |t| t.tgid);
    match action {
        ActionKind::Kill => format!("kill {first} (tree of {})", targets.len()),
        ActionKind::BlockEgress => {
            let eps: Vec<String> = endpoints
                .iter()
                .map(|(a, p)| format_endpoint(*a, *p))
                .collect();
            format!("block_egress {first} -> [{}]", eps.join(", "))
        }
        ActionKind::Quarantine => format!("quarantine executable of {first}"),
    }
}
