//! The kernel in the verdict: `--kernel VERSION` decides by that release's whitelist, a
//! kernel without CONFIG_PCI_P2PDMA refuses everything and says why, bad values are one line.

mod common;

use common::{cached_lab_kernels, missing, p2pdma};
use serde_json::Value;

/// Two NVMe drives on two root ports under one host bridge identified as `id`.
fn two_root_ports(dir: &std::path::Path, id: &str, extra_machine: &str) -> String {
    let path = dir.join(format!("{}.toml", id.replace(':', "-")));
    std::fs::write(
        &path,
        format!(
            r#"name = "two-root-ports"
[machine]
cpu = "intel"
{extra_machine}
[[host_bridge]]
name = "pci0000:00"
id = "{id}"
[[root_port]]
name = "rp0"
slot = 0x10
[[root_port]]
name = "rp1"
slot = 0x11
[[endpoint]]
name = "nvme-a"
kind = "nvme"
parent = "rp0"
cmb_mib = 16
[[endpoint]]
name = "nvme-b"
kind = "nvme"
parent = "rp1"
"#
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn check(spec: &str, kernel: &str) -> (i32, Value) {
    let (code, out, err) = p2pdma(&["check", "--spec", spec, "nvme-a", "nvme-b", "--kernel", kernel, "--json"]);
    (code, serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}")))
}

#[test]
fn check_follows_the_whitelist_of_the_named_release() {
    let dir = tempfile::tempdir().unwrap();
    let dsa = two_root_ports(dir.path(), "8086:0b25", "");
    for (kernel, supported) in
        [("6.6", false), ("7.1.2", false), ("7.1.3", true), ("7.2.13", true), ("7.2.13+deb14-amd64", true)]
    {
        let (code, v) = check(&dsa, kernel);
        let want = if supported { "thru_host_bridge" } else { "not_supported" };
        assert_eq!(v["map_type"], want, "DSA host bridge on {kernel}");
        assert_eq!(code, if supported { 0 } else { 1 });
    }
    let (_, v) = check(&dsa, "6.6");
    let reasons = v["clients"][0]["reasons"].to_string();
    assert!(reasons.contains("p2pdma's table for release 6.6.0"), "{reasons}");
    assert!(v["clients"][0]["fixes"].to_string().contains("7.2 or newer"), "{v}");

    let nvidia = two_root_ports(dir.path(), "10de:2f95", "");
    assert_eq!(check(&nvidia, "7.2.13").1["map_type"], "not_supported", "no NVIDIA entry in 7.2");
    assert_eq!(check(&nvidia, "7.3").1["map_type"], "thru_host_bridge");
    let google = two_root_ports(dir.path(), "1ae0:1234", "");
    assert_eq!(check(&google, "7.0").1["map_type"], "not_supported");
    assert_eq!(check(&google, "7.1").1["map_type"], "thru_host_bridge");
    let zhaoxin = two_root_ports(dir.path(), "1d17:1008", "");
    assert_eq!(check(&zhaoxin, "7.3").1["map_type"], "not_supported", "Zhaoxin is in the PCI tree only");

    // kernel_release in the topology file decides the same way; --kernel overrides it.
    let file = two_root_ports(dir.path(), "8086:0b25", "kernel_release = \"6.6.30\"");
    let (code, out, _) = p2pdma(&["check", "--spec", &file, "nvme-a", "nvme-b", "--json"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(check(&file, "7.2").1["map_type"], "thru_host_bridge");
    let (_, out, _) = p2pdma(&["topo", "--spec", &file, "--kernel", "7.2", "--json"]);
    let k = &serde_json::from_str::<Value>(&out).unwrap()["kernel"];
    assert_eq!(k["whitelist_source"]["source"], "release_table");
    assert_eq!(k["whitelist"].as_array().unwrap().len(), 21);
}

#[test]
fn malformed_kernel_values_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let dsa = two_root_ports(dir.path(), "8086:0b25", "");
    for bad in ["7", "seven", "7.x", "7.2.13.1", ""] {
        let (code, out, err) = p2pdma(&["check", "--spec", &dsa, "nvme-a", "nvme-b", "--kernel", bad]);
        assert_eq!(code, 2, "{bad}: {out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("--kernel") && err.contains(&format!("`{bad}`")), "{err}");
    }
    let file = two_root_ports(dir.path(), "8086:0b25", "kernel_release = \"banana\"");
    let (code, _, err) = p2pdma(&["topo", "--spec", &file]);
    assert_eq!(code, 2);
    assert!(err.contains("kernel_release") && err.contains("banana") && err.lines().count() == 1, "{err}");
}

#[test]
fn a_kernel_without_p2pdma_refuses_everything_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let spec = two_root_ports(dir.path(), "8086:0b25", "p2pdma = false");
    let (code, out, _) = p2pdma(&["topo", "--spec", &spec]);
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().contains("CONFIG_PCI_P2PDMA"), "{out}");
    let (_, out, _) = p2pdma(&["topo", "--spec", &spec, "--json"]);
    let topo: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(topo["kernel"]["p2pdma"]["built"], "no");
    assert!(topo["providers"].as_array().unwrap().is_empty());

    // The CMB drive is answered for, exit 1, not refused as "not a provider" (exit 2).
    let (code, out, _) = p2pdma(&["check", "--spec", &spec, "nvme-a", "nvme-b", "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["map_type"], "not_supported");
    assert!(v["clients"][0]["reasons"][0].as_str().unwrap().contains("CONFIG_PCI_P2PDMA"));
    assert!(v["clients"][0]["fixes"][0].as_str().unwrap().contains("CONFIG_PCI_P2PDMA=y"));
    assert_eq!(v["kernel"]["p2pdma"]["built"], "no", "every report carries the kernel judged");
    // A drive without a CMB has a memory BAR (its registers): any such device can be the
    // provider side (issue 11), so it too gets the verdict, naming the missing option.
    let (code, out, _) = p2pdma(&["check", "--spec", &spec, "nvme-b", "nvme-a"]);
    assert_eq!(code, 1);
    assert!(out.contains("CONFIG_PCI_P2PDMA"), "{out}");
    let (code, out, _) = p2pdma(&["find", "--spec", &spec, "nvme-b", "--json"]);
    assert_eq!(code, 1);
    assert!(out.contains("CONFIG_PCI_P2PDMA"), "{out}");

    // A snapshot keeps the kernel's facts; a snapshot from before they existed still loads.
    let snap = dir.path().join("snap.json");
    let (code, _, err) = p2pdma(&["snapshot", "--spec", &spec, "-o", snap.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = p2pdma(&["check", "--snapshot", snap.to_str().unwrap(), "nvme-a", "nvme-b"]);
    assert_eq!(code, 1);
    assert!(out.contains("CONFIG_PCI_P2PDMA"), "{out}");
    let mut old: Value = serde_json::from_str(&std::fs::read_to_string(&snap).unwrap()).unwrap();
    old["topology"]["machine"].as_object_mut().unwrap().remove("kernel");
    std::fs::write(&snap, old.to_string()).unwrap();
    let (code, out, _) = p2pdma(&["topo", "--snapshot", snap.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["kernel"]["p2pdma"]["built"], "unknown");

    // --kernel plans an upgrade: the CMB drive becomes the provider it would be.
    let (code, v) = check(&spec, "7.2.13");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["map_type"], "thru_host_bridge");
}

/// A live read under fixture roots with the lab kernel's config and image in `boot/`: the
/// whitelist comes from the image and says so; a broken image is one warning naming it.
/// The lab kernel is the newest cached one with P2PDMA (`p2pdma lab fetch`; scripts/test
/// fetches it before this tier): without one this skips, or fails under CI.
#[test]
fn live_read_takes_the_whitelist_from_the_kernel_image() {
    let Some(kernel) = cached_lab_kernels().into_iter().next() else {
        let cache = p2pdma_lab::default_cache_dir().join("kernel");
        return missing(
            &format!("no cached lab kernel with CONFIG_PCI_P2PDMA in {}", cache.display()),
            "run `p2pdma lab fetch` to get Debian unstable's (the cache is $P2PDMA_CACHE_DIR, else \
             $XDG_CACHE_HOME/p2pdma, else ~/.cache/p2pdma)",
        );
    };
    let release = kernel.release.as_str();
    // The image holds the table of its release (tests/kernel_image.rs in p2pdma-core checks them equal).
    let r: p2pdma_core::release::KernelRelease = release.parse().unwrap();
    let entries = p2pdma_core::whitelist::for_release(r.major, r.minor, r.patch).len();
    let root = tempfile::tempdir().unwrap();
    let (proc, boot) = (root.path().join("proc"), root.path().join("boot"));
    std::fs::create_dir_all(proc.join("sys/kernel")).unwrap();
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(proc.join("sys/kernel/osrelease"), format!("{release}\n")).unwrap();
    std::fs::copy(&kernel.config, boot.join(format!("config-{release}"))).unwrap();
    std::fs::copy(&kernel.vmlinuz, boot.join(format!("vmlinuz-{release}"))).unwrap();
    let proc_root = proc.to_str().unwrap();
    let cache = root.path().join("cache");
    // With its own cache directory: the table read from the image is kept there.
    let topo = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_p2pdma"))
            .args(["topo", "--proc-root", proc_root, "--json"])
            .env("P2PDMA_CACHE_DIR", &cache)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for _ in 0..2 {
        let (code, out, err) = topo();
        assert_eq!(code, 0, "{err}");
        let k = &serde_json::from_str::<Value>(&out).unwrap()["kernel"];
        assert_eq!(k["p2pdma"]["built"], "yes");
        assert_eq!(k["whitelist_source"]["source"], "image", "{k}");
        assert_eq!(k["whitelist"].as_array().unwrap().len(), entries, "{release}");
    }
    assert_eq!(std::fs::read_dir(cache.join("image-whitelist")).unwrap().count(), 1, "the table is cached");

    // A changed image is read again (its size and time are the cache's key).
    std::fs::write(boot.join(format!("vmlinuz-{release}")), [0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]).unwrap();
    let (code, out, err) = topo();
    assert_eq!(code, 0);
    assert_eq!(err.lines().filter(|l| l.contains("warning")).count(), 1, "{err}");
    assert!(err.contains(&format!("vmlinuz-{release}: cannot decompress its zstd payload")), "{err}");
    let k = &serde_json::from_str::<Value>(&out).unwrap()["kernel"];
    assert_eq!(k["whitelist_source"]["source"], "release_table", "{k}");
}

#[test]
fn kernel_before_the_zen_cpu_rule_refuses_a_zen_host_bridge_path() {
    // drivers/pci/p2pdma.c cpu_supports_p2pdma() came in 5.9 (dea286bb71ba)
    let dir = tempfile::tempdir().unwrap();
    let intel = two_root_ports(dir.path(), "1022:1480", "");
    let zen = intel.replace(".toml", "-zen.toml");
    std::fs::write(&zen, std::fs::read_to_string(&intel).unwrap().replace("cpu = \"intel\"", "cpu = \"epyc-milan\""))
        .unwrap();
    for (kernel, want, code) in
        [("7.2", "thru_host_bridge", 0), ("5.9", "thru_host_bridge", 0), ("5.8", "not_supported", 1)]
    {
        let (c, v) = check(&zen, kernel);
        assert_eq!((v["map_type"].as_str(), c), (Some(want), code), "Zen host bridge path on {kernel}: {v}");
    }
    let (_, v) = check(&zen, "5.8");
    let text = v["clients"][0].to_string();
    assert!(text.contains("cpu_supports_p2pdma came in 5.9"), "{text}");
    assert!(text.contains("a kernel 5.9 or newer lets AMD Zen CPUs"), "{text}");
}
