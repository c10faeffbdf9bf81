//! Configuration section of this module (the `[response]` table).
//! Skeleton: to be filled by the module's owner; keep the name, the derives,
//! `deny_unknown_fields` and `validate`.

use serde::{Deserialize, Serialize};

use crate::config::Invalid;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {}

impl ResponseConfig {
    /// Impossible values, as one error naming the key (`response.<key>`).
    pub fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}
