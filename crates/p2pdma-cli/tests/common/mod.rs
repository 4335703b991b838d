//! What the binary's integration tests share: running `p2pdma`, the scenario files, the
//! switch that skips the lab, and what a test does when a prerequisite is missing.
#![allow(dead_code)] // each test crate uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub const SWITCH: &str = "examples/topologies/switch.toml";
pub const ROOT_PORTS: &str = "examples/topologies/root-ports.toml";

/// Runs the binary from the workspace root: exit status, stdout, stderr. `lab run` and
/// `lab shell` get the static guest binary (`guest_binary`).
pub fn p2pdma(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2pdma"));
    if matches!(args, ["lab", "run" | "shell", ..]) {
        cmd.env("P2PDMA_GUEST_BINARY", guest_binary());
    }
    let out = cmd.args(args).current_dir("../..").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Boots topology file `spec` in the lab (`extra`: more `lab run` flags, `env`: its
/// environment), runs `script` in the guest, and returns the fresh share the script wrote
/// into; a failed run fails the test, its output shown under `what`.
pub fn lab_run(spec: &str, extra: &[&str], env: &[(&str, &str)], script: &str, what: &str) -> tempfile::TempDir {
    let share = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_p2pdma"))
        .env("P2PDMA_GUEST_BINARY", guest_binary())
        .envs(env.iter().copied())
        .args(["lab", "run", spec])
        .args(extra)
        .args(["--timeout", "300", "--share", share.path().to_str().unwrap(), "--", script])
        .current_dir("../..")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: lab run failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    share
}

#[path = "../../../../tests/support/prereq.rs"]
mod prereq;
#[allow(unused_imports)] // each test crate uses its own part
pub use prereq::{missing, under_ci, MIN_SCENARIOS};

/// The scenario files (`examples/topologies/*.toml`), sorted, as paths from the workspace
/// root (where the tests run the binary); at least [`MIN_SCENARIOS`].
pub fn scenarios() -> Vec<PathBuf> {
    prereq::scenarios().into_iter().map(|p| Path::new("examples/topologies").join(p.file_name().unwrap())).collect()
}

/// The cached lab kernels with CONFIG_PCI_P2PDMA (Debian unstable's, fetched by `p2pdma lab
/// fetch`), newest fetched first: `<cache>/kernel/<release>/` complete with `.complete`, in
/// p2pdma-lab's cache (`p2pdma_lab::default_cache_dir`: `$P2PDMA_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/p2pdma`, else `~/.cache/p2pdma`). Other suites' kernels, under
/// `<cache>/kernel/<suite>/<release>/`, have no P2PDMA and are not listed.
pub fn cached_lab_kernels() -> Vec<p2pdma_lab::Kernel> {
    let root = p2pdma_lab::default_cache_dir().join("kernel");
    let mut found: Vec<(std::time::SystemTime, p2pdma_lab::Kernel)> = std::fs::read_dir(&root)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|dir| {
            let complete = std::fs::metadata(dir.join(".complete")).and_then(|m| m.modified()).ok()?;
            let kernel = p2pdma_lab::Kernel::from_dir(&dir, None).ok()?;
            (kernel.p2pdma && kernel.vmlinuz.is_file()).then_some((complete, kernel))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.release.cmp(&b.1.release)));
    found.into_iter().map(|(_, k)| k).collect()
}

/// P2PDMA_SKIP_LAB=1 skips the tests that boot the lab (saying so).
pub fn skip_lab() -> bool {
    let skip = std::env::var("P2PDMA_SKIP_LAB").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("skipped (P2PDMA_SKIP_LAB=1)");
    }
    skip
}

/// The static p2pdma the lab puts into its guest: `$P2PDMA_GUEST_BINARY` if set, this test
/// build's binary if it is static, else built now from the same sources by `cargo
/// build-static` (once per test binary; cargo rebuilds only what changed).
pub fn guest_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("P2PDMA_GUEST_BINARY").filter(|p| !p.is_empty()) {
                return p.into();
            }
            let own = PathBuf::from(env!("CARGO_BIN_EXE_p2pdma"));
            let is_static = std::fs::read(&own).ok().and_then(|b| p2pdma_lab::is_static_executable(&b));
            if is_static == Some(true) {
                return own;
            }
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let out = Command::new(&cargo)
                .args(["build-static", "--locked", "--message-format", "json"])
                .current_dir("../..")
                .stderr(std::process::Stdio::inherit())
                .output()
                .expect("cargo build-static runs");
            assert!(out.status.success(), "cargo build-static failed (the lab's guest needs a static p2pdma)");
            // cargo names the executable it built: no guessing of target directories.
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
                .next_back()
                .expect("cargo build-static reports the p2pdma executable")
        })
        .clone()
}

/// Parses exposition text with prometheus_client; returns {family: [[name, labels, value]]}.
pub fn prometheus_parse(text: &str) -> serde_json::Value {
    let setup = Command::new("scripts/install-prometheus-parser").current_dir("../..").output().unwrap();
    assert!(setup.status.success(), "scripts/install-prometheus-parser: {}", String::from_utf8_lossy(&setup.stderr));
    let python = String::from_utf8(setup.stdout).unwrap().trim().to_string();
    let script = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    assert family.type == "gauge", family
    assert family.documentation, family
    out[family.name] = [[s.name, s.labels, None if math.isnan(s.value) else s.value] for s in family.samples]
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
