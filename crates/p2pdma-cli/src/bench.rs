//! `p2pdma bench`: throughput and latency of reads into P2P memory, writes out of it and
//! copies through it, each measured side by side with the same through host memory, over
//! queue depths and chunk sizes. Same engine, same checks and refusals as `copy`.
//!
//! fio's conventions (docs/fio.md): fio's option names as aliases, `--runtime` and
//! `--time-based` with fio's meaning, IOPS, bandwidth and completion-latency percentiles at
//! fio's points with their sample count, and `--json` in the shape of fio's json+ output.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use p2pdma_core::copy_plan::{self, EndReport, Route, Via};
use p2pdma_core::fio::{self, DirectionStats, FioJob, FioReport, LatencyHistogram, FIO_PERCENTILES};
use p2pdma_core::{transfer, Engine};
use p2pdma_mem::bench::RunSetup;
use p2pdma_mem::ends::Measured;
use p2pdma_mem::session;
use p2pdma_mem::{Access, DirectFile, IoEngine};
use serde::Serialize;

use crate::copy;
use crate::interrupt::Interrupt;
use crate::source::SourceArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// SRC into memory.
    Read,
    /// Memory out to DST (its range is overwritten).
    Write,
    /// SRC to DST through memory.
    Copy,
}

// `bench` arguments (a plain comment: see `copy::CopyArgs`).
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The device or file read from.
    src: String,
    /// The device or file written to by write and copy runs: its range is overwritten.
    /// Without it, only reads are measured.
    #[arg(long)]
    dst: Option<String>,
    /// P2P memory to compare with host memory: `auto`, or a provider.
    #[arg(long, default_value = "auto")]
    via: Via,
    /// What to measure (comma-separated; fio's --rw): read,write,copy with --dst, read without.
    #[arg(long, value_enum, value_delimiter = ',', visible_aliases = ["rw", "readwrite"])]
    ops: Option<Vec<Op>>,
    /// Queue depths (comma-separated; fio's --iodepth).
    #[arg(long = "depth", visible_alias = "iodepth", value_delimiter = ',', default_value = "1,8")]
    depths: Vec<usize>,
    /// Chunk sizes (comma-separated, K/M suffixes; fio's --bs, but each size is its own run).
    #[arg(long = "chunk", visible_aliases = ["bs", "blocksize"], value_delimiter = ',', value_parser = crate::parse_size, default_value = "128K,1M")]
    chunks: Vec<usize>,
    /// Bytes moved by each run (its range of SRC and DST).
    #[arg(long, value_parser = crate::parse_bytes, default_value = "16M")]
    size: u64,
    /// Time limit of each run, as fio's runtime (10, 500ms, 2m; no unit = seconds): a run
    /// ends at the time or at the end of its range, whichever comes first.
    #[arg(long, value_parser = parse_runtime)]
    runtime: Option<Duration>,
    /// Repeat each run over its range until --runtime is reached (fio's time_based).
    #[arg(long = "time-based", visible_alias = "time_based", requires = "runtime")]
    time_based: bool,
    /// Write to a destination that is mounted, held or open exclusively elsewhere.
    #[arg(long)]
    force: bool,
}

/// fio's time format, more than zero.
fn parse_runtime(s: &str) -> Result<Duration, String> {
    match fio::parse_fio_time(s).map_err(|e| e.to_string())? {
        d if d.is_zero() => Err(format!("--runtime {s}: must be more than 0")),
        d => Ok(d),
    }
}

/// What the benchmark measured. `--json` writes it as fio's JSON ([`fio_report`]): the runs
/// as fio jobs, the rest under the top-level `p2pdma` key, which fio readers ignore.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub src: EndReport,
    pub dst: Option<EndReport>,
    pub route: Route,
    pub path: String,
    pub engine: String,
    /// Bytes of each run's range.
    pub size: u64,
    /// `--runtime` in seconds, and whether runs repeat over their range until it (`--time-based`).
    pub runtime_seconds: Option<f64>,
    pub time_based: bool,
    #[serde(skip)]
    pub runs: Vec<RunRow>,
    /// P2P against host memory for each op, depth and chunk (throughput ratio).
    pub comparisons: Vec<Comparison>,
    pub notes: Vec<String>,
    /// The signal (`SIGINT`, `SIGTERM`) that stopped the benchmark: the run under way
    /// finished its I/O in flight and is marked interrupted, later runs were not started.
    pub signal: Option<String>,
}

