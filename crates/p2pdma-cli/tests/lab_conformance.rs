//! The conformance suite: for every scenario and every provider/client pair, four answers
//! must agree: the verdict from the topology file alone (offline), from the live sysfs in
//! the lab's guest, from a snapshot taken in the guest and analysed here, and the real
//! kernel's behaviour (an O_DIRECT read from the client's namespace into P2P memory
//! allocated from the provider: exactly the expected bytes, or the kernel's refusal with its
//! log lines). Where the emulator cannot show the kernel's decision (QEMU's IOMMU drops
//! peer writes that the kernel mapped by bus address), the test says so and checks what it can.
//!
//! Needs QEMU and the lab kernel (scripts/test installs them); P2PDMA_SKIP_LAB=1 skips.
//! Writes a table per scenario to target/lab-conformance/<scenario>.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;

use common::{p2pdma, skip_lab};

const EINVAL: i64 = 22;
const EREMOTEIO: i64 = 121;

fn json(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

/// Providers and NVMe clients of a scenario, by name, from the offline analysis.
fn pairs(spec: &str) -> (Vec<String>, Vec<String>) {
    let topo = json(&p2pdma(&["topo", "--spec", spec, "--json"]).1, "topo");
    let names = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        topo["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| pred(d))
            .filter_map(|d| d["name"].as_str().map(String::from))
            .collect()
    };
    let providers = names(&|d| !d["p2pmem"].is_null());
    let clients = names(&|d| d["class"].as_u64().unwrap() >> 8 == 0x0108);
    (providers, clients)
}

struct Row {
    pair: String,
    predicted: String,
    live: String,
    snapshot: String,
    kernel: String,
    agree: String,
}

fn verdict(v: &Value) -> String {
    match v["distance"].as_u64() {
        Some(d) => format!("{} {d}", v["map_type"].as_str().unwrap()),
        None => v["map_type"].as_str().unwrap_or("?").to_string(),
    }
}

fn conformance(scenario: &str) {
    if skip_lab() {
        return;
    }
    let spec = format!("examples/topologies/{scenario}.toml");
    let (providers, clients) = pairs(&spec);
    let share = tempfile::tempdir().unwrap();
    let iommu = std::fs::read_to_string(Path::new("../..").join(&spec)).unwrap().contains("iommu = true");

    // One boot per scenario: every answer the guest can give, into the share.
    let mut script =
        String::from("cd /lab/share; p2pdma snapshot -o snapshot.json 2>/dev/null; p2pdma topo --json > topo.json; ");
    script.push_str(
        "dd if=/dev/urandom of=/tmp/pattern bs=1M count=1 2>/dev/null; sha256sum /tmp/pattern > pattern.sha; ",
    );
    for c in &clients {
        // Only onto a block device: a name resolved to a path that does not exist would make
        // dd write a regular file in /dev, and the kernel's "verdict" a memcpy from it.
        script.push_str(&format!(
            "d=$(p2pdma resolve --block {c}); if [ -b \"$d\" ]; then \
             dd if=/tmp/pattern of=$d bs=1M count=1 conv=fsync 2>/dev/null; \
             else echo \"{c}: $d\" >> not-block-devices.txt; fi; "
        ));
    }
    for p in &providers {
        for c in &clients {
            script.push_str(&format!("p2pdma check {p} {c} --json > check-{p}-{c}.json; "));
            script.push_str(&format!("p2pdma alloc {p} 1M --read {c} --json > alloc-{p}-{c}.json 2>/dev/null; "));
        }
    }
    for c in &clients {
        script.push_str(&format!("p2pdma find {c} --json > find-{c}.json; "));
    }
    for p in &providers {
        script.push_str(&format!("p2pdma addr {p} {p} --json > addr-{p}.json; "));
    }
    script.push_str("ls -d /sys/bus/pci/devices/*/p2pmem > providers.txt 2>/dev/null; dmesg > dmesg.txt; echo done");
    let (code, out, err) =
        p2pdma(&["lab", "run", &spec, "--timeout", "240", "--share", share.path().to_str().unwrap(), "--", &script]);
    assert_eq!(code, 0, "{scenario}: the lab run failed: {out}{err}");

    let read = |name: &str| {
        std::fs::read_to_string(share.path().join(name)).unwrap_or_else(|e| panic!("{scenario}: {name}: {e}"))
    };
    let pattern = read("pattern.sha").split_whitespace().next().unwrap().to_string();
    assert!(
        !share.path().join("not-block-devices.txt").exists(),
        "{scenario}: names resolved to paths that are not block devices: {}",
        read("not-block-devices.txt")
    );
    let dmesg = read("dmesg.txt");
    let snapshot = share.path().join("snapshot.json");
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for p in &providers {
        for c in &clients {
            let pair = format!("{p} → {c}");
            let offline = json(&p2pdma(&["check", "--spec", &spec, p, c, "--json"]).1, "offline check");
            let live = json(&read(&format!("check-{p}-{c}.json")), "live check");
            let snap =
                json(&p2pdma(&["check", "--snapshot", snapshot.to_str().unwrap(), p, c, "--json"]).1, "snapshot check");
            let alloc = json(&read(&format!("alloc-{p}-{c}.json")), "alloc");
            let (predicted, live_v, snap_v) = (verdict(&offline), verdict(&live), verdict(&snap));
            let mut agree = predicted == live_v && predicted == snap_v;
            if !agree {
                failures.push(format!("{pair}: offline {predicted}, live {live_v}, snapshot {snap_v}"));
            }
            let supported = offline["map_type"] != "not_supported";
            let read_ok = alloc["read"]["ok"] == true;
            let arrived = alloc["read"]["sha256"] == pattern.as_str();
            let bus_addr_peer = offline["map_type"] == "bus_addr" && p != c;
            let kernel = if supported && read_ok && arrived {
                "read ok, bytes exact".to_string()
            } else if supported && read_ok && !arrived && iommu && bus_addr_peer {
                // lab-facts.md 3: QEMU's IOMMU faults the peer write, the kernel reports success.
                assert!(dmesg.contains("DMAR") || dmesg.contains("fault"), "{scenario}: {pair}: no IOMMU fault logged");
                "read 'ok', data lost (QEMU IOMMU trap)".to_string()
            } else if !supported && !read_ok {
                let errno = alloc["read"]["errno"].as_i64().unwrap_or(0);
                let logged: Vec<&str> = offline["clients"][0]["kernel_log"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|l| l.as_str())
                    .map(|l| l.split_once(": ").map_or(l, |(_, msg)| msg))
                    .collect();
                let missing: Vec<&&str> = logged.iter().filter(|l| !dmesg.contains(**l)).collect();
                if ![EINVAL, EREMOTEIO].contains(&errno) || !missing.is_empty() {
                    agree = false;
                    failures.push(format!(
                        "{pair}: refused with errno {errno}; predicted log lines missing from dmesg: {missing:?}"
                    ));
                }
                format!("refused (errno {errno}), {} log lines as predicted", logged.len())
            } else {
                agree = false;
                failures.push(format!(
                    "{pair}: predicted {predicted}, kernel read ok={read_ok} bytes exact={arrived}: {}",
                    alloc["read"]
                ));
                format!("read ok={read_ok}, exact={arrived}")
            };
            rows.push(Row {
                pair,
                predicted,
                live: live_v,
                snapshot: snap_v,
                kernel,
                agree: if agree { "yes".into() } else { "NO".into() },
            });
        }
    }

    // Provider selection: the kernel's choice among published providers, live and offline.
    for c in &clients {
        let offline = json(&p2pdma(&["find", "--spec", &spec, c, "--json"]).1, "offline find");
        let live = json(&read(&format!("find-{c}.json")), "live find");
        if offline["provider"] != live["provider"] || offline["distance"] != live["distance"] {
            failures.push(format!(
                "find {c}: offline {} at {}, live {} at {}",
                offline["provider"], offline["distance"], live["provider"], live["distance"]
            ));
        }
    }
    if iommu {
        failures.extend(group_disagreements(&spec, None, &snapshot));
    }
    // `addr` of each provider's P2P memory, live: the address the kernel logged when it
    // registered the memory ("added peer-to-peer DMA memory START-END", a CPU address; q35's
    // host bridge has no offset, so the BAR register holds the same bus address).
    for p in &providers {
        let a = json(&read(&format!("addr-{p}.json")), "live addr");
        let bdf = a["target"].as_str().unwrap();
        let logged = dmesg
            .lines()
            .find(|l| l.contains(&format!("{bdf}: added peer-to-peer DMA memory")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|r| r.split_once('-'))
            .and_then(|(s, _)| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
        let (cpu, bus) = (a["cpu_address"].as_u64(), a["bus_address"].as_u64());
        if logged.is_none() || cpu != logged || bus != logged || a["bar_holds_p2pmem"] != true {
            failures.push(format!("addr {p}: kernel logged {logged:x?}, addr gives CPU {cpu:x?}, bus {bus:x?}"));
        }
        rows.push(Row {
            pair: format!("addr {p}"),
            predicted: "BAR of its P2P memory".into(),
            live: format!("bus {:#x}", bus.unwrap_or(0)),
            snapshot: "-".into(),
            kernel: format!("logged {:#x}", logged.unwrap_or(0)),
            agree: if logged.is_some() && cpu == logged && bus == logged { "yes".into() } else { "NO".into() },
        });
    }

    // Every pair of the file's devices (BAR-only devices too): verdict and path class agree
    // offline, live and from the snapshot.
    let offline_topo = json(&p2pdma(&["topo", "--spec", &spec, "--json"]).1, "offline topo");
    let live_topo = json(&read("topo.json"), "live topo");
    let snap_topo = json(&p2pdma(&["topo", "--snapshot", snapshot.to_str().unwrap(), "--json"]).1, "snapshot topo");
    let key = |p: &Value| format!("{} → {}", p["provider"].as_str().unwrap(), p["client"].as_str().unwrap());
    let layers = |p: &Value| format!("{} {} {}", p["map_type"], p["distance"], p["path_class"]);
    let index = |t: &Value| -> std::collections::HashMap<String, String> {
        t["pairs"].as_array().unwrap().iter().map(|p| (key(p), layers(p))).collect()
    };
    let (live_pairs, snap_pairs) = (index(&live_topo), index(&snap_topo));
    let all_pairs = offline_topo["pairs"].as_array().unwrap();
    for p in all_pairs {
        let (k, want) = (key(p), layers(p));
        let (live, snap) = (live_pairs.get(&k), snap_pairs.get(&k));
        if live != Some(&want) || snap != Some(&want) {
            failures.push(format!("pair {k}: offline {want}, live {live:?}, snapshot {snap:?}"));
        }
    }
    rows.push(Row {
        pair: format!("all {} pairs of the file's devices", all_pairs.len()),
        predicted: "verdict + path class".into(),
        live: "compared".into(),
        snapshot: "compared".into(),
        kernel: "-".into(),
        agree: if failures.iter().any(|f| f.starts_with("pair ")) { "NO".into() } else { "yes".into() },
    });

    let live_providers = read("providers.txt").lines().count();
    if live_providers != providers.len() {
        failures.push(format!("{live_providers} devices have p2pmem/ in the guest, {} predicted", providers.len()));
    }

    let mut table = format!(
        "### {scenario}\n\n| pair | predicted | live | snapshot | kernel | agree |\n|---|---|---|---|---|---|\n"
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.pair, r.predicted, r.live, r.snapshot, r.kernel, r.agree
        ));
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-conformance");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{scenario}.md")), &table).unwrap();
    println!("{table}");
    assert!(failures.is_empty(), "{scenario}: disagreements:\n{}", failures.join("\n"));
    assert!(!rows.is_empty());
}

