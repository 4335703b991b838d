//! fio's conventions for benchmark results, as pure code: a completion-latency histogram
//! laid out like fio's own (`plat` buckets), IOPS and bandwidth from byte and I/O counts,
//! percentiles at fio's default points that are never read from too few samples, fio's
//! option names and time format, and a report serialized in the shape of
//! `fio --output-format=json+`, so tools that read fio's JSON read it too.
//!
//! The bucket layout is fio's (stat.h `FIO_IO_U_PLAT_BITS` = 6, 29 groups): values below
//! 128 ns are kept exactly; above, each power of two is split into 64 buckets, so a bucket's
//! middle is within 1/128 (0.8 %) of any value in it. Using fio's layout (rather than an
//! HdrHistogram) means the `bins` and percentiles are those fio itself would report for the
//! same samples. Values of 2^34 ns (17 s) and more land in the last bucket; `max` stays exact.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// Bits of a value kept below its most significant bit (fio's `FIO_IO_U_PLAT_BITS`).
const PLAT_BITS: u32 = 6;
/// Buckets per group.
const PLAT_VAL: usize = 1 << PLAT_BITS;
/// Groups (fio's `FIO_IO_U_PLAT_GROUP_NR`).
const PLAT_GROUPS: usize = 29;
/// Buckets in all (fio's `FIO_IO_U_PLAT_NR`).
pub const BUCKETS: usize = PLAT_GROUPS * PLAT_VAL;

/// fio's default completion-latency percentiles (`percentile_list`), in percent.
pub const FIO_PERCENTILES: [f64; 17] =
    [1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99];

/// The bucket of a latency in nanoseconds.
fn bucket_of(ns: u64) -> usize {
    if ns < 2 * PLAT_VAL as u64 {
        return ns as usize;
    }
    let msb = 63 - ns.leading_zeros();
    let dropped = msb - PLAT_BITS;
    let group = dropped as usize + 1;
    let within = ((ns >> dropped) as usize) & (PLAT_VAL - 1);
    (group * PLAT_VAL + within).min(BUCKETS - 1)
}

/// The value fio reports for a bucket: its middle (exact below 128 ns).
fn bucket_value(idx: usize) -> u64 {
    if idx < 2 * PLAT_VAL {
        return idx as u64;
    }
    let dropped = (idx / PLAT_VAL - 1) as u32;
    let base = 1u64 << (dropped + PLAT_BITS);
    let width = 1u64 << dropped;
    base + (idx % PLAT_VAL) as u64 * width + width / 2
}

/// The fewest samples from which percentile `p` is reported: at least one sample expected
/// on each side of it, i.e. `N * min(p, 100 - p) / 100 >= 1`. So p50 needs 2 samples, p99
/// and p1 need 100, p99.9 1000, p99.99 10000. Below that the point is left out of the
/// output (as fio leaves out `percentile` when there are no samples), never guessed.
pub fn min_samples_for(p: f64) -> u64 {
    // In thousandths of a percent, so 99.95 is exact.
    let milli = (p * 1000.0).round() as u64;
    let tail = milli.min(100_000u64.saturating_sub(milli));
    if tail == 0 {
        return u64::MAX;
    }
    100_000u64.div_ceil(tail)
}

/// One reported percentile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentile {
    /// In percent (99.9).
    pub point: f64,
    /// Nanoseconds: the middle of the sample's bucket, kept within the exact min and max.
    pub value_ns: u64,
}

