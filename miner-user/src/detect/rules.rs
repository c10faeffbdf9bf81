//! The rules: which combinations of evidence make a verdict, at what
//! severity, and for which processes.
//!
//! | rule | needs | severity |
//! |---|---|---|
//! | `pool_protocol_unverified` | pool protocol + unverified binary | High at once; Critical once its CPU (or its group's) is sustained |
//! | `pool_protocol_busy` | pool protocol + binary not unverified + sustained CPU | High |
//! | `pool_port_busy_unverified` | pool port/address/TLS server name (flow not proven to be another protocol) + unverified (or no provenance after the wait) + sustained CPU | High |
//! | `miner_command_line` | miner command line + sustained CPU + unverified (or no provenance after the wait), or verified and on `miner_names` (a packaged miner told to mine) | High |
//! | `miner_group` | a holder (pool protocol; or pool connection or miner command line from an unverified binary) whose tree or cgroup workers have sustained CPU together | High |
//! | `randomx_fingerprint` | a thread showed the RandomX MXCSR shape + sustained CPU, any provenance (not on `fingerprint_allow`) | High; Critical when unverified or with pool network evidence |
//!
//! A flow's destination is the one asked of a proxy when it went through
//! one (SOCKS4/5, HTTP CONNECT), and its protocol what its tunnel or its
//! WebSocket frames carry: a pool login through a proxy is the same verdict
//! as without one, and the evidence names both the proxy and the pool.
//!
//! Weak evidence (`tls_idle_no_alpn`: a TLS flow without ALPN that stays
//! open with small records while the process burns about every core) joins
//! the evidence of a verdict that fires anyway; it never makes one.
//!
//! Sustained CPU alone, unverified alone, or both together, never alert.
//! Kernel hints (huge pages, MSR) never alert: they are listed in the
//! verdicts of the process that produced them.
//! One verdict per process and rule; a higher severity re-alerts. A verdict
//! covers the process's live descendants (listed in `members`), which
//! inherit the "already alerted" state so a fork-heavy miner does not
//! storm.

use std::collections::BTreeSet;

/// The cgroup v2 root's id (kernfs root inode): every process of a hybrid
/// host, so never a group.
const ROOT_CGROUP_ID: u64 = 1;

use super::cpu::{CpuJudgement, judge_group, judge_history};
use super::detector::{Detector, Flow, Owner, Track};
use super::protocol::Hop;
use super::{Evidence, Rule, Severity, Signal, Verdict};
use crate::process::table::Process;
use crate::time::Mono;

/// What the provenance subsystem said about the running image.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Prov {
    Verified,
    /// Verified only by the package database inside the process's own root
    /// (a container image): its author wrote that database. Quiet for weak
    /// signals; unverified against a pool protocol or the work fingerprint.
    ImageVouched(Evidence),
    Unverified(Evidence),
    /// No verdict yet; `Some` once the wait has passed.
    Unknown(Option<Evidence>),
}

impl Prov {
    /// Unverified, or unknown for longer than the wait: good enough for
    /// rules that also need CPU and a network or command-line signal.
    fn evidence_not_verified(&self) -> Option<&Evidence> {
        match self {
            Prov::Unverified(e) => Some(e),
            Prov::Unknown(e) => e.as_ref(),
            Prov::Verified | Prov::ImageVouched(_) => None,
        }
    }

    /// The standing against strong evidence (a pool protocol, the RandomX
    /// work fingerprint): an image's own package database cannot lower it.
    pub(super) fn evidence_against_strong(&self) -> Option<&Evidence> {
        match self {
            Prov::Unverified(e) | Prov::ImageVouched(e) => Some(e),
            Prov::Verified | Prov::Unknown(_) => None,
        }
    }
}

struct Firing {
    rule: Rule,
    severity: Severity,
    evidence: Vec<Evidence>,
    /// Group members beyond the process's own descendants.
    members: BTreeSet<u32>,
}