/// One run; in the JSON, a fio job's `p2pdma` object (its reads and writes are the job's
/// `read` and `write`).
#[derive(Debug, Serialize)]
pub struct RunRow {
    pub op: Op,
    /// `p2p` or `host`.
    pub memory: &'static str,
    /// Buffers in flight (less than asked when P2P memory ran out; 1 with the sync engine).
    pub depth: usize,
    pub chunk: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    /// Chunks completed per second: each one read, written, or read and written (copy).
    pub iops: f64,
    /// Times the range was gone through (more than one only with `--time-based`).
    pub passes: u64,
    pub error: Option<String>,
    /// The errno of `error` where there is one (fio's `error` field).
    #[serde(skip)]
    pub errno: i32,
    /// Stopped by SIGINT/SIGTERM: the counts are of the passes that completed.
    pub interrupted: bool,
    /// Reads and writes: bytes, I/Os, completion latencies.
    #[serde(skip)]
    pub read: DirectionStats,
    #[serde(skip)]
    pub write: DirectionStats,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub op: Op,
    pub depth: usize,
    pub chunk: usize,
    pub p2p_mib_per_s: f64,
    pub host_mib_per_s: f64,
    /// P2P throughput over host throughput.
    pub ratio: f64,
}

/// The report as fio's JSON (`fio --output-format=json+`): one job per run, each with its
/// [`RunRow`] under `p2pdma`, and the rest of the report under a top-level `p2pdma`.
pub fn fio_report(r: &BenchReport) -> anyhow::Result<FioReport> {
    let mut global_options = BTreeMap::from([
        ("size".to_string(), r.size.to_string()),
        ("ioengine".to_string(), r.engine.clone()),
        ("direct".to_string(), "1".to_string()),
    ]);
    if let Some(t) = r.runtime_seconds {
        global_options.insert("runtime".into(), format!("{}ms", (t * 1000.0).round() as u64));
    }
    if r.time_based {
        global_options.insert("time_based".into(), "1".into());
    }
    let mut jobs = Vec::with_capacity(r.runs.len());
    for row in &r.runs {
        let mut job = FioJob::for_run(&op_name(row.op), row.memory, row.depth, row.chunk as u64, r.size);
        job.read = row.read.clone();
        job.write = row.write.clone();
        job.set_runtime(Duration::from_secs_f64(row.seconds));
        job.error = row.errno;
        job.extra = Some(serde_json::to_value(row)?);
        jobs.push(job);
    }
    let timestamp_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Ok(FioReport {
        version: format!("p2pdma-{}", env!("CARGO_PKG_VERSION")),
        timestamp_ms,
        global_options,
        jobs,
        extra: Some(serde_json::to_value(r)?),
    })
}

fn op_name(op: Op) -> String {
    format!("{op:?}").to_lowercase()
}

