//! The copy engine: moves a range chunk by chunk through a set of buffers, each buffer one
//! chunk in flight: read from the source into it, then write from it to the destination,
//! then the next chunk. With io_uring every buffer is in flight at once, so reads and writes
//! of different chunks overlap; the synchronous engine (the `dd` baseline, and the fallback
//! where io_uring is disabled) uses one buffer at a time.
//!
//! With a read-back ([`IoEngine::run_read_back`], host-memory buffers only), each chunk is
//! read again from the destination once written, into a second buffer, and compared with the
//! one it was written from before the buffer takes the next chunk: `copy --verify` then costs
//! one more read of the destination, in flight with the copy.
//!
//! The CPU never touches the buffers (but for that comparison, in host memory): only the
//! devices do, by DMA. That is what makes P2P
//! memory safe to use here even if its provider disappears (the I/O fails with EFAULT
//! instead of the process dying of SIGBUS).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};
use p2pdma_core::fio::LatencyHistogram;
use rustix::io::Errno;

use crate::ring::{push, wait};
use crate::verify::note_difference;
use crate::{DirectFile, HostBuffer, IoBuffer, IoCause, MemError};

/// One transfer: `length` bytes from `src` (at its offset) to `dst` (at its offset). Without
/// `dst` chunks are only read (a read benchmark); without `src`, buffers are written as they
/// are (a write benchmark).
pub struct Job<'a> {
    pub src: Option<(&'a DirectFile, u64)>,
    pub dst: Option<(&'a DirectFile, u64)>,
    pub length: u64,
    /// Bytes per I/O; the last chunk may be shorter. Must not exceed a buffer.
    pub chunk: usize,
    /// Keep every I/O's latency (for percentiles).
    pub record_latency: bool,
    /// At most this many reads in flight at once (0: as many as there are buffers); the
    /// other buffers are being written out meanwhile. Reads are released in offset order.
    pub max_reads: usize,
    /// Set (by a signal handler) to stop: no new chunk is started, the chunks under way
    /// finish, and the run ends with [`MemError::Interrupted`] and the written prefix.
    pub stop: Option<&'a AtomicBool>,
    /// A time limit (bench's `--runtime`): no new chunk is started after it, the chunks
    /// under way finish, and the run ends normally with the bytes done so far.
    pub deadline: Option<Instant>,
}

/// What a finished transfer measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub bytes: u64,
    pub elapsed: Duration,
    /// Per completed read and write (submission to completion), when recorded: fio's
    /// histogram, so a long run costs no memory per I/O.
    pub read_latency: LatencyHistogram,
    pub write_latency: LatencyHistogram,
    /// With a read-back: the lowest offset (relative to the range start) where the
    /// destination read back differs from what was written; None when every chunk matched.
    pub first_difference: Option<u64>,
}

/// A transfer that stopped: the first error, and how far it got.
#[derive(Debug)]
pub struct Failure {
    pub error: MemError,
    /// Bytes of whole chunks that completed (read and, when copying, written).
    pub completed: u64,
    /// Every byte of the destination range before this offset (relative to the range start)
    /// was written; chunks after it may or may not have been.
    pub written_prefix: u64,
    pub elapsed: Duration,
}

/// How I/O is issued (the verdict's `p2pdma_core::Engine` is another thing: this one moves data).
pub enum IoEngine {
    Uring(Box<IoUring>),
    Sync,
}