fn ev(signal: Signal, time: Mono, detail: String) -> Evidence {
    Evidence {
        signal,
        time,
        detail,
    }
}

impl Detector {
    /// Evidence counts for `p` when `p` produced it, or when the process
    /// that did is gone (a daemonized child carries on). While the producer
    /// lives, forked copies are its workers, judged by the group rule.
    fn counts_for(&self, p: &Process, owner: Owner) -> bool {
        owner == (p.tgid, p.start_time)
            || self
                .table
                .live(owner.0)
                .is_none_or(|o| o.start_time != owner.1)
    }

    pub(super) fn provenance_state(&self, p: &Process, t: &Track, now: Mono) -> Prov {
        match &p.provenance {
            Some(prov) if prov.is_image_vouched() => {
                let path = prov
                    .path
                    .clone()
                    .or_else(|| p.exe_display())
                    .unwrap_or_default();
                let db = prov
                    .vouched_by
                    .as_ref()
                    .map(|v| v.database.as_str())
                    .unwrap_or("package");
                let pkg = prov.package.as_deref().unwrap_or("?");
                Prov::ImageVouched(ev(
                    Signal::ImageVouchedExec,
                    p.provenance_time.unwrap_or(now),
                    format!(
                        "{path}: packaged ({pkg}) only by the image's own {db} database, \
                         which the image's author controls"
                    ),
                ))
            }
            Some(prov) if prov.is_verified() => Prov::Verified,
            Some(prov) => {
                let reasons: Vec<String> = prov
                    .reasons
                    .iter()
                    .filter_map(|r| serde_json::to_value(r).ok())
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                let path = prov
                    .path
                    .clone()
                    .or_else(|| p.exe_display())
                    .unwrap_or_default();
                Prov::Unverified(ev(
                    Signal::UnverifiedExec,
                    p.provenance_time.unwrap_or(now),
                    format!("{path}: {}", reasons.join(", ")),
                ))
            }
            None => {
                let wait = self.cfg.provenance_wait_ms.saturating_mul(1_000_000);
                let since = t.image_seen;
                Prov::Unknown((now.saturating_sub(since) >= wait).then(|| {
                    ev(
                        Signal::ProvenanceUnknown,
                        since.plus_ns(wait),
                        format!(
                            "no provenance verdict {} ms after exec",
                            self.cfg.provenance_wait_ms
                        ),
                    )
                }))
            }
        }
    }

    fn flow_evidence(
        &self,
        p: &Process,
        t: &Track,
        pick: impl Fn(&Flow) -> Option<Evidence>,
    ) -> Option<Evidence> {
        t.flows
            .values()
            .filter(|f| self.counts_for(p, f.owner))
            .filter_map(pick)
            .min_by_key(|e| e.time)
    }

    fn pool_protocol_evidence(&self, p: &Process, t: &Track) -> Option<Evidence> {
        self.flow_evidence(p, t, |f| {
            let (time, proto) = f.mining?;
            Some(ev(
                Signal::PoolProtocol,
                time,
                format!("{proto} to {}", describe(f)),
            ))
        })
    }

    fn pool_connection_evidence(&self, p: &Process, t: &Track, now: Mono) -> Option<Evidence> {
        self.flow_evidence(p, t, |f| {
            if !f.is_pool_connection(now) {
                return None;
            }
            let (signal, what) = if f.pool_sni {
                (Signal::TlsPoolSni, "TLS to a pool server name")
            } else if f.class == Some(super::Protocol::Tls) {
                (Signal::TlsPoolPort, "TLS to a pool port")
            } else if f.pool_dest {
                (
                    Signal::ProxyPoolDestination,
                    "asked a proxy for a pool endpoint",
                )
            } else if f.pool_port {
                (Signal::PoolPort, "connected to a pool port")
            } else {
                (Signal::PoolAddress, "connected to a pool address")
            };
            Some(ev(signal, f.time, format!("{what}: {}", describe(f))))
        })
    }

