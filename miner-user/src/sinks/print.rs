//! `minerwatch run --print-events`: every event as one JSON line on stderr,
//! for a human watching the sensor work.
//!
//! The line is the event's own JSON (the recording format) with `time` as
//! RFC 3339 UTC, as in the tail and the alerts, instead of kernel monotonic
//! nanoseconds, which no human can place; the raw value stays in `mono_ns`
//! so a line can still be matched against a recording.

use crate::event::Event;
use crate::time::WallClock;

/// The `--print-events` line for `ev` (no newline).
pub fn event_line(ev: &Event, clock: &WallClock) -> serde_json::Result<String> {
    let mut v = serde_json::to_value(ev)?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("time".into(), clock.rfc3339(ev.time()).into());
        obj.insert("mono_ns".into(), ev.time().ns().into());
    }
    crate::text::to_json_string(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Exit;
    use crate::time::Mono;

    #[test]
    fn time_is_rfc3339_and_text_is_escaped() {
        let clock = WallClock::new();
        let ev = Event::Exit(Exit {
            time: Mono::from_secs(5),
            tgid: 7,
            status: 0,
            signal: 9,
            cpu_ns: 1,
            comm: "x\x1b[2J\u{9b}".into(),
        });
        let line = event_line(&ev, &clock).expect("json");
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["time"], clock.rfc3339(Mono::from_secs(5)));
        assert!(
            v["time"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.contains('T')),
            "{line}"
        );
        assert_eq!(v["mono_ns"], 5_000_000_000u64);
        assert_eq!(v["kind"], "exit");
        assert_eq!(v["comm"], "x\x1b[2J\u{9b}");
        assert!(line.contains(r#""comm":"x\u001b[2J\u009b""#), "{line}");
    }
}
