//! `minerwatch config print`: the configuration in force (file + flags),
//! as TOML that `--config` accepts back unchanged.
//!
//! Unset optional keys (`alerts.file`, …) are absent: TOML has no null.

use std::io::Write;

use anyhow::Context as _;

use crate::config::Config;

pub fn print(cfg: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    let text = toml::to_string_pretty(cfg).context("serialising the configuration")?;
    writeln!(
        out,
        "# minerwatch effective configuration (file + flags); unset optional keys are omitted"
    )?;
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, parse};

    #[test]
    fn printed_config_parses_back_to_the_same_config() {
        let mut cfg = Config::default();
        cfg.apply(&Overrides {
            metrics_addr: Some("127.0.0.1:9000".into()),
            alerts_file: Some("/var/log/m.jsonl".into()),
            webhook_url: Some("https://hooks.example.com/x".into()),
            ..Overrides::default()
        })
        .expect("valid overrides");
        let mut out = Vec::new();
        print(&cfg, &mut out).expect("print");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("[metrics]\nenabled = true\naddr = \"127.0.0.1:9000\""),
            "{text}"
        );
        assert_eq!(parse(&text, "printed").expect("parses"), cfg);

        let mut out = Vec::new();
        print(&Config::default(), &mut out).expect("print");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(parse(&text, "printed").expect("parses"), Config::default());
    }
}