    /// A TLS flow with no ALPN, open a while with small records, while the
    /// process uses (nearly) every core of the machine: how a TLS-wrapped
    /// miner looks from outside. Weak: busy TLS clients without ALPN exist
    /// (database drivers, custom agents), so it only joins other evidence.
    fn tls_idle_evidence(
        &self,
        p: &Process,
        t: &Track,
        cpu: &CpuJudgement,
        now: Mono,
    ) -> Option<Evidence> {
        // Cores used while busy (the window's idle seconds left out): a
        // miner that just started burns every core from its first sample.
        let (on, span) = t
            .cpu
            .in_window(now, self.policy.window_ns)
            .filter(|c| c.cores >= self.policy.busy_cores)
            .fold((0.0, 0u64), |(on, span), c| {
                (on + c.cores * c.span_ns as f64, span + c.span_ns)
            });
        let busy_cores = if span == 0 { 0.0 } else { on / span as f64 };
        let cores = f64::from(self.cfg.online_cpus.max(1));
        if !cpu.sustained || busy_cores < TLS_IDLE_CORE_SHARE * cores {
            return None;
        }
        let open_ns = self.cfg.tls_idle_open_secs.saturating_mul(1_000_000_000);
        self.flow_evidence(p, t, |f| {
            let tls = f.tls.as_ref()?;
            let c = f.stats?;
            let open = c.last.saturating_sub(c.since);
            let mean = c.bytes / u64::from(c.packets.max(1));
            (tls.alpn.is_none() && open >= open_ns && mean <= self.cfg.tls_idle_max_record_bytes)
                .then(|| {
                    ev(
                        Signal::TlsIdleNoAlpn,
                        c.last,
                        format!(
                            "TLS without ALPN to {}: open {:.0} s, {} records of {} bytes on \
                             average, process at {:.2} of {} cores while busy",
                            describe(f),
                            open as f64 / 1e9,
                            c.packets,
                            mean,
                            busy_cores,
                            self.cfg.online_cpus
                        ),
                    )
                })
        })
    }

    fn cmdline_evidence(&self, p: &Process, t: &Track) -> Option<Evidence> {
        let c = t.cmdline.as_ref()?;
        self.counts_for(p, c.owner)
            .then(|| ev(Signal::MinerCmdline, c.time, c.detail.clone()))
    }

    /// The RandomX shape, unless the executable is allowed to show it.
    fn fingerprint_evidence(&self, p: &Process, t: &Track) -> Option<Evidence> {
        let shape = t.fpu.shape.as_ref()?;
        let path = p.exe_display();
        let sha = p.provenance.as_ref().and_then(|pv| pv.sha256.as_deref());
        if self.cfg.fingerprint_allow.allows(path.as_deref(), sha) {
            return None;
        }
        Some(ev(Signal::CpuFingerprint, shape.time, shape.detail.clone()))
    }

    /// A packaged binary that is a miner program by package or file name.
    fn miner_program_evidence(&self, p: &Process, now: Mono) -> Option<Evidence> {
        let prov = p.provenance.as_ref().filter(|pv| pv.is_verified())?;
        let path = prov.path.clone().or_else(|| p.exe_display())?;
        let file = path.rsplit('/').next().unwrap_or(&path);
        let names = &self.cfg.miner_names;
        let by_file = names.iter().any(|n| n == file);
        let by_package = prov
            .package
            .as_deref()
            .is_some_and(|pkg| names.iter().any(|n| n == pkg));
        if !(by_file || by_package) {
            return None;
        }
        let package = prov
            .package
            .as_deref()
            .map(|pkg| format!(" (package {pkg})"))
            .unwrap_or_default();
        Some(ev(
            Signal::MinerProgram,
            p.provenance_time.unwrap_or(now),
            format!("{path}{package} is a miner program"),
        ))
    }

