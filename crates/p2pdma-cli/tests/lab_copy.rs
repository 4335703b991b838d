//! `p2pdma copy` against the real kernel in the lab: exact copies through a CMB, the host
//! fallback and its refusal, the emulator's silent-corruption trap caught by --verify,
//! safety refusals (mounted, in use), ENOMEM, an injected I/O error at a chosen offset, and
//! the provider removed mid-copy; `p2pdma bench` through the CMB, its fio-shaped JSON read
//! as fio's. One boot per scenario; each step leaves its JSON and exit status in the share
//! for the asserts here.
//!
//! Needs QEMU and the lab kernel (scripts/test installs them); P2PDMA_SKIP_LAB=1 skips.

use std::process::Command;

use serde_json::Value;

mod common;
#[path = "../../p2pdma-core/tests/fio_reader/mod.rs"]
mod fio_reader;

use common::skip_lab;

const MIB: u64 = 1 << 20;

/// A guest script under construction: each step's stdout and status land in the share.
struct Script(String);

impl Script {
    fn new() -> Self {
        // nvme-a holds the CMB; $A and $B are the namespaces; $B gets random data.
        Script(
            "cd /lab/share; A=$(p2pdma resolve --block nvme-a); B=$(p2pdma resolve --block nvme-b); \
             dd if=/dev/urandom of=$B bs=1M count=64 2>/dev/null; "
                .into(),
        )
    }

    /// Runs `cmd`, keeping its stdout as `name.json` and its exit status as `name.rc`.
    fn step(mut self, name: &str, cmd: &str) -> Self {
        self.0.push_str(&format!("{cmd} > {name}.json 2> {name}.err; echo $? > {name}.rc; "));
        self
    }

    fn raw(mut self, cmd: &str) -> Self {
        self.0.push_str(cmd);
        self.0.push_str("; ");
        self
    }
}

struct Run {
    share: tempfile::TempDir,
}

