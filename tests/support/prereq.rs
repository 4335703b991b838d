//! What every crate's integration tests share (included by each `tests/common/mod.rs` with
//! `#[path]`, so that there is one copy): whether they run under CI, what a test does when
//! a prerequisite from outside is missing, and the scenario files.
// Tests read files; p2pdma-core itself may not touch the filesystem.
#![allow(clippy::disallowed_methods, clippy::disallowed_types, dead_code)]

/// Whether the tests run under CI: `CI` set to anything but empty, `0` or `false`.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// A prerequisite from outside the repository is missing: `what` names it, `how` says how
/// to get it. Under CI (see [`under_ci`]) the test fails here with one message naming both;
/// elsewhere this prints `skipped: ...` and the test returns (`return missing(..)`).
#[track_caller]
pub fn missing(what: &str, how: &str) {
    assert!(
        !under_ci(),
        "missing prerequisite: {what}; {how} (CI is set: a missing prerequisite fails, it does not skip)"
    );
    eprintln!("skipped: {what}; {how}");
}

/// How many scenario files examples/topologies/ holds today (12): fewer means some were lost.
pub const MIN_SCENARIOS: usize = 12;

/// The scenario files (`examples/topologies/*.toml`), sorted; at least [`MIN_SCENARIOS`], so
/// that a test driven by them cannot pass on none.
pub fn scenarios() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/topologies");
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    assert!(
        v.len() >= MIN_SCENARIOS,
        "{}: {} scenario files, expected at least {MIN_SCENARIOS}",
        dir.display(),
        v.len()
    );
    v
}
