//! Configuration: `config.yaml` + `-D key=value` → validated key/value map → typed settings.
//! (Being written; see docs/configuration.md.)

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The validated, flat key/value configuration (Flink key names). Serializable: it travels with
/// every submitted job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    values: BTreeMap<String, String>,
}

impl Config {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|s| s.as_str())
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.values.insert(key.to_string(), value.to_string());
    }
}