/// Completion latencies in nanoseconds, fixed size (about 15 KiB), O(1) to record.
#[derive(Clone)]
pub struct LatencyHistogram {
    buckets: Box<[u64]>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
    sum_sq: u128,
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self { buckets: vec![0; BUCKETS].into_boxed_slice(), count: 0, min: u64::MAX, max: 0, sum: 0, sum_sq: 0 }
    }

    /// Records one completion latency.
    pub fn record(&mut self, ns: u64) {
        self.buckets[bucket_of(ns)] += 1;
        self.count += 1;
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
        self.sum += u128::from(ns);
        self.sum_sq += u128::from(ns) * u128::from(ns);
    }

    /// Records one completion latency (saturating at u64::MAX ns, 584 years).
    pub fn record_duration(&mut self, d: Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds another histogram's samples (several queues or jobs reported as one).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Exact; `None` without samples.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// Exact; `None` without samples.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// Exact mean; 0 without samples (as fio prints it).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum as f64 / self.count as f64
    }

    /// Sample standard deviation (n - 1, as fio); 0 below two samples.
    pub fn stddev(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = self.count as f64;
        let mean = self.sum as f64 / n;
        let var = (self.sum_sq as f64 - n * mean * mean) / (n - 1.0);
        var.max(0.0).sqrt()
    }

    /// Percentile `p` (0 < p < 100) by nearest rank over the buckets, or `None` when there
    /// are fewer samples than [`min_samples_for`] asks.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if !(p > 0.0 && p < 100.0) || self.count < min_samples_for(p) {
            return None;
        }
        // Nearest rank: the smallest sample with at least p % of the samples at or below it.
        let milli = (p * 1000.0).round() as u128;
        let rank = ((u128::from(self.count) * milli).div_ceil(100_000) as u64).max(1);
        let mut seen = 0u64;
        for (idx, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_value(idx).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// fio's default points that these samples can tell, in order.
    pub fn fio_percentiles(&self) -> Vec<Percentile> {
        FIO_PERCENTILES
            .iter()
            .filter_map(|&point| self.percentile(point).map(|value_ns| Percentile { point, value_ns }))
            .collect()
    }

    /// Non-empty buckets as (fio's bucket value in ns, samples), ascending: json+ `bins`.
    pub fn bins(&self) -> Vec<(u64, u64)> {
        self.buckets.iter().enumerate().filter(|(_, n)| **n > 0).map(|(idx, n)| (bucket_value(idx), *n)).collect()
    }
}

/// What one direction (read or write) of one job moved, and how long it took.
#[derive(Debug, Clone, Default)]
pub struct DirectionStats {
    pub bytes: u64,
    pub ios: u64,
    /// Wall time of the run this direction belongs to.
    pub runtime: Duration,
    /// Per I/O, submission to completion.
    pub clat: LatencyHistogram,
}

impl DirectionStats {
    /// Counts one completed I/O of `bytes` that took `latency`.
    pub fn record_io(&mut self, bytes: u64, latency: Duration) {
        self.bytes += bytes;
        self.ios += 1;
        self.clat.record_duration(latency);
    }

    /// I/Os per second over `runtime`; 0 for a zero runtime.
    pub fn iops(&self) -> f64 {
        per_second(self.ios, self.runtime)
    }

    /// Bytes per second over `runtime`; 0 for a zero runtime.
    pub fn bytes_per_second(&self) -> f64 {
        per_second(self.bytes, self.runtime)
    }
}

fn per_second(n: u64, runtime: Duration) -> f64 {
    if runtime.is_zero() {
        return 0.0;
    }
    n as f64 / runtime.as_secs_f64()
}

/// One fio "job": one bench run (op, memory, depth, chunk).
#[derive(Debug, Clone, Default)]
pub struct FioJob {
    /// `jobname`, e.g. `read-p2p-qd8-bs128k`.
    pub name: String,
    /// `job options`, under fio's names (`rw`, `bs`, `iodepth`, `size`), values as text.
    pub options: BTreeMap<String, String>,
    pub read: DirectionStats,
    pub write: DirectionStats,
    /// Wall time of the whole job.
    pub runtime: Duration,
    /// fio's `error`: 0, or non-zero when the run failed (an errno where there is one).
    pub error: i32,
    /// What fio has no field for (memory kind, error text, P2P verdict), under `p2pdma`.
    pub extra: Option<serde_json::Value>,
}