/// Device → IOMMU group from `topo --json` or a snapshot's topology.
fn groups_of(devices: &Value) -> std::collections::BTreeMap<String, u64> {
    devices
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| Some((d["bdf"].as_str()?.to_string(), d["iommu_group"].as_u64()?)))
        .collect()
}

/// Differences between two groupings over the devices both know: `a` and `b` must split
/// them alike (one-to-one group ids); with `exact`, with the same ids too.
fn partition_diff(
    what: &str,
    a: &std::collections::BTreeMap<String, u64>,
    b: &std::collections::BTreeMap<String, u64>,
    exact: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let (mut ab, mut ba) = (std::collections::HashMap::new(), std::collections::HashMap::new());
    for (dev, ga) in a {
        let Some(gb) = b.get(dev) else { continue };
        if exact && ga != gb {
            out.push(format!("{what}: {dev} is in group {ga} predicted, {gb} by the kernel"));
        }
        if *ab.entry(*ga).or_insert(*gb) != *gb || *ba.entry(*gb).or_insert(*ga) != *ga {
            out.push(format!("{what}: {dev} (predicted group {ga}, kernel group {gb}) is grouped differently"));
        }
    }
    if ab.is_empty() {
        out.push(format!("{what}: no device has a group on both sides"));
    }
    out
}

