//! Synthetic event streams for the work fingerprint and packaged miners:
//! the `randomx_fingerprint` rule matrix (provenance × network evidence),
//! what must stay silent, the allowlist, hints as evidence only, and
//! `miner_command_line` for packaged miner programs.

use std::collections::BTreeMap;

use miner_ebpf_common::mxcsr_class;

use super::tests::{build::*, run_with};
use super::*;
use crate::event::*;

const POOL: &str = "203.0.113.60";
const RANDOMX: [u16; 4] = [0x9FC0, 0xBFC0, 0xDFC0, 0xFFC0];

/// A kernel MXCSR report: thread `pid` of `tgid` now at `mxcsr`, having
/// shown `seen` so far.
fn fpu(t: u64, tgid: u32, pid: u32, mxcsr: u16, seen: &[u16]) -> Event {
    Event::Fpu(Fpu {
        time: ms(t),
        tgid,
        pid,
        comm: "worker".into(),
        mxcsr,
        seen: seen
            .iter()
            .fold(0, |m, v| m | 1 << mxcsr_class(u32::from(*v))),
    })
}

/// What RandomX looks like from the kernel: a worker thread's set grows
/// 0x9FC0 → +0xBFC0 → +0xDFC0 over a few hundred ms.
fn randomx_thread(t: u64, tgid: u32) -> Vec<Event> {
    let pid = tgid + 1;
    vec![
        fpu(t, tgid, pid, RANDOMX[1], &RANDOMX[..2]),
        fpu(t + 300, tgid, pid, RANDOMX[2], &RANDOMX[..3]),
        fpu(t + 700, tgid, pid, RANDOMX[3], &RANDOMX),
    ]
}

fn hint(t: u64, tgid: u32, kind: HintKind, value: u64, path: &str) -> Event {
    Event::Hint(Hint {
        time: ms(t),
        tgid,
        pid: tgid,
        uid: 0,
        comm: String::new(),
        hint: kind,
        value,
        path: path.into(),
    })
}

fn run(events: Vec<Event>, until: u64) -> Vec<Verdict> {
    run_with(DetectorConfig::default(), events, until).0
}

fn highest(verdicts: &[Verdict], rule: Rule, tgid: u32) -> Option<Severity> {
    verdicts
        .iter()
        .filter(|v| v.rule == rule && v.tgid == tgid)
        .map(|v| v.severity)
        .max()
}

fn rules(verdicts: &[Verdict]) -> BTreeMap<(Rule, u32), Severity> {
    let mut m = BTreeMap::new();
    for v in verdicts {
        let e = m.entry((v.rule, v.tgid)).or_insert(v.severity);
        *e = (*e).max(v.severity);
    }
    m
}

#[derive(Clone, Copy, Debug)]
enum Prov {
    Unverified,
    Verified,
    /// No verdict ever arrives (hashing stuck): unknown after the wait.
    Missing,
}

#[derive(Clone, Copy, Debug)]
enum Net {
    None,
    /// TLS to a port no pool list knows (what the real XMRig test does).
    TlsOtherPort,
    PoolPort,
    PoolProtocol,
}

fn scenario(tgid: u32, path: &str, prov: Prov, net: Net, cores: f64) -> Vec<Event> {
    let mut ev = vec![exec(T0, tgid, 1, path, &["systemd-resolved"])];
    match prov {
        Prov::Unverified => ev.push(provenance(T0 + 80, tgid, path, false)),
        Prov::Verified => ev.push(provenance(T0 + 80, tgid, path, true)),
        Prov::Missing => {}
    }
    let cookie = u64::from(tgid);
    match net {
        Net::None => {}
        Net::TlsOtherPort => {
            ev.push(connect(T0 + 100, tgid, POOL, 41_234, cookie));
            ev.push(payload(
                T0 + 110,
                Some(tgid),
                cookie,
                POOL,
                41_234,
                &tls_hello(),
            ));
        }
        Net::PoolPort => ev.push(connect(T0 + 100, tgid, POOL, 3333, cookie)),
        Net::PoolProtocol => {
            ev.push(connect(T0 + 100, tgid, POOL, 443, cookie));
            ev.push(payload(
                T0 + 110,
                Some(tgid),
                cookie,
                POOL,
                443,
                &xmrig_login(),
            ));
        }
    }
    ev.extend(randomx_thread(T0 + 1_500, tgid));
    ev.extend(cpu_series(T0, 30, &[tgid], |_| cores));
    ev
}

