//! Binaries vouched for only by a container image's own package database:
//! quiet on weak signals, never shielded from a pool protocol.

use std::collections::BTreeMap;

use super::tests::build::*;
use super::*;
use crate::event::*;

const POOL: &str = "203.0.113.60";

fn image_vouched(t: u64, tgid: u32, path: &str) -> Event {
    Event::Provenance(ProvenanceEvent {
        time: ms(t),
        tgid,
        exe: exe_id(path),
        provenance: Provenance {
            verdict: ProvenanceVerdict::Verified,
            reasons: vec![Reason::Packaged],
            sha256: None,
            path: Some(path.into()),
            package: Some("xmrig".into()),
            vouched_by: Some(VouchedBy {
                source: VouchSource::ImagePackageDb,
                database: "dpkg".into(),
            }),
        },
    })
}

fn rules(events: Vec<Event>, until_ms: u64) -> BTreeMap<Rule, Severity> {
    let (verdicts, _) = tests::run_with(DetectorConfig::default(), events, until_ms);
    let mut m = BTreeMap::new();
    for v in verdicts {
        let e = m.entry(v.rule).or_insert(v.severity);
        *e = (*e).max(v.severity);
    }
    m
}

#[test]
fn an_image_packaged_miner_speaking_a_pool_protocol_is_critical() {
    let path = "/usr/bin/xmrig";
    let mut ev = vec![
        exec(T0, 50, 1, path, &["xmrig"]),
        connect(T0 + 20, 50, POOL, 3333, 5),
        payload(T0 + 40, Some(50), 5, POOL, 3333, &xmrig_login()),
        image_vouched(T0 + 60, 50, path),
    ];
    ev.extend(cpu_series(T0 + 300, 20, &[50], |_| 1.0));
    let got = rules(ev, T0 + 20_000);
    assert_eq!(
        got.get(&Rule::PoolProtocolUnverified),
        Some(&Severity::Critical),
        "{got:?}"
    );
    assert!(!got.contains_key(&Rule::PoolProtocolBusy), "{got:?}");
}

#[test]
fn image_vouched_evidence_names_the_database() {
    let path = "/usr/bin/xmrig";
    let ev = vec![
        exec(T0, 51, 1, path, &["xmrig"]),
        image_vouched(T0 + 10, 51, path),
        connect(T0 + 20, 51, POOL, 3333, 6),
        payload(T0 + 40, Some(51), 6, POOL, 3333, &xmrig_login()),
    ];
    let (verdicts, _) = tests::run_with(DetectorConfig::default(), ev, T0 + 2_000);
    let v = verdicts
        .iter()
        .find(|v| v.rule == Rule::PoolProtocolUnverified)
        .expect("alert at the login");
    let e = v
        .evidence_of(Signal::ImageVouchedExec)
        .expect("image evidence");
    assert!(e.detail.contains("image's own dpkg"), "{}", e.detail);
}

#[test]
fn an_image_packaged_service_busy_on_a_pool_port_stays_silent() {
    // A packaged service of the image (say redis on a pool-numbered port)
    // under load: no protocol, so the image's database keeps it quiet, as
    // the host's would.
    let path = "/usr/bin/redis-server";
    let mut ev = vec![
        exec(T0, 52, 1, path, &["redis-server"]),
        image_vouched(T0 + 10, 52, path),
        connect(T0 + 20, 52, POOL, 3333, 7),
    ];
    ev.extend(cpu_series(T0 + 300, 30, &[52], |_| 1.0));
    let got = rules(ev, T0 + 30_000);
    assert!(got.is_empty(), "{got:?}");
}
