//! Action results as `"kind":"action"` lines: the alert outputs, the tail
//! and `minerwatch_actions_total`. Shared by the pipeline (refusals,
//! dropped jobs) and the response thread (what it did), so both write the
//! same records through the same queues.

use crate::{
    response::{ActionResult, Outcome, Reported, footholds::Foothold, worker::Reporter},
    sinks::{alerts::ActionRecord, alerts::AlertSink, tail::TailHub},
    time::{Mono, WallClock},
};

#[derive(Clone)]
pub struct ActionReporter {
    alerts: AlertSink,
    tail: TailHub,
    clock: WallClock,
}

impl ActionReporter {
    pub fn new(alerts: AlertSink, tail: TailHub, clock: WallClock) -> ActionReporter {
        ActionReporter {
            alerts,
            tail,
            clock,
        }
    }

    fn emit(&self, rec: &ActionRecord) {
        if let Err(e) = self.alerts.emit_action(rec) {
            log::error!("writing an action record failed: {e}");
        }
        self.tail.publish_action(rec);
    }
}

impl Reporter for ActionReporter {
    fn action(&self, a: &ActionResult) {
        if a.result == Outcome::Failed {
            log::error!(
                "response: {} of {} failed: {}",
                a.action.name(),
                a.target,
                a.reason
            );
        }
        self.emit(&ActionRecord::new(
            Mono::now(),
            &self.clock,
            a.action.into(),
            a.target,
            a.result,
            a.reason.clone(),
            a.latency_ms,
        ));
    }

    fn footholds(&self, target: u32, found: &[Foothold], latency_ms: u64) {
        let mut rec = ActionRecord::new(
            Mono::now(),
            &self.clock,
            Reported::Footholds,
            target,
            Outcome::Ok,
            format!(
                "{} persistence line(s) name the miner; reported, not changed",
                found.len()
            ),
            latency_ms,
        );
        rec.footholds = found.to_vec();
        self.emit(&rec);
    }
}