impl IoEngine {
    /// An io_uring with room for `depth` requests; fails (e.g. EPERM when the
    /// `kernel.io_uring_disabled` sysctl forbids it) so the caller can choose [`IoEngine::Sync`].
    pub fn uring(depth: usize) -> Result<IoEngine, MemError> {
        let entries = depth.clamp(1, 4096).next_power_of_two() as u32;
        IoUring::new(entries).map(|r| IoEngine::Uring(Box::new(r))).map_err(|e| MemError::Uring {
            cause: IoCause(Errno::from_raw_os_error(e.raw_os_error().unwrap_or(libc_eio()))),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            IoEngine::Uring(_) => "io_uring",
            IoEngine::Sync => "sync",
        }
    }

    /// Runs `job` through `buffers` (each at least `job.chunk` bytes; io_uring keeps one
    /// chunk in flight per buffer, sync uses the first). `progress` hears the bytes done.
    pub fn run(
        &mut self,
        job: &Job<'_>,
        buffers: &mut [IoBuffer],
        progress: &mut dyn FnMut(u64),
    ) -> Result<Stats, Failure> {
        assert!(job.src.is_some() || job.dst.is_some(), "a job reads, writes or both");
        assert!(!buffers.is_empty() && buffers.iter().all(|b| b.len() >= job.chunk), "buffers hold a chunk");
        match self {
            IoEngine::Uring(ring) => run_uring(ring, job, buffers, &mut [], progress),
            IoEngine::Sync => run_sync(job, &mut buffers[0], None, progress),
        }
    }

    /// Runs a copy `job` like [`IoEngine::run`], and reads every chunk back from the
    /// destination into `check` (one per buffer) once written, comparing it with the host
    /// buffer it came from; [`Stats::first_difference`] says where they differ.
    pub fn run_read_back(
        &mut self,
        job: &Job<'_>,
        buffers: &mut [IoBuffer],
        check: &mut [HostBuffer],
        progress: &mut dyn FnMut(u64),
    ) -> Result<Stats, Failure> {
        assert!(job.src.is_some() && job.dst.is_some(), "a read-back belongs to a copy");
        assert!(buffers.iter().all(|b| !b.is_p2p()), "only host memory is compared by the CPU");
        assert!(
            check.len() >= buffers.len() && check.iter().all(|c| c.as_slice().len() >= job.chunk),
            "a check per buffer"
        );
        match self {
            IoEngine::Uring(ring) => run_uring(ring, job, buffers, check, progress),
            IoEngine::Sync => run_sync(job, &mut buffers[0], check.first_mut(), progress),
        }
    }
}

fn libc_eio() -> i32 {
    Errno::IO.raw_os_error()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Read,
    Write,
    /// The written chunk read again from the destination, into the slot's check buffer.
    ReadBack,
}

/// A chunk on its way through one buffer.
struct Chunk {
    /// Offset within the job's range.
    at: u64,
    len: usize,
    phase: Phase,
    /// Bytes of the current phase done (short transfers are resubmitted for the rest).
    done: usize,
    issued: Instant,
}

impl Job<'_> {
    fn interrupted(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }

    fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn stopping(&self) -> bool {
        self.interrupted() || self.out_of_time()
    }

    /// How a run that was not stopped by an error ends: complete (the whole range, or as
    /// much as its time allowed), or interrupted early.
    fn finish(&self, mut stats: Stats, done: u64, start: Instant) -> Result<Stats, Failure> {
        if done < self.length && (self.interrupted() || !self.out_of_time()) {
            return Err(Failure {
                error: MemError::Interrupted,
                completed: done,
                written_prefix: done,
                elapsed: start.elapsed(),
            });
        }
        stats.bytes = done;
        stats.elapsed = start.elapsed();
        Ok(stats)
    }

    fn first_phase(&self) -> Phase {
        if self.src.is_some() {
            Phase::Read
        } else {
            Phase::Write
        }
    }

    fn end(&self, phase: Phase) -> (&DirectFile, u64) {
        let end = match phase {
            Phase::Read => self.src,
            Phase::Write | Phase::ReadBack => self.dst,
        };
        end.expect("a phase runs only for an end the job has")
    }

    /// The phase after `phase`, if the chunk has one.
    fn next_phase(&self, phase: Phase, read_back: bool) -> Option<Phase> {
        match phase {
            Phase::Read => self.dst.is_some().then_some(Phase::Write),
            Phase::Write => read_back.then_some(Phase::ReadBack),
            Phase::ReadBack => None,
        }
    }

    /// The error for a failed step, naming the device and its own offset.
    fn error(&self, chunk: &Chunk, errno: Errno) -> MemError {
        let (file, base) = self.end(chunk.phase);
        let op = match chunk.phase {
            Phase::Read => "read",
            Phase::Write => "write",
            Phase::ReadBack => "read back",
        };
        file.error(op, base + chunk.at + chunk.done as u64, errno)
    }
}

fn record(stats: &mut Stats, job: &Job<'_>, chunk: &Chunk) {
    if job.record_latency {
        let lat = chunk.issued.elapsed();
        match chunk.phase {
            Phase::Read => stats.read_latency.record_duration(lat),
            Phase::Write => stats.write_latency.record_duration(lat),
            Phase::ReadBack => {}
        }
    }
}

