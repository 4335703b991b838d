//! Reading fio's JSON the way fio-consuming tools do, shared by the tests that check bench's
//! JSON against it: p2pdma-core's `fio_json` (the module's own output) and p2pdma-cli's
//! `bench_fio` (the command's output), which includes this file by path. Each test crate
//! that includes it has a `common` module with `missing` (a prerequisite absent: skip, or
//! fail under CI).
#![allow(dead_code)] // each test crate uses its own part

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

/// Real `fio --output-format=json+` output of fio 3.33 (see fixtures/).
pub const FIO_FIXTURE: &str = include_str!("../fixtures/fio-3.33-jsonplus.json");

// What fio consumers read (fio-plot, dashboards, CI scripts): jobs[].jobname, per direction
// iops (float), bw (KiB/s, integer), io_bytes, runtime (ms), total_ios, and clat_ns with N
// and the percentile map keyed "99.900000".
#[derive(Deserialize)]
pub struct Output {
    #[serde(rename = "fio version")]
    pub version: String,
    pub timestamp: u64,
    pub jobs: Vec<Job>,
}

#[derive(Deserialize)]
pub struct Job {
    pub jobname: String,
    pub error: i64,
    #[serde(rename = "job options")]
    pub options: BTreeMap<String, String>,
    pub read: Direction,
    pub write: Direction,
    pub trim: Direction,
}

#[derive(Deserialize)]
pub struct Direction {
    pub io_bytes: u64,
    pub io_kbytes: u64,
    pub bw_bytes: u64,
    pub bw: u64,
    pub iops: f64,
    pub runtime: u64,
    pub total_ios: u64,
    pub clat_ns: Lat,
    pub lat_ns: Lat,
}

#[derive(Deserialize)]
pub struct Lat {
    pub min: u64,
    pub max: u64,
    pub mean: f64,
    pub stddev: f64,
    #[serde(rename = "N")]
    pub n: u64,
    #[serde(default)]
    pub percentile: BTreeMap<String, u64>,
    #[serde(default)]
    pub bins: BTreeMap<String, u64>,
}

/// "int", "float", "string", ... of a JSON value, as a typed reader sees it.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every path of a JSON value with the kind found there: array indices as `[]`, keys of maps
/// that hold data (percentile points, bins, option names) as `*`.
pub fn layout(v: &Value, path: &str, out: &mut BTreeMap<String, &'static str>) {
    let data_maps = ["percentile", "bins", "job options", "global options"];
    match v {
        Value::Object(o) => {
            let is_data = data_maps.iter().any(|m| path.ends_with(m));
            for (k, v) in o {
                let k = if is_data { "*" } else { k };
                layout(v, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| layout(v, &format!("{path}[]"), out)),
        _ => {
            out.insert(path.to_string(), kind(v));
        }
    }
}

/// The paths of `ours` that real fio output does not have (each one that it has must be of
/// fio's kind there).
pub fn beyond_fio(ours: &Value) -> Vec<String> {
    let fio: Value = serde_json::from_str(FIO_FIXTURE).unwrap();
    let (mut theirs, mut mine) = (BTreeMap::new(), BTreeMap::new());
    layout(&fio, "", &mut theirs);
    layout(ours, "", &mut mine);
    let mut extra = Vec::new();
    for (path, kind) in &mine {
        match theirs.get(path) {
            Some(t) => assert_eq!(kind, t, "type at {path}"),
            None => extra.push(path.clone()),
        }
    }
    extra
}

/// fio's own json+ reader, `fio_jsonplus_clat2csv` (Debian's `fio`; scripts/install-fio),
/// run on `json` then with `--validate`: the CSV of job 0, or `None` (skipped, with a note)
/// when the script is missing outside CI; under CI that fails (`common::missing` of the
/// test crate that includes this module).
pub fn clat2csv_job0(dir: &Path, name: &str, json: &str) -> Option<String> {
    let script = Path::new("/usr/bin/fio_jsonplus_clat2csv");
    let python = Path::new("/usr/bin/python3");
    let usable = script.exists() && Command::new(python).args(["-c", "import six"]).status().is_ok_and(|s| s.success());
    if !usable {
        crate::common::missing(
            "fio's fio_jsonplus_clat2csv (/usr/bin) or python3-six",
            "run scripts/install-fio (Debian's fio and python3-six)",
        );
        return None;
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, json).unwrap();
    let csv = dir.join(format!("{name}.csv"));
    for validate in [false, true] {
        let mut cmd = Command::new(python);
        cmd.arg(script).arg(&path).arg(&csv);
        if validate {
            cmd.arg("--validate");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{name} (validate {validate}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(std::fs::read_to_string(dir.join(format!("{name}_job0.csv"))).unwrap())
}
