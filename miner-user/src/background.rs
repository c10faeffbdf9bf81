//! A named thread that shutdown waits for, up to a deadline: the alert
//! outputs, the webhook and the response each run one. A thread still busy
//! at the deadline (a write to a stuck disk, a kill waiting for its
//! timeout) is left to end with the process, never joined blindly.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Background {
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    pub fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> std::io::Result<Self> {
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            body();
            let _ = done_tx.send(());
        })?;
        Ok(Background {
            done,
            thread: Some(thread),
        })
    }

    /// Waits up to `deadline` for the body to return (or panic), then
    /// joins the thread. `false` if it was still running.
    pub fn finish(&mut self, deadline: Duration) -> bool {
        let finished = !matches!(
            self.done.recv_timeout(deadline),
            Err(RecvTimeoutError::Timeout)
        );
        if finished && let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishes_a_done_thread_and_leaves_a_busy_one() {
        let mut quick = Background::spawn("quick".into(), || {}).unwrap();
        assert!(quick.finish(Duration::from_secs(5)));
        let (release, wait) = mpsc::channel::<()>();
        let mut busy = Background::spawn("busy".into(), move || {
            let _ = wait.recv();
        })
        .unwrap();
        assert!(!busy.finish(Duration::from_millis(20)));
        drop(release);
        assert!(busy.finish(Duration::from_secs(5)));
        let mut panicked = Background::spawn("panics".into(), || panic!("boom")).unwrap();
        assert!(
            panicked.finish(Duration::from_secs(5)),
            "a panic ends it too"
        );
    }
}
