//! `minerwatch quarantine list|restore`.

use std::io::Write;

use crate::{cli::QuarantineCommand, config, response::quarantine};

pub fn run(cmd: QuarantineCommand, out: &mut impl Write) -> anyhow::Result<i32> {
    match cmd {
        QuarantineCommand::List { config, json } => {
            let cfg = config::load(config.as_deref())?;
            let records = quarantine::list(&cfg.response.quarantine_dir)?;
            if records.is_empty() && !json {
                writeln!(
                    out,
                    "quarantine {} is empty",
                    cfg.response.quarantine_dir.display()
                )?;
            }
            for r in records {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&r)?)?;
                } else {
                    writeln!(
                        out,
                        "{}  {}  {}  rule={} tgid={}",
                        r.sha256,
                        r.quarantined_at,
                        r.original_path
                            .as_deref()
                            .unwrap_or("(in-memory executable)"),
                        r.rule,
                        r.tgid
                    )?;
                }
            }
            Ok(0)
        }
        QuarantineCommand::Restore { sha256, config } => {
            let cfg = config::load(config.as_deref())?;
            let path = quarantine::restore(&cfg.response.quarantine_dir, &sha256)?;
            writeln!(out, "restored {}", path.display())?;
            Ok(0)
        }
    }
}
