//! `p2pdma bench`: throughput and latency of reads into P2P memory, writes out of it and
//! copies through it, each measured side by side with the same through host memory, over
//! queue depths and chunk sizes. Same engine, same checks and refusals as `copy`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use p2pdma_core::copy_plan::{self, mib_per_s, EndReport, Route, Via};
use p2pdma_core::{transfer, Engine};
use p2pdma_mem::session;
use p2pdma_mem::{Access, DirectFile, IoEngine, Job, MemError};
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

/// `bench` arguments.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The device or file read from.
    src: String,
    /// The device or file written to by write and copy runs: its range is overwritten.
    #[arg(long)]
    dst: Option<String>,
    /// P2P memory to compare with host memory: `auto`, or a provider.
    #[arg(long, default_value = "auto")]
    via: Via,
    /// What to measure (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "read,write,copy")]
    ops: Vec<Op>,
    /// Queue depths (comma-separated).
    #[arg(long = "depth", value_delimiter = ',', default_value = "1,8")]
    depths: Vec<usize>,
    /// Chunk sizes (comma-separated, K/M suffixes).
    #[arg(long = "chunk", value_delimiter = ',', value_parser = crate::parse_size, default_value = "128K,1M")]
    chunks: Vec<usize>,
    /// Bytes moved by each run.
    #[arg(long, value_parser = crate::parse_bytes, default_value = "16M")]
    size: u64,
    /// Write to a destination that is mounted, held or open exclusively elsewhere.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub src: EndReport,
    pub dst: Option<EndReport>,
    pub route: Route,
    pub path: String,
    pub engine: String,
    pub size: u64,
    pub runs: Vec<RunRow>,
    /// P2P against host memory for each op, depth and chunk (throughput ratio).
    pub comparisons: Vec<Comparison>,
    pub notes: Vec<String>,
    /// The signal (`SIGINT`, `SIGTERM`) that stopped the benchmark: the run under way
    /// finished its I/O in flight and is marked interrupted, later runs were not started.
    pub signal: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RunRow {
    pub op: Op,
    /// `p2p` or `host`.
    pub memory: &'static str,
    pub depth: usize,
    pub chunk: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    /// Per I/O, submission to completion, in microseconds.
    pub read_p50_us: Option<f64>,
    pub read_p99_us: Option<f64>,
    pub write_p50_us: Option<f64>,
    pub write_p99_us: Option<f64>,
    pub error: Option<String>,
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

/// The `q`-th percentile (0..=100) of `samples`, nearest rank, in microseconds.
pub fn percentile_us(samples: &mut [Duration], q: usize) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = (samples.len() * q).div_ceil(100).clamp(1, samples.len());
    Some(samples[rank - 1].as_secs_f64() * 1e6)
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
        crate::print_json(&report)?;
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
    let writes = args.ops.iter().any(|op| *op != Op::Read);
    if writes && args.dst.is_none() {
        anyhow::bail!("write and copy benchmarks need --dst (a scratch device or file: its range is overwritten)");
    }
    if args.depths.contains(&0) {
        anyhow::bail!("--depth values must be at least 1");
    }
    let src_path = copy::locate(Some(m.engine), &args.src, false)?;
    let (src, src_report) = copy::measure(m.sysfs, &src_path, false, 0)?;
    let dst = match &args.dst {
        Some(d) => {
            let path = copy::locate(Some(m.engine), d, true)?;
            Some(copy::measure(m.sysfs, &path, true, 0)?)
        }
        None => None,
    };
    let length = match &dst {
        Some((d, _)) => transfer::plan_ranges(&src.end, &d.end, 0, 0, Some(args.size))?.length,
        None => transfer::plan_read(&src.end, 0, Some(args.size))?,
    };
    let measured: Vec<&transfer::End> = std::iter::once(&src.end).chain(dst.as_ref().map(|(d, _)| &d.end)).collect();
    for &chunk in &args.chunks {
        transfer::check_chunk(chunk, p2pdma_mem::page_size(), &measured, length)?;
    }
    let mut ends = vec![&src_report];
    ends.extend(dst.as_ref().map(|(_, r)| r));
    let route = copy_plan::choose_route(m.engine, &args.via, &ends)?;
    let node = copy_plan::numa_node(&ends);
    let mut notes = Vec::new();
    if let Route::Host { reasons } = &route {
        notes.push(format!("no P2P memory for these devices, host memory only: {}", reasons.join("; ")));
    }

    let src_file = DirectFile::open(&src_path, Access::Read)?;
    let dst_file = match &dst {
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
    let max_depth = args.depths.iter().copied().max().unwrap_or(1);
    let mut engine = session::io_engine(false, max_depth, &mut notes);
    let host = Route::Host { reasons: Vec::new() };
    let memories: Vec<(&'static str, &Route)> = match &route {
        Route::P2p { .. } => vec![("p2p", &route), ("host", &host)],
        Route::Host { .. } => vec![("host", &host)],
    };

    let mut runs = Vec::new();
    let mut comparisons = Vec::new();
    for &op in &args.ops {
        for &depth in &args.depths {
            for &chunk in &args.chunks {
                let mut pair = Vec::new();
                for &(memory, route) in &memories {
                    if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
                        break;
                    }
                    let setup = Setup { sysfs: m.sysfs, route, node, stop };
                    let row = measure_one(
                        &setup,
                        &mut engine,
                        op,
                        depth,
                        chunk,
                        length,
                        &src_file,
                        dst_file.as_ref(),
                        &mut notes,
                    );
                    pair.push(row.mib_per_s);
                    runs.push(RunRow { memory, ..row });
                }
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
    notes.dedup();
    Ok(BenchReport {
        src: src_report,
        dst: dst.map(|(_, r)| r),
        path: route.summary(),
        route,
        engine: engine.name().into(),
        size: length,
        runs,
        comparisons,
        notes,
        signal: None,
    })
}

/// Where the machine is: the verdict, sysfs for devices and P2P memory, mountinfo for users.
pub struct Env<'a> {
    pub engine: &'a Engine<'a>,
    pub sysfs: &'a Path,
    pub mountinfo: &'a Path,
}

/// What every run shares: where the memory comes from, and the stop flag.
struct Setup<'a> {
    sysfs: &'a Path,
    route: &'a Route,
    node: Option<i32>,
    stop: Option<&'a AtomicBool>,
}

#[allow(clippy::too_many_arguments)]
fn measure_one(
    setup: &Setup<'_>,
    engine: &mut IoEngine,
    op: Op,
    depth: usize,
    chunk: usize,
    length: u64,
    src: &DirectFile,
    dst: Option<&DirectFile>,
    notes: &mut Vec<String>,
) -> RunRow {
    let mut row = RunRow {
        op,
        memory: "",
        depth,
        chunk,
        bytes: 0,
        seconds: 0.0,
        mib_per_s: 0.0,
        read_p50_us: None,
        read_p99_us: None,
        write_p50_us: None,
        write_p99_us: None,
        error: None,
    };
    let depth = if matches!(engine, IoEngine::Sync) { 1 } else { depth };
    let mut bufs = match session::buffers(setup.sysfs, setup.route, depth, chunk, setup.node, notes) {
        Ok(b) => b,
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    };
    row.depth = bufs.len();
    let job = Job {
        src: (op != Op::Write).then_some((src, 0)),
        dst: if op == Op::Read { None } else { dst.map(|d| (d, 0)) },
        length,
        chunk,
        record_latency: true,
        max_reads: 0,
        stop: setup.stop,
    };
    match engine.run(&job, &mut bufs, &mut |_| {}) {
        Ok(mut stats) => {
            row.bytes = stats.bytes;
            row.seconds = stats.elapsed.as_secs_f64();
            row.mib_per_s = mib_per_s(stats.bytes, row.seconds);
            row.read_p50_us = percentile_us(&mut stats.read_latency, 50);
            row.read_p99_us = percentile_us(&mut stats.read_latency, 99);
            row.write_p50_us = percentile_us(&mut stats.write_latency, 50);
            row.write_p99_us = percentile_us(&mut stats.write_latency, 99);
        }
        Err(f) if matches!(f.error, MemError::Interrupted) => row.error = Some("interrupted".into()),
        Err(f) => row.error = Some(f.error.to_string()),
    }
    row
}

/// The table `p2pdma bench` prints.
pub fn render(r: &BenchReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "bench {} -> {}: {} bytes per run, {} engine",
        r.src.end.path,
        r.dst.as_ref().map_or("-", |d| d.end.path.as_str()),
        r.size,
        r.engine
    );
    let _ = writeln!(s, "P2P path: {}", r.path);
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    if let Some(sig) = &r.signal {
        let _ = writeln!(s, "stopped by {sig}: the run under way drained its I/O; later runs were not started");
    }
    let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let _ = writeln!(
        s,
        "{:<6} {:<5} {:>5} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "op", "mem", "depth", "chunk", "MiB/s", "rd p50us", "rd p99us", "wr p50us", "wr p99us"
    );
    for row in &r.runs {
        let op = format!("{:?}", row.op).to_lowercase();
        match &row.error {
            Some(e) => {
                let _ = writeln!(s, "{op:<6} {:<5} {:>5} {:>8} error: {e}", row.memory, row.depth, row.chunk);
            }
            None => {
                let _ = writeln!(
                    s,
                    "{op:<6} {:<5} {:>5} {:>8} {:>10.1} {:>9} {:>9} {:>9} {:>9}",
                    row.memory,
                    row.depth,
                    row.chunk,
                    row.mib_per_s,
                    us(row.read_p50_us),
                    us(row.read_p99_us),
                    us(row.write_p50_us),
                    us(row.write_p99_us)
                );
            }
        }
    }
    for c in &r.comparisons {
        let op = format!("{:?}", c.op).to_lowercase();
        let _ = writeln!(s, "{op} depth {} chunk {}: P2P/host = {:.2}", c.depth, c.chunk, c.ratio);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        assert_eq!(percentile_us(&mut v, 50), Some(50.0));
        assert_eq!(percentile_us(&mut v, 99), Some(99.0));
        assert_eq!(percentile_us(&mut [Duration::from_micros(7)], 99), Some(7.0));
        assert_eq!(percentile_us(&mut [], 50), None);
    }
}