#[test]
fn randomx_fingerprint_severity_by_provenance_and_network_evidence() {
    use Severity::{Critical, High};
    let cases: &[(Prov, Net, Severity)] = &[
        (Prov::Unverified, Net::None, Critical),
        (Prov::Unverified, Net::TlsOtherPort, Critical),
        (Prov::Unverified, Net::PoolPort, Critical),
        (Prov::Unverified, Net::PoolProtocol, Critical),
        // A packaged binary mining (monerod, a packaged xmrig): a miner.
        (Prov::Verified, Net::None, High),
        (Prov::Verified, Net::TlsOtherPort, High),
        (Prov::Verified, Net::PoolPort, Critical),
        (Prov::Verified, Net::PoolProtocol, Critical),
        // No provenance ever: high (never critical on an unknown binary).
        (Prov::Missing, Net::None, High),
        (Prov::Missing, Net::PoolPort, Critical),
    ];
    for (i, &(prov, net, want)) in cases.iter().enumerate() {
        let tgid = 1000 + 10 * i as u32;
        let path = if matches!(prov, Prov::Verified) {
            "/usr/bin/monerod"
        } else {
            "/var/tmp/.cache/systemd-resolved"
        };
        let v = run(scenario(tgid, path, prov, net, 1.0), T0 + 30_000);
        assert_eq!(
            highest(&v, Rule::RandomxFingerprint, tgid),
            Some(want),
            "{prov:?} × {net:?}: {v:#?}"
        );
        let fp = v
            .iter()
            .find(|v| v.rule == Rule::RandomxFingerprint)
            .expect("verdict");
        let signals: Vec<&str> = fp.evidence.iter().map(|e| e.signal.name()).collect();
        assert!(signals.contains(&"cpu_fingerprint"), "{signals:?}");
        assert!(signals.contains(&"cpu_sustained"), "{signals:?}");
    }
}

#[test]
fn fingerprint_verdict_names_the_values_and_fires_once_busy() {
    let path = "/var/tmp/.cache/systemd-resolved";
    let v = run(
        scenario(1, path, Prov::Unverified, Net::None, 1.0),
        T0 + 30_000,
    );
    let fp: Vec<&Verdict> = v
        .iter()
        .filter(|v| v.rule == Rule::RandomxFingerprint)
        .collect();
    assert_eq!(fp.len(), 1, "one verdict, critical from the start: {v:#?}");
    let e = fp[0].evidence_of(Signal::CpuFingerprint).unwrap();
    // The shape completes at the second report (two non-nearest modes).
    assert_eq!(e.time, ms(T0 + 1_800));
    assert!(
        e.detail.contains("0xBFC0") && e.detail.contains("0xDFC0") && e.detail.contains("thread 2"),
        "{}",
        e.detail
    );
    // Shape at 1.8 s, CPU sustained after its third 1 Hz sample.
    assert!(fp[0].time <= ms(T0 + 3_000), "{:?}", fp[0].time);
    assert!(fp[0].latency_ms <= 3_000);
}

