//! `p2pdma copy` (and the pieces `p2pdma bench` shares): measure both ends, judge the
//! request (ranges, alignment, overlap, who uses the destination), choose the memory the
//! data goes through by the kernel's verdict, copy with the io_uring engine, prove it by
//! reading back. Every outcome becomes a [`CopyReport`]; human output is made from it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use p2pdma_core::analysis;
use p2pdma_core::transfer::{self, End, EndKind, Ranges};
use p2pdma_core::{Bdf, Engine, MapType};
use p2pdma_mem::ends::{self, Measured};
use p2pdma_mem::{Access, DirectFile, HostBuffer, IoBuffer, MemError, P2pBuffer};
use serde::Serialize;

const EBUSY: i32 = 16;

/// Where a copy's data goes through.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "memory", rename_all = "snake_case")]
pub enum Route {
    /// P2P memory of `provider`, with the kernel's verdict for it and both ends.
    P2p { provider: Bdf, provider_name: Option<String>, map_type: MapType, distance: u32 },
    /// Host memory, and why not P2P memory.
    Host { reasons: Vec<String> },
}

impl Route {
    /// "P2P, bus address, distance 4, via 0000:03:00.0 (nvme-a)" or "host memory".
    pub fn summary(&self) -> String {
        match self {
            Route::P2p { provider, provider_name, map_type, distance } => {
                let how = match map_type {
                    MapType::BusAddr => "bus address",
                    MapType::ThruHostBridge => "through the host bridge",
                    MapType::NotSupported => "not supported",
                };
                let name = provider_name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
                format!("P2P, {how}, distance {distance}, via {provider}{name}")
            }
            Route::Host { .. } => "host memory".into(),
        }
    }
}

/// How the caller asked for the memory: `--via auto|host|PROVIDER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Auto,
    Host,
    Provider(String),
}

impl std::str::FromStr for Via {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Via::Auto,
            "host" => Via::Host,
            other => Via::Provider(other.to_string()),
        })
    }
}

/// One end as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EndReport {
    #[serde(flatten)]
    pub end: End,
    pub offset: u64,
    /// The block device the data is on and its PCI device, when there are such.
    pub block_device: Option<String>,
    pub pci: Option<Bdf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Copied,
    /// Not started: a safety rule or `--require-p2p` said no.
    Refused,
    /// Stopped by an I/O error.
    Failed,
    /// Copied without an error, but the read-back differs: the data did not arrive.
    Mismatch,
}

#[derive(Debug, Serialize)]
pub struct CopyReport {
    pub outcome: Outcome,
    pub src: EndReport,
    pub dst: EndReport,
    pub length: u64,
    pub route: Route,
    /// Human summary of the route, as printed.
    pub path: String,
    pub engine: String,
    pub depth: usize,
    pub chunk: usize,
    /// Bytes copied (whole chunks), the time and the rate.
    pub bytes: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    pub verify: Option<VerifyReport>,
    pub error: Option<ErrorReport>,
    /// Why the copy was refused.
    pub refused: Vec<String>,
    /// Anything the user should know (fallbacks, reduced depth).
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub equal: bool,
    pub bytes_compared: u64,
    /// The first differing byte, relative to the start of the range.
    pub first_difference: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct ErrorReport {
    pub message: String,
    pub device: Option<PathBuf>,
    pub op: Option<&'static str>,
    /// The device's own offset where it failed.
    pub offset: Option<u64>,
    pub errno: Option<i32>,
    /// Every destination byte before `dst offset + written_prefix` was written.
    pub written_prefix: u64,
    pub completed: u64,
}

impl ErrorReport {
    pub fn new(e: &MemError, completed: u64, written_prefix: u64) -> Self {
        let (device, op, offset) = match e {
            MemError::Io { path, op, offset, .. } => (Some(path.clone()), Some(*op), Some(*offset)),
            _ => (None, None, None),
        };
        ErrorReport { message: e.to_string(), device, op, offset, errno: e.errno(), written_prefix, completed }
    }
}

/// `copy` arguments.
#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    /// Source: a block device or file path, or a device name (`nvme-b`, `0000:04:00.0`).
    src: String,
    /// Destination: a block device or file path (a new file is created), or a device name.
    dst: String,
    /// Byte offset in SRC (a multiple of its logical block size; K, M, G suffixes).
    #[arg(long, value_parser = crate::parse_bytes, default_value = "0")]
    src_offset: u64,
    /// Byte offset in DST.
    #[arg(long, value_parser = crate::parse_bytes, default_value = "0")]
    dst_offset: u64,
    /// Bytes to copy (default: the rest of SRC).
    #[arg(long, value_parser = crate::parse_bytes)]
    length: Option<u64>,
    /// Memory the data goes through: `auto` (the provider the kernel would pick for both
    /// devices), `host`, or a provider (BDF or name).
    #[arg(long, default_value = "auto")]
    via: Via,
    /// Chunks in flight at once (one buffer each).
    #[arg(long, default_value_t = 8)]
    depth: usize,
    /// Bytes per I/O (a multiple of the page size and both block sizes).
    #[arg(long, value_parser = crate::parse_size, default_value = "1M")]
    chunk: usize,
    /// One synchronous read and write at a time instead of io_uring.
    #[arg(long = "sync")]
    sync_engine: bool,
    /// Read both ranges back and compare them byte for byte.
    #[arg(long)]
    verify: bool,
    /// Refuse rather than fall back to host memory.
    #[arg(long)]
    require_p2p: bool,
    /// Write to a destination that is mounted, held or open exclusively elsewhere.
    #[arg(long)]
    force: bool,
}

