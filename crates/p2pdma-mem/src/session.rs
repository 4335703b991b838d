//! A copy carried out: the plan (`p2pdma_core::copy_plan`) made real. Buffers from the
//! route's memory (falling back or refusing when P2P memory runs out), both ends opened
//! (the destination exclusively or locked), the engine run, the read-back, and every
//! outcome written into the plan's [`CopyReport`]. `p2pdma bench` uses the same pieces.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use p2pdma_core::copy_plan::{
    mib_per_s, reads_in_flight, CopyPlan, CopyReport, EndReport, ErrorReport, Outcome, ReadBack, Route, VerifyReport,
};
use p2pdma_core::transfer::EndKind;
use p2pdma_host::sysfs::pci_device_dir;
use rustix::io::Errno;

use crate::ends::{self, Measured};
use crate::engine::{Failure, Stats};
use crate::{Access, DirectFile, HostBuffer, IoBuffer, IoEngine, Job, MemError, P2pBuffer};

/// Measures the end at `path`: what it is, its block device, PCI device and NUMA node.
pub fn measure_end(
    sysfs: &Path,
    path: &Path,
    may_create: bool,
    offset: u64,
) -> Result<(Measured, EndReport), MemError> {
    let m = ends::measure(path, sysfs, may_create)?;
    let report =
        EndReport { end: m.end.clone(), offset, block_device: m.disk.clone(), pci: m.pci, numa_node: m.numa_node };
    Ok((m, report))
}

