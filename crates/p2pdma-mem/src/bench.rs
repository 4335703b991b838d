//! `p2pdma bench`'s measuring: one run of a range through buffers of the route's memory,
//! once or, time-based, pass after pass until the deadline, with fio's counts (bytes, I/Os,
//! completion latencies per direction). The sweep over operations, depths and chunks, and
//! the report, are the command's.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use p2pdma_core::copy_plan::{mib_per_s, Route};
use p2pdma_core::fio::{DirectionStats, LatencyHistogram};

use crate::{session, DirectFile, IoBuffer, IoEngine, Job, MemError};

/// What every run shares: where the memory comes from, the stop flag, the time limit.
pub struct RunSetup<'a> {
    /// The sysfs root (for the provider's `p2pmem/allocate`).
    pub sysfs: &'a Path,
    pub route: &'a Route,
    /// The NUMA node host buffers belong on.
    pub node: Option<i32>,
    pub stop: Option<&'a AtomicBool>,
    /// fio's runtime: each run ends at it or at the end of its range.
    pub runtime: Option<Duration>,
    /// fio's time_based: passes over the range until the runtime is reached.
    pub time_based: bool,
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Measurement {
    /// Buffers in flight (less than asked when P2P memory ran out; 1 with the sync engine).
    pub depth: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    /// Chunks completed per second.
    pub iops: f64,
    /// Times the range was gone through.
    pub passes: u64,
    pub error: Option<String>,
    /// The errno of `error` where there is one (fio's `error` field).
    pub errno: i32,
    /// Stopped by a signal: the counts are of the passes that completed.
    pub interrupted: bool,
    pub read: DirectionStats,
    pub write: DirectionStats,
}

const EIO: i32 = 5;
const EINTR: i32 = 4;

/// One run over `length` bytes in `chunk`s, `depth` deep: reads from `src` (None: writes
/// only), writes to `dst` (None: reads only).
#[allow(clippy::too_many_arguments)]
pub fn measure(
    setup: &RunSetup<'_>,
    engine: &mut IoEngine,
    src: Option<&DirectFile>,
    dst: Option<&DirectFile>,
    depth: usize,
    chunk: usize,
    length: u64,
    notes: &mut Vec<String>,
) -> Measurement {
    let mut m = Measurement { depth, ..Measurement::default() };
    let depth = if matches!(engine, IoEngine::Sync) { 1 } else { depth };
    let mut bufs = match session::buffers(setup.sysfs, setup.route, depth, chunk, setup.node, notes) {
        Ok(b) => b,
        Err(e) => {
            m.errno = e.errno().unwrap_or(EIO);
            m.error = Some(e.to_string());
            return m;
        }
    };
    m.depth = bufs.len();
    let start = Instant::now();
    let job = Job {
        src: src.map(|s| (s, 0)),
        dst: dst.map(|d| (d, 0)),
        length,
        chunk,
        record_latency: true,
        max_reads: 0,
        stop: setup.stop,
        deadline: setup.runtime.map(|t| start + t),
    };
    let (reads, writes) = run_passes(engine, &job, &mut bufs, setup.time_based, &mut m);
    let elapsed = start.elapsed();
    m.seconds = elapsed.as_secs_f64();
    m.mib_per_s = mib_per_s(m.bytes, m.seconds);
    let chunks = if src.is_none() { writes.count() } else { reads.count() };
    m.iops = if m.seconds > 0.0 { chunks as f64 / m.seconds } else { 0.0 };
    // Every chunk completed was read (read, copy) and written (write, copy) whole.
    let bytes = m.bytes;
    let moved = |h: LatencyHistogram| DirectionStats {
        bytes: if h.count() > 0 { bytes } else { 0 },
        ios: h.count(),
        runtime: if h.count() > 0 { elapsed } else { Duration::ZERO },
        clat: h,
    };
    m.read = moved(reads);
    m.write = moved(writes);
    m
}

/// One pass over the range, or with `time_based` passes until the deadline (fio's
/// time_based): bytes, passes and errors into `m`, the latencies of reads and writes.
fn run_passes(
    engine: &mut IoEngine,
    job: &Job<'_>,
    bufs: &mut [IoBuffer],
    time_based: bool,
    m: &mut Measurement,
) -> (LatencyHistogram, LatencyHistogram) {
    let (mut reads, mut writes) = (LatencyHistogram::new(), LatencyHistogram::new());
    loop {
        match engine.run(job, bufs, &mut |_| {}) {
            Ok(stats) => {
                m.passes += 1;
                m.bytes += stats.bytes;
                reads.merge(&stats.read_latency);
                writes.merge(&stats.write_latency);
                let more_time = job.deadline.is_some_and(|d| Instant::now() < d);
                if !time_based || !more_time || stats.bytes == 0 {
                    break;
                }
            }
            Err(f) => {
                m.interrupted = matches!(f.error, MemError::Interrupted);
                m.errno = if m.interrupted { EINTR } else { f.error.errno().unwrap_or(EIO) };
                m.error = Some(if m.interrupted { "interrupted".into() } else { f.error.to_string() });
                break;
            }
        }
    }
    (reads, writes)
}
