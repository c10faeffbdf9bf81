//! The action scope of a verdict, as the process table sees it at verdict
//! time: who may be acted on besides the flagged process, with what the
//! refusals need to know about each. Computed here, on the pipeline, so
//! the response thread never touches detector state.

use std::net::IpAddr;

use crate::{
    detect::{Detector, Verdict},
    enrich::container,
    process::table::{Process, ProcessTable},
    response::target::Target,
};

pub struct Scope {
    /// The flagged process first, then the rest of the scope.
    pub targets: Vec<Target>,
    /// Pool endpoints the flagged process and its tree used.
    pub endpoints: Vec<(IpAddr, u16)>,
}

pub fn of(v: &Verdict, detector: &Detector) -> Scope {
    let table = detector.table();
    let ancestors = table.ancestors(v.tgid);
    let mut targets = vec![Target::of_verdict(v)];
    for tgid in action_scope(v, table) {
        if tgid == v.tgid {
            continue;
        }
        if let Some(p) = table.get(tgid) {
            targets.push(target_of(p, detector, ancestors.contains(&tgid)));
        }
    }
    Scope {
        targets,
        endpoints: detector.pool_endpoints(v.tgid),
    }
}

fn target_of(p: &Process, detector: &Detector, ancestor: bool) -> Target {
    Target {
        tgid: p.tgid,
        ppid: p.ppid,
        start_boottime_ns: p.start_boottime_ns,
        exe_id: p.has_exe_identity().then_some((p.exe.dev, p.exe.ino)),
        exe: p.exe_display(),
        sha256: p.provenance.as_ref().and_then(|x| x.sha256.clone()),
        uid: p.uid,
        cgroup: p.cgroup.clone(),
        // An image's own package database does not shield its binaries.
        verified: p
            .provenance
            .as_ref()
            .map(|x| x.is_verified() && !x.is_image_vouched()),
        spoke_pool_protocol: detector.spoke_pool_protocol(p.tgid),
        kernel_thread: p.ppid == 2
            || (p.exe_path.is_none() && p.argv.is_empty() && p.filename.is_empty()),
        ancestor,
    }
}

