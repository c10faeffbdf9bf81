//! SIGHUP: read the config file again, lay the same flags over it, and
//! apply what can change while running — the detector's thresholds, pool
//! lists and windows, and the whole `[response]` section. A bad file is
//! rejected with the same one-line error a start would print, and the
//! running configuration stays (the daemon never exits over a reload).
//! Keys that take a restart (hooks and the ring, sockets and ports, alert
//! outputs, provenance sources, the table caps) keep their running values,
//! and the log names each one that changed.

use serde::Serialize;

use super::{Options, start::Daemon};
use crate::config::{self, Config};

pub fn reload(d: &mut Daemon, opts: &Options) {
    let origin = opts.config_path.as_ref().map_or_else(
        || config::EMBEDDED_ORIGIN.to_owned(),
        |p| p.display().to_string(),
    );
    log::info!("SIGHUP: reloading the configuration from {origin}");
    let mut new = match config::load(opts.config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => return rejected(d, &e.to_string()),
    };
    if let Err(e) = new.apply(&opts.overrides) {
        return rejected(d, &e.to_string());
    }
    let restart = restart_only_changes(&d.cfg, &new);
    if !restart.is_empty() {
        log::warn!(
            "config reload: {} change(s) only on restart and keep their running values: {}",
            restart.len(),
            restart.join(", ")
        );
    }
    let applied = applied_changes(&d.cfg, &new);
    if new.response.mode != d.cfg.response.mode {
        log::warn!(
            "config reload: response mode is now {:?}",
            new.response.mode
        );
    }
    d.pipe.reconfigure(&new);
    // What runs now: the new reloadable sections, the old rest.
    let mut running = d.cfg.clone();
    running.detector = new.detector.clone();
    running.detector.max_processes = d.cfg.detector.max_processes;
    running.detector.max_flows = d.cfg.detector.max_flows;
    running.detector.chain.retain_exited_secs = d.cfg.detector.chain.retain_exited_secs;
    running.detector.chain.max_retained = d.cfg.detector.chain.max_retained;
    running.response = new.response;
    d.cfg = running;
    d.metrics.config_reloads.with_label_values(&["ok"]).inc();
    if applied.is_empty() {
        log::info!("config reload: applied; nothing that can change while running changed");
    } else {
        log::info!("config reload: applied {}", applied.join(", "));
    }
}

fn rejected(d: &Daemon, message: &str) {
    d.metrics
        .config_reloads
        .with_label_values(&["rejected"])
        .inc();
    log::error!("config reload rejected, the running configuration stays: {message}");
}

/// Dotted keys that differ between `old` and `new` in sections (or keys)
/// that cannot change while running.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(changed("sensor", &old.sensor, &new.sensor));
    out.extend(changed("provenance", &old.provenance, &new.provenance));
    out.extend(changed("alerts", &old.alerts, &new.alerts));
    out.extend(changed("metrics", &old.metrics, &new.metrics));
    out.extend(changed("tail", &old.tail, &new.tail));
    out.extend(
        changed("detector", &old.detector, &new.detector)
            .into_iter()
            .filter(|k| k == "detector.max_processes" || k == "detector.max_flows"),
    );
    // The table's retention of exited ancestors is fixed at start.
    out.extend(
        changed("detector.chain", &old.detector.chain, &new.detector.chain)
            .into_iter()
            .filter(|k| k.ends_with(".retain_exited_secs") || k.ends_with(".max_retained")),
    );
    out
}

fn applied_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out: Vec<String> = changed("detector", &old.detector, &new.detector)
        .into_iter()
        .filter(|k| k != "detector.max_processes" && k != "detector.max_flows")
        .collect();
    out.extend(changed("response", &old.response, &new.response));
    out
}

/// Top-level keys of a section whose values differ (`section.key`).
fn changed<T: Serialize>(section: &str, old: &T, new: &T) -> Vec<String> {
    let table = |v: &T| match toml::Value::try_from(v) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let (a, b) = (table(old), table(new));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{section}.{k}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_keys_are_named_and_reloadable_ones_are_not() {
        let old = Config::default();
        let mut new = old.clone();
        new.tail.socket = "/run/other.sock".into();
        new.sensor.ring_buffer_bytes *= 2;
        new.detector.max_processes = 10;
        new.detector.cpu_busy_cores = 0.5;
        new.response.kill_timeout_ms = 2000;
        assert_eq!(
            restart_only_changes(&old, &new),
            vec![
                "sensor.ring_buffer_bytes",
                "tail.socket",
                "detector.max_processes"
            ]
        );
        assert_eq!(
            applied_changes(&old, &new),
            vec!["detector.cpu_busy_cores", "response.kill_timeout_ms"]
        );
        assert!(restart_only_changes(&old, &old).is_empty());
    }
}
