//! `bench` speaks fio (docs/fio.md): its `--json` on real files of this machine (host memory)
//! read by a fio-style reader and by fio's own `fio_jsonplus_clat2csv`, percentiles only
//! where the sample count allows, fio's option names and `--runtime`/`--time_based`.

mod common;
#[path = "../../p2pdma-core/tests/fio_reader/mod.rs"]
mod fio_reader;

use common::p2pdma;
use fio_reader::{beyond_fio, clat2csv_job0, Output};
use p2pdma_core::fio::{min_samples_for, FIO_PERCENTILES};
use serde_json::Value;

fn source(dir: &std::path::Path) -> String {
    let src = dir.join("src");
    std::fs::write(&src, (0..(4u32 << 20)).map(|i| (i % 253) as u8).collect::<Vec<u8>>()).unwrap();
    src.to_str().unwrap().to_string()
}

/// The percentile points a direction of `n` samples must carry: exactly those the rule allows.
fn expected_points(n: u64) -> Vec<String> {
    let mut v: Vec<String> =
        FIO_PERCENTILES.iter().filter(|&&p| min_samples_for(p) <= n).map(|p| format!("{p:.6}")).collect();
    v.sort();
    v
}

#[test]
fn reads_only_without_dst_in_fio_json_that_fio_readers_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = source(dir.path());
    // fio's names: --bs and --iodepth; no --dst, no --rw: reads only.
    let (code, out, err) = p2pdma(&["bench", &s, "--bs", "4k,64k", "--iodepth", "1,4", "--size", "1M", "--json"]);
    assert_eq!(code, 0, "{err}");
    let parsed: Output = serde_json::from_str(&out).expect("bench JSON read as fio's");
    assert!(parsed.version.starts_with("p2pdma-"));
    let names: Vec<&str> = parsed.jobs.iter().map(|j| j.jobname.as_str()).collect();
    assert_eq!(names, ["read-host-qd1-bs4k", "read-host-qd1-bs64k", "read-host-qd4-bs4k", "read-host-qd4-bs64k"]);
    for job in &parsed.jobs {
        let r = &job.read;
        let n = (1u64 << 20) / job.options["bs"].parse::<u64>().unwrap();
        assert_eq!(
            (job.error, r.io_bytes, r.total_ios, r.clat_ns.n, r.lat_ns.n),
            (0, 1 << 20, n, n, n),
            "{}",
            job.jobname
        );
        assert!(r.iops > 0.0 && r.bw > 0 && r.bw_bytes >= r.bw * 1024, "{}", job.jobname);
        assert!(r.clat_ns.min <= r.clat_ns.max && r.clat_ns.mean > 0.0);
        // Percentiles carry N: only the points N samples can tell (256: up to p99.5; 16: p10..p90).
        let keys: Vec<String> = r.clat_ns.percentile.keys().cloned().collect();
        assert_eq!(keys, expected_points(n), "{} N={n}", job.jobname);
        let mut values: Vec<(f64, u64)> =
            r.clat_ns.percentile.iter().map(|(k, v)| (k.parse::<f64>().unwrap(), *v)).collect();
        values.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(values.windows(2).all(|w| w[0].1 <= w[1].1), "percentiles ascend: {values:?}");
        assert!(values.iter().all(|(_, v)| (r.clat_ns.min..=r.clat_ns.max).contains(v)));
        assert_eq!(r.clat_ns.bins.values().sum::<u64>(), n, "json+ bins hold every sample");
        assert_eq!((job.write.total_ios, job.trim.total_ios), (0, 0));
    }
    // fio's order of points in the text itself, as fio writes them.
    assert!(out.find("\"1.000000\"").unwrap() < out.find("\"5.000000\"").unwrap());

    let v: Value = serde_json::from_str(&out).unwrap();
    let extra = beyond_fio(&v);
    assert!(extra.iter().all(|p| p.starts_with(".jobs[].p2pdma.") || p.starts_with(".p2pdma.")), "{extra:?}");
    assert_eq!(v["p2pdma"]["route"]["memory"], "host");
    assert_eq!(v["jobs"][0]["p2pdma"]["memory"], "host");
    assert_eq!(v["global options"]["direct"], "1");

    if let Some(csv) = clat2csv_job0(dir.path(), "bench", &out) {
        assert!(csv.starts_with("nsec, read_slat_ns_count"), "{csv}");
        // The last line of read clat is the 100th percentile of all 256 samples.
        let last = csv.lines().last().unwrap();
        let cols: Vec<&str> = last.split(", ").collect();
        assert_eq!(cols[5..7], ["256", "1.0"], "{last}");
    }
}