#[test]
fn look_alikes_of_the_fingerprint_stay_silent() {
    let path = "/home/dev/build/numeric-app";
    let base = |tgid| {
        let mut ev = vec![
            exec(T0, tgid, 1, path, &["numeric-app"]),
            provenance(T0 + 50, tgid, path, false),
            connect(T0 + 100, tgid, POOL, 41_000, u64::from(tgid)),
            payload(
                T0 + 110,
                Some(tgid),
                u64::from(tgid),
                POOL,
                41_000,
                &tls_hello(),
            ),
        ];
        ev.extend(cpu_series(T0, 60, &[tgid], |_| 1.0));
        ev
    };
    let cases: Vec<(&str, Vec<Event>)> = vec![
        // Interval arithmetic: fesetround down/up/toward zero, no FTZ/DAZ.
        ("fesetround", {
            let mut ev = base(10);
            ev.push(fpu(T0 + 500, 10, 11, 0x3F80, &[0x3F80]));
            ev.push(fpu(T0 + 700, 10, 11, 0x5F80, &[0x3F80, 0x5F80]));
            ev.push(fpu(T0 + 900, 10, 11, 0x7F80, &[0x3F80, 0x5F80, 0x7F80]));
            ev
        }),
        // Fast math never cycles: constant 0x9FC0 (the kernel does not
        // even report it; a report that includes it with one mode).
        ("fast math + one mode", {
            let mut ev = base(20);
            ev.push(fpu(T0 + 500, 20, 21, 0xBFC0, &[0x9FC0, 0xBFC0]));
            ev
        }),
        // Two threads, one mode each: the shape is per thread.
        ("modes spread over threads", {
            let mut ev = base(30);
            ev.push(fpu(T0 + 500, 30, 31, 0xBFC0, &[0xBFC0]));
            ev.push(fpu(T0 + 600, 30, 32, 0xDFC0, &[0xDFC0]));
            ev.push(fpu(T0 + 700, 30, 33, 0xFFC0, &[0xFFC0]));
            ev
        }),
        // FTZ without DAZ (and the reverse) cycling.
        ("FTZ only", {
            let mut ev = base(40);
            ev.push(fpu(T0 + 500, 40, 41, 0xBF80, &[0xBF80, 0xDF80, 0xFF80]));
            ev
        }),
        // Hints, unverified and busy: supporting evidence, never a verdict.
        ("hints alone", {
            let mut ev = base(50);
            ev.push(hint(T0 + 300, 50, HintKind::HugetlbMap, 256 << 20, ""));
            ev.push(hint(T0 + 310, 50, HintKind::MsrOpen, 0, "/dev/cpu/0/msr"));
            ev.push(hint(
                T0 + 320,
                50,
                HintKind::HugepagesSysfs,
                0,
                "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
            ));
            ev
        }),
    ];
    for (name, ev) in cases {
        let v = run(ev, T0 + 62_000);
        assert!(v.is_empty(), "case {name}: {v:#?}");
    }
}

#[test]
fn the_shape_without_sustained_cpu_is_silent() {
    // A RandomX verifier (a wallet checking a few block hashes) is brief.
    let path = "/usr/bin/monero-wallet-cli";
    let mut ev = vec![
        exec(T0, 60, 1, path, &["monero-wallet-cli"]),
        provenance(T0 + 50, 60, path, true),
    ];
    ev.extend(randomx_thread(T0 + 500, 60));
    ev.extend(cpu_series(
        T0,
        30,
        &[60],
        |k| if k == 2 { 0.9 } else { 0.02 },
    ));
    assert!(run(ev, T0 + 32_000).is_empty());
}

#[test]
fn allowlisted_paths_and_hashes_silence_only_the_fingerprint() {
    let path = "/usr/bin/monerod";
    let mut cfg = DetectorConfig::default();
    cfg.fingerprint_allow.paths = vec!["/usr/bin/".into()];
    let (v, _) = run_with(
        cfg,
        scenario(70, path, Prov::Verified, Net::None, 1.0),
        T0 + 30_000,
    );
    assert!(v.is_empty(), "{v:#?}");

    // By hash: the binary's provenance carries it.
    let hash = "ab".repeat(32);
    let mut ev = scenario(
        80,
        "/opt/node/monerod",
        Prov::Unverified,
        Net::PoolPort,
        1.0,
    );
    for e in &mut ev {
        if let Event::Provenance(p) = e {
            p.provenance.sha256 = Some(hash.clone());
        }
    }
    let mut cfg = DetectorConfig::default();
    cfg.fingerprint_allow.sha256 = vec![hash.to_uppercase()];
    let (v, _) = run_with(cfg, ev, T0 + 30_000);
    // The network rule still applies; only the fingerprint is silenced.
    let got = rules(&v);
    assert_eq!(
        got,
        BTreeMap::from([((Rule::PoolPortBusyUnverified, 80), Severity::High)]),
        "{v:#?}"
    );
}

