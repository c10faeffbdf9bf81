//! Shutdown, within `lifecycle::SHUTDOWN_DEADLINE`: stop the producers,
//! flush the sinks (a response still waiting on a kill gets a bounded
//! share), detach the programs, let the servers finish.

use std::time::Duration;

use super::start::Daemon;
use crate::sinks::lifecycle;

pub async fn shutdown(d: Daemon) {
    let Daemon {
        trigger,
        reader,
        pipe,
        hub,
        sensor,
        http_task,
        tail_task,
        ..
    } = d;
    trigger.trigger();
    reader.abort();
    pipe.finish(lifecycle::SHUTDOWN_DEADLINE);
    hub.shutdown();
    drop(sensor);
    for task in [http_task, tail_task].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
    }
    log::info!("minerwatch stopped");
}
