//! Configuration section of this module (the `[provenance]` table).
//! Skeleton: to be filled by the module's owner; keep the name, the derives,
//! `deny_unknown_fields` and `validate`.

use serde::{Deserialize, Serialize};

use crate::config::Invalid;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvenanceConfig {}

impl ProvenanceConfig {
    /// Impossible values, as one error naming the key (`provenance.<key>`).
    pub fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}
