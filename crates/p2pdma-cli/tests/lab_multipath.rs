//! NVMe native multipath against the real kernel: on a QEMU new enough (9 and later) for
//! Debian's `CONFIG_NVME_MULTIPATH=y` to give every namespace a head (`/dev/nvme0n1`, under
//! the virtual nvme-subsystem device) above a hidden path disk (`nvme0c0n1`, no `/dev`
//! node). Names resolve to the head, a copy through the heads runs P2P on 7.2 (the kernel
//! itself says yes: fb0eeeed91f3), is refused as 7.1 would, a mounted head is refused, and
//! `check` is what it is without multipath.
//!
//! The QEMU is `$P2PDMA_QEMU` (default `backports`: the lab's QEMU from bookworm-backports).
//! Needs QEMU and the lab kernel (scripts/test installs them); P2PDMA_SKIP_LAB=1 skips.

use serde_json::Value;

mod common;

use common::skip_lab;

/// Boots the `switch` scenario on the multipath-capable QEMU, runs `script` in the guest
/// (in the share), and returns the share.
fn boot(script: &str) -> tempfile::TempDir {
    let qemu = std::env::var("P2PDMA_QEMU").ok().filter(|q| !q.is_empty()).unwrap_or_else(|| "backports".into());
    let script = format!("cd /lab/share; {script}");
    common::lab_run(common::SWITCH, &[], &[("P2PDMA_QEMU", &qemu)], &script, &format!("QEMU {qemu}"))
}

/// Runs `cmd` in the guest keeping stdout, stderr and the exit status as `name.{out,err,rc}`.
fn step(name: &str, cmd: &str) -> String {
    format!("{cmd} > {name}.out 2> {name}.err; echo $? > {name}.rc; ")
}

struct Share(tempfile::TempDir);

impl Share {
    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.0.path().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    /// A step's exit status, stdout and stderr.
    fn step(&self, name: &str) -> (i32, String, String) {
        let rc = self.read(&format!("{name}.rc")).trim().parse().unwrap();
        (rc, self.read(&format!("{name}.out")), self.read(&format!("{name}.err")))
    }

    fn json(&self, name: &str) -> (i32, Value) {
        let (rc, out, err) = self.step(name);
        let json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {out}\n{err}"));
        (rc, json)
    }
}

