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

/// The QEMU that shows multipath heads: `$P2PDMA_QEMU`, else the lab's `backports`.
fn qemu() -> String {
    std::env::var("P2PDMA_QEMU").ok().filter(|q| !q.is_empty()).unwrap_or_else(|| "backports".into())
}

/// Boots the `switch` scenario on the multipath-capable QEMU, runs `script` in the guest
/// (in the share), and returns the share.
fn boot(script: &str) -> tempfile::TempDir {
    let qemu = qemu();
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

/// nvmet's own P2P check on a head namespace, straight through configfs (p2pdma refuses
/// before the kernel is asked): `$B` with nvme-a's CMB as `p2pmem`.
const RAW_NVMET: &str = "modprobe nvmet; mount -t configfs none /sys/kernel/config 2>/dev/null; \
    S=/sys/kernel/config/nvmet/subsystems/nqn.2026-12.io.example:raw; mkdir $S; mkdir $S/namespaces/1; \
    echo $B > $S/namespaces/1/device_path; echo 0000:03:00.0 > $S/namespaces/1/p2pmem; \
    echo 1 > $S/namespaces/1/enable 2> raw-enable.err; echo $? > raw-enable.rc; \
    rmdir $S/namespaces/1; rmdir $S; dmesg > dmesg.txt; ";

#[test]
fn lab_multipath_heads() {
    if skip_lab() {
        return;
    }
    let copy = "p2pdma copy nvme-b nvme-a --via nvme-a --length 32M --require-p2p --verify --json";
    let export =
        "p2pdma nvmet export --nqn nqn.2026-12.io.example:mp --ns nvme-b --transport loop --allow-any-host --json";
    // The drives probe in either order: every name is taken from what the guest says.
    let script = [
        "ls /dev > dev.txt; ls /sys/block > block.txt; ".to_string(),
        step("resolve-a", "p2pdma resolve --block nvme-a"),
        step("resolve-b", "p2pdma resolve --block nvme-b"),
        "A=$(cat resolve-a.out); B=$(cat resolve-b.out); ls /sys/block/${A#/dev/}/multipath > a-paths.txt; \
         P=$(cat a-paths.txt); cat /sys/block/$P/hidden > hidden.txt; "
            .into(),
        step("resolve-path", "p2pdma resolve --block $P"),
        "dd if=/dev/urandom of=$B bs=1M count=32 2>/dev/null; ".into(),
        step("copy", copy),
        "dd if=$B bs=1M count=32 2>/dev/null | sha256sum | cut -c1-64 > src.sha; ".into(),
        "dd if=$A bs=1M count=32 2>/dev/null | sha256sum | cut -c1-64 > dst.sha; ".into(),
        step("copy-7.1", &format!("{copy} --kernel 7.1")),
        step("alloc", "p2pdma alloc nvme-a 1M --read $B --json"),
        step("check", "p2pdma check nvme-a nvme-b --json"),
        step("check-head", "p2pdma check nvme-a ${B#/dev/} --json"),
        step("topo", "p2pdma topo --json"),
        step("nvmet-p2pmem", &format!("{export} --p2pmem nvme-a")),
        step("nvmet-auto", &format!("{export} --p2pmem auto")),
        step("nvmet-remove", "p2pdma nvmet remove --nqn nqn.2026-12.io.example:mp --json"),
        RAW_NVMET.into(),
        "modprobe ext4; mke2fs -q $A && mkdir -p /mnt/a && mount $A /mnt/a; ".into(),
        step("mounted", "p2pdma copy nvme-b nvme-a --length 4K --json"),
        "umount /mnt/a".into(),
    ]
    .concat();
    let share = Share(boot(&script));

    // The machine has multipath: heads in /dev, hidden paths only in sysfs.
    let (a, b) = (share.step("resolve-a"), share.step("resolve-b"));
    assert_eq!((a.0, b.0), (0, 0), "{a:?} {b:?}");
    let (a, b) =
        (a.1.trim().strip_prefix("/dev/").unwrap().to_string(), b.1.trim().strip_prefix("/dev/").unwrap().to_string());
    let path = share.read("a-paths.txt").trim().to_string();
    let (dev, block) = (share.read("dev.txt"), share.read("block.txt"));
    let has = |list: &str, name: &str| list.lines().any(|l| l == name);
    for head in [&a, &b] {
        assert!(p2pdma_core::multipath::parse_disk_name(head).is_some() && has(&dev, head), "{head}: {dev}");
    }
    assert!(
        matches!(
            p2pdma_core::multipath::parse_disk_name(&path),
            Some(p2pdma_core::multipath::NvmeDiskName::Path { .. })
        ),
        "{path}"
    );
    assert!(has(&block, &path) && !has(&dev, &path), "{path}: {dev}");
    assert_eq!(share.read("hidden.txt").trim(), "1");

    // The hidden path is refused as bad input, naming its head.
    let (rc, _, err) = share.step("resolve-path");
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains(&format!("{path} is a hidden disk")) && err.contains(&format!("use its head /dev/{a}")),
        "{err}"
    );

    // P2P through the heads on 7.2, byte for byte.
    let (rc, r) = share.json("copy");
    assert_eq!((rc, &r["outcome"]), (0, &Value::from("copied")), "{r}");
    assert_eq!(r["route"]["memory"], "p2p", "{r}");
    assert_eq!(r["path"], "P2P, bus address, distance 4, via 0000:03:00.0 (nvme-a)");
    assert_eq!((&r["src"]["block_device"], &r["dst"]["block_device"]), (&b.as_str().into(), &a.as_str().into()));
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
    assert_eq!(r["read"]["device"], format!("/dev/{b}"));

    // check and topo as without multipath: PCI devices and their verdicts; the head's
    // verdict is its path's controller's.
    let (rc, c) = share.json("check");
    assert_eq!((rc, &c["map_type"], &c["distance"]), (0, &"bus_addr".into(), &4.into()), "{c}");
    let (rc, h) = share.json("check-head");
    assert_eq!((rc, &h["map_type"], &h["distance"]), (0, &"bus_addr".into(), &4.into()), "{h}");
    assert!(h["clients"][0]["reasons"][0].as_str().unwrap().contains("NVMe multipath head"), "{h}");
    let (rc, t) = share.json("topo");
    assert_eq!(rc, 0);
    let names: Vec<_> = t["devices"].as_array().unwrap().iter().filter_map(|d| d["name"].as_str()).collect();
    assert!(names.contains(&"nvme-a") && names.contains(&"nvme-b"), "{names:?}");

    // nvmet exports the head, but its P2P check judges the head's own device (virtual):
    // p2pdma refuses a provider, auto exports without one, and the kernel agrees.
    let (rc, r) = share.json("nvmet-p2pmem");
    assert_eq!((rc, &r["outcome"]), (1, &Value::from("refused")), "{r}");
    assert!(r["reasons"].to_string().contains("is an NVMe multipath head"), "{r}");
    let (rc, r) = share.json("nvmet-auto");
    assert_eq!((rc, &r["ok"]), (0, &true.into()), "{r}");
    assert!(r.to_string().contains(&format!("/dev/{b}")), "{r}");
    assert_eq!(share.step("nvmet-remove").0, 0);
    assert_ne!(share.read("raw-enable.rc").trim(), "0", "the kernel enabled a head namespace with p2pmem");
    let dmesg = share.read("dmesg.txt");
    assert!(
        dmesg.contains(&format!("block {b}: cannot be used for peer-to-peer DMA as it is not a PCI device")),
        "{dmesg}"
    );

    // A mounted head is in use.
    let (rc, r) = share.json("mounted");
    assert_eq!((rc, &r["outcome"]), (1, &Value::from("refused")), "{r}");
    assert!(r["refused"][0].as_str().unwrap().ends_with(&format!("{a} is mounted at /mnt/a")), "{r}");
}

