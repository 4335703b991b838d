//! Snapshots: one versioned JSON file holding a whole topology (raw config space included),
//! so a machine can be analysed anywhere with the same results.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::Topology;
use crate::Error;

pub const SCHEMA: &str = "p2pdma-snapshot";
pub const VERSION: u64 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    schema: String,
    version: u64,
    created_by: String,
    topology: Topology,
}

/// The snapshot document for a topology.
pub fn to_json(topo: &Topology) -> String {
    let env = Envelope {
        schema: SCHEMA.into(),
        version: VERSION,
        created_by: format!("p2pdma {}", env!("CARGO_PKG_VERSION")),
        topology: topo.clone(),
    };
    serde_json::to_string_pretty(&env).expect("a topology always serializes")
}

/// Reads a snapshot; `path` names the file in errors.
pub fn from_json(text: &str, path: &Path) -> Result<Topology, Error> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::invalid(path, format!("not valid JSON ({e})")))?;
    match value.get("schema").and_then(|s| s.as_str()) {
        Some(SCHEMA) => {}
        Some(other) => {
            return Err(Error::invalid(
                path,
                format!("not a p2pdma snapshot: its schema is `{other}`; write one with `p2pdma snapshot -o FILE`"),
            ))
        }
        None => {
            return Err(Error::invalid(
                path,
                "not a p2pdma snapshot (JSON without a `schema` field, such as `--json` output); write one with `p2pdma snapshot -o FILE`",
            ))
        }
    }
    let version = value
        .get("version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| Error::invalid(path, "snapshot has no numeric `version`"))?;
    if version > VERSION {
        return Err(Error::NewerSnapshot { path: path.into(), found: version, supported: VERSION });
    }
    // From the text, not the value: serde_json then says where (line and column).
    let mut env: Envelope =
        serde_json::from_str(text).map_err(|e| Error::invalid(path, format!("malformed snapshot: {e}")))?;
    crate::check_consistent(&env.topology).map_err(|e| Error::invalid(path, e.to_string()))?;
    crate::iommu_groups::fill(&mut env.topology);
    Ok(env.topology)
}
