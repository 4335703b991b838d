//! bench's fio-shaped JSON read as fio's is read: by a reader written the way fio-consuming
//! tools read fio's output, by the layout of real fio 3.33 output (fixtures/, captured with
//! Debian's fio: `fio --output-format=json+ --size=2M --bs=4k --ioengine=psync --name=seqread
//! --rw=read --name=seqwrite --rw=write`), and by fio's own `fio_jsonplus_clat2csv` (Debian's
//! `fio` package; scripts/install-fio installs it, the test skips without it unless `CI` is set).

// Tests and examples read files; the crate itself may not touch the filesystem.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
mod fio_reader;

use std::collections::BTreeMap;
use std::time::Duration;

use fio_reader::{beyond_fio, clat2csv_job0, layout, Output, FIO_FIXTURE};
use p2pdma_core::fio::{DirectionStats, FioJob, FioReport, FIO_PERCENTILES};
use serde_json::Value;

/// Three bench runs: a read of 10000 I/Os (every point), a copy of 150 (reads and writes; p99
/// yes, p99.5 no), a failed write with nothing moved.
fn sample_report() -> FioReport {
    let mut read =
        FioJob { name: "read-p2p-qd8-bs4k".into(), runtime: Duration::from_millis(250), ..Default::default() };
    read.options.insert("rw".into(), "read".into());
    read.options.insert("bs".into(), "4096".into());
    read.options.insert("iodepth".into(), "8".into());
    for i in 0..10_000u64 {
        read.read.record_io(4096, Duration::from_nanos(20_000 + i * 7));
    }
    read.read.runtime = read.runtime;

    let mut copy = FioJob::for_run("copy", "host", 1, 1 << 20, 150 << 20);
    for i in 0..150u64 {
        copy.read.record_io(1 << 20, Duration::from_micros(900 + i));
        copy.write.record_io(1 << 20, Duration::from_micros(1200 + 2 * i));
    }
    copy.set_runtime(Duration::from_millis(300));
    copy.extra = Some(serde_json::json!({"memory": "host", "op": "copy"}));

    let failed = FioJob {
        name: "write-p2p-qd8-bs4k".into(),
        error: 5,
        write: DirectionStats::default(),
        extra: Some(serde_json::json!({"error": "/dev/nvme1n1 at 0: Input/output error"})),
        ..Default::default()
    };

    FioReport {
        version: "p2pdma-0.1.0".into(),
        timestamp_ms: 1_796_078_256_123,
        global_options: BTreeMap::from([("size".to_string(), "16777216".to_string())]),
        jobs: vec![read, copy, failed],
        extra: None,
    }
}

fn ours() -> Value {
    sample_report().to_fio_json()
}

#[test]
fn real_fio_output_parses_with_the_reader() {
    let out: Output = serde_json::from_str(FIO_FIXTURE).expect("fio 3.33 output");
    assert_eq!(out.version, "fio-3.33");
    assert_eq!(out.jobs.len(), 2);
    let r = &out.jobs[0].read;
    assert_eq!((r.io_bytes, r.total_ios, r.clat_ns.n), (2 << 20, 512, 512));
    assert_eq!(r.clat_ns.percentile.len(), 17, "fio prints all 17 points");
    assert!(out.jobs[0].write.clat_ns.percentile.is_empty(), "nor any for an empty direction");
}

#[test]
fn bench_json_parses_with_the_fio_reader() {
    let json = serde_json::to_string_pretty(&ours()).unwrap();
    let out: Output = serde_json::from_str(&json).expect("bench JSON read as fio's");
    assert_eq!(out.version, "p2pdma-0.1.0");
    assert_eq!(out.timestamp, 1_796_078_256);
    assert_eq!(out.jobs.len(), 3);

    let job = &out.jobs[0];
    assert_eq!((job.jobname.as_str(), job.error), ("read-p2p-qd8-bs4k", 0));
    assert_eq!(job.options["iodepth"], "8");
    let r = &job.read;
    assert_eq!((r.io_bytes, r.io_kbytes, r.total_ios, r.runtime), (40_960_000, 40_000, 10_000, 250));
    assert_eq!(r.iops, 40_000.0);
    assert_eq!(r.bw_bytes, 163_840_000);
    assert_eq!(r.bw, 160_000, "bw is KiB/s");
    assert_eq!((r.clat_ns.min, r.clat_ns.max, r.clat_ns.n), (20_000, 89_993, 10_000));
    assert!((r.clat_ns.mean - 54_996.5).abs() < 1e-6);
    assert!(r.clat_ns.stddev > 20_000.0 && r.clat_ns.stddev < 20_300.0);
    assert_eq!(r.lat_ns.n, 10_000);
    // Every default point from 10000 samples, keyed as fio keys them.
    let keys: Vec<String> = FIO_PERCENTILES.iter().map(|p| format!("{p:.6}")).collect();
    assert_eq!(r.clat_ns.percentile.keys().cloned().collect::<Vec<_>>(), sorted(keys));
    let p50 = r.clat_ns.percentile["50.000000"];
    assert!((p50 as f64 - 54_993.0).abs() / 54_993.0 <= 1.0 / 128.0, "p50 {p50}");
    assert_eq!(r.clat_ns.bins.values().sum::<u64>(), 10_000, "json+ bins hold every sample");
    assert_eq!(job.write.total_ios, 0);
    assert!(job.write.clat_ns.percentile.is_empty());

    // 150 samples: p99 (needs 100) but not p99.5 (needs 200), and p1 (needs 100).
    let copy = &out.jobs[1];
    assert_eq!(copy.jobname, "copy-host-qd1-bs1m");
    assert_eq!((copy.read.runtime, copy.write.runtime, copy.write.iops), (300, 300, 500.0));
    assert_eq!(copy.options["bs"], "1048576");
    for d in [&copy.read, &copy.write] {
        assert_eq!(d.clat_ns.n, 150);
        assert!(d.clat_ns.percentile.contains_key("99.000000"));
        assert!(d.clat_ns.percentile.contains_key("1.000000"));
        assert!(!d.clat_ns.percentile.contains_key("99.500000"));
        assert_eq!(d.clat_ns.percentile.len(), 13);
    }

    let failed = &out.jobs[2];
    assert_eq!(failed.error, 5);
    assert_eq!((failed.write.total_ios, failed.write.iops, failed.write.bw), (0, 0.0, 0));
    assert!(failed.write.clat_ns.percentile.is_empty() && failed.write.clat_ns.bins.is_empty());
    assert_eq!(failed.trim.total_ios, 0);
}