#[test]
fn the_fingerprint_waits_for_provenance_so_an_allowed_hash_never_fires() {
    // Shape and sustained CPU long before a slow hash lands (a large
    // binary, a loaded hasher): nothing until provenance is known or its
    // wait is over; then the allowlisted hash silences it.
    let hash = "cd".repeat(32);
    let path = "/srv/node/monerod";
    let mut ev = vec![exec(T0, 90, 1, path, &["monerod"])];
    ev.extend(randomx_thread(T0 + 200, 90));
    ev.extend(cpu_series(T0, 20, &[90], |_| 1.0));
    let Event::Provenance(mut p) = provenance(T0 + 6_000, 90, path, false) else {
        unreachable!()
    };
    p.provenance.sha256 = Some(hash.clone());
    ev.push(Event::Provenance(p));
    let mut cfg = DetectorConfig {
        provenance_wait_ms: 10_000,
        ..DetectorConfig::default()
    };
    cfg.fingerprint_allow.sha256 = vec![hash];
    let (v, _) = run_with(cfg.clone(), ev.clone(), T0 + 20_000);
    assert!(v.is_empty(), "{v:#?}");
    // Not allowed: it fires when the verdict lands, critical at once.
    cfg.fingerprint_allow.sha256.clear();
    let (v, _) = run_with(cfg, ev, T0 + 20_000);
    let fp: Vec<&Verdict> = v
        .iter()
        .filter(|v| v.rule == Rule::RandomxFingerprint)
        .collect();
    assert_eq!(fp.len(), 1, "{v:#?}");
    assert_eq!(
        (fp[0].time, fp[0].severity),
        (ms(T0 + 6_000), Severity::Critical)
    );
}