impl FioJob {
    /// One bench run as a fio job: named `{op}-{memory}-qd{depth}-bs{chunk}` (`read-p2p-qd8-bs128k`),
    /// with `rw`, `bs`, `iodepth` and `size` under `job options` (bytes as text; `rw` is bench's
    /// op, `read`, `write` or `copy`).
    pub fn for_run(op: &str, memory: &str, depth: usize, chunk: u64, size: u64) -> Self {
        let options = BTreeMap::from([
            ("rw".to_string(), op.to_string()),
            ("bs".to_string(), chunk.to_string()),
            ("iodepth".to_string(), depth.to_string()),
            ("size".to_string(), size.to_string()),
        ]);
        Self { name: format!("{op}-{memory}-qd{depth}-bs{}", short_size(chunk)), options, ..Self::default() }
    }

    /// The run's wall time, for the job and each direction that moved data.
    pub fn set_runtime(&mut self, runtime: Duration) {
        self.runtime = runtime;
        for d in [&mut self.read, &mut self.write] {
            if d.ios > 0 {
                d.runtime = runtime;
            }
        }
    }
}

/// `4096` → `4k`, `1048576` → `1m`: fio's way of writing a size in names, exact only.
fn short_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("t", 40), ("g", 30), ("m", 20), ("k", 10)];
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A whole report: what `fio --output-format=json+` prints, for bench's runs.
#[derive(Debug, Clone, Default)]
pub struct FioReport {
    /// The producing tool, e.g. `p2pdma-0.1.0` (fio writes `fio-3.33`).
    pub version: String,
    /// When the report was made, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub global_options: BTreeMap<String, String>,
    pub jobs: Vec<FioJob>,
    /// What fio has no field for about the whole report, under a top-level `p2pdma` key
    /// (fio readers look up the keys they know and ignore it).
    pub extra: Option<serde_json::Value>,
}

impl FioReport {
    /// The report in fio's JSON shape, as a value (its maps sorted by key; serializing the
    /// report itself keeps fio's order, e.g. of the percentile points).
    pub fn to_fio_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("plain data serializes")
    }
}

/// Serializes in fio's JSON shape, in fio's order.
impl Serialize for FioReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        JsonReport::from(self).serialize(s)
    }
}

// The JSON shape, field for field as fio's stat.c writes it (names, nesting, units: `bw` in
// KiB/s, `runtime` in ms, latencies in ns, percentile keys with six decimals).

#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(rename = "fio version")]
    version: &'a str,
    timestamp: u64,
    timestamp_ms: u64,
    time: String,
    #[serde(rename = "global options", skip_serializing_if = "BTreeMap::is_empty")]
    global_options: &'a BTreeMap<String, String>,
    jobs: Vec<JsonJob<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p2pdma: Option<&'a serde_json::Value>,
}

impl<'a> From<&'a FioReport> for JsonReport<'a> {
    fn from(r: &'a FioReport) -> Self {
        Self {
            version: &r.version,
            timestamp: r.timestamp_ms / 1000,
            timestamp_ms: r.timestamp_ms,
            time: ctime_utc(r.timestamp_ms / 1000),
            global_options: &r.global_options,
            jobs: r.jobs.iter().map(JsonJob::from).collect(),
            p2pdma: r.extra.as_ref(),
        }
    }
}

#[derive(Serialize)]
struct JsonJob<'a> {
    jobname: &'a str,
    groupid: u32,
    error: i32,
    elapsed: u64,
    #[serde(rename = "job options")]
    options: &'a BTreeMap<String, String>,
    read: JsonDirection<'a>,
    write: JsonDirection<'a>,
    trim: JsonDirection<'a>,
    job_runtime: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    p2pdma: Option<&'a serde_json::Value>,
}

impl<'a> From<&'a FioJob> for JsonJob<'a> {
    fn from(j: &'a FioJob) -> Self {
        Self {
            jobname: &j.name,
            groupid: 0,
            error: j.error,
            elapsed: j.runtime.as_secs_f64().ceil() as u64,
            options: &j.options,
            read: JsonDirection::from(&j.read),
            write: JsonDirection::from(&j.write),
            trim: JsonDirection::from(&*EMPTY),
            job_runtime: millis(j.runtime),
            p2pdma: j.extra.as_ref(),
        }
    }
}

static EMPTY: std::sync::LazyLock<DirectionStats> = std::sync::LazyLock::new(DirectionStats::default);

