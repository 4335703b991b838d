//! Issue 24's acceptance machine (the generated 10,000-function server,
//! `p2pdma_core::synthetic::ServerShape::acceptance`) through the binary: the file parses,
//! `snapshot` keeps every function, `check` answers from the file and from the snapshot
//! alike. Correctness only; scripts/bench-scale measures time and memory.

mod common;

use common::p2pdma;
use p2pdma_core::synthetic::{server, ServerShape};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {}", &out[..out.len().min(400)]))
}

#[test]
fn acceptance_machine_snapshot_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("hgx-10k.toml");
    let snap = dir.path().join("hgx-10k.json");
    let shape = ServerShape::acceptance();
    std::fs::write(&spec, server(&shape)).unwrap();
    let (spec, snap) = (spec.to_str().unwrap(), snap.to_str().unwrap());

    let (code, _, err) = p2pdma(&["snapshot", "--spec", spec, "-o", snap]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(snap).unwrap();
    let devices = json(&text)["topology"]["devices"].as_array().map_or(0, Vec::len);
    assert_eq!(devices, shape.functions());
    assert_eq!(devices, 9_942);

    // gpu1 and nic1 share host bridge 1's switch, without ACS: by bus address. gpu0 and
    // nic0 share switch 0, whose ACS the IOMMU enables: redirected through the (whitelisted
    // Ice Lake) host bridge. A VF answers as its PF's path does.
    for (provider, client, want) in [
        ("gpu1", "nic1", "bus_addr"),
        ("gpu0", "nic0", "thru_host_bridge"),
        ("gpu1", "nic1-vf254", "bus_addr"),
        ("gpu0", "gpu1", "thru_host_bridge"),
    ] {
        for source in [["--spec", spec], ["--snapshot", snap]] {
            let mut args = vec!["check", "--json", provider, client];
            args.extend(source);
            let (code, out, err) = p2pdma(&args);
            assert_eq!(code, 0, "{provider} {client} {source:?}: {err}");
            assert_eq!(json(&out)["map_type"], want, "{provider} {client} {source:?}");
        }
    }
}
