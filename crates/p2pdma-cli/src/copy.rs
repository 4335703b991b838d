//! `p2pdma copy`: the flags, the operands turned into paths, and the text output. The
//! decisions are `p2pdma_core::copy_plan` (ranges, route by the verdict, refusals), the
//! work `p2pdma_mem::session` (buffers, opens, engine, read-back).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use p2pdma_core::copy_plan::{self, CopyReport, CopyRequest, EndReport, Operand, Outcome, ReadBack, Route, Via};
use p2pdma_core::Engine;
use p2pdma_mem::ends::Measured;
use p2pdma_mem::session;

use crate::interrupt::Interrupt;
use crate::source::SourceArgs;

// `copy` arguments. A plain comment: a doc comment here would become the command's
// description when clap builds it deferred (main.rs `Command`), over the variant's.
#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    /// Source: a path (anything with a `/`, or an existing file here) or a device name
    /// (`nvme-b`, `0000:04:00.0`, `nvme0n1`).
    src: String,
    /// Destination: a path (a new file is created; `/dev/...` for block devices) or a device
    /// name. A bare word that is both a file here and a device is refused: write `./NAME`
    /// or `/dev/NAME`. Written in place as dd writes (`conv=notrunc`): a block device or an
    /// existing file is opened as it is, links followed, never truncated nor replaced, only
    /// the range at --dst-offset overwritten; unlike the report and snapshot writers it is
    /// not a temporary file renamed over, so name the device or file itself.
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
    /// Chunks in flight at once (one buffer each; fewer when P2P memory runs short). The
    /// defaults of --depth, --reads and --chunk are the fastest measured together
    /// (BENCHMARKS.md).
    #[arg(long, default_value_t = copy_plan::DEFAULT_DEPTH)]
    depth: usize,
    /// At most this many reads in flight at once, the other chunks being written meanwhile
    /// (0: up to --depth).
    #[arg(long, default_value_t = copy_plan::DEFAULT_READS)]
    reads: usize,
    /// Bytes per I/O (a multiple of the page size and both block sizes; K, M suffixes).
    #[arg(long, value_parser = crate::parse_size, default_value_t = copy_plan::DEFAULT_CHUNK)]
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

/// An operand as a path: a path as given, a device name as its block device. `engine` is
/// needed for bare words (device names, and telling them from files); `may_create`: a
/// destination, which may be a new file.
pub fn locate(engine: Option<&Engine<'_>>, word: &str, may_create: bool) -> anyhow::Result<PathBuf> {
    let bare = !word.contains('/');
    let is_file = bare && Path::new(word).symlink_metadata().is_ok();
    let is_device = bare && engine.is_some_and(|e| p2pdma_core::resolve(e, word).is_ok());
    match (copy_plan::operand(word, is_file, is_device, may_create)?, engine) {
        (Operand::Device(name), Some(engine)) => {
            p2pdma_core::block_device::block_device(engine, &name).map_err(Into::into)
        }
        // A device only when the topology knows it, so never without one.
        (Operand::Device(name), None) => Ok(name.into()),
        (Operand::Path(path), _) => Ok(path),
    }
}

/// Measures an end: what it is, its block device, PCI device and NUMA node.
pub fn measure(sysfs: &Path, path: &Path, may_create: bool, offset: u64) -> anyhow::Result<(Measured, EndReport)> {
    Ok(session::measure_end(sysfs, path, may_create, offset)?)
}

/// Why no device has P2P memory when the kernel is built without CONFIG_PCI_P2PDMA (read
/// only when no topology was: the machine has no `p2pmem/`).
fn p2pdma_absent(source: &SourceArgs) -> Option<String> {
    let (release, build) = p2pdma_host::kernel_live::p2pdma_build(&source.roots());
    let machine = p2pdma_core::model::Machine {
        kernel_release: release,
        kernel: p2pdma_core::model::KernelFacts { p2pdma: build, ..Default::default() },
        ..Default::default()
    };
    p2pdma_core::kernel::p2pdma_absent(&machine).then(|| p2pdma_core::kernel::absent_reason(&machine))
}