/// Where the machine is: sysfs for devices and P2P memory, mountinfo for users.
pub struct Machine<'a> {
    pub engine: &'a Engine<'a>,
    pub sysfs: &'a Path,
    pub mountinfo: &'a Path,
}

/// A path, or a device name (`nvme-b`, `0000:04:00.0`, `nvme0n1`) turned into its block device.
pub fn locate(engine: &Engine<'_>, name: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(name);
    if name.contains('/') || path.exists() {
        return Ok(path.to_path_buf());
    }
    crate::alloc::block_device(engine, name)
}

/// Measures an end and finds its PCI device.
pub fn measure(m: &Machine<'_>, path: &Path, may_create: bool, offset: u64) -> anyhow::Result<(Measured, EndReport)> {
    let measured = ends::measure(path, m.sysfs, may_create)?;
    let pci = measured.disk.as_ref().and_then(|d| m.engine.topo.aliases.get(d)).and_then(|a| a.pci_parent);
    let report = EndReport { end: measured.end.clone(), offset, block_device: measured.disk.clone(), pci };
    Ok((measured, report))
}

/// The memory to use for data moving between `ends` (their PCI devices), by the verdict.
/// Errors are bad input (an unknown or non-provider `--via`).
pub fn choose_route(engine: &Engine<'_>, via: &Via, ends: &[&EndReport]) -> anyhow::Result<Route> {
    if *via == Via::Host {
        return Ok(Route::Host { reasons: vec!["host memory was asked for (--via host)".into()] });
    }
    let mut clients = Vec::new();
    for end in ends {
        match end.pci {
            Some(bdf) => clients.push(bdf.to_string()),
            None => {
                if let Via::Provider(p) = via {
                    analysis::check(engine, p, &[])?; // still refuse a provider that is not one
                }
                let on = end.block_device.as_deref().map(|d| format!(" (on {d})")).unwrap_or_default();
                return Ok(Route::Host {
                    reasons: vec![format!(
                        "{}{on} is not on a PCI device, so no P2P memory can serve it",
                        end.end.path
                    )],
                });
            }
        }
    }
    let provider = match via {
        Via::Provider(p) => p.clone(),
        _ => {
            let found = analysis::find(engine, &clients)?;
            match found.provider {
                Some(p) => p.to_string(),
                None => {
                    let mut reasons = found.reasons;
                    for c in found.candidates.iter().take(3) {
                        let check = analysis::check(engine, &c.provider.to_string(), &clients)?;
                        reasons.extend(why_not(&check));
                    }
                    reasons.dedup();
                    return Ok(Route::Host { reasons });
                }
            }
        }
    };
    let check = analysis::check(engine, &provider, &clients)?;
    if let (true, Some(distance)) = (check.map_type.supported(), check.distance) {
        if check.p2pmem.as_ref().is_some_and(|m| m.size > 0) {
            return Ok(Route::P2p {
                provider: check.provider,
                provider_name: check.provider_name,
                map_type: check.map_type,
                distance,
            });
        }
    }
    let mut reasons: Vec<String> = check.notes.clone();
    reasons.extend(why_not(&check));
    reasons.dedup();
    if reasons.is_empty() {
        reasons.push(format!("{} cannot be used for this pair", check.provider));
    }
    Ok(Route::Host { reasons })
}

/// The reasons of the clients the provider cannot serve (not those of the ones it can).
fn why_not(check: &analysis::CheckReport) -> impl Iterator<Item = String> + '_ {
    check.clients.iter().filter(|v| !v.map_type.supported()).flat_map(|v| v.reasons.iter().cloned())
}

