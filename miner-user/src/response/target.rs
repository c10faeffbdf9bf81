//! One process the response may act on, as the process table saw it when
//! the verdict was made: everything the refusals need, so the response
//! thread never reads detector state.

use crate::detect::{Rule, Signal, Verdict};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tgid: u32,
    pub ppid: u32,
    /// ns since boot, for the pid-reuse check; 0 = unknown.
    pub start_boottime_ns: u64,
    /// (st_dev, st_ino) of the executable, when the kernel read it.
    pub exe_id: Option<(u64, u64)>,
    pub exe: Option<String>,
    pub sha256: Option<String>,
    pub uid: u32,
    pub cgroup: Option<String>,
    /// Provenance: `Some(true)` packaged or allowlisted, `None` not judged yet.
    pub verified: Option<bool>,
    /// It spoke a pool protocol itself (payload evidence on its own flow).
    pub spoke_pool_protocol: bool,
    /// No executable and no command line, or a child of kthreadd.
    pub kernel_thread: bool,
    /// An ancestor of the flagged process (a same-executable parent): acted
    /// on itself, but its other children are not walked.
    pub ancestor: bool,
}

impl Target {
    /// The flagged process, from its verdict.
    pub fn of_verdict(v: &Verdict) -> Target {
        Target {
            tgid: v.tgid,
            ppid: v.ppid,
            start_boottime_ns: v.start_boottime_ns,
            exe_id: (v.exe_ino != 0).then_some((v.exe_dev, v.exe_ino)),
            exe: v.exe.clone(),
            sha256: v.provenance.as_ref().and_then(|p| p.sha256.clone()),
            uid: v.uid,
            cgroup: v.cgroup.clone(),
            // Vouched for by the host or the operator; an image's own package
            // database does not shield the binary it ships.
            verified: v
                .provenance
                .as_ref()
                .map(|p| p.is_verified() && !p.is_image_vouched()),
            spoke_pool_protocol: payload_based(v),
            kernel_thread: v.ppid == 2 || (v.exe.is_none() && v.cmdline.is_empty()),
            ancestor: false,
        }
    }
}

/// Does the verdict rest on the process speaking a pool protocol (payload
/// evidence), rather than on CPU and a port number?
pub fn payload_based(v: &Verdict) -> bool {
    matches!(
        v.rule,
        Rule::PoolProtocolUnverified | Rule::PoolProtocolBusy
    ) || v.evidence_of(Signal::PoolProtocol).is_some()
}