fn run_uring(
    ring: &mut IoUring,
    job: &Job<'_>,
    buffers: &mut [IoBuffer],
    check: &mut [HostBuffer],
    progress: &mut dyn FnMut(u64),
) -> Result<Stats, Failure> {
    let start = Instant::now();
    let mut run = UringRun::new(job, buffers, check);
    loop {
        run.admit_reads(job);
        // SAFETY: the buffers behind `run`'s pointers are `buffers` and `check`, borrowed
        // mutably for this whole call, and this function does not return while requests
        // are in flight: the loop only ends when `in_flight` is 0, and a failed ring ends
        // it with the kernel keeping the pages it still uses pinned.
        unsafe { run.submit_ready(ring, job) };
        if run.in_flight == 0 {
            break;
        }
        let done = match wait(ring) {
            Ok(done) => done,
            // The ring itself failed: nothing more can be learnt of the requests in it, so
            // wait for nothing and report (buffers stay alive until we return, and the kernel
            // keeps pages it still uses pinned).
            Err(error) => return Err(run.failed(error, start)),
        };
        for (i, result) in done {
            run.complete(job, buffers, check, i, result, progress);
        }
    }
    match run.failure.take() {
        Some((_, error)) => Err(run.failed(error, start)),
        None => job.finish(run.stats, run.completed, start),
    }
}

/// One io_uring run's state: a chunk per slot (buffer), the steps ready to issue, the
/// reads admitted so far (`max_reads`), what completed, and the lowest failure.
struct UringRun {
    stats: Stats,
    slots: Vec<Option<Chunk>>,
    /// Each slot's buffer and check buffer, for the kernel (never read as slices here
    /// while a request on them is in flight).
    ptrs: Vec<*mut u8>,
    check_ptrs: Vec<*mut u8>,
    read_back: bool,
    /// The offset of the next chunk to hand out.
    next: u64,
    completed: u64,
    /// The failed chunk with the lowest offset, and its error.
    failure: Option<(u64, MemError)>,
    ready: VecDeque<usize>,
    in_flight: usize,
    /// New chunks wait here for a read slot when reads are limited (`max_reads`).
    waiting: VecDeque<usize>,
    reading: usize,
    limited: bool,
}

impl UringRun {
    fn new(job: &Job<'_>, buffers: &mut [IoBuffer], check: &mut [HostBuffer]) -> UringRun {
        let mut run = UringRun {
            stats: Stats::default(),
            slots: buffers.iter().map(|_| None).collect(),
            ptrs: buffers.iter_mut().map(|b| b.as_mut_ptr()).collect(),
            check_ptrs: check.iter_mut().map(|c| c.as_mut_slice().as_mut_ptr()).collect(),
            read_back: !check.is_empty(),
            next: 0,
            completed: 0,
            failure: None,
            ready: VecDeque::new(),
            in_flight: 0,
            waiting: VecDeque::new(),
            reading: 0,
            limited: job.max_reads > 0 && job.first_phase() == Phase::Read,
        };
        for i in 0..run.slots.len() {
            run.assign(job, i);
        }
        run
    }

    /// Hands out the next chunk to free slot `i` and queues its first step.
    fn assign(&mut self, job: &Job<'_>, i: usize) {
        if self.next >= job.length || job.stopping() {
            return;
        }
        let len = (job.length - self.next).min(job.chunk as u64) as usize;
        self.slots[i] = Some(Chunk { at: self.next, len, phase: job.first_phase(), done: 0, issued: Instant::now() });
        self.next += len as u64;
        if self.limited {
            self.waiting.push_back(i)
        } else {
            self.ready.push_back(i)
        }
    }

    /// With reads limited, lets waiting chunks read while there is room, in offset order
    /// (none above a failure).
    fn admit_reads(&mut self, job: &Job<'_>) {
        while self.limited && self.reading < job.max_reads {
            let Some(i) = self.waiting.pop_front() else { break };
            let at = self.slots[i].as_ref().map_or(u64::MAX, |c| c.at);
            if self.failure.as_ref().is_none_or(|(f, _)| at < *f) {
                self.reading += 1;
                self.ready.push_back(i);
            }
        }
    }

