//! What the binary's integration tests share: running `p2pdma`, the scenario files, and the
//! switch that skips the lab.
#![allow(dead_code)] // each test crate uses its own part

use std::process::Command;

pub const SWITCH: &str = "examples/topologies/switch.toml";
pub const ROOT_PORTS: &str = "examples/topologies/root-ports.toml";

/// Runs the binary from the workspace root: exit status, stdout, stderr.
pub fn p2pdma(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_p2pdma")).args(args).current_dir("../..").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// P2PDMA_SKIP_LAB=1 skips the tests that boot the lab (saying so).
pub fn skip_lab() -> bool {
    let skip = std::env::var("P2PDMA_SKIP_LAB").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("skipped (P2PDMA_SKIP_LAB=1)");
    }
    skip
}