/// The processes a response may act on besides the verdict's own: its
/// descendants, members running the same executable, and, inside a
/// container's cgroup, unverified members of that cgroup. Other members
/// (an unverified ancestor's tree, say) are in the alert, never acted on.
pub fn action_scope(v: &Verdict, table: &ProcessTable) -> Vec<u32> {
    let mut scope = table.descendants(v.tgid);
    let me = table.get(v.tgid);
    let container = v
        .cgroup
        .as_deref()
        .is_some_and(|c| container::from_cgroup_path(c).is_some());
    for &m in &v.members {
        if scope.contains(&m) || m == v.tgid {
            continue;
        }
        let Some(mp) = table.get(m) else { continue };
        let same_exe = me.is_some_and(|p| p.has_exe_identity() && p.exe == mp.exe);
        let mate = container
            && me.is_some_and(|p| p.cgroup_id == mp.cgroup_id)
            && mp.is_verified() != Some(true);
        if same_exe || mate {
            scope.push(m);
        }
    }
    scope
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{DetectorConfig, Input, Rule, Severity};
    use crate::event::{Event, ExeId, Exec, Fork, Provenance, ProvenanceEvent, Source};
    use crate::time::Mono;

    fn exe(ino: u64) -> ExeId {
        ExeId {
            dev: 2049,
            ino,
            nlink: 1,
            memfd: false,
            name: format!("bin{ino}"),
            unknown: false,
        }
    }

    fn exec(tgid: u32, ppid: u32, ino: u64, path: &str, cgroup_id: u64, t: u64) -> Event {
        Event::Exec(Exec {
            time: Mono::from_millis(t),
            tgid,
            pid: tgid,
            ppid,
            uid: 1000,
            gid: 1000,
            comm: "x".into(),
            filename: path.into(),
            exe_path: Some(path.into()),
            argv: vec![path.into()],
            argv_truncated: false,
            cgroup_id,
            cgroup: None,
            exe: exe(ino),
            start_boottime_ns: t * 1_000_000,
            source: Source::default(),
        })
    }

    fn verdict(tgid: u32, members: Vec<u32>, cgroup: Option<&str>) -> Verdict {
        Verdict {
            time: Mono::from_secs(5),
            rule: Rule::MinerGroup,
            severity: Severity::High,
            pid: tgid,
            tgid,
            ppid: 1,
            comm: "x".into(),
            exe: Some("/tmp/m".into()),
            cmdline: vec![],
            uid: 1000,
            cgroup_id: 7,
            cgroup: cgroup.map(str::to_owned),
            exe_dev: 2049,
            exe_ino: 10,
            start_boottime_ns: 0,
            provenance: None,
            evidence: vec![],
            latency_ms: 0,
            members,
            chain: vec![],
            chain_truncated: false,
        }
    }

    /// Descendants, same-executable workers and (in a container) unverified
    /// cgroup mates are in scope; a verified mate, a stranger's tree and a
    /// mate outside a container are not. Each target carries its own
    /// standing (path, provenance, ancestry) for the refusals.
    #[test]
    fn scope_is_descendants_same_exe_and_container_mates_each_with_its_own_facts() {
        let mut d = Detector::new(DetectorConfig::default());
        let feed = |d: &mut Detector, ev: Event| {
            let t = ev.time();
            d.step(Input::Event(ev), t);
        };
        feed(&mut d, exec(100, 1, 10, "/tmp/m", 7, 1)); // same-exe parent
        feed(&mut d, exec(200, 100, 10, "/tmp/m", 7, 2)); // flagged
        feed(
            &mut d,
            Event::Fork(Fork {
                time: Mono::from_millis(3),
                parent_tgid: 200,
                child_tgid: 201,
                child_start_boottime_ns: 3_000_000,
                comm: "x".into(),
            }),
        );
        feed(&mut d, exec(300, 1, 30, "/usr/bin/python3", 7, 4)); // verified mate
        feed(&mut d, exec(400, 1, 40, "/tmp/other", 7, 5)); // unverified mate
        for (tgid, ino, verified) in [(300, 30, true), (400, 40, false)] {
            feed(
                &mut d,
                Event::Provenance(ProvenanceEvent {
                    time: Mono::from_millis(6),
                    tgid,
                    exe: exe(ino),
                    provenance: Provenance::packaged(verified, format!("{ino:064}"), None),
                }),
            );
        }
        let pod = "/kubepods/besteffort/pod0d6b0c56-8f43-4a46-9bbe-43f2a0a3a1c2/2f2b3c0e7f6e4b1d8a9c0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b";
        let v = verdict(200, vec![100, 300, 400], Some(pod));
        let mut got = action_scope(&v, d.table());
        got.sort_unstable();
        assert_eq!(got, vec![100, 201, 400]);
        let s = of(&v, &d);
        assert_eq!(s.targets[0].tgid, 200);
        let parent = s.targets.iter().find(|t| t.tgid == 100).expect("parent");
        assert!(parent.ancestor, "same-exe parent is an ancestor");
        let mate = s.targets.iter().find(|t| t.tgid == 400).expect("mate");
        assert_eq!(mate.exe.as_deref(), Some("/tmp/other"));
        assert_eq!(mate.verified, Some(false));
        assert_eq!(mate.sha256.as_deref(), Some(format!("{:064}", 40).as_str()));
        assert!(!mate.ancestor);
        // Outside a container, cgroup mates are not in scope.
        let v = verdict(200, vec![100, 300, 400], None);
        let mut got = action_scope(&v, d.table());
        got.sort_unstable();
        assert_eq!(got, vec![100, 201]);
    }
}