/// Predicted IOMMU groups against the kernel's (`/sys/kernel/iommu_groups` as the guest's
/// snapshot recorded them): from the topology file (with `kernel_params` as a what-if when
/// given), and from the snapshot itself with its groups taken out (every device, ids too).
fn group_disagreements(spec: &str, kernel_params: Option<&str>, snapshot: &Path) -> Vec<String> {
    let snap = json(&std::fs::read_to_string(snapshot).unwrap(), "snapshot");
    let kernel = groups_of(&snap["topology"]["devices"]);
    let mut args = vec!["topo", "--spec", spec, "--json"];
    if let Some(p) = kernel_params {
        args.extend(["--kernel-params", p]);
    }
    let predicted = groups_of(&json(&p2pdma(&args).1, "topo")["devices"]);
    let mut out = partition_diff(&format!("{spec} {kernel_params:?}"), &predicted, &kernel, false);
    let mut stripped = snap.clone();
    for d in stripped["topology"]["devices"].as_array_mut().unwrap() {
        d["iommu_group"] = Value::Null;
    }
    stripped["topology"].as_object_mut().unwrap().remove("iommu_groups");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stripped.json");
    std::fs::write(&path, stripped.to_string()).unwrap();
    let from_snapshot = json(&p2pdma(&["topo", "--snapshot", path.to_str().unwrap(), "--json"]).1, "topo");
    assert_eq!(from_snapshot["iommu_groups"]["source"], "predicted");
    out.extend(partition_diff("snapshot without groups", &groups_of(&from_snapshot["devices"]), &kernel, true));
    out
}