#[derive(Serialize)]
struct JsonDirection<'a> {
    io_bytes: u64,
    io_kbytes: u64,
    bw_bytes: u64,
    bw: u64,
    iops: f64,
    runtime: u64,
    total_ios: u64,
    short_ios: u64,
    drop_ios: u64,
    slat_ns: JsonLat<'a>,
    clat_ns: JsonLat<'a>,
    lat_ns: JsonLat<'a>,
    // Bandwidth and IOPS sampled over time: bench keeps no such log, so no samples, as fio
    // prints them for a run shorter than its sampling interval.
    bw_min: u64,
    bw_max: u64,
    bw_agg: f64,
    bw_mean: f64,
    bw_dev: f64,
    bw_samples: u64,
    iops_min: u64,
    iops_max: u64,
    iops_mean: f64,
    iops_stddev: f64,
    iops_samples: u64,
}

impl<'a> From<&'a DirectionStats> for JsonDirection<'a> {
    fn from(d: &'a DirectionStats) -> Self {
        let bw_bytes = d.bytes_per_second() as u64;
        // `runtime` is 0 for a direction that moved nothing, as in fio.
        let runtime = if d.ios == 0 { 0 } else { millis(d.runtime) };
        Self {
            io_bytes: d.bytes,
            io_kbytes: d.bytes / 1024,
            bw_bytes,
            bw: bw_bytes / 1024,
            iops: d.iops(),
            runtime,
            total_ios: d.ios,
            short_ios: 0,
            drop_ios: 0,
            // Submission is not timed apart from completion.
            slat_ns: JsonLat { hist: &EMPTY.clat, detail: false },
            clat_ns: JsonLat { hist: &d.clat, detail: true },
            // Total latency is submission plus completion: with submission untimed, the same.
            lat_ns: JsonLat { hist: &d.clat, detail: false },
            bw_min: 0,
            bw_max: 0,
            bw_agg: 0.0,
            bw_mean: 0.0,
            bw_dev: 0.0,
            bw_samples: 0,
            iops_min: 0,
            iops_max: 0,
            iops_mean: 0.0,
            iops_stddev: 0.0,
            iops_samples: 0,
        }
    }
}

/// `{min, max, mean, stddev, N}`, plus `percentile` and json+ `bins` for completion latency
/// when there are samples (fio writes neither for an empty direction).
struct JsonLat<'a> {
    hist: &'a LatencyHistogram,
    detail: bool,
}

impl Serialize for JsonLat<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = self.hist;
        let detail = self.detail && h.count() > 0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("min", &h.min().unwrap_or(0))?;
        m.serialize_entry("max", &h.max().unwrap_or(0))?;
        m.serialize_entry("mean", &h.mean())?;
        m.serialize_entry("stddev", &h.stddev())?;
        m.serialize_entry("N", &h.count())?;
        if detail {
            m.serialize_entry("percentile", &PercentileMap(h.fio_percentiles()))?;
            m.serialize_entry("bins", &BinMap(h.bins()))?;
        }
        m.end()
    }
}

/// `{"1.000000": ns, ...}` in fio's order (a JSON object keeps it; a BTreeMap would sort
/// "10.000000" before "5.000000").
struct PercentileMap(Vec<Percentile>);

impl Serialize for PercentileMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for p in &self.0 {
            m.serialize_entry(&format!("{:.6}", p.point), &p.value_ns)?;
        }
        m.end()
    }
}

struct BinMap(Vec<(u64, u64)>);

impl Serialize for BinMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (value, n) in &self.0 {
            m.serialize_entry(&value.to_string(), n)?;
        }
        m.end()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// fio's `time` field is ctime(3) ("Mon Nov 30 22:37:36 2026"); here in UTC.
