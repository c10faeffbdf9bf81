//! Owners of flows that predate the agent, found off the event path.
//!
//! A payload peeked on a flow opened before the agent carries no process
//! (there was no connect to take the cookie from). Finding it takes a walk
//! of /proc: every process's network namespace and file descriptors. On a
//! busy node that is tens of milliseconds to seconds, and a restarted agent
//! meets one such flow per live connection, so the walks run on their own
//! thread, batched (one walk for every flow queued meanwhile), and the
//! resolved payloads come back to the pipeline like provenance results.
//! A full queue hands the payload back to be fed unresolved.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use tokio::sync::mpsc as tokio_mpsc;

use crate::{
    event::Payload,
    process::procfs::{Flow, FlowResolver},
};

/// Untracked payloads waiting for a walk.
pub const QUEUE: usize = 1024;
/// Flows resolved by one walk at most.
const BATCH: usize = 256;

pub struct Resolver {
    tx: Option<SyncSender<Payload>>,
}

impl Resolver {
    pub fn start(
        resolver: FlowResolver,
        out: tokio_mpsc::Sender<Payload>,
    ) -> std::io::Result<Resolver> {
        let (tx, rx) = mpsc::sync_channel::<Payload>(QUEUE);
        std::thread::Builder::new()
            .name("flow-owners".into())
            .spawn(move || run(&resolver, &rx, &out))?;
        Ok(Resolver { tx: Some(tx) })
    }

    /// Queue a payload whose process is unknown; never blocks. `Err` gives
    /// it back when the queue is full.
    pub fn submit(&self, p: Payload) -> Result<(), Payload> {
        let Some(tx) = &self.tx else { return Err(p) };
        tx.try_send(p).map_err(|e| match e {
            TrySendError::Full(p) | TrySendError::Disconnected(p) => p,
        })
    }
}

fn run(resolver: &FlowResolver, rx: &Receiver<Payload>, out: &tokio_mpsc::Sender<Payload>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH
            && let Ok(p) = rx.try_recv()
        {
            batch.push(p);
        }
        let flows: Vec<Flow> = batch
            .iter()
            .map(|p| Flow {
                saddr: p.saddr,
                sport: p.sport,
                daddr: p.daddr,
                dport: p.dport,
            })
            .collect();
        match resolver.resolve_all(&flows) {
            Ok(owners) => {
                for (p, owner) in batch.iter_mut().zip(owners) {
                    p.tgid = owner;
                }
            }
            Err(e) => log::debug!("resolving {} untracked flows: {e}", batch.len()),
        }
        for p in batch {
            // Back-pressure from a busy pipeline stops this thread, whose
            // queue then fills and hands payloads back unresolved.
            if out.blocking_send(p).is_err() {
                return;
            }
        }
    }
}