    fn hint_evidence(t: &Track) -> impl Iterator<Item = Evidence> + '_ {
        t.hints
            .seen
            .iter()
            .map(|h| ev(Signal::Hint, h.time, h.detail.clone()))
    }

    fn cpu_evidence(&self, signal: Signal, j: &CpuJudgement, now: Mono, who: &str) -> Evidence {
        ev(
            signal,
            j.first_busy.unwrap_or(now),
            format!("{who}{}", j.detail(&self.policy)),
        )
    }

    /// The holder's descendants and, in its cgroup, processes running its
    /// executable. A holder that is not itself verified also reaches up
    /// through unverified ancestors (a dropper that launched it and its
    /// siblings) and, when it speaks a pool protocol, takes in every
    /// unverified process of its cgroup (a proxy and its miners in one
    /// container). A verified holder (a packaged interpreter running a pool
    /// health check) never pulls in unrelated neighbours.
    fn group_members(&self, h: &Process, strong: bool) -> BTreeSet<u32> {
        // An image's own database does not vouch for a pool-protocol holder.
        let image_vouched = h.provenance.as_ref().is_some_and(|p| p.is_image_vouched());
        let holder_verified = h.is_verified() == Some(true) && !(strong && image_vouched);
        let mut root = h.tgid;
        for a in self.table.ancestors(h.tgid) {
            match self.table.live(a) {
                Some(ap) if !holder_verified && a > 1 && ap.is_verified() == Some(false) => {
                    root = a
                }
                _ => break,
            }
        }
        let mut set: BTreeSet<u32> = self
            .table
            .descendants(root)
            .into_iter()
            .filter(|&d| self.table.live(d).is_some())
            .collect();
        set.insert(root);
        // cgroup-mates: never through the root cgroup (id 1), where a hybrid
        // host keeps every process, and unrelated unverified neighbours only
        // inside a container's cgroup — a login session or a service's
        // cgroup holds the admin's own tools.
        if h.cgroup_id > ROOT_CGROUP_ID {
            let container = h
                .cgroup
                .as_deref()
                .is_some_and(|c| crate::enrich::container::from_cgroup_path(c).is_some());
            for m in self.table.in_cgroup(h.cgroup_id) {
                let Some(mp) = self.table.live(m) else {
                    continue;
                };
                let same_exe = h.has_exe_identity() && mp.exe == h.exe;
                let include = (same_exe && (container || !holder_verified))
                    || (container && strong && !holder_verified && mp.is_verified() == Some(false));
                if include {
                    set.insert(m);
                }
            }
        }
        set.remove(&h.tgid);
        set
    }

    fn judge(&self, tgid: u32, now: Mono) -> Vec<Firing> {
        let mut fire = Vec::new();
        let (Some(p), Some(t)) = (self.table.live(tgid), self.tracks.get(&tgid)) else {
            return fire;
        };
        // Cheapest first: most processes have no evidence at all.
        let protocol = self.pool_protocol_evidence(p, t);
        let connection = self.pool_connection_evidence(p, t, now);
        let cmdline = self.cmdline_evidence(p, t);
        let fingerprint = self.fingerprint_evidence(p, t);
        if protocol.is_none() && connection.is_none() && cmdline.is_none() && fingerprint.is_none()
        {
            return fire;
        }
        let prov = self.provenance_state(p, t, now);
        let cpu = judge_history(&t.cpu, now, &self.policy);
        let cpu_ev = cpu
            .sustained
            .then(|| self.cpu_evidence(Signal::CpuSustained, &cpu, now, ""));
        let not_verified = prov.evidence_not_verified();

        // The group: a holder's workers (forked copies, its tree, its
        // cgroup) burning CPU together.
        let strong = protocol.is_some();
        let weak = not_verified.is_some() && (connection.is_some() || cmdline.is_some());
        let group = (strong || weak)
            .then(|| self.group_members(p, strong))
            .filter(|m| !m.is_empty())
            .and_then(|members| {
                let histories = members
                    .iter()
                    .filter_map(|m| self.tracks.get(m))
                    .map(|t| &t.cpu);
                let g = judge_group(histories, now, &self.policy);
                g.sustained.then(|| {
                    let busy = members
                        .iter()
                        .filter(|m| {
                            self.tracks.get(m).is_some_and(|t| {
                                judge_history(&t.cpu, now, &self.policy).peak_cores > 0.0
                            })
                        })
                        .count();
                    let who = format!("{busy} of {} other group members on CPU: ", members.len());
                    (self.cpu_evidence(Signal::GroupCpu, &g, now, &who), members)
                })
            });
        let group_ev = group.as_ref().map(|(e, _)| e);

        let one = |rule, severity, evidence: Vec<Option<&Evidence>>| Firing {
            rule,
            severity,
            evidence: evidence.into_iter().flatten().cloned().collect(),
            members: BTreeSet::new(),
        };
        if let Some(proto) = &protocol {
            if let Some(u) = prov.evidence_against_strong() {
                // Critical once the miner (or its workers) burns CPU.
                let busy = cpu_ev.as_ref().or(group_ev);
                let sev = if busy.is_some() {
                    Severity::Critical
                } else {
                    Severity::High
                };
                fire.push(one(
                    Rule::PoolProtocolUnverified,
                    sev,
                    vec![Some(proto), Some(u), busy],
                ));
            } else if cpu.sustained {
                let unknown = match &prov {
                    Prov::Unknown(e) => e.as_ref(),
                    _ => None,
                };
                fire.push(one(
                    Rule::PoolProtocolBusy,
                    Severity::High,
                    vec![Some(proto), unknown, cpu_ev.as_ref()],
                ));
            }
        }
        if let (Some(conn), Some(nv), true) = (&connection, not_verified, cpu.sustained) {
            fire.push(one(
                Rule::PoolPortBusyUnverified,
                Severity::High,
                vec![Some(conn), Some(nv), cpu_ev.as_ref()],
            ));
        }
        if let (Some(cmd), true) = (&cmdline, cpu.sustained) {
            // Unverified, or a packaged miner program told to mine.
            let whose = not_verified
                .cloned()
                .or_else(|| self.miner_program_evidence(p, now));
            if let Some(whose) = &whose {
                fire.push(one(
                    Rule::MinerCommandLine,
                    Severity::High,
                    vec![Some(cmd), Some(whose), cpu_ev.as_ref()],
                ));
            }
        }
        // The work itself: any provenance, once provenance had its chance
        // (an allowlisted hash must be known before the rule can fire).
        let prov_settled = !matches!(prov, Prov::Unknown(None));
        if let (Some(fp), true, true) = (&fingerprint, cpu.sustained, prov_settled) {
            // An image's own package database cannot lower the work's
            // verdict: image-vouched counts as unverified here.
            let unverified = prov.evidence_against_strong();
            let network = protocol.as_ref().or(connection.as_ref());
            let severity = if unverified.is_some() || network.is_some() {
                Severity::Critical
            } else {
                Severity::High
            };
            fire.push(one(
                Rule::RandomxFingerprint,
                severity,
                vec![
                    Some(fp),
                    unverified.or(not_verified),
                    network,
                    cpu_ev.as_ref(),
                ],
            ));
        }
        if let Some((group_ev, members)) = group {
            let holder = protocol
                .as_ref()
                .or(connection.as_ref())
                .or(cmdline.as_ref());
            let mut evidence: Vec<Evidence> = [holder, not_verified]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            evidence.push(group_ev);
            fire.push(Firing {
                rule: Rule::MinerGroup,
                severity: Severity::High,
                evidence,
                members,
            });
        }
        for f in &mut fire {
            f.evidence.extend(Self::hint_evidence(t));
        }
        if !fire.is_empty()
            && let Some(weak) = self.tls_idle_evidence(p, t, &cpu, now)
        {
            for f in &mut fire {
                f.evidence.push(weak.clone());
            }
        }
        fire
    }

    pub(super) fn evaluate(&mut self, tgid: u32, now: Mono, out: &mut Vec<Verdict>) {
        for f in self.judge(tgid, now) {
            self.emit(tgid, f, now, out);
        }
    }

    fn emit(&mut self, tgid: u32, f: Firing, now: Mono, out: &mut Vec<Verdict>) {
        let Some(t) = self.tracks.get(&tgid) else {
            return;
        };
        if t.alerted.get(&f.rule).is_some_and(|&s| s >= f.severity) {
            return;
        }
        let Some(p) = self.table.live(tgid) else {
            return;
        };
        let mut members: BTreeSet<u32> = self
            .table
            .descendants(tgid)
            .into_iter()
            .filter(|&d| self.table.live(d).is_some())
            .collect();
        members.extend(f.members);
        members.remove(&tgid);
        let verdict = build_verdict(
            p,
            f.rule,
            f.severity,
            f.evidence,
            members.iter().copied().collect(),
            self.chain_of(p),
            now,
        );
        for m in std::iter::once(tgid).chain(members) {
            if let Some(t) = self.tracks.get_mut(&m) {
                let e = t.alerted.entry(f.rule).or_insert(f.severity);
                *e = (*e).max(f.severity);
            }
        }
        out.push(verdict);
    }
}