/// Runs `p2pdma bench` and prints it: exit 0, 1 when a run failed, 130/143 when interrupted.
pub fn command(source: &SourceArgs, args: &BenchArgs, json: bool) -> anyhow::Result<ExitCode> {
    let interrupt = Interrupt::install()?;
    let loaded = source.load_live("bench")?;
    let engine = Engine::new(&loaded.topology)?;
    let mountinfo = source.proc_root.join("self/mountinfo");
    let env = Env { engine: &engine, sysfs: &source.sysfs_root, mountinfo: &mountinfo };
    let mut report = run(&env, args, Some(interrupt.flag()))?;
    report.signal = interrupt.signal_name();
    if json {
        crate::print_json(&fio_report(&report)?)?;
    } else {
        crate::out::text(&render(&report))?;
    }
    let failed = report.runs.iter().any(|r| r.error.is_some());
    Ok(if report.signal.is_some() {
        interrupt.exit_code()
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs every combination; `Err` only for bad input. Refusals (a destination in use) are
/// errors here too: a benchmark has no partial result worth keeping.
pub fn run(m: &Env<'_>, args: &BenchArgs, stop: Option<&AtomicBool>) -> anyhow::Result<BenchReport> {
    // Without a destination only reads are possible, so only reads are the default.
    let ops = args.ops.clone().unwrap_or_else(|| match args.dst {
        Some(_) => vec![Op::Read, Op::Write, Op::Copy],
        None => vec![Op::Read],
    });
    let writes = ops.iter().any(|op| *op != Op::Read);
    if writes && args.dst.is_none() {
        anyhow::bail!("write and copy benchmarks need --dst (a scratch device or file: its range is overwritten)");
    }
    if args.depths.contains(&0) {
        anyhow::bail!("--depth values must be at least 1");
    }
    let ends = BenchEnds::measure(m, args)?;
    let mut reports = vec![&ends.src.1];
    reports.extend(ends.dst.as_ref().map(|(_, r)| r));
    let route = copy_plan::choose_route(m.engine, &args.via, &reports)?;
    let node = copy_plan::numa_node(&reports);
    let mut notes = Vec::new();
    if let Route::Host { reasons } = &route {
        notes.push(format!("no P2P memory for these devices, host memory only: {}", reasons.join("; ")));
    }
    let (src_file, dst_file) = ends.open(m, args)?;
    let max_depth = args.depths.iter().copied().max().unwrap_or(1);
    let mut engine = session::io_engine(false, max_depth, &mut notes);
    let host = Route::Host { reasons: Vec::new() };
    let memories: Vec<(&'static str, &Route)> = match &route {
        Route::P2p { .. } => vec![("p2p", &route), ("host", &host)],
        Route::Host { .. } => vec![("host", &host)],
    };
    let files = (&src_file, dst_file.as_ref());
    let sweep = Sweep { m, args, stop, node, length: ends.length, files, memories: &memories };
    let (runs, comparisons) = sweep.run(&ops, &mut engine, &mut notes);
    notes.dedup();
    Ok(BenchReport {
        src: ends.src.1,
        dst: ends.dst.map(|(_, r)| r),
        path: route.summary(),
        route,
        engine: engine.name().into(),
        size: ends.length,
        runtime_seconds: args.runtime.map(|t| t.as_secs_f64()),
        time_based: args.time_based,
        runs,
        comparisons,
        notes,
        signal: None,
    })
}

/// The benchmark's ends, measured, and the length every run moves.
struct BenchEnds {
    src_path: std::path::PathBuf,
    src: (Measured, EndReport),
    dst: Option<(Measured, EndReport)>,
    length: u64,
}

impl BenchEnds {
    /// Both ends found and measured; the length and every chunk size checked against them.
    fn measure(m: &Env<'_>, args: &BenchArgs) -> anyhow::Result<BenchEnds> {
        let src_path = copy::locate(Some(m.engine), &args.src, false)?;
        let src = copy::measure(m.sysfs, &src_path, false, 0)?;
        let dst = match &args.dst {
            Some(d) => {
                let path = copy::locate(Some(m.engine), d, true)?;
                Some(copy::measure(m.sysfs, &path, true, 0)?)
            }
            None => None,
        };
        let length = match &dst {
            Some((d, _)) => transfer::plan_ranges(&src.0.end, &d.end, 0, 0, Some(args.size))?.length,
            None => transfer::plan_read(&src.0.end, 0, Some(args.size))?,
        };
        let measured: Vec<&transfer::End> =
            std::iter::once(&src.0.end).chain(dst.as_ref().map(|(d, _)| &d.end)).collect();
        for &chunk in &args.chunks {
            transfer::check_chunk(chunk, p2pdma_mem::page_size(), &measured, length)?;
        }
        Ok(BenchEnds { src_path, src, dst, length })
    }

    /// The source, and the destination unless it is in use (`--force` overrides).
    fn open(&self, m: &Env<'_>, args: &BenchArgs) -> anyhow::Result<(DirectFile, Option<DirectFile>)> {
        let src_file = DirectFile::open(&self.src_path, Access::Read)?;
        let dst_file = match &self.dst {
            Some((d, r)) => {
                let users = p2pdma_mem::ends::in_use(d, m.mountinfo);
                if !users.is_empty() && !args.force {
                    anyhow::bail!(
                        "{}: in use ({}): refusing to overwrite it (--force overrides)",
                        d.end.path,
                        users.join("; ")
                    );
                }
                Some(session::open_destination(r, args.force)?)
            }
            None => None,
        };
        Ok((src_file, dst_file))
    }
}

/// Every operation × depth × chunk, each through every memory (P2P, then host).
struct Sweep<'a> {
    m: &'a Env<'a>,
    args: &'a BenchArgs,
    stop: Option<&'a AtomicBool>,
    node: Option<i32>,
    length: u64,
    files: (&'a DirectFile, Option<&'a DirectFile>),
    memories: &'a [(&'static str, &'a Route)],
}

impl Sweep<'_> {
    /// The rows, and P2P beside host memory where both ran.
    fn run(&self, ops: &[Op], engine: &mut IoEngine, notes: &mut Vec<String>) -> (Vec<RunRow>, Vec<Comparison>) {
        let mut runs = Vec::new();
        let mut comparisons = Vec::new();
        for &op in ops {
            for &depth in &self.args.depths {
                for &chunk in &self.args.chunks {
                    let pair = self.combination(engine, op, depth, chunk, notes, &mut runs);
                    if let [p2p, host] = pair[..] {
                        comparisons.push(Comparison {
                            op,
                            depth,
                            chunk,
                            p2p_mib_per_s: p2p,
                            host_mib_per_s: host,
                            ratio: if host > 0.0 { p2p / host } else { 0.0 },
                        });
                    }
                }
            }
        }
        (runs, comparisons)
    }

    /// One combination through each memory until a stop; the MiB/s of each.
    fn combination(
        &self,
        engine: &mut IoEngine,
        op: Op,
        depth: usize,
        chunk: usize,
        notes: &mut Vec<String>,
        runs: &mut Vec<RunRow>,
    ) -> Vec<f64> {
        let mut pair = Vec::new();
        for &(memory, route) in self.memories {
            if self.stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
                break;
            }
            let args = self.args;
            let setup = RunSetup {
                sysfs: self.m.sysfs,
                route,
                node: self.node,
                stop: self.stop,
                runtime: args.runtime,
                time_based: args.time_based,
            };
            let (src, dst) = self.files;
            let row = measure_one(&setup, engine, op, depth, chunk, self.length, src, dst, notes);
            pair.push(row.mib_per_s);
            runs.push(RunRow { memory, ..row });
        }
        pair
    }
}