/// Runs `p2pdma copy` and prints its outcome; the exit code: 0 copied (and verified),
/// 1 refused, failed or mismatched, 130/143 interrupted by SIGINT/SIGTERM.
///
/// Only what the decision needs is read before the first I/O: the topology (one sysfs walk,
/// without the PCI ID database) only when a name must be resolved or a P2P route judged;
/// on a machine without P2P memory, paths and `--via host` need none.
pub fn command(source: &SourceArgs, args: &CopyArgs, json: bool) -> anyhow::Result<ExitCode> {
    let interrupt = Interrupt::install()?;
    source.require_live("copy")?;
    let bare_word = |w: &str| !w.contains('/');
    let needs_topology = bare_word(&args.src)
        || bare_word(&args.dst)
        || matches!(args.via, Via::Provider(_))
        || (args.via == Via::Auto && p2pdma_host::block::any_p2p_provider(&source.sysfs_root));
    let loaded = needs_topology.then(|| source.load_live("copy")).transpose()?;
    let engine = loaded.as_ref().map(|l| Engine::new(&l.topology)).transpose()?;
    let mountinfo = source.proc_root.join("self/mountinfo");
    let src_path = locate(engine.as_ref(), &args.src, false)?;
    let dst_path = locate(engine.as_ref(), &args.dst, true)?;
    let (_, src) = measure(&source.sysfs_root, &src_path, false, args.src_offset)?;
    let (dst_measured, dst) = measure(&source.sysfs_root, &dst_path, true, args.dst_offset)?;
    let request = CopyRequest {
        src_offset: args.src_offset,
        dst_offset: args.dst_offset,
        length: args.length,
        via: args.via.clone(),
        depth: args.depth,
        chunk: args.chunk,
        reads: args.reads,
        page_size: p2pdma_mem::page_size(),
        require_p2p: args.require_p2p,
        force: args.force,
        p2pdma_absent: if engine.is_none() && args.via != Via::Host { p2pdma_absent(source) } else { None },
    };
    let users = p2pdma_mem::ends::in_use(&dst_measured, &mountinfo);
    let plan = copy_plan::plan_copy(engine.as_ref(), src, dst, users, &request)?;
    let opts = session::Options {
        sysfs: &source.sysfs_root,
        sync: args.sync_engine,
        verify: args.verify,
        force: args.force,
        stop: Some(interrupt.flag()),
        started: crate::started(),
    };
    let bar = wants_progress(json).then(|| progress_bar(plan.length));
    let mut printed_start = false;
    let mut report = session::run_copy(
        plan,
        &opts,
        &mut |r| {
            // The route is known before the first byte: say it now.
            if !json {
                // A closed stdout does not stop the copy: the final print reports it.
                let _ = crate::out::text(&render_start(r));
                printed_start = true;
            }
        },
        &mut |done| {
            if let Some(b) = &bar {
                b.set_position(done);
            }
        },
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if report.outcome == Outcome::Interrupted {
        report.signal = interrupt.signal_name();
    }
    if json {
        crate::print_json(&report)?;
    } else {
        if !printed_start {
            crate::out::text(&render_start(&report))?;
        }
        crate::out::text(&render_end(&report))?;
    }
    Ok(match report.outcome {
        Outcome::Copied => ExitCode::SUCCESS,
        Outcome::Interrupted => interrupt.exit_code(),
        _ => ExitCode::from(1),
    })
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

/// What `p2pdma copy` prints before the first byte: the ends, the route and why, notes.
pub fn render_start(r: &CopyReport) -> String {
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
    writeln!(s, "copy {} -> {}, {} bytes", end(&r.src), end(&r.dst), r.length).unwrap();
    writeln!(s, "path: {}", r.path).unwrap();
    if let Route::Host { reasons } = &r.route {
        for reason in reasons {
            writeln!(s, "  why not P2P: {reason}").unwrap();
        }
    }
    for n in &r.notes {
        writeln!(s, "note: {n}").unwrap();
    }
    s
}

/// What `p2pdma copy` prints at the end: the outcome, the error and the read-back.
pub fn render_end(r: &CopyReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let done = match r.outcome {
        Outcome::Refused => {
            writeln!(s, "REFUSED, nothing written:").unwrap();
            for reason in &r.refused {
                writeln!(s, "  {reason}").unwrap();
            }
            None
        }
        Outcome::Failed => Some("FAILED after"),
        Outcome::Interrupted => Some("INTERRUPTED after"),
        Outcome::Copied | Outcome::Mismatch => Some("copied"),
    };
    if let Some(done) = done {
        writeln!(
            s,
            "{done} {} bytes in {:.3} s ({:.1} MiB/s), {} engine, depth {}, reads {}, chunk {}; {:.3} s before the first I/O",
            r.bytes, r.seconds, r.mib_per_s, r.engine, r.depth, r.reads, r.chunk, r.setup_seconds
        )
        .unwrap();
    }
    if let Some(e) = &r.error {
        match &r.signal {
            Some(sig) => {
                writeln!(s, "stopped by {sig}: no new I/O was started, the I/O in flight finished").unwrap();
            }
            None => {
                writeln!(s, "error: {}", e.message).unwrap();
            }
        }
        writeln!(
            s,
            "  destination written up to offset {} (range start + {}); {} bytes of whole chunks completed",
            r.dst.offset + e.written_prefix,
            e.written_prefix,
            e.completed
        )
        .unwrap();
    }
    if let Some(v) = &r.verify {
        match v.first_difference {
            None => {
                let how = match v.read_back {
                    ReadBack::InFlight => "each chunk read back from the destination as written".to_string(),
                    ReadBack::AfterCopy => format!("both ranges read back after the copy, {:.3} s", v.seconds),
                };
                writeln!(s, "verified: {} bytes identical ({how})", v.bytes_compared).unwrap();
            }
            Some(d) => {
                writeln!(
                    s,
                    "VERIFY FAILED: first difference at byte {d} of the range ({} offset {}, {} offset {}): the data did not arrive",
                    r.src.end.path,
                    r.src.offset + d,
                    r.dst.end.path,
                    r.dst.offset + d
                ).unwrap();
            }
        }
    }
    s
}