fn ctime_utc(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic Gregorian
/// (Howard Hinnant's days-to-civil method).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// fio's option names that mean the same as bench's, as (fio name, bench option). The
/// command line takes them as aliases; docs/fio.md lists them.
pub const OPTION_ALIASES: &[(&str, &str)] = &[
    ("rw", "ops"),
    ("readwrite", "ops"),
    ("bs", "chunk"),
    ("blocksize", "chunk"),
    ("iodepth", "depth"),
    ("size", "size"),
    ("runtime", "runtime"),
    ("time_based", "time-based"),
];

/// A time in fio's format (`runtime=`): a whole number with an optional unit, `us`/`usec`,
/// `ms`/`msec`, `s`/`sec`, `m`/`min`, `h`/`hour`, `d`/`day`; no unit means seconds.
pub fn parse_fio_time(text: &str) -> Result<Duration, crate::Error> {
    fio_time(text).map_err(crate::Error::BadValue)
}

fn fio_time(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!("time {text:?}: expected a number with an optional unit (10, 500ms, 2m)"));
    }
    let n: u64 = digits.parse().map_err(|_| format!("time {text:?}: too large"))?;
    let nanos_per: u64 = match unit.to_ascii_lowercase().as_str() {
        "us" | "usec" => 1_000,
        "ms" | "msec" => 1_000_000,
        "" | "s" | "sec" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" | "hour" => 3_600_000_000_000,
        "d" | "day" => 86_400_000_000_000,
        _ => return Err(format!("time {text:?}: unknown unit {unit:?} (us, ms, s, m, h, d)")),
    };
    n.checked_mul(nanos_per).map(Duration::from_nanos).ok_or_else(|| format!("time {text:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_fio_layout() {
        // Exact below 128 ns, then 64 buckets per power of two.
        for v in 0..128 {
            assert_eq!(bucket_value(bucket_of(v)), v);
        }
        assert_eq!(bucket_of(128), 128);
        assert_eq!(bucket_of(255), 191);
        assert_eq!(bucket_of(256), 192);
        // fio 3.33 printed a bin of 422 for values 420..=423 (width 4 between 256 and 511).
        assert_eq!(bucket_value(bucket_of(420)), 422);
        assert_eq!(bucket_value(bucket_of(423)), 422);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of((1 << 34) - 1), BUCKETS - 1);
        // fio_jsonplus_clat2csv starts from fio's largest bucket value, 17112760320.
        assert_eq!(bucket_value(BUCKETS - 1), 17_112_760_320);
    }

    #[test]
    fn bucket_middle_is_within_one_128th_of_every_value() {
        let mut v = 1u64;
        while v < 1 << 34 {
            for x in [v, v + v / 3, 2 * v - 1] {
                let m = bucket_value(bucket_of(x));
                let err = (m as f64 - x as f64).abs() / x as f64;
                assert!(err <= 1.0 / 128.0, "{x} -> {m}");
            }
            v *= 2;
        }
    }

    #[test]
    fn small_sample_rule() {
        assert_eq!(min_samples_for(50.0), 2);
        assert_eq!(min_samples_for(1.0), 100);
        assert_eq!(min_samples_for(99.0), 100);
        assert_eq!(min_samples_for(99.5), 200);
        assert_eq!(min_samples_for(99.9), 1000);
        assert_eq!(min_samples_for(99.95), 2000);
        assert_eq!(min_samples_for(99.99), 10_000);
        assert_eq!(min_samples_for(90.0), 10);
        assert_eq!(min_samples_for(100.0), u64::MAX);
    }

    #[test]
    fn one_sample_gives_no_percentile() {
        let mut h = LatencyHistogram::new();
        h.record(5000);
        assert!(h.fio_percentiles().is_empty());
        assert_eq!(h.percentile(50.0), None);
        assert_eq!((h.min(), h.max(), h.mean(), h.stddev()), (Some(5000), Some(5000), 5000.0, 0.0));
    }

    #[test]
    fn percentiles_appear_as_samples_allow() {
        let mut h = LatencyHistogram::new();
        for v in 1..=99 {
            h.record(v);
        }
        let points: Vec<f64> = h.fio_percentiles().iter().map(|p| p.point).collect();
        assert_eq!(points, vec![5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0]);
        h.record(100);
        assert_eq!(h.fio_percentiles().len(), 13, "p1 and p99 from 100 samples");
        assert_eq!(h.percentile(99.0), Some(99));
        assert_eq!(h.percentile(1.0), Some(1));
        assert_eq!(h.percentile(50.0), Some(50));
    }

    #[test]
    fn percentiles_are_nearest_rank_within_bucket_error() {
        let mut h = LatencyHistogram::new();
        // 1..=10000 us: exact nearest-rank p is p*100 us.
        for us in 1..=10_000u64 {
            h.record(us * 1000);
        }
        for p in h.fio_percentiles() {
            let exact = ((p.point * 100.0).ceil() as u64) * 1000;
            let err = (p.value_ns as f64 - exact as f64).abs() / exact as f64;
            assert!(err <= 1.0 / 128.0, "p{} = {} vs {exact}", p.point, p.value_ns);
        }
        assert_eq!(h.fio_percentiles().len(), 17);
        assert_eq!(h.count(), 10_000);
    }

    #[test]
    fn mean_and_stddev_are_exact() {
        let mut h = LatencyHistogram::new();
        for v in [2, 4, 4, 4, 5, 5, 7, 9] {
            h.record(v);
        }
        assert_eq!(h.mean(), 5.0);
        // Sample standard deviation: sqrt(32 / 7).
        assert!((h.stddev() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn merge_adds_samples() {
        let (mut a, mut b) = (LatencyHistogram::new(), LatencyHistogram::new());
        a.record(10);
        b.record(1_000_000);
        b.record(30);
        a.merge(&b);
        assert_eq!((a.count(), a.min(), a.max()), (3, Some(10), Some(1_000_000)));
        assert_eq!(a.bins(), vec![(10, 1), (30, 1), (bucket_value(bucket_of(1_000_000)), 1)]);
    }

    #[test]
    fn iops_and_bandwidth_over_runtime() {
        let mut d = DirectionStats::default();
        for _ in 0..1000 {
            d.record_io(4096, Duration::from_micros(100));
        }
        d.runtime = Duration::from_millis(500);
        assert_eq!(d.iops(), 2000.0);
        assert_eq!(d.bytes_per_second(), 2000.0 * 4096.0);
        let j = JsonDirection::from(&d);
        assert_eq!((j.bw_bytes, j.bw, j.runtime, j.io_kbytes), (8_192_000, 8000, 500, 4000));
        assert_eq!(DirectionStats::default().iops(), 0.0);
    }

    #[test]
    fn a_run_as_a_job() {
        let mut j = FioJob::for_run("copy", "p2p", 8, 128 << 10, 16 << 20);
        assert_eq!(j.name, "copy-p2p-qd8-bs128k");
        assert_eq!(j.options["bs"], "131072");
        assert_eq!(j.options["iodepth"], "8");
        j.read.record_io(4096, Duration::from_micros(3));
        j.set_runtime(Duration::from_millis(20));
        assert_eq!((j.read.runtime, j.write.runtime), (Duration::from_millis(20), Duration::ZERO));
        assert_eq!(short_size(4096), "4k");
        assert_eq!(short_size(1 << 20), "1m");
        assert_eq!(short_size(1536), "1536");
        assert_eq!(short_size(3 << 30), "3g");
    }

    #[test]
    fn ctime_in_utc() {
        assert_eq!(ctime_utc(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime_utc(1_796_078_256), "Mon Nov 30 22:37:36 2026");
        assert_eq!(ctime_utc(951_782_400), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn fio_time_format() {
        assert_eq!(parse_fio_time("10").ok(), Some(Duration::from_secs(10)));
        assert_eq!(parse_fio_time("500ms").ok(), Some(Duration::from_millis(500)));
        assert_eq!(parse_fio_time("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_fio_time("1h").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(parse_fio_time("250us").ok(), Some(Duration::from_micros(250)));
        assert!(parse_fio_time("").is_err());
        assert!(parse_fio_time("1.5s").is_err());
        assert!(parse_fio_time("3 weeks").is_err());
        assert!(parse_fio_time("99999999999999999999").is_err());
        assert!(parse_fio_time("999999999999d").is_err());
    }
}