/// The `n`th fix `check --json` proposes for its first client: the fix, and the devices of
/// the group its cost says they merge into.
fn cost_of(check: &Value, n: usize) -> (String, Vec<String>) {
    let cost = &check["clients"][0]["fix_costs"][n];
    let devices = cost["merges"][0]["devices"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().into()).collect();
    (cost["fix"].as_str().unwrap().to_string(), devices)
}

/// The price of the fix, proven: the machine booted as is and booted with
/// `pci=disable_acs_redir=` on each root port, then with `check`'s `pci=config_acs=` fix. The
/// kernel's groups must be the predicted ones every time, from the topology files, from the
/// as-booted snapshot with `--kernel-params`, and as `check`'s fix costs say.
#[test]
fn lab_iommu_groups_before_and_after_disable_acs_redir() {
    if skip_lab() {
        return;
    }
    let before = "examples/topologies/iommu-groups.toml";
    let after = "examples/topologies/iommu-groups-redir-off.toml";
    let fix = "pci=disable_acs_redir=0000:00:10.0;0000:00:11.0";
    let boot = |spec: &str| {
        let share = tempfile::tempdir().unwrap();
        let (code, out, err) = p2pdma(&[
            "lab",
            "run",
            spec,
            "--timeout",
            "120",
            "--share",
            share.path().to_str().unwrap(),
            "--",
            "p2pdma snapshot -o /lab/share/snapshot.json 2>/dev/null; dmesg > /lab/share/dmesg.txt; echo done",
        ]);
        assert_eq!(code, 0, "{spec}: the lab run failed: {out}{err}");
        share
    };
    let (a, b) = (boot(before), boot(after));
    let (snap_a, snap_b) = (a.path().join("snapshot.json"), b.path().join("snapshot.json"));
    let mut failures = group_disagreements(before, None, &snap_a);
    failures.extend(group_disagreements(after, None, &snap_b));
    // What-if from the topology file and from the as-booted snapshot equal the second boot.
    failures.extend(group_disagreements(before, Some(fix), &snap_b));
    let kernel_after = groups_of(&json(&std::fs::read_to_string(&snap_b).unwrap(), "snapshot")["topology"]["devices"]);
    let what_if = json(
        &p2pdma(&["topo", "--snapshot", snap_a.to_str().unwrap(), "--kernel-params", fix, "--json"]).1,
        "topo what-if",
    );
    failures.extend(partition_diff(
        "as-booted snapshot + --kernel-params",
        &groups_of(&what_if["devices"]),
        &kernel_after,
        true,
    ));
    // check's fix for the multifunction pair: the root port joins both functions' group.
    let check =
        json(&p2pdma(&["check", "--snapshot", snap_a.to_str().unwrap(), "nvme-a", "nvme-b", "--json"]).1, "check");
    let cost = &check["clients"][0]["fix_costs"][0];
    assert_eq!(cost["fix"], "pci=disable_acs_redir=0000:00:10.0", "{check}");
    let merged: Vec<&str> =
        cost["merges"][0]["devices"].as_array().unwrap().iter().filter_map(|d| d.as_str()).collect();
    let g = kernel_after["0000:00:10.0"];
    let kernel_group: Vec<&str> = kernel_after.iter().filter(|(_, v)| **v == g).map(|(k, _)| k.as_str()).collect();
    assert_eq!(merged, kernel_group, "check's cost of the fix against the kernel booted with it");
    // check's config_acs fix, booted: the kernel programs what was predicted (SV and UF kept),
    // and the groups merge all the same (RR and CR are off).
    let config_acs = cost_of(&check, 1);
    let dir = tempfile::tempdir().unwrap();
    let spec_c = dir.path().join("iommu-groups-config-acs.toml");
    let text = std::fs::read_to_string(Path::new("../..").join(before)).unwrap();
    std::fs::write(
        &spec_c,
        text.replace("iommu = true", &format!("iommu = true\nkernel_params = \"{}\"", config_acs.0)),
    )
    .unwrap();
    let c = boot(spec_c.to_str().unwrap());
    let dmesg = std::fs::read_to_string(c.path().join("dmesg.txt")).unwrap();
    assert!(dmesg.contains("0000:00:10.0: Configured ACS to 0x0011"), "config_acs not applied as predicted:\n{dmesg}");
    let snap_c = c.path().join("snapshot.json");
    failures.extend(group_disagreements(before, Some(&config_acs.0), &snap_c));
    let kernel_c = groups_of(&json(&std::fs::read_to_string(&snap_c).unwrap(), "snapshot")["topology"]["devices"]);
    let g = kernel_c["0000:00:10.0"];
    let kernel_group: Vec<&str> = kernel_c.iter().filter(|(_, v)| **v == g).map(|(k, _)| k.as_str()).collect();
    assert_eq!(config_acs.1, kernel_group, "check's cost of pci=config_acs against the kernel booted with it");
    assert!(failures.is_empty(), "IOMMU groups: predicted and kernel disagree:\n{}", failures.join("\n"));
}

