//! One output of alert lines (stdout, the alert file) on its own thread
//! behind a bounded queue. A write or fsync that takes seconds — a slow
//! disk, a full one, a container log nobody drains — then delays only that
//! output, never detection or the other outputs. A full queue drops the
//! line and counts it; a failing output is logged once when it starts
//! failing and once when it works again, and counted per line.

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;

use crate::background::Background;

/// Lines waiting per output. Alerts are rare; a queue this deep is full only
/// when the output is stuck, and then waiting would not help.
pub const QUEUE: usize = 1024;

/// A queue-full message is logged at most this often.
const FULL_LOG_EVERY: Duration = Duration::from_secs(60);

/// Why an output lost a line: the `reason` label of
/// `minerwatch_alert_lines_lost_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineLoss {
    /// The write failed (disk full, read-only, closed pipe).
    IoError,
    /// The output was stuck; the line was dropped rather than waited for.
    QueueFull,
}

impl LineLoss {
    pub const ALL: [LineLoss; 2] = [LineLoss::IoError, LineLoss::QueueFull];

    pub fn name(self) -> &'static str {
        match self {
            LineLoss::IoError => "io_error",
            LineLoss::QueueFull => "queue_full",
        }
    }
}

/// Where lines go. `write_line` may block (that is what the thread is for).
pub trait LineOut: Send + 'static {
    fn write_line(&mut self, line: &[u8]) -> Result<(), String>;
}

pub struct LineWriter {
    name: &'static str,
    queue: usize,
    tx: Mutex<Option<SyncSender<Arc<[u8]>>>>,
    thread: Mutex<Background>,
    lost: IntCounterVec,
    full_logged: Mutex<Option<Instant>>,
}

impl LineWriter {
    /// `lost` is `minerwatch_alert_lines_lost_total{sink,reason}`.
    pub fn spawn(
        name: &'static str,
        mut out: impl LineOut,
        queue: usize,
        lost: IntCounterVec,
    ) -> std::io::Result<LineWriter> {
        let (tx, rx) = mpsc::sync_channel::<Arc<[u8]>>(queue);
        let errors = lost.with_label_values(&[name, LineLoss::IoError.name()]);
        let thread = Background::spawn(format!("alerts-{name}"), move || {
            let mut failing: u64 = 0;
            while let Ok(line) = rx.recv() {
                match out.write_line(&line) {
                    Ok(()) if failing > 0 => {
                        log::warn!(
                            "alert {name} works again; {failing} line(s) were lost to it meanwhile (minerwatch_alert_lines_lost_total)"
                        );
                        failing = 0;
                    }
                    Ok(()) => {}
                    Err(e) => {
                        errors.inc();
                        if failing == 0 {
                            log::error!(
                                "alert {name}: {e}; detection goes on, alerts still reach the other outputs and the tail; each new alert retries"
                            );
                        }
                        failing += 1;
                    }
                }
            }
        })?;
        Ok(LineWriter {
            name,
            queue,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(thread),
            lost,
            full_logged: Mutex::new(None),
        })
    }

    /// Queue a line; never blocks. `false` when it was dropped.
    pub fn send(&self, line: Arc<[u8]>) -> bool {
        match lock(&self.tx).as_ref() {
            Some(tx) => match tx.try_send(line) {
                Ok(()) => return true,
                Err(TrySendError::Full(_)) => {}
                // The writer stopped (shutdown): nothing to report.
                Err(TrySendError::Disconnected(_)) => return false,
            },
            None => return false,
        }
        self.lost
            .with_label_values(&[self.name, LineLoss::QueueFull.name()])
            .inc();
        let mut last = lock(&self.full_logged);
        if last.is_none_or(|t| t.elapsed() >= FULL_LOG_EVERY) {
            *last = Some(Instant::now());
            log::error!(
                "alert {}: {} lines waiting, the output is stuck; new lines are dropped and counted (minerwatch_alert_lines_lost_total), detection goes on",
                self.name,
                self.queue
            );
        }
        false
    }

    /// Stop taking lines, let the thread write what is queued, wait up to
    /// `deadline`. `false` if it was still writing (left to die with the
    /// process).
    pub fn close(&self, deadline: Duration) -> bool {
        lock(&self.tx).take();
        lock(&self.thread).finish(deadline)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic on the writer thread cannot leave these half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