/// Where the machine is: the verdict, sysfs for devices and P2P memory, mountinfo for users.
pub struct Env<'a> {
    pub engine: &'a Engine<'a>,
    pub sysfs: &'a Path,
    pub mountinfo: &'a Path,
}

/// One run through `p2pdma_mem::bench`, as a row of the report.
#[allow(clippy::too_many_arguments)]
fn measure_one(
    setup: &RunSetup<'_>,
    engine: &mut IoEngine,
    op: Op,
    depth: usize,
    chunk: usize,
    length: u64,
    src: &DirectFile,
    dst: Option<&DirectFile>,
    notes: &mut Vec<String>,
) -> RunRow {
    let src = (op != Op::Write).then_some(src);
    let dst = if op == Op::Read { None } else { dst };
    let m = p2pdma_mem::bench::measure(setup, engine, src, dst, depth, chunk, length, notes);
    RunRow {
        op,
        memory: "",
        depth: m.depth,
        chunk,
        bytes: m.bytes,
        seconds: m.seconds,
        mib_per_s: m.mib_per_s,
        iops: m.iops,
        passes: m.passes,
        error: m.error,
        errno: m.errno,
        interrupted: m.interrupted,
        read: m.read,
        write: m.write,
    }
}

/// The table `p2pdma bench` prints, then each run's completion latencies at fio's points.
pub fn render(r: &BenchReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let limit = match r.runtime_seconds {
        Some(t) if r.time_based => format!(", repeated for {t} s"),
        Some(t) => format!(", at most {t} s"),
        None => String::new(),
    };
    writeln!(
        s,
        "bench {} -> {}: {} bytes per run{limit}, {} engine",
        r.src.end.path,
        r.dst.as_ref().map_or("- (reads only)", |d| d.end.path.as_str()),
        r.size,
        r.engine
    )
    .unwrap();
    writeln!(s, "P2P path: {}", r.path).unwrap();
    for n in &r.notes {
        writeln!(s, "note: {n}").unwrap();
    }
    if let Some(sig) = &r.signal {
        writeln!(s, "stopped by {sig}: the run under way drained its I/O; later runs were not started").unwrap();
    }
    writeln!(
        s,
        "{:<6} {:<5} {:>5} {:>8} {:>10} {:>10} {:>8}",
        "op", "mem", "depth", "chunk", "IOPS", "MiB/s", "seconds"
    )
    .unwrap();
    for row in &r.runs {
        let op = op_name(row.op);
        write!(s, "{op:<6} {:<5} {:>5} {:>8}", row.memory, row.depth, row.chunk).unwrap();
        let _ = match &row.error {
            Some(e) if row.passes == 0 => writeln!(s, " error: {e}"),
            _ => writeln!(s, " {:>10.1} {:>10.1} {:>8.3}", row.iops, row.mib_per_s, row.seconds),
        };
        for (dir, d) in [("read", &row.read), ("write", &row.write)] {
            if d.ios > 0 {
                writeln!(s, "  {dir} {}", clat_line(&d.clat)).unwrap();
            }
        }
        if let (Some(e), true) = (&row.error, row.passes > 0) {
            writeln!(s, "  error: {e}").unwrap();
        }
    }
    for c in &r.comparisons {
        writeln!(s, "{} depth {} chunk {}: P2P/host = {:.2}", op_name(c.op), c.depth, c.chunk, c.ratio).unwrap();
    }
    s
}