#[test]
fn lab_multipath_heads() {
    if skip_lab() {
        return;
    }
    let copy = "p2pdma copy nvme-b nvme-a --via nvme-a --length 32M --require-p2p --verify --json";
    let script = [
        "ls /dev > dev.txt; ls /sys/block > block.txt; cat /sys/block/nvme0c0n1/hidden > hidden.txt; ".to_string(),
        step("resolve-a", "p2pdma resolve --block nvme-a"),
        step("resolve-b", "p2pdma resolve --block nvme-b"),
        step("resolve-path", "p2pdma resolve --block nvme0c0n1"),
        "A=$(cat resolve-a.out); B=$(cat resolve-b.out); dd if=/dev/urandom of=$B bs=1M count=32 2>/dev/null; ".into(),
        step("copy", copy),
        "dd if=$B bs=1M count=32 2>/dev/null | sha256sum | cut -c1-64 > src.sha; ".into(),
        "dd if=$A bs=1M count=32 2>/dev/null | sha256sum | cut -c1-64 > dst.sha; ".into(),
        step("copy-7.1", &format!("{copy} --kernel 7.1")),
        step("alloc", "p2pdma alloc nvme-a 1M --read $B --json"),
        step("check", "p2pdma check nvme-a nvme-b --json"),
        step("check-head", "p2pdma check nvme-a nvme1n1 --json"),
        step("topo", "p2pdma topo --json"),
        step(
            "nvmet",
            "p2pdma nvmet export --nqn nqn.2026-12.io.example:mp --ns nvme-b --transport loop --allow-any-host \
             --dry-run --json",
        ),
        "modprobe ext4; mke2fs -q $A && mkdir -p /mnt/a && mount $A /mnt/a; ".into(),
        step("mounted", "p2pdma copy nvme-b nvme-a --length 4K --json"),
        "umount /mnt/a".into(),
    ]
    .concat();
    let share = Share(boot(&script));

    // The machine has multipath: heads in /dev, hidden paths only in sysfs.
    let (dev, block) = (share.read("dev.txt"), share.read("block.txt"));
    let lines = |s: &str| s.lines().map(str::to_string).collect::<Vec<_>>();
    assert!(lines(&dev).contains(&"nvme0n1".into()) && !lines(&dev).contains(&"nvme0c0n1".into()), "{dev}");
    assert!(lines(&block).contains(&"nvme0c0n1".into()), "{block}");
    assert_eq!(share.read("hidden.txt").trim(), "1");

    // Names resolve to the heads; the hidden path is refused as bad input, naming its head.
    assert_eq!(share.step("resolve-a"), (0, "/dev/nvme0n1\n".into(), String::new()));
    assert_eq!(share.step("resolve-b"), (0, "/dev/nvme1n1\n".into(), String::new()));
    let (rc, _, err) = share.step("resolve-path");
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("nvme0c0n1 is a hidden disk") && err.contains("use its head /dev/nvme0n1"), "{err}");

    // P2P through the heads on 7.2, byte for byte.
    let (rc, r) = share.json("copy");
    assert_eq!((rc, &r["outcome"]), (0, &Value::from("copied")), "{r}");
    assert_eq!(r["route"]["memory"], "p2p", "{r}");
    assert_eq!(r["path"], "P2P, bus address, distance 4, via 0000:03:00.0 (nvme-a)");
    assert_eq!((&r["src"]["block_device"], &r["dst"]["block_device"]), (&"nvme1n1".into(), &"nvme0n1".into()));
    assert_eq!((&r["src"]["pci"], &r["dst"]["pci"]), (&"0000:04:00.0".into(), &"0000:03:00.0".into()), "{r}");
    assert_eq!(r["verify"]["equal"], true, "{r}");
    let (src, dst) = (share.read("src.sha"), share.read("dst.sha"));
    assert_eq!((src.trim().len(), &src), (64, &dst), "checksums by dd in the guest");

    // As 7.1 would judge: the heads take no P2P buffers; the reason says why and the fix.
    let (rc, r) = share.json("copy-7.1");
    assert_eq!((rc, &r["outcome"]), (1, &Value::from("refused")), "{r}");
    let why = r["refused"][0].as_str().unwrap();
    assert!(why.contains("NVMe multipath head") && why.contains("nvme_core.multipath=N"), "{why}");

    // The kernel reads a head into the CMB (O_DIRECT with P2P pages).
    let (rc, r) = share.json("alloc");
    assert_eq!((rc, &r["read"]["ok"], &r["read"]["unchanged"]), (0, &true.into(), &false.into()), "{r}");
    assert_eq!(r["read"]["device"], "/dev/nvme1n1");

    // check and topo as without multipath: PCI devices and their verdicts; the head's
    // verdict is its controller's.
    let (rc, c) = share.json("check");
    assert_eq!((rc, &c["map_type"], &c["distance"]), (0, &"bus_addr".into(), &4.into()), "{c}");
    let (rc, h) = share.json("check-head");
    assert_eq!((rc, &h["map_type"], &h["distance"]), (0, &"bus_addr".into(), &4.into()), "{h}");
    let (rc, t) = share.json("topo");
    assert_eq!(rc, 0);
    let names: Vec<_> = t["devices"].as_array().unwrap().iter().filter_map(|d| d["name"].as_str()).collect();
    assert!(names.contains(&"nvme-a") && names.contains(&"nvme-b"), "{names:?}");

    // nvmet exports the head.
    let (rc, out, err) = share.step("nvmet");
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("/dev/nvme1n1") && !out.contains("nvme1c1n1"), "{out}");

    // A mounted head is in use.
    let (rc, r) = share.json("mounted");
    assert_eq!((rc, &r["outcome"]), (1, &Value::from("refused")), "{r}");
    assert!(r["refused"][0].as_str().unwrap().ends_with("nvme0n1 is mounted at /mnt/a"), "{r}");
}