/// Up to `depth` buffers of `chunk` bytes from the route's memory (host memory on `node`).
/// P2P memory can run out before `depth` (the depth then shrinks, with a note); if not even
/// one chunk fits, the error is returned for the caller to refuse or fall back.
pub fn buffers(
    sysfs: &Path,
    route: &Route,
    depth: usize,
    chunk: usize,
    node: Option<i32>,
    notes: &mut Vec<String>,
) -> Result<Vec<IoBuffer>, MemError> {
    let mut out = Vec::with_capacity(depth);
    match route {
        Route::Host { .. } => {
            for _ in 0..depth {
                let (buf, _) = HostBuffer::on_node(chunk, node)?;
                out.push(IoBuffer::Host(buf));
            }
        }
        Route::P2p { provider, .. } => {
            let dir = pci_device_dir(sysfs, *provider);
            for _ in 0..depth {
                match P2pBuffer::allocate(&dir, chunk) {
                    Ok(b) => out.push(IoBuffer::P2p(b)),
                    Err(MemError::NoMemory { .. }) if !out.is_empty() => {
                        notes.push(format!(
                            "queue depth limited to {} by the free P2P memory of {provider} ({} chunks of {chunk} bytes fit)",
                            out.len(),
                            out.len()
                        ));
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

/// The engine asked for, or the synchronous one with a note when io_uring is unavailable.
pub fn io_engine(sync: bool, depth: usize, notes: &mut Vec<String>) -> IoEngine {
    if sync {
        return IoEngine::Sync;
    }
    IoEngine::uring(depth).unwrap_or_else(|e| {
        notes.push(format!("{e}; using synchronous I/O, one chunk at a time"));
        IoEngine::Sync
    })
}

/// Opens a destination for writing: a block device exclusively unless forced (the kernel
/// refuses, EBUSY, while anyone mounts, holds or exclusively opens it), a file locked
/// against a second writer, created when it does not exist yet.
pub fn open_destination(end: &EndReport, force: bool) -> Result<DirectFile, MemError> {
    let block = end.end.kind == EndKind::BlockDevice;
    DirectFile::open(Path::new(&end.end.path), Access::Write { exclusive: block && !force, create: !block })
}

/// An I/O error (or interruption) for the report.
pub fn error_report(e: &MemError, completed: u64, written_prefix: u64) -> ErrorReport {
    let (device, op, offset) = match e {
        MemError::Io { path, op, offset, .. } => (Some(path.clone()), Some(*op), Some(*offset)),
        _ => (None, None, None),
    };
    ErrorReport { message: e.to_string(), device, op, offset, errno: e.errno(), written_prefix, completed }
}

/// How to carry a plan out.
pub struct Options<'a> {
    /// The sysfs root (for the provider's `p2pmem/allocate`).
    pub sysfs: &'a Path,
    /// One synchronous read and write at a time instead of io_uring.
    pub sync: bool,
    pub verify: bool,
    /// Write to a destination in use (no O_EXCL).
    pub force: bool,
    /// Set by a signal handler: stop, drain, report `interrupted`.
    pub stop: Option<&'a AtomicBool>,
    /// When the process started: `setup_seconds` runs from here to the first I/O.
    pub started: Instant,
}

/// Carries `plan` out. `on_start` hears the report just before the first I/O (the route is
/// final then); `progress` the bytes done. `Err` only when the source cannot be opened or
/// the destination cannot be opened for a reason other than being in use.
pub fn run_copy(
    mut plan: CopyPlan,
    opts: &Options<'_>,
    on_start: &mut dyn FnMut(&CopyReport),
    progress: &mut dyn FnMut(u64),
) -> Result<CopyReport, MemError> {
    if plan.is_refused() {
        return Ok(CopyReport::planned(&plan));
    }
    let Some(mut bufs) = plan_buffers(&mut plan, opts)? else { return Ok(CopyReport::planned(&plan)) };
    let mut report = CopyReport::planned(&plan);
    let src = DirectFile::open(Path::new(&plan.src.end.path), Access::Read)?;
    let Some(dst) = open_destination_or_refuse(&plan, opts.force, &mut report)? else { return Ok(report) };
    let mut engine = io_engine(opts.sync, bufs.len(), &mut report.notes);
    report.engine = engine.name().into();
    report.depth = if matches!(engine, IoEngine::Sync) { 1 } else { bufs.len() };
    report.reads = reads_in_flight(plan.max_reads, report.depth);
    let job = Job {
        src: Some((&src, plan.src.offset)),
        dst: Some((&dst, plan.dst.offset)),
        length: plan.length,
        chunk: plan.chunk,
        record_latency: false,
        max_reads: plan.max_reads,
        stop: opts.stop,
        deadline: None,
    };
    // Through host memory each chunk is read back as soon as written; through P2P memory
    // both ranges are read again after the copy (see `ReadBack`).
    let in_flight = opts.verify && !plan.route.is_p2p();
    let mut checks = Vec::new();
    if in_flight {
        for _ in 0..bufs.len() {
            checks.push(HostBuffer::on_node(plan.chunk, plan.numa_node)?.0);
        }
    }
    report.setup_seconds = opts.started.elapsed().as_secs_f64();
    on_start(&report);
    let result = if in_flight {
        engine.run_read_back(&job, &mut bufs, &mut checks, progress)
    } else {
        engine.run(&job, &mut bufs, progress)
    };
    drop(bufs); // P2P memory goes back to its provider before the read-back
    let stats = match result {
        Ok(stats) => stats,
        Err(f) => return Ok(copy_failed(report, &f, &dst)),
    };
    if !flushed(&mut report, &stats, &dst) {
        return Ok(report);
    }
    if in_flight {
        report.verify = Some(VerifyReport {
            equal: stats.first_difference.is_none(),
            bytes_compared: stats.bytes,
            first_difference: stats.first_difference,
            seconds: 0.0,
            read_back: ReadBack::InFlight,
        });
        if stats.first_difference.is_some() {
            report.outcome = Outcome::Mismatch;
        }
    } else if opts.verify {
        verify_after_copy(&mut report, &plan, &src, &dst, opts.stop);
    }
    Ok(report)
}

/// The route's buffers; when P2P memory runs out, the plan falls back to host memory (None:
/// the plan then refuses, as `--require-p2p` asks).
fn plan_buffers(plan: &mut CopyPlan, opts: &Options<'_>) -> Result<Option<Vec<IoBuffer>>, MemError> {
    let mut notes = Vec::new();
    let bufs = match buffers(opts.sysfs, &plan.route, plan.depth, plan.chunk, plan.numa_node, &mut notes) {
        Ok(b) => b,
        Err(e) if plan.route.is_p2p() => {
            plan.fall_back(e.to_string());
            if plan.is_refused() {
                return Ok(None);
            }
            buffers(opts.sysfs, &plan.route, plan.depth, plan.chunk, plan.numa_node, &mut notes)?
        }
        Err(e) => return Err(e),
    };
    plan.notes.append(&mut notes);
    Ok(Some(bufs))
}

/// The destination opened for writing; in use (EBUSY, another writer's lock) is a refusal
/// in the report (None), any other failure the error.
fn open_destination_or_refuse(
    plan: &CopyPlan,
    force: bool,
    report: &mut CopyReport,
) -> Result<Option<DirectFile>, MemError> {
    match open_destination(&plan.dst, force) {
        Ok(f) => Ok(Some(f)),
        Err(e @ (MemError::Locked { .. } | MemError::Io { cause: crate::IoCause(Errno::BUSY), .. })) => {
            report.refused.push(match e {
                MemError::Locked { .. } => e.to_string(),
                _ => format!("{e}; refusing (--force overrides)"),
            });
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The report of a copy the engine stopped: what completed, interrupted or failed, and the
/// written prefix made durable.
fn copy_failed(mut report: CopyReport, f: &Failure, dst: &DirectFile) -> CopyReport {
    report.bytes = f.completed;
    report.seconds = f.elapsed.as_secs_f64();
    report.mib_per_s = mib_per_s(f.completed, report.seconds);
    report.outcome = if matches!(f.error, MemError::Interrupted) { Outcome::Interrupted } else { Outcome::Failed };
    // What was written is made durable either way, so the prefix reported is on disk.
    let _ = dst.sync();
    report.error = Some(error_report(&f.error, f.completed, f.written_prefix));
    report
}

/// The copy's numbers and the destination's flush; false (the report says failed) when the
/// flush fails.
fn flushed(report: &mut CopyReport, stats: &Stats, dst: &DirectFile) -> bool {
    report.bytes = stats.bytes;
    report.seconds = stats.elapsed.as_secs_f64();
    report.mib_per_s = mib_per_s(stats.bytes, report.seconds);
    let flush = Instant::now();
    let synced = dst.sync();
    report.flush_seconds = flush.elapsed().as_secs_f64();
    if let Err(e) = synced {
        report.outcome = Outcome::Failed;
        report.error = Some(error_report(&e, stats.bytes, stats.bytes));
        return false;
    }
    report.outcome = Outcome::Copied;
    true
}

/// `--verify` through P2P memory: both ranges read again and compared after the copy.
fn verify_after_copy(
    report: &mut CopyReport,
    plan: &CopyPlan,
    src: &DirectFile,
    dst: &DirectFile,
    stop: Option<&AtomicBool>,
) {
    let t = Instant::now();
    match crate::compare((src, plan.src.offset), (dst, plan.dst.offset), plan.length, plan.chunk, report.depth, stop) {
        Ok(first_difference) => {
            report.verify = Some(VerifyReport {
                equal: first_difference.is_none(),
                bytes_compared: plan.length,
                first_difference,
                seconds: t.elapsed().as_secs_f64(),
                read_back: ReadBack::AfterCopy,
            });
            if first_difference.is_some() {
                report.outcome = Outcome::Mismatch;
            }
        }
        Err(MemError::Interrupted) => {
            report.outcome = Outcome::Interrupted;
            report.error = Some(error_report(&MemError::Interrupted, plan.length, plan.length));
        }
        Err(e) => {
            report.outcome = Outcome::Failed;
            report.error = Some(error_report(&e, plan.length, plan.length));
        }
    }
}