macro_rules! scenarios {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(#[test] fn $test() { conformance($name) })*
    };
}

scenarios! {
    lab_switch => "switch",
    lab_root_ports => "root-ports",
    lab_zen_root_ports => "zen-root-ports",
    lab_iommu_acs => "iommu-acs",
    lab_iommu_acs_disabled => "iommu-acs-disabled",
    lab_nested_switches => "nested-switches",
    lab_no_provider => "no-provider",
    lab_bar_devices => "bar-devices",
}

#[test]
fn lab_refuses_what_it_cannot_emulate() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.toml");
    std::fs::write(&f, "[[root_port]]\nname = \"rp\"\n[[switch]]\nname = \"sw\"\nparent = \"rp\"\nacs = true\n")
        .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_p2pdma")).args(["lab", "qemu-args", f.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("switch sw: QEMU's xio3130 switch ports have no ACS capability"), "{err}");
    // A GPU is QEMU's bochs-display and must say so; BARs are QEMU's to decide.
    for (extra, want) in [
        ("", "set id = \"1234:1111\""),
        ("id = \"1234:1111\"\nbars = [{ index = 0, size = \"1G\" }]\n", "bars are not emulated"),
    ] {
        std::fs::write(
            &f,
            format!(
                "[[root_port]]\nname = \"rp\"\n[[endpoint]]\nname = \"gpu0\"\nkind = \"gpu\"\nparent = \"rp\"\n{extra}"
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_p2pdma"))
            .args(["lab", "qemu-args", f.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    }
    std::fs::write(&f, "[[root_port]]\nname = \"rp\"\n[[endpoint]]\nname = \"gpu0\"\nkind = \"gpu\"\nparent = \"rp\"\nid = \"1234:1111\"\n").unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_p2pdma")).args(["lab", "qemu-args", f.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("-device bochs-display,id=gpu0,bus=rp"), "{out:?}");
}