/// Share of the machine's cores a process must use on average for the
/// weak TLS evidence ("burns every core it has", with room for the
/// scheduler and the sampling).
const TLS_IDLE_CORE_SHARE: f64 = 0.8;

fn endpoint(f: &Flow) -> String {
    match f.daddr {
        std::net::IpAddr::V6(a) => format!("[{a}]:{}", f.dport),
        a => format!("{a}:{}", f.dport),
    }
}

/// The flow's endpoint, the destinations asked of its proxies, its
/// WebSocket and TLS details: `pool:3333 via socks5 proxy 127.0.0.1:1080,
/// over WebSocket ws://pool/ws, TLS server name pool, JA4 t12i…`.
fn describe(f: &Flow) -> String {
    let mut hop_at = endpoint(f);
    let mut via = Vec::new();
    let mut ws = None;
    for h in &f.hops {
        match h {
            Hop::Proxy(p) => {
                via.push(format!("via {} proxy {hop_at}", p.kind.name()));
                hop_at = p.dest.to_string();
            }
            Hop::WebSocket(u) => ws = Some(u),
        }
    }
    via.reverse();
    let mut out = hop_at;
    for v in via {
        out.push(' ');
        out.push_str(&v);
    }
    if let Some(u) = ws {
        out.push_str(&format!(
            ", over WebSocket ws://{}{}",
            u.host.as_deref().unwrap_or("?"),
            u.path
        ));
    }
    if let Some(s) = &f.sni {
        out.push_str(&format!(", server name {s}"));
    }
    if let Some(t) = &f.tls {
        out.push_str(&format!(
            ", JA4 {}{}",
            t.ja4,
            if t.alpn.is_none() { " (no ALPN)" } else { "" }
        ));
    }
    out
}

fn build_verdict(
    p: &Process,
    rule: Rule,
    severity: Severity,
    mut evidence: Vec<Evidence>,
    members: Vec<u32>,
    (chain, chain_truncated): (Vec<super::ChainLink>, bool),
    now: Mono,
) -> Verdict {
    evidence.sort_by_key(|e| e.time);
    let base = evidence
        .iter()
        .map(|e| e.time)
        .chain(p.observed_start())
        .min()
        .unwrap_or(now);
    Verdict {
        time: now,
        rule,
        severity,
        pid: p.tgid,
        tgid: p.tgid,
        ppid: p.ppid,
        comm: p.comm.clone(),
        exe: p.exe_display(),
        cmdline: p.argv.clone(),
        uid: p.uid,
        cgroup_id: p.cgroup_id,
        cgroup: p.cgroup.clone(),
        exe_dev: p.exe.dev,
        exe_ino: p.exe.ino,
        start_boottime_ns: p.start_boottime_ns,
        provenance: p.provenance.clone(),
        evidence,
        latency_ms: now.saturating_sub(base) / 1_000_000,
        members,
        chain,
        chain_truncated,
    }
}