    /// Queues every slot that has a step to issue.
    ///
    /// # Safety
    /// The buffers behind `ptrs` and `check_ptrs` must stay valid, and untouched by anyone
    /// else, until every request queued here has completed.
    unsafe fn submit_ready(&mut self, ring: &mut IoUring, job: &Job<'_>) {
        while let Some(i) = self.ready.pop_front() {
            let chunk = self.slots[i].as_mut().expect("ready slots hold a chunk");
            let (file, base) = job.end(chunk.phase);
            let fd = types::Fd(std::os::fd::AsRawFd::as_raw_fd(&file.fd()));
            let buffer = if chunk.phase == Phase::ReadBack { self.check_ptrs[i] } else { self.ptrs[i] };
            // SAFETY: `buffer` points into `buffers[i]` or `check[i]`, each holding at least
            // `job.chunk` bytes, and `done < len <= chunk`, so the range is inside it.
            let addr = unsafe { buffer.add(chunk.done) };
            let len = (chunk.len - chunk.done) as u32;
            let offset = base + chunk.at + chunk.done as u64;
            let sqe = match chunk.phase {
                Phase::Read | Phase::ReadBack => opcode::Read::new(fd, addr, len).offset(offset).build(),
                Phase::Write => opcode::Write::new(fd, addr.cast_const(), len).offset(offset).build(),
            }
            .user_data(i as u64);
            // SAFETY: the buffer outlives the request (this function's own promise, from
            // run_uring: it waits for every completion before it returns, and holds the
            // buffers mutably borrowed, so nothing else touches them; the comparison in
            // `complete` reads them only between requests). The submission queue has room:
            // it holds at least one entry per slot and each slot has at most one request
            // queued or in flight.
            unsafe { push(ring, &sqe) };
            self.in_flight += 1;
        }
    }

    /// One completion (slot `i`, the kernel's result): a retry, a failure, the rest of a
    /// short transfer, the chunk's next step, or the chunk done and the slot given the next.
    fn complete(
        &mut self,
        job: &Job<'_>,
        buffers: &[IoBuffer],
        check: &[HostBuffer],
        i: usize,
        result: i32,
        progress: &mut dyn FnMut(u64),
    ) {
        self.in_flight -= 1;
        let chunk = self.slots[i].as_mut().expect("completions belong to a slot with a chunk");
        // After an error, chunks below it still finish (so the destination is whole up to
        // the error); the ones above it stop.
        let go_on = self.failure.as_ref().is_none_or(|(at, _)| chunk.at < *at);
        if result == -Errno::INTR.raw_os_error() || result == -Errno::AGAIN.raw_os_error() {
            if go_on {
                self.ready.push_back(i);
            }
            return;
        }
        if result <= 0 {
            // 0 bytes: the end of the source, or no room left at the destination.
            let errno = match (result, chunk.phase) {
                (0, Phase::Read | Phase::ReadBack) => Errno::NXIO,
                (0, Phase::Write) => Errno::NOSPC,
                (r, _) => Errno::from_raw_os_error(-r),
            };
            // Report the lowest failing offset: it is where the destination stops being whole.
            if self.failure.as_ref().is_none_or(|(at, _)| chunk.at < *at) {
                self.failure = Some((chunk.at, job.error(chunk, errno)));
            }
            if self.limited && chunk.phase == Phase::Read {
                self.reading -= 1;
            }
            return; // the slot keeps its chunk: it was not done
        }
        chunk.done += result as usize;
        if chunk.done < chunk.len {
            if go_on {
                self.ready.push_back(i); // a short transfer: issue the rest
            }
            return;
        }
        record(&mut self.stats, job, chunk);
        if self.limited && chunk.phase == Phase::Read {
            self.reading -= 1;
        }
        if chunk.phase == Phase::ReadBack {
            let IoBuffer::Host(written) = &buffers[i] else { unreachable!("read-backs use host buffers") };
            let (written, read) = (&written.as_slice()[..chunk.len], &check[i].as_slice()[..chunk.len]);
            note_difference(&mut self.stats.first_difference, chunk.at, written, read);
        }
        if let Some(phase) = job.next_phase(chunk.phase, self.read_back) {
            chunk.phase = phase;
            chunk.done = 0;
            chunk.issued = Instant::now();
            if go_on {
                self.ready.push_back(i);
            }
            return;
        }
        self.completed += chunk.len as u64;
        progress(self.completed);
        self.slots[i] = None;
        if self.failure.is_none() {
            self.assign(job, i);
        }
    }

    /// The run ended by `error`: what completed and the written prefix.
    fn failed(&self, error: MemError, start: Instant) -> Failure {
        Failure {
            error,
            completed: self.completed,
            written_prefix: prefix(&self.slots, self.next),
            elapsed: start.elapsed(),
        }
    }
}

/// The offset below which every chunk completed: the lowest chunk still held by a slot.
fn prefix(slots: &[Option<Chunk>], next: u64) -> u64 {
    slots.iter().flatten().map(|c| c.at).min().unwrap_or(next)
}