impl Run {
    fn boot(scenario: &str, extra: &[&str], script: Script) -> Run {
        let share = tempfile::tempdir().unwrap();
        let spec = format!("examples/topologies/{scenario}.toml");
        let mut args = vec!["lab", "run", &spec, "--timeout", "300", "--share", share.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", &script.0]);
        let out = Command::new(env!("CARGO_BIN_EXE_p2pdma"))
            .env("P2PDMA_GUEST_BINARY", common::guest_binary())
            .args(&args)
            .current_dir("../..")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{scenario}: lab run failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Run { share }
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.share.path().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    /// A step's exit status and JSON report.
    fn step(&self, name: &str) -> (i32, Value) {
        let rc = self.read(&format!("{name}.rc")).trim().parse().unwrap();
        let text = self.read(&format!("{name}.json"));
        let err = self.read(&format!("{name}.err"));
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {text}\n{err}"));
        (rc, json)
    }
}

fn copy(args: &str) -> String {
    format!("p2pdma copy {args} --json")
}

/// The sha256 of `len` bytes at `offset` of block device `$dev`, read by busybox dd
/// (independent of p2pdma), into `name.sha`.
fn sha(name: &str, dev: &str, offset: u64, len: u64) -> String {
    assert!(offset.is_multiple_of(512) && len.is_multiple_of(512));
    format!(
        "dd if={dev} bs=512 skip={} count={} 2>/dev/null | sha256sum | cut -c1-64 > {name}.sha",
        offset / 512,
        len / 512
    )
}

#[test]
fn lab_copy_switch() {
    if skip_lab() {
        return;
    }
    // (name, src offset, dst offset, length, extra flags)
    let cases: &[(&str, u64, u64, u64, &str)] = &[
        ("4k", 0, 0, 4096, ""),
        ("odd-blocks", 1536, 3584, 37 * 512, "--chunk 8K"),
        ("larger-than-cmb", 0, 0, 48 * MIB, "--chunk 1M --depth 8"),
        ("offsets", 5 * MIB, 7 * MIB + 512, 3 * MIB + 512, "--chunk 256K --depth 4"),
    ];
    let mut script = Script::new();
    for (name, so, doff, len, flags) in cases {
        script = script
            .step(
                name,
                &copy(&format!("nvme-b nvme-a --src-offset {so} --dst-offset {doff} --length {len} --verify {flags}")),
            )
            .raw(&sha(&format!("{name}-src"), "$B", *so, *len))
            .raw(&sha(&format!("{name}-dst"), "$A", *doff, *len));
    }
    let script = script
        // ENOMEM: a chunk larger than the 16 MiB CMB.
        .step("enomem-required", &copy("nvme-b nvme-a --length 32M --chunk 32M --require-p2p"))
        .step("enomem-fallback", &copy("nvme-b nvme-a --length 32M --chunk 32M --verify"))
        // In use: swap on the destination (an exclusive user), then a mounted file system.
        .raw("mkswap $A >/dev/null && swapon $A")
        .step("swap", &copy("nvme-b nvme-a --length 4K"))
        .raw("swapoff $A; modprobe ext4; mke2fs -q $A && mkdir -p /mnt/a && mount $A /mnt/a")
        .step("mounted", &copy("nvme-b nvme-a --length 4K"))
        .raw("umount /mnt/a")
        // Same device: overlapping ranges are bad input; disjoint ones are fine.
        .step("overlap", &copy("nvme-b nvme-b --src-offset 0 --dst-offset 1M --length 2M"))
        // The provider removed mid-copy (nvme-b to itself, through nvme-a's CMB).
        .raw(&format!(
            "({} > removal.json 2> removal.err; echo $? > removal.rc) & sleep 2; \
             echo 1 > /sys/bus/pci/devices/0000:03:00.0/remove; wait",
            copy("nvme-b nvme-b --dst-offset 32M --length 32M --depth 1 --chunk 4K")
        ));
    let run = Run::boot("switch", &[], script);

    for (name, so, doff, len, _) in cases {
        let (rc, r) = run.step(name);
        assert_eq!(rc, 0, "{name}: {r}");
        assert_eq!(r["outcome"], "copied", "{name}");
        assert_eq!(r["route"]["memory"], "p2p", "{name}: {r}");
        assert_eq!(r["route"]["map_type"], "bus_addr");
        assert_eq!(r["route"]["distance"], 4);
        assert_eq!(r["path"], "P2P, bus address, distance 4, via 0000:03:00.0 (nvme-a)");
        assert_eq!(r["bytes"], *len);
        assert_eq!((r["src"]["offset"].as_u64(), r["dst"]["offset"].as_u64()), (Some(*so), Some(*doff)));
        assert_eq!(r["verify"]["equal"], true, "{name}");
        let (src, dst) = (run.read(&format!("{name}-src.sha")), run.read(&format!("{name}-dst.sha")));
        assert_eq!(src, dst, "{name}: checksums by dd in the guest differ");
        assert_eq!(src.trim().len(), 64);
    }

    let (rc, r) = run.step("enomem-required");
    assert_eq!((rc, &r["outcome"]), (1, &Value::from("refused")), "{r}");
    assert!(
        r["refused"][0].as_str().unwrap().contains("no contiguous 33554432 bytes of P2P memory free (ENOMEM"),
        "{r}"
    );
    let (rc, r) = run.step("enomem-fallback");
    assert_eq!(
        (rc, &r["route"]["memory"], &r["verify"]["equal"]),
        (0, &Value::from("host"), &Value::from(true)),
        "{r}"
    );
    assert!(r["notes"][0].as_str().unwrap().contains("ENOMEM"), "{r}");

    let (rc, r) = run.step("swap");
    assert_eq!((rc, &r["outcome"]), (1, &Value::from("refused")), "{r}");
    assert!(r["refused"][0].as_str().unwrap().contains("EBUSY"), "{r}");
    let (rc, r) = run.step("mounted");
    assert_eq!((rc, &r["outcome"]), (1, &Value::from("refused")), "{r}");
    assert!(r["refused"][0].as_str().unwrap().ends_with("is mounted at /mnt/a"), "{r}");

    let rc: i32 = run.read("overlap.rc").trim().parse().unwrap();
    assert_eq!(rc, 2, "overlap is bad input");
    assert!(run.read("overlap.err").contains("are the same storage"));

    let (rc, r) = run.step("removal");
    assert_eq!((rc, &r["outcome"]), (1, &Value::from("failed")), "{r}");
    let e = &r["error"];
    assert_eq!(e["errno"], 14, "EFAULT once the mapping is gone: {r}");
    // Whichever I/O hit the zapped mapping first, its offset is the device's own.
    let (offset, prefix) = (e["offset"].as_u64().unwrap(), e["written_prefix"].as_u64().unwrap());
    match e["op"].as_str() {
        Some("read") => assert_eq!(offset, prefix, "{r}"),
        Some("write") => assert_eq!(offset, 32 * MIB + prefix, "{r}"),
        other => panic!("{other:?}: {r}"),
    }
    assert!(e["message"].as_str().unwrap().contains("P2P provider removed"), "{r}");
    assert!(e["written_prefix"].as_u64().unwrap() < 32 * MIB, "stopped part way: {r}");
}

#[test]
fn lab_copy_fault_injection() {
    if skip_lab() {
        return;
    }
    // QEMU fails every write touching byte 8 MiB + 4 KiB of nvme-b.
    let script = Script::new()
        .raw("dd if=$B of=/tmp/src bs=1M count=16 2>/dev/null")
        .step("fault", &copy("/tmp/src nvme-b --dst-offset 0 --chunk 1M --depth 4 --via host"));
    let run = Run::boot("switch", &["--fault", "nvme-b:8196K:write"], script);
    let (rc, r) = run.step("fault");
    assert_eq!((rc, &r["outcome"]), (1, &Value::from("failed")), "{r}");
    let e = &r["error"];
    // The failing I/O is the 1 MiB chunk that holds the faulty byte.
    assert_eq!((e["op"].as_str(), e["offset"].as_u64()), (Some("write"), Some(8 * MIB)), "{r}");
    assert_eq!(e["device"], r["dst"]["path"]);
    assert!(e["errno"].as_i64().unwrap() > 0);
    assert_eq!(e["written_prefix"], 8 * MIB, "{r}");
}

/// Durability at the cost of one flush: a copy ends with exactly one flush request at the
/// destination drive (its `/sys/block/*/stat` flush count, Documentation/block/stat.rst; the
/// kernel's `blkdev_fsync` issues it with `blkdev_issue_flush`), whatever the chunk count,
/// and the source drive gets none. busybox dd is the control: none without `conv=fsync`,
/// one with it.
#[test]
fn lab_copy_flushes_the_destination_once() {
    if skip_lab() {
        return;
    }
    let flushes = |dev: &str, file: &str| format!("awk '{{print $16}}' /sys/block/${{{dev}#/dev/}}/stat >> {file}");
    let mut script = Script::new();
    let cases = [
        ("one-chunk", copy("$B $A --via host --length 1M")),
        ("many-chunks", copy("$B $A --via host --length 32M --chunk 1M --depth 8")),
        ("dd", "dd if=$B of=$A bs=1M count=32 iflag=direct oflag=direct 2>/dev/null".to_string()),
        ("dd-fsync", "dd if=$B of=$A bs=1M count=32 iflag=direct oflag=direct conv=fsync 2>/dev/null".to_string()),
    ];
    for (name, cmd) in &cases {
        script = script
            .raw(&flushes("A", &format!("{name}.dst")))
            .raw(&flushes("B", &format!("{name}.src")))
            .step(name, cmd)
            .raw(&flushes("A", &format!("{name}.dst")))
            .raw(&flushes("B", &format!("{name}.src")));
    }
    let run = Run::boot("switch", &[], script);
    let delta = |file: &str| -> i64 {
        let counts: Vec<i64> = run.read(file).lines().map(|l| l.trim().parse().unwrap()).collect();
        counts[1] - counts[0]
    };
    for (name, expected) in [("one-chunk", 1), ("many-chunks", 1), ("dd", 0), ("dd-fsync", 1)] {
        let rc: i32 = run.read(&format!("{name}.rc")).trim().parse().unwrap();
        assert_eq!(rc, 0, "{name}: {}", run.read(&format!("{name}.err")));
        assert_eq!(delta(&format!("{name}.dst")), expected, "{name}: flushes of the destination");
        assert_eq!(delta(&format!("{name}.src")), 0, "{name}: flushes of the source");
    }
    for name in ["one-chunk", "many-chunks"] {
        let (_, r) = run.step(name);
        assert_eq!(r["outcome"], "copied", "{r}");
        // The flush is timed apart from the data phase and the setup.
        assert!(r["flush_seconds"].as_f64().unwrap() > 0.0, "{r}");
    }
}

/// `--verify` through host memory reads each chunk back as it is written: against a drive
/// that acknowledges writes and keeps nothing (the kernel's null_blk, without memory
/// backing), both engines report the mismatch at the first byte, exit 1, and no I/O error.
#[test]
fn lab_copy_verify_in_flight_catches_a_drive_that_drops_writes() {
    if skip_lab() {
        return;
    }
    let script = Script::new()
        .raw("modprobe null_blk nr_devices=1 gb=1 && [ -b /dev/nullb0 ]")
        .step("uring", &copy("$B /dev/nullb0 --via host --length 4M --verify"))
        .step("sync", &copy("$B /dev/nullb0 --via host --length 4M --verify --sync"));
    let run = Run::boot("switch", &[], script);
    for name in ["uring", "sync"] {
        let (rc, r) = run.step(name);
        assert_eq!((rc, &r["outcome"]), (1, &Value::from("mismatch")), "{name}: {r}");
        assert_eq!(r["error"], Value::Null, "{name}: every write was acknowledged");
        assert_eq!(r["verify"]["read_back"], "in_flight", "{name}: {r}");
        assert_eq!(r["verify"]["equal"], false, "{name}");
        assert_eq!(r["verify"]["first_difference"], 0, "{name}: {r}");
    }
}

#[test]
fn lab_copy_root_ports_falls_back_or_refuses() {
    if skip_lab() {
        return;
    }
    let script = Script::new()
        .step("fallback", &copy("nvme-b nvme-a --length 4M --verify"))
        .step("required", &copy("nvme-b nvme-a --length 4M --require-p2p"))
        .step("explicit", &copy("nvme-b nvme-a --length 4M --via nvme-a --require-p2p"))
        .step("check", "p2pdma check nvme-a nvme-b nvme-a --json");
    let run = Run::boot("root-ports", &[], script);
    let (rc, r) = run.step("fallback");
    assert_eq!((rc, &r["outcome"], &r["route"]["memory"]), (0, &Value::from("copied"), &Value::from("host")), "{r}");
    assert_eq!(r["verify"]["equal"], true);
    let (_, check) = run.step("check");
    let why_not: Vec<&Value> =
        check["clients"].as_array().unwrap().iter().flat_map(|c| c["reasons"].as_array().unwrap()).collect();
    for step in ["required", "explicit"] {
        let (rc, r) = run.step(step);
        assert_eq!((rc, &r["outcome"]), (1, &Value::from("refused")), "{step}: {r}");
        let refused = r["refused"].as_array().unwrap();
        assert!(refused.iter().any(|x| x.as_str().unwrap().contains("--require-p2p")), "{step}: {r}");
        // The same reasons `p2pdma check` gives.
        for reason in &why_not {
            if reason.as_str().unwrap().contains("do not share an upstream bridge") {
                assert!(refused.contains(reason), "{step}: {reason} missing from {r}");
            }
        }
    }
}

#[test]
fn lab_copy_verify_catches_the_iommu_trap() {
    if skip_lab() {
        return;
    }
    // lab-facts.md 3: the kernel maps the pair by bus address, QEMU's IOMMU drops the peer
    // write, every read "succeeds": only the read-back shows the data never arrived.
    let script = Script::new().step("trap", &copy("nvme-b nvme-a --length 1M --via nvme-a --verify"));
    let run = Run::boot("iommu-acs-disabled", &[], script);
    let (rc, r) = run.step("trap");
    assert_eq!(rc, 1, "{r}");
    assert_eq!(r["outcome"], "mismatch", "{r}");
    assert_eq!(r["route"]["memory"], "p2p");
    assert_eq!(r["error"], Value::Null, "no I/O error: the kernel reported success");
    assert_eq!(r["verify"]["equal"], false);
    assert_eq!(r["verify"]["read_back"], "after_copy", "through P2P memory the source is read again");
    assert!(r["verify"]["first_difference"].as_u64().is_some());
}

/// Issue 12: SIGINT or SIGTERM during a long copy stops it with the I/O in flight drained:
/// exit 130 or 143, the JSON outcome `interrupted` with the bytes done, and a destination
/// whose written prefix is the source's (checked by busybox dd and sha256sum in the guest).
#[test]
fn lab_copy_interrupted() {
    if skip_lab() {
        return;
    }
    let mut script = Script::new();
    for (name, sig) in [("sigint", "INT"), ("sigterm", "TERM")] {
        // busybox: a background job ignores SIGINT unless the program installs a handler,
        // which p2pdma does for the copy; `kill` reaches it by its pid.
        script = script
            .raw(&format!(
                "({} > {name}.json 2> {name}.err; echo $? > {name}.rc) & sleep 1.5; kill -{sig} $(pidof p2pdma); wait",
                copy("nvme-b nvme-a --length 64M --chunk 4K --depth 2")
            ))
            .raw(&format!(
                "P=$(sed -n 's/.*\"written_prefix\": \\([0-9]*\\).*/\\1/p' {name}.json); \
                 dd if=$B bs=4096 count=$((P / 4096)) 2>/dev/null | sha256sum | cut -c1-64 > {name}-src.sha; \
                 dd if=$A bs=4096 count=$((P / 4096)) 2>/dev/null | sha256sum | cut -c1-64 > {name}-dst.sha; \
                 dd if=/dev/zero of=$A bs=1M count=64 2>/dev/null"
            ));
    }
    let run = Run::boot("switch", &[], script);
    for (name, code, signal) in [("sigint", 130, "SIGINT"), ("sigterm", 143, "SIGTERM")] {
        let (rc, r) = run.step(name);
        assert_eq!((rc, &r["outcome"]), (code, &Value::from("interrupted")), "{name}: {r}");
        assert_eq!(r["signal"], signal, "{r}");
        assert_eq!(r["route"]["memory"], "p2p", "{r}");
        let prefix = r["error"]["written_prefix"].as_u64().unwrap();
        assert!(prefix > 0 && prefix < 64 * MIB, "stopped part way, after some data: {r}");
        assert_eq!(r["bytes"].as_u64(), Some(prefix), "{r}");
        let (src, dst) = (run.read(&format!("{name}-src.sha")), run.read(&format!("{name}-dst.sha")));
        assert_eq!(src, dst, "{name}: the written prefix differs from the source");
    }
}

/// `bench` through nvme-a's CMB beside host memory: reads only without --dst (fio's option
/// names), then read, write and copy; its JSON read by the fio-style reader and by fio's
/// `fio_jsonplus_clat2csv` on the host, each percentile only where N allows.
#[test]
fn lab_bench_through_the_cmb_reads_as_fio() {
    if skip_lab() {
        return;
    }
    let script = Script::new()
        .step("bench-read", "p2pdma bench nvme-b --bs 4K --iodepth 8 --size 1M --json")
        .step("bench-all", "p2pdma bench nvme-b --dst nvme-a --chunk 128K --depth 1,4 --size 4M --json");
    let run = Run::boot("switch", &[], script);

    let (rc, v) = run.step("bench-read");
    assert_eq!(rc, 0, "{v}");
    let out: fio_reader::Output = serde_json::from_value(v.clone()).expect("read as fio's");
    let names: Vec<&str> = out.jobs.iter().map(|j| j.jobname.as_str()).collect();
    assert_eq!(names, ["read-p2p-qd8-bs4k", "read-host-qd8-bs4k"], "{v}");
    assert_eq!(v["p2pdma"]["route"]["memory"], "p2p", "{v}");
    assert_eq!(v["p2pdma"]["dst"], Value::Null);
    for job in &out.jobs {
        let c = &job.read.clat_ns;
        assert_eq!((job.error, job.read.total_ios, c.n), (0, 256, 256), "{}", job.jobname);
        // 256 samples: p1 … p99.5, not p99.9 (1000) and up.
        assert!(c.percentile.contains_key("99.500000") && !c.percentile.contains_key("99.900000"), "{}", job.jobname);
    }

    let (rc, v) = run.step("bench-all");
    assert_eq!(rc, 0, "{v}");
    let out: fio_reader::Output = serde_json::from_value(v.clone()).expect("read as fio's");
    assert_eq!(out.jobs.len(), 12, "3 ops x 2 depths x (p2p, host): {v}");
    for (job, raw) in out.jobs.iter().zip(v["jobs"].as_array().unwrap()) {
        let op = raw["p2pdma"]["op"].as_str().unwrap();
        let (reads, writes) = (job.read.total_ios, job.write.total_ios);
        assert_eq!(job.error, 0, "{}: {raw}", job.jobname);
        assert_eq!((reads > 0, writes > 0), (op != "write", op != "read"), "{}", job.jobname);
        for d in [&job.read, &job.write] {
            assert_eq!(d.clat_ns.n, d.total_ios, "{}", job.jobname);
            assert!(d.total_ios == 0 || d.io_bytes == 4 * MIB, "{}", job.jobname);
            assert!(d.total_ios == 0 || d.clat_ns.percentile.contains_key("50.000000"), "{}", job.jobname);
            assert!(!d.clat_ns.percentile.contains_key("99.000000"), "32 samples: no p99 ({})", job.jobname);
        }
    }
    assert_eq!(v["p2pdma"]["comparisons"].as_array().unwrap().len(), 6, "{v}");
    let dir = tempfile::tempdir().unwrap();
    if let Some(csv) = fio_reader::clat2csv_job0(dir.path(), "lab-bench", &v.to_string()) {
        assert!(csv.starts_with("nsec, read_slat_ns_count"), "{csv}");
    }
}