/// `clat (us) N=128 min=.. avg=.. max=..: p1=.. p5=.. ...`, naming the points too few samples leave out.
fn clat_line(h: &LatencyHistogram) -> String {
    use std::fmt::Write;
    let us = |ns: u64| format!("{:.1}", ns as f64 / 1000.0);
    let mut s = format!(
        "clat (us) N={} min={} avg={:.1} max={}:",
        h.count(),
        us(h.min().unwrap_or(0)),
        h.mean() / 1000.0,
        us(h.max().unwrap_or(0))
    );
    let shown = h.fio_percentiles();
    for p in &shown {
        write!(s, " p{}={}", p.point, us(p.value_ns)).unwrap();
    }
    let missing: Vec<String> = FIO_PERCENTILES
        .iter()
        .filter(|&&point| !shown.iter().any(|p| p.point == point))
        .map(|point| format!("p{point}"))
        .collect();
    if !missing.is_empty() {
        write!(s, " (too few samples for {})", missing.join(" ")).unwrap();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clat_line_names_the_points_left_out() {
        let mut h = LatencyHistogram::new();
        for us in 1..=10u64 {
            h.record(us * 1000);
        }
        let line = clat_line(&h);
        assert!(line.starts_with("clat (us) N=10 min=1.0 avg=5.5 max=10.0: p10=1.0"), "{line}");
        assert!(line.contains(" p50=5.0 ") && line.contains(" p90=9.0 "), "{line}");
        assert!(line.ends_with("(too few samples for p1 p5 p95 p99 p99.5 p99.9 p99.95 p99.99)"), "{line}");
    }

    #[test]
    fn every_fio_name_in_the_module_is_an_option_of_bench() {
        let cmd = <BenchArgs as clap::Args>::augment_args(clap::Command::new("bench"));
        for (fio_name, ours) in fio::OPTION_ALIASES {
            let arg = cmd.get_arguments().find(|a| a.get_long() == Some(ours)).unwrap_or_else(|| panic!("--{ours}"));
            let names: Vec<&str> =
                arg.get_long().into_iter().chain(arg.get_all_aliases().unwrap_or_default()).collect();
            assert!(names.contains(fio_name), "--{fio_name} is not an alias of --{ours}: {names:?}");
        }
    }

    #[test]
    fn runtime_takes_fio_times_but_not_zero() {
        assert_eq!(parse_runtime("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_runtime("2"), Ok(Duration::from_secs(2)));
        assert!(parse_runtime("0").unwrap_err().contains("more than 0"));
        assert!(parse_runtime("1.5s").is_err());
    }
}