/// Up to `depth` buffers of `chunk` bytes from the route's memory. P2P memory can run out
/// before `depth` (the depth then shrinks, with a note); if not even one chunk fits, the
/// error is returned for the caller to refuse or fall back.
pub fn buffers(
    sysfs: &Path,
    route: &Route,
    depth: usize,
    chunk: usize,
    notes: &mut Vec<String>,
) -> Result<Vec<IoBuffer>, MemError> {
    let mut out = Vec::with_capacity(depth);
    match route {
        Route::Host { .. } => {
            for _ in 0..depth {
                out.push(IoBuffer::Host(HostBuffer::new(chunk)?));
            }
        }
        Route::P2p { provider, .. } => {
            let dir = sysfs.join("bus/pci/devices").join(provider.to_string());
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
pub fn io_engine(sync: bool, depth: usize, notes: &mut Vec<String>) -> p2pdma_mem::Engine {
    if sync {
        return p2pdma_mem::Engine::Sync;
    }
    p2pdma_mem::Engine::uring(depth).unwrap_or_else(|e| {
        notes.push(format!("{e}; using synchronous I/O, one chunk at a time"));
        p2pdma_mem::Engine::Sync
    })
}

/// Opens the destination for writing: exclusively for block devices unless forced, which
/// the kernel refuses (EBUSY) while anyone mounts, holds or exclusively opens it.
pub fn open_destination(m: &Measured, force: bool) -> Result<DirectFile, MemError> {
    let exclusive = m.end.kind == EndKind::BlockDevice && !force;
    DirectFile::open(Path::new(&m.end.path), Access::Write { exclusive, create: !m.exists })
}

/// Runs a copy to the end and reports it; `Err` only for bad input (exit 2).
pub fn run(m: &Machine<'_>, args: &CopyArgs, progress: bool) -> anyhow::Result<CopyReport> {
    let src_path = locate(m.engine, &args.src)?;
    let dst_path = locate(m.engine, &args.dst)?;
    let (src, src_report) = measure(m, &src_path, false, args.src_offset)?;
    let (dst, dst_report) = measure(m, &dst_path, true, args.dst_offset)?;
    let Ranges { length, .. } =
        transfer::plan_ranges(&src.end, &dst.end, args.src_offset, args.dst_offset, args.length)?;
    let chunk = transfer::check_chunk(args.chunk, p2pdma_mem::page_size(), &[&src.end, &dst.end], length)?;
    if args.depth == 0 {
        anyhow::bail!("--depth must be at least 1");
    }
    let route = choose_route(m.engine, &args.via, &[&src_report, &dst_report])?;
    // No more buffers than chunks.
    let depth = args.depth.min(length.div_ceil(chunk as u64) as usize);
    let mut report = CopyReport {
        outcome: Outcome::Refused,
        src: src_report,
        dst: dst_report,
        length,
        path: route.summary(),
        route,
        engine: String::new(),
        depth,
        chunk,
        bytes: 0,
        seconds: 0.0,
        mib_per_s: 0.0,
        verify: None,
        error: None,
        refused: Vec::new(),
        notes: Vec::new(),
    };

    // Refusals: nothing has been opened for writing yet.
    let users = ends::in_use(&dst, m.mountinfo);
    if !users.is_empty() {
        if !args.force {
            report.refused = users;
            report.refused.push(format!("{} is in use: refusing to write to it (--force overrides)", dst.end.path));
            return Ok(report);
        }
        report.notes.extend(users.into_iter().map(|u| format!("--force: writing although {u}")));
    }
    if let Route::Host { reasons } = &report.route {
        if args.require_p2p {
            report.refused = reasons.clone();
            report.refused.push("--require-p2p: refusing to copy through host memory".into());
            return Ok(report);
        }
    }
    let mut notes = Vec::new();
    let mut bufs = match buffers(m.sysfs, &report.route, depth, chunk, &mut notes) {
        Ok(b) => b,
        Err(e) if matches!(report.route, Route::P2p { .. }) && !args.require_p2p => {
            report.notes.push(format!("{e}; copying through host memory instead"));
            report.route = Route::Host { reasons: vec![e.to_string()] };
            report.path = report.route.summary();
            buffers(m.sysfs, &report.route, depth, chunk, &mut notes)?
        }
        Err(e) => {
            report.refused.push(e.to_string());
            return Ok(report);
        }
    };
    report.notes.append(&mut notes);
    let src_file = DirectFile::open(&src_path, Access::Read)?;
    let dst_file = match open_destination(&dst, args.force) {
        Ok(f) => f,
        Err(e) if e.errno() == Some(EBUSY) => {
            report.refused.push(format!("{e}; refusing (--force overrides)"));
            return Ok(report);
        }
        Err(e) => return Err(e.into()),
    };
    let mut engine = io_engine(args.sync_engine, bufs.len(), &mut report.notes);
    report.engine = engine.name().into();
    report.depth = if matches!(engine, p2pdma_mem::Engine::Sync) { 1 } else { bufs.len() };

    let job = p2pdma_mem::Job {
        src: Some((&src_file, args.src_offset)),
        dst: Some((&dst_file, args.dst_offset)),
        length,
        chunk,
        record_latency: false,
    };
    let bar = progress.then(|| progress_bar(length));
    let result = engine.run(&job, &mut bufs, &mut |done| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    drop(bufs); // P2P memory goes back to its provider before the read-back
    match result {
        Ok(stats) => {
            report.bytes = stats.bytes;
            report.seconds = stats.elapsed.as_secs_f64();
            report.mib_per_s = mib_per_s(stats.bytes, report.seconds);
            if let Err(e) = dst_file.sync() {
                report.outcome = Outcome::Failed;
                report.error = Some(ErrorReport::new(&e, stats.bytes, stats.bytes));
                return Ok(report);
            }
            report.outcome = Outcome::Copied;
        }
        Err(f) => {
            report.bytes = f.completed;
            report.seconds = f.elapsed.as_secs_f64();
            report.outcome = Outcome::Failed;
            report.error = Some(ErrorReport::new(&f.error, f.completed, f.written_prefix));
            return Ok(report);
        }
    }
    if args.verify {
        match p2pdma_mem::compare((&src_file, args.src_offset), (&dst_file, args.dst_offset), length, chunk) {
            Ok(first_difference) => {
                report.verify =
                    Some(VerifyReport { equal: first_difference.is_none(), bytes_compared: length, first_difference });
                if first_difference.is_some() {
                    report.outcome = Outcome::Mismatch;
                }
            }
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.error = Some(ErrorReport::new(&e, length, length));
            }
        }
    }
    Ok(report)
}

pub fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / (1 << 20) as f64 / seconds
    } else {
        0.0
    }
}

/// A progress bar on standard error, for terminals only.
pub fn progress_bar(length: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(length);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Whether to draw progress: a terminal, and no JSON to keep clean.
pub fn wants_progress(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// The text `p2pdma copy` prints.
pub fn render(r: &CopyReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let end = |e: &EndReport| {
        let on = match (&e.block_device, e.pci) {
            (Some(d), Some(p)) => format!(" [{d} on {p}]"),
            (Some(d), None) => format!(" [{d}]"),
            _ => String::new(),
        };
        format!("{} @ {}{on}", e.end.path, e.offset)
    };
    let _ = writeln!(s, "copy {} -> {}, {} bytes", end(&r.src), end(&r.dst), r.length);
    let _ = writeln!(s, "path: {}", r.path);
    if let Route::Host { reasons } = &r.route {
        for reason in reasons {
            let _ = writeln!(s, "  why not P2P: {reason}");
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    match r.outcome {
        Outcome::Refused => {
            let _ = writeln!(s, "REFUSED, nothing written:");
            for reason in &r.refused {
                let _ = writeln!(s, "  {reason}");
            }
        }
        _ => {
            let _ = writeln!(
                s,
                "{} {} bytes in {:.3} s ({:.1} MiB/s), {} engine, depth {}, chunk {}",
                if r.outcome == Outcome::Failed { "FAILED after" } else { "copied" },
                r.bytes,
                r.seconds,
                r.mib_per_s,
                r.engine,
                r.depth,
                r.chunk
            );
        }
    }
    if let Some(e) = &r.error {
        let _ = writeln!(s, "error: {}", e.message);
        let _ = writeln!(
            s,
            "  destination written up to offset {} (range start + {}); {} bytes of whole chunks completed",
            r.dst.offset + e.written_prefix,
            e.written_prefix,
            e.completed
        );
    }
    if let Some(v) = &r.verify {
        match v.first_difference {
            None => {
                let _ = writeln!(s, "verified: {} bytes read back, identical", v.bytes_compared);
            }
            Some(d) => {
                let _ = writeln!(
                    s,
                    "VERIFY FAILED: first difference at byte {d} of the range ({} offset {}, {} offset {}): the data did not arrive",
                    r.src.end.path,
                    r.src.offset + d,
                    r.dst.end.path,
                    r.dst.offset + d
                );
            }
        }
    }
    s
}