#[test]
fn copy_and_write_fill_both_directions_and_text_shows_iops_and_n() {
    let dir = tempfile::tempdir().unwrap();
    let s = source(dir.path());
    let d = dir.path().join("dst");
    let d = d.to_str().unwrap();
    let (code, out, err) = p2pdma(&[
        "bench",
        &s,
        "--dst",
        d,
        "--rw",
        "write,copy",
        "--bs",
        "64K",
        "--iodepth",
        "2",
        "--size",
        "1M",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let parsed: Output = serde_json::from_str(&out).unwrap();
    let [write, copy] = &parsed.jobs[..] else { panic!("{out}") };
    assert_eq!((write.read.total_ios, write.write.total_ios, write.write.clat_ns.n), (0, 16, 16));
    assert_eq!((copy.read.total_ios, copy.write.total_ios), (16, 16));
    assert_eq!((copy.read.io_bytes, copy.write.io_bytes), (1 << 20, 1 << 20));
    assert_eq!(copy.options["rw"], "copy");

    let (code, text, err) =
        p2pdma(&["bench", &s, "--readwrite", "read", "--blocksize", "4K", "--depth", "1", "--size", "1M"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("IOPS") && text.contains("(reads only)"), "{text}");
    assert!(text.contains("read clat (us) N=256 ") && text.contains(" p99.5="), "{text}");
    assert!(text.contains("(too few samples for p99.9 p99.95 p99.99)"), "{text}");
}

#[test]
fn runtime_with_time_based_repeats_the_range_and_without_caps_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = source(dir.path());
    let (code, out, err) = p2pdma(&[
        "bench",
        &s,
        "--bs",
        "4K",
        "--iodepth",
        "1",
        "--size",
        "64K",
        "--runtime",
        "300ms",
        "--time_based",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let job = &v["jobs"][0];
    assert!(job["p2pdma"]["passes"].as_u64().unwrap() > 1, "{job}");
    assert!(job["job_runtime"].as_u64().unwrap() >= 300, "{job}");
    assert_eq!(job["read"]["total_ios"].as_u64().unwrap() * 4096, job["read"]["io_bytes"].as_u64().unwrap());
    assert_eq!(
        (v["global options"]["runtime"].as_str(), v["global options"]["time_based"].as_str()),
        (Some("300ms"), Some("1"))
    );

    // Without --time_based the range ends the run first (fio's runtime is a limit).
    let (code, out, err) = p2pdma(&["bench", &s, "--bs", "4K", "--size", "64K", "--runtime", "1m", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["jobs"].as_array().unwrap().iter().all(|j| j["p2pdma"]["passes"] == 1 && j["read"]["total_ios"] == 16));

    for (args, needle) in [
        (vec!["--time_based"], "--runtime"),
        (vec!["--runtime", "0"], "more than 0"),
        (vec!["--runtime", "1.5s"], "unit"),
        (vec!["--rw", "randread"], "randread"),
    ] {
        let mut all = vec!["bench", s.as_str()];
        all.extend(args);
        let (code, _, err) = p2pdma(&all);
        assert!(code == 2 && err.contains(needle), "{all:?}: {err}");
    }
}
