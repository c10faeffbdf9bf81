//! Configuration: TOML file (embedded default) + flags → validated `Config`.
//!
//! Skeleton: sections are owned by the modules they configure; this file
//! composes them and reports errors as one line naming the key and the fix.

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
