//! The "absent" verdict proven against real kernels without CONFIG_PCI_P2PDMA: Debian 13
//! (trixie, 6.12) and Debian 12 (bookworm, 6.1) boot the `switch` scenario, whose drive
//! nvme-a has a CMB that a P2PDMA kernel publishes (lab_conformance.rs proves that on sid).
//! Here no `p2pmem/` exists, `topo` says why first, `check` answers for the CMB drive with
//! exit 1, `copy --require-p2p` refuses naming the option and `copy --verify` falls back
//! through host memory, byte-exact.
//!
//! Needs QEMU and the network once (the kernels are fetched with the lab's private apt
//! configuration and cached); P2PDMA_SKIP_LAB=1 skips. One boot each, about 15 s under TCG.

use serde_json::Value;

mod common;

use common::skip_lab;

const SCRIPT: &str = "cd /lab/share; A=$(p2pdma resolve --block nvme-a); B=$(p2pdma resolve --block nvme-b); \
    dd if=/dev/urandom of=$B bs=1M count=8 2>/dev/null; \
    ls -d /sys/bus/pci/devices/*/p2pmem > p2pmem.txt 2>/dev/null; \
    p2pdma topo > topo.txt 2> topo.err; echo $? > topo.rc; \
    p2pdma topo --json > topo.json 2> topo-json.err; \
    p2pdma check nvme-a nvme-b --json > check.json 2> check.err; echo $? > check.rc; \
    p2pdma copy nvme-b nvme-a --length 4M --require-p2p --json > required.json 2> required.err; echo $? > required.rc; \
    p2pdma copy nvme-b nvme-a --length 4M --via nvme-a --require-p2p --json > via.json 2> via.err; echo $? > via.rc; \
    p2pdma copy nvme-b nvme-a --length 4M --verify --json > fallback.json 2> fallback.err; echo $? > fallback.rc; \
    dd if=$B bs=1M count=4 2>/dev/null | sha256sum | cut -c1-64 > src.sha; \
    dd if=$A bs=1M count=4 2>/dev/null | sha256sum | cut -c1-64 > dst.sha";

struct Share(tempfile::TempDir);

impl Share {
    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.0.path().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    fn rc(&self, step: &str) -> i32 {
        self.read(&format!("{step}.rc")).trim().parse().unwrap()
    }

    fn json(&self, step: &str) -> Value {
        let text = self.read(&format!("{step}.json"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{step}: not JSON ({e}): {text}"))
    }
}

fn boot(kernel: &str) -> Share {
    Share(common::lab_run(common::SWITCH, &["--kernel", kernel], &[], SCRIPT, kernel))
}

fn names_option(v: &Value) -> bool {
    v.to_string().contains("CONFIG_PCI_P2PDMA")
}

fn absent_verdicts(kernel: &str, release_prefix: &str) {
    let run = boot(kernel);
    assert_eq!(run.read("p2pmem.txt").trim(), "", "{kernel}: no device publishes P2P memory");

    assert_eq!(run.rc("topo"), 0);
    let topo = run.read("topo.txt");
    assert!(topo.lines().next().unwrap_or("").contains("CONFIG_PCI_P2PDMA"), "{kernel}: {topo}");
    let topo = run.json("topo");
    assert_eq!(topo["kernel"]["p2pdma"]["built"], "no", "{kernel}");
    let evidence = topo["kernel"]["p2pdma"]["evidence"].as_str().unwrap();
    assert!(evidence.contains("pci_p2pdma_distance_many"), "{kernel}: the kernel's own names decide: {evidence}");
    assert!(topo["kernel"]["release"].as_str().unwrap().starts_with(release_prefix));
    assert!(topo["providers"].as_array().unwrap().is_empty());

    // The CMB drive is answered for (exit 1, not_supported), not called "not a provider".
    let check = run.json("check");
    assert_eq!(run.rc("check"), 1, "{kernel}: {check}");
    assert_eq!(check["map_type"], "not_supported");
    assert!(names_option(&check["clients"][0]["reasons"]), "{kernel}: {check}");

    for step in ["required", "via"] {
        let r = run.json(step);
        assert_eq!((run.rc(step), &r["outcome"]), (1, &Value::from("refused")), "{kernel} {step}: {r}");
        assert!(names_option(&r["refused"]), "{kernel} {step}: {r}");
    }

    let r = run.json("fallback");
    assert_eq!(run.rc("fallback"), 0, "{kernel}: {r}");
    assert_eq!((&r["outcome"], &r["route"]["memory"]), (&Value::from("copied"), &Value::from("host")), "{r}");
    assert!(names_option(&r["route"]), "{kernel}: the fallback says why: {r}");
    assert_eq!(r["verify"]["equal"], true, "{r}");
    assert_eq!(run.read("src.sha"), run.read("dst.sha"), "{kernel}: byte-exact");
}

#[test]
fn lab_trixie_kernel_without_p2pdma_refuses_and_falls_back() {
    if skip_lab() {
        return;
    }
    absent_verdicts("trixie", "6.12.");
}

/// The same on 6.1 (plain .ko modules, no nvme-auth/nvme-keyring, virtio_pci a module).
#[test]
fn lab_bookworm_kernel_without_p2pdma_refuses_and_falls_back() {
    if skip_lab() {
        return;
    }
    absent_verdicts("bookworm", "6.1.");
}