#[test]
fn a_new_image_does_not_keep_the_old_fingerprint() {
    let path = "/tmp/.x/kworker";
    let mut ev = vec![
        exec(T0, 100, 1, path, &["kworker"]),
        provenance(T0 + 50, 100, path, false),
    ];
    ev.extend(randomx_thread(T0 + 200, 100));
    // Exec of a packaged shell before CPU becomes sustained.
    ev.push(exec(T0 + 1_100, 100, 1, "/usr/bin/bash", &["bash"]));
    ev.push(provenance(T0 + 1_150, 100, "/usr/bin/bash", true));
    ev.extend(cpu_series(T0 + 1_200, 30, &[100], |_| 1.0));
    let v = run(ev, T0 + 32_000);
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn hints_are_listed_in_the_verdict_of_their_process() {
    let path = "/var/tmp/.cache/systemd-resolved";
    let mut ev = scenario(110, path, Prov::Unverified, Net::None, 1.0);
    ev.push(hint(T0 + 300, 110, HintKind::HugetlbMap, 256 << 20, ""));
    // `modprobe msr` run by the miner: a hint for the miner, not modprobe.
    let Event::Exec(mut m) = exec(
        T0 + 400,
        115,
        110,
        "/usr/sbin/modprobe",
        &["modprobe", "msr"],
    ) else {
        unreachable!()
    };
    m.source = Source::Kernel;
    ev.push(Event::Exec(m));
    let v = run(ev, T0 + 30_000);
    let fp = v
        .iter()
        .find(|v| v.rule == Rule::RandomxFingerprint && v.tgid == 110)
        .expect("verdict");
    let hints: Vec<&str> = fp
        .evidence
        .iter()
        .filter(|e| e.signal == Signal::Hint)
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(hints.len(), 2, "{:#?}", fp.evidence);
    assert!(
        hints.iter().any(|h| h.contains("RandomX cache")),
        "{hints:?}"
    );
    assert!(
        hints.iter().any(|h| h.contains("modprobe msr")),
        "{hints:?}"
    );
    assert!(v.iter().all(|v| v.tgid != 115), "modprobe is not the miner");
}

#[test]
fn packaged_miner_program_told_to_mine_is_a_miner_command_line() {
    let monerod = "/usr/bin/monerod";
    let mining = [
        "monerod",
        "--regtest",
        "--offline",
        "--start-mining",
        WALLET,
        "--mining-threads",
        "1",
    ];
    let mut ev = vec![
        exec(T0, 120, 1, monerod, &mining),
        provenance(T0 + 60, 120, monerod, true),
    ];
    ev.extend(cpu_series(T0, 30, &[120], |_| 0.9));
    let v = run(ev, T0 + 32_000);
    assert_eq!(
        rules(&v),
        BTreeMap::from([((Rule::MinerCommandLine, 120), Severity::High)]),
        "{v:#?}"
    );
    let mut signals: Vec<&str> = v[0].evidence.iter().map(|e| e.signal.name()).collect();
    signals.sort_unstable();
    assert_eq!(signals, ["cpu_sustained", "miner_cmdline", "miner_program"]);
    let program = v[0].evidence_of(Signal::MinerProgram);
    assert!(
        program.is_some_and(|e| e.detail.contains("/usr/bin/monerod (package pkg)")),
        "{:?}",
        v[0].evidence
    );

    // Look-alikes: the node not mining, a packaged non-miner with a pool
    // URL in its arguments, the miner idle.
    let cases: Vec<(&str, &str, Vec<&str>, f64)> = vec![
        (
            "monerod node",
            monerod,
            vec!["monerod", "--data-dir", "/var/lib/monero"],
            1.0,
        ),
        (
            "grep for pool URLs",
            "/usr/bin/grep",
            vec!["grep", "-r", "stratum+tcp://", "/etc"],
            1.0,
        ),
        ("idle miner program", monerod, mining.to_vec(), 0.05),
    ];
    for (i, (name, path, argv, cores)) in cases.into_iter().enumerate() {
        let tgid = 130 + i as u32;
        let mut ev = vec![
            exec(T0, tgid, 1, path, &argv),
            provenance(T0 + 60, tgid, path, true),
        ];
        ev.extend(cpu_series(T0, 30, &[tgid], |_| cores));
        let v = run(ev, T0 + 32_000);
        assert!(v.is_empty(), "case {name}: {v:#?}");
    }

    // The name list is configurable: without monerod on it, no verdict.
    let mut cfg = DetectorConfig::default();
    cfg.miner_names.retain(|n| n != "monerod" && n != "pkg");
    let mut ev = vec![
        exec(T0, 140, 1, monerod, &mining),
        provenance(T0 + 60, 140, monerod, true),
    ];
    ev.extend(cpu_series(T0, 30, &[140], |_| 0.9));
    let (v, _) = run_with(cfg.clone(), ev, T0 + 32_000);
    assert!(v.is_empty(), "{v:#?}");
    // And matches the owning package too (`pkg` in these synthetic events).
    cfg.miner_names.push("pkg".into());
    let mut ev = vec![
        exec(T0, 150, 1, "/usr/bin/renamed", &mining),
        provenance(T0 + 60, 150, "/usr/bin/renamed", true),
    ];
    ev.extend(cpu_series(T0, 30, &[150], |_| 0.9));
    let (v, _) = run_with(cfg, ev, T0 + 32_000);
    assert_eq!(
        highest(&v, Rule::MinerCommandLine, 150),
        Some(Severity::High)
    );
}

#[test]
fn packaged_binary_fingerprint_is_not_killed_by_default() {
    use crate::response::{ActionKind, ResponseConfig, safety::Safety, target::Target};
    let r = Safety::new(Default::default(), Vec::new());
    // Packaged, no network: high → the default policy only blocks egress.
    let v = run(
        scenario(160, "/usr/bin/monerod", Prov::Verified, Net::None, 1.0),
        T0 + 30_000,
    );
    let fp = v
        .iter()
        .find(|v| v.rule == Rule::RandomxFingerprint)
        .unwrap();
    assert_eq!(fp.severity, Severity::High);
    assert_eq!(
        ResponseConfig::default().actions_for(fp.rule, fp.severity),
        vec![ActionKind::BlockEgress]
    );
    // Packaged with a pool port: critical, but the kill is refused (no
    // pool protocol was spoken), as for every packaged binary.
    let v = run(
        scenario(170, "/usr/bin/monerod", Prov::Verified, Net::PoolPort, 1.0),
        T0 + 30_000,
    );
    let fp = v
        .iter()
        .find(|v| v.rule == Rule::RandomxFingerprint)
        .unwrap();
    assert_eq!(fp.severity, Severity::Critical);
    let why = r
        .refusal(&Target::of_verdict(fp), ActionKind::Kill)
        .expect("refused");
    assert!(why.contains("packaged"), "{why}");
    // Unverified: the kill is allowed.
    let v = run(
        scenario(180, "/tmp/.x/kworker", Prov::Unverified, Net::None, 1.0),
        T0 + 30_000,
    );
    let fp = v
        .iter()
        .find(|v| v.rule == Rule::RandomxFingerprint)
        .unwrap();
    assert_eq!(r.refusal(&Target::of_verdict(fp), ActionKind::Kill), None);
}

#[test]
fn fingerprint_replays_the_same() {
    let mut all = Vec::new();
    for (i, prov) in [Prov::Unverified, Prov::Verified, Prov::Missing]
        .into_iter()
        .enumerate()
    {
        let tgid = 200 + 10 * i as u32;
        all.extend(scenario(
            tgid,
            &format!("/usr/bin/x{tgid}"),
            prov,
            Net::PoolPort,
            1.0,
        ));
    }
    let a = run(all.clone(), T0 + 30_000);
    let b = run(all, T0 + 30_000);
    assert!(a.len() >= 3, "{a:#?}");
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}
