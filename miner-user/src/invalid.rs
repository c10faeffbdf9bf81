//! The one error every area's config validation returns: which key, and
//! what to do. A leaf (it imports nothing of the crate) so that the area
//! config modules (`detect`, `sensor`, `provenance`, `response`, `sinks`)
//! can return it without importing `config`, which imports them all.

/// A configuration error: which key, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {fix}")]
pub struct Invalid {
    pub key: String,
    pub fix: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, fix: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            fix: fix.into(),
        }
    }
}