fn run_sync(
    job: &Job<'_>,
    buffer: &mut IoBuffer,
    mut check: Option<&mut HostBuffer>,
    progress: &mut dyn FnMut(u64),
) -> Result<Stats, Failure> {
    let start = Instant::now();
    let mut stats = Stats::default();
    let mut at = 0u64;
    while at < job.length && !job.stopping() {
        let len = (job.length - at).min(job.chunk as u64) as usize;
        let fail = |error| Failure { error, completed: at, written_prefix: at, elapsed: start.elapsed() };
        if let Some((file, base)) = job.src {
            let t = Instant::now();
            file.read_exact_into(buffer, len, base + at).map_err(fail)?;
            if job.record_latency {
                stats.read_latency.record_duration(t.elapsed());
            }
        }
        if let Some((file, base)) = job.dst {
            let t = Instant::now();
            file.write_all_from(buffer, len, base + at).map_err(fail)?;
            if job.record_latency {
                stats.write_latency.record_duration(t.elapsed());
            }
            if let (Some(check), IoBuffer::Host(written)) = (check.as_deref_mut(), &*buffer) {
                let read = &mut check.as_mut_slice()[..len];
                file.read_exact_at(read, base + at).map_err(fail)?;
                note_difference(&mut stats.first_difference, at, &written.as_slice()[..len], read);
            }
        }
        at += len as u64;
        progress(at);
    }
    job.finish(stats, at, start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Access, HostBuffer};
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        f
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// Sync and io_uring; io_uring left out only where the kernel has none (crate::testing).
    fn engines() -> Vec<IoEngine> {
        crate::testing::engines(4)
    }

    /// A source file holding `data`, a zeroed destination of `dst_len` bytes, both opened.
    fn source_and_destination(
        data: &[u8],
        dst_len: usize,
    ) -> (tempfile::NamedTempFile, tempfile::NamedTempFile, DirectFile, DirectFile) {
        let (src, dst) = (file_with(data), file_with(&vec![0u8; dst_len]));
        let s = DirectFile::open(src.path(), Access::Read).unwrap();
        let d = DirectFile::open(dst.path(), Access::Write { exclusive: false, create: false }).unwrap();
        (src, dst, s, d)
    }

    /// A job of `length` bytes in `chunk`s with no ends yet and nothing else asked.
    fn copy_job(length: u64, chunk: usize) -> Job<'static> {
        Job { src: None, dst: None, length, chunk, record_latency: false, max_reads: 0, stop: None, deadline: None }
    }

    fn host_buffers(n: usize, size: usize) -> Vec<IoBuffer> {
        (0..n).map(|_| IoBuffer::Host(HostBuffer::new(size).unwrap())).collect()
    }

    #[test]
    fn reads_back_every_chunk_with_both_engines() {
        let data = pattern(1 << 20);
        for mut engine in engines() {
            let (_src, dst, s, d) = source_and_destination(&data, 1 << 20);
            let len = 37 * 4096u64;
            let job = Job { src: Some((&s, 4096)), dst: Some((&d, 8192)), ..copy_job(len, 16384) };
            let mut checks: Vec<HostBuffer> = (0..4).map(|_| HostBuffer::new(16384).unwrap()).collect();
            let stats = engine.run_read_back(&job, &mut host_buffers(4, 16384), &mut checks, &mut |_| {}).unwrap();
            assert_eq!((stats.bytes, stats.first_difference), (len, None), "{}", engine.name());
            let out = std::fs::read(dst.path()).unwrap();
            assert_eq!(&out[8192..8192 + len as usize], &data[4096..4096 + len as usize], "{}", engine.name());
            // What was read back is the destination's last chunk (37 blocks = 9 chunks and 1 block).
            let last = checks.iter().any(|c| c.as_slice()[..4096] == data[4096 + 36 * 4096..4096 + 37 * 4096]);
            assert!(last, "{}: the read-back landed in the check buffers", engine.name());
        }
    }

    #[test]
    fn copies_ranges_exactly_with_both_engines() {
        let data = pattern(1 << 20);
        for mut engine in engines() {
            let (_src, dst, s, d) = source_and_destination(&data, 2 << 20);
            // An odd number of 4 KiB blocks, from one offset to another, chunks that don't divide it.
            let len = 37 * 4096u64;
            for max_reads in [0, 1, 3] {
                let job = Job {
                    src: Some((&s, 8192)),
                    dst: Some((&d, 12288)),
                    length: len,
                    chunk: 16384,
                    record_latency: true,
                    max_reads,
                    stop: None,
                    deadline: None,
                };
                let mut seen = Vec::new();
                let stats = engine.run(&job, &mut host_buffers(4, 16384), &mut |b| seen.push(b)).unwrap();
                assert_eq!(stats.bytes, len);
                assert_eq!(stats.read_latency.count(), 10, "{}", engine.name());
                assert_eq!(*seen.last().unwrap(), len);
                let out = std::fs::read(dst.path()).unwrap();
                assert_eq!(&out[12288..12288 + len as usize], &data[8192..8192 + len as usize], "{}", engine.name());
                assert!(out[..12288].iter().all(|&b| b == 0), "nothing written before the range");
                assert!(out[12288 + len as usize..].iter().all(|&b| b == 0), "nothing written after the range");
            }
        }
    }

    #[test]
    fn reading_past_the_end_is_an_error_naming_file_and_offset() {
        let data = pattern(64 * 1024);
        for mut engine in engines() {
            let src = file_with(&data);
            let dst = file_with(&vec![0u8; 1 << 20]);
            let s = DirectFile::open(src.path(), Access::Read).unwrap();
            let d = DirectFile::open(dst.path(), Access::Write { exclusive: false, create: false }).unwrap();
            let job = Job {
                src: Some((&s, 0)),
                dst: Some((&d, 0)),
                length: 128 * 1024,
                chunk: 8192,
                record_latency: false,
                max_reads: 0,
                stop: None,
                deadline: None,
            };
            let f = engine.run(&job, &mut host_buffers(4, 8192), &mut |_| {}).unwrap_err();
            let msg = f.error.to_string();
            assert!(msg.starts_with(&format!("{}: read failed at offset 65536", src.path().display())), "{msg}");
            assert_eq!(f.written_prefix, 65536, "{}", engine.name());
            assert_eq!(f.completed, 65536);
        }
    }

    #[test]
    fn a_stop_ends_the_run_after_the_chunks_under_way_with_a_whole_prefix() {
        let data = pattern(1 << 20);
        for mut engine in engines() {
            let src = file_with(&data);
            let dst = file_with(&vec![0u8; 1 << 20]);
            let s = DirectFile::open(src.path(), Access::Read).unwrap();
            let d = DirectFile::open(dst.path(), Access::Write { exclusive: false, create: false }).unwrap();
            let stop = AtomicBool::new(false);
            let job = Job {
                src: Some((&s, 0)),
                dst: Some((&d, 0)),
                length: 1 << 20,
                chunk: 8192,
                record_latency: false,
                max_reads: 1,
                stop: Some(&stop),
                deadline: None,
            };
            // Stop once 64 KiB are done.
            let f = engine
                .run(&job, &mut host_buffers(4, 8192), &mut |done| {
                    if done >= 65536 {
                        stop.store(true, Ordering::Relaxed)
                    }
                })
                .unwrap_err();
            assert!(matches!(f.error, MemError::Interrupted), "{}", f.error);
            assert!(f.written_prefix >= 65536 && f.written_prefix < 1 << 20, "{}", f.written_prefix);
            assert_eq!(f.completed, f.written_prefix);
            let out = std::fs::read(dst.path()).unwrap();
            let n = f.written_prefix as usize;
            assert_eq!(&out[..n], &data[..n], "{}", engine.name());
        }
    }

    #[test]
    fn a_deadline_ends_the_run_normally_with_what_was_done() {
        let data = pattern(1 << 20);
        for mut engine in engines() {
            let src = file_with(&data);
            let s = DirectFile::open(src.path(), Access::Read).unwrap();
            let job = Job {
                src: Some((&s, 0)),
                dst: None,
                length: 1 << 20,
                chunk: 8192,
                record_latency: true,
                max_reads: 0,
                stop: None,
                deadline: Some(Instant::now()),
            };
            let stats = engine.run(&job, &mut host_buffers(4, 8192), &mut |_| {}).unwrap();
            assert_eq!((stats.bytes, stats.read_latency.count()), (0, 0), "{}", engine.name());
            let job = Job { deadline: Some(Instant::now() + Duration::from_secs(60)), ..job };
            let stats = engine.run(&job, &mut host_buffers(4, 8192), &mut |_| {}).unwrap();
            assert_eq!((stats.bytes, stats.read_latency.count()), (1 << 20, 128), "{}", engine.name());
        }
    }
}