#[test]
fn percentiles_are_never_null() {
    let v = ours();
    for job in v["jobs"].as_array().unwrap() {
        for dir in ["read", "write", "trim"] {
            if let Some(p) = job[dir]["clat_ns"].get("percentile") {
                assert!(p.as_object().unwrap().values().all(Value::is_u64), "{p}");
            }
        }
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn same_keys_and_types_as_real_fio_where_filled() {
    let fio: Value = serde_json::from_str(FIO_FIXTURE).unwrap();
    let ours = ours();
    let mut mine = BTreeMap::new();
    layout(&ours, "", &mut mine);
    let extra = beyond_fio(&ours);
    // Only bench's own object is beyond fio's layout.
    assert!(extra.iter().all(|p| p.starts_with(".jobs[].p2pdma.")), "{extra:?}");
    assert!(!extra.is_empty());
    // The paths that fio readers use are all there.
    for path in [
        ".fio version",
        ".jobs[].jobname",
        ".jobs[].read.iops",
        ".jobs[].write.bw",
        ".jobs[].read.clat_ns.percentile.*",
        ".jobs[].read.clat_ns.N",
        ".jobs[].read.lat_ns.mean",
    ] {
        assert!(mine.contains_key(path), "{path}");
    }
    // Each direction has exactly fio's keys, with and without samples.
    let fio_read = fio["jobs"][0]["read"].as_object().unwrap();
    for (job, dir) in [(0, "read"), (0, "write"), (1, "write"), (2, "trim")] {
        let d = ours["jobs"][job][dir].as_object().unwrap();
        assert_eq!(d.keys().collect::<Vec<_>>(), fio_read.keys().collect::<Vec<_>>(), "{job} {dir}");
    }
    let fio_empty = fio["jobs"][0]["write"]["clat_ns"].as_object().unwrap();
    let ours_empty = ours["jobs"][0]["write"]["clat_ns"].as_object().unwrap();
    assert_eq!(ours_empty.keys().collect::<Vec<_>>(), fio_empty.keys().collect::<Vec<_>>());
}

/// fio's own json+ reader: turns clat bins into CSV, then `--validate` re-reads both.
#[test]
fn fio_jsonplus_clat2csv_reads_bench_json() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fio) = clat2csv_job0(dir.path(), "fio", FIO_FIXTURE) else { return };
    let job0 = clat2csv_job0(dir.path(), "bench", &serde_json::to_string_pretty(&ours()).unwrap()).unwrap();
    for csv in [&fio, &job0] {
        // Header plus one line per distinct bucket of read clat (and the others).
        assert!(csv.lines().count() > 10, "{csv}");
        assert!(csv.starts_with("nsec, read_slat_ns_count"));
    }
    // bench's job 0: the last line of read clat is the 100th percentile.
    let last = job0.lines().last().unwrap();
    let cols: Vec<&str> = last.split(", ").collect();
    assert_eq!(cols[5..7], ["10000", "1.0"], "{last}");
}

/// Serializing the report itself keeps fio's order of the percentile points.
#[test]
fn percentiles_in_fio_order_when_serialized_directly() {
    let text = serde_json::to_string(&sample_report()).unwrap();
    let (p1, p5, p10) =
        (text.find("\"1.000000\"").unwrap(), text.find("\"5.000000\"").unwrap(), text.find("\"10.000000\"").unwrap());
    assert!(p1 < p5 && p5 < p10);
    let report = FioReport { extra: Some(serde_json::json!({"signal": null})), ..sample_report() };
    assert_eq!(report.to_fio_json()["p2pdma"]["signal"], Value::Null);
    assert!(sample_report().to_fio_json().get("p2pdma").is_none());
}