/// The fix the refusals name, `nvme_core.multipath=N` on the kernel command line (the
/// topology file's `kernel_params`): no heads, and nvmet takes nvme-a's CMB for nvme-b.
#[test]
fn lab_multipath_off_gives_plain_namespaces_and_nvmet_p2p() {
    if skip_lab() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let switch = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/topologies/switch.toml"))
        .unwrap()
        .replace("[machine]\n", "[machine]\nkernel_params = \"nvme_core.multipath=N\"\n");
    let spec = dir.path().join("switch-multipath-off.toml");
    std::fs::write(&spec, switch).unwrap();
    let qemu = qemu();
    let script = [
        "cd /lab/share; cat /sys/module/nvme_core/parameters/multipath > param.txt; ls /sys/block > block.txt; ",
        &step(
            "export",
            "p2pdma nvmet export --nqn nqn.2026-12.io.example:off --ns nvme-b --transport loop --p2pmem nvme-a \
             --allow-any-host --json",
        ),
    ]
    .concat();
    let share =
        Share(common::lab_run(spec.to_str().unwrap(), &[], &[("P2PDMA_QEMU", &qemu)], &script, "multipath off"));
    assert_eq!(share.read("param.txt").trim(), "N");
    let block = share.read("block.txt");
    assert!(
        block.lines().all(|l| !matches!(
            p2pdma_core::multipath::parse_disk_name(l),
            Some(p2pdma_core::multipath::NvmeDiskName::Path { .. })
        )),
        "{block}"
    );
    let (rc, r) = share.json("export");
    assert_eq!((rc, &r["ok"], &r["p2p"]["p2pmem"]), (0, &true.into(), &"0000:03:00.0".into()), "{r}");
}
