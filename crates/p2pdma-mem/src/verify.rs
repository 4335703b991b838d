//! Proof by read-back: both ranges read again with direct I/O (from the devices, not from
//! any cache) into host memory and compared byte for byte. Reads overlap through io_uring
//! like the copy's (several chunks of both ranges in flight, each pair compared as it
//! lands), so a verify costs about one more read pass, not a synchronous crawl; where
//! io_uring is unavailable, one chunk at a time.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::{opcode, types, IoUring};
use rustix::io::Errno;

use crate::ring::{push, wait};
use crate::{DirectFile, HostBuffer, MemError};

/// The first offset (relative to the range starts) where `a` and `b` differ over
/// `length` bytes, read `chunk` bytes at a time with `depth` chunk pairs in flight (the
/// copy's depth: its read-back runs as deep as the copy); None when they are equal. `stop`
/// (a signal) ends it early with [`MemError::Interrupted`].
pub fn compare(
    a: (&DirectFile, u64),
    b: (&DirectFile, u64),
    length: u64,
    chunk: usize,
    depth: usize,
    stop: Option<&AtomicBool>,
) -> Result<Option<u64>, MemError> {
    let depth = depth.clamp(1, 1024);
    match IoUring::new((2 * depth).next_power_of_two() as u32) {
        Ok(mut ring) => compare_uring(&mut ring, [a, b], length, chunk, depth, stop),
        Err(_) => compare_sync(a, b, length, chunk, stop),
    }
}

fn stopped(stop: Option<&AtomicBool>) -> bool {
    stop.is_some_and(|s| s.load(Ordering::Relaxed))
}

fn compare_sync(
    a: (&DirectFile, u64),
    b: (&DirectFile, u64),
    length: u64,
    chunk: usize,
    stop: Option<&AtomicBool>,
) -> Result<Option<u64>, MemError> {
    let mut left = HostBuffer::new(chunk)?;
    let mut right = HostBuffer::new(chunk)?;
    let mut at = 0u64;
    while at < length {
        if stopped(stop) {
            return Err(MemError::Interrupted);
        }
        let len = (length - at).min(chunk as u64) as usize;
        let (l, r) = (&mut left.as_mut_slice()[..len], &mut right.as_mut_slice()[..len]);
        a.0.read_exact_at(l, a.1 + at)?;
        b.0.read_exact_at(r, b.1 + at)?;
        if let Some(i) = first_difference(l, r) {
            return Ok(Some(at + i as u64));
        }
        at += len as u64;
    }
    Ok(None)
}

/// Where `l` and `r` first differ. Equal slices are compared with `memcmp` (a byte loop cost
/// the lab's emulated CPU a second per 32 MiB); only a mismatch is searched byte by byte.
fn first_difference(l: &[u8], r: &[u8]) -> Option<usize> {
    if l == r {
        return None;
    }
    l.iter().zip(r.iter()).position(|(x, y)| x != y)
}

/// Compares one chunk (at offset `at` of the range) and keeps in `lowest` the lowest offset
/// where any chunk differed: chunks complete out of order.
pub(crate) fn note_difference(lowest: &mut Option<u64>, at: u64, l: &[u8], r: &[u8]) {
    if let Some(d) = first_difference(l, r) {
        let d = at + d as u64;
        *lowest = Some(lowest.map_or(d, |old| old.min(d)));
    }
}

/// One chunk of both ranges on its way: two host buffers, bytes read into each.
struct Pair {
    bufs: [HostBuffer; 2],
    at: u64,
    len: usize,
    done: [usize; 2],
    busy: bool,
}

fn compare_uring(
    ring: &mut IoUring,
    ends: [(&DirectFile, u64); 2],
    length: u64,
    chunk: usize,
    depth: usize,
    stop: Option<&AtomicBool>,
) -> Result<Option<u64>, MemError> {
    let mut run = CompareRun::new(length, chunk, depth)?;
    loop {
        // SAFETY: the buffers live in `run.pairs` until this function returns, and it does
        // not return while reads are in flight: the loop ends only when none is, and a
        // failed ring (below) leaves the pages the kernel still uses pinned.
        unsafe { run.submit_ready(ring, &ends) };
        if run.in_flight == 0 {
            break;
        }
        // A failed ring: nothing more is known of the reads in it (the kernel keeps the
        // pages it still uses pinned); reported.
        for (tag, result) in wait(ring)? {
            run.complete(tag, result, &ends, stop);
        }
    }
    if let Some((_, e)) = run.failure {
        return Err(e);
    }
    if run.difference.is_none() && run.interrupted && run.next < length {
        return Err(MemError::Interrupted);
    }
    Ok(run.difference)
}

/// One io_uring comparison's state: the chunk pairs, the reads ready to submit, and what
/// was found (the lowest difference, the lowest failed read, a stop).
struct CompareRun {
    pairs: Vec<Pair>,
    length: u64,
    chunk: usize,
    next: u64,
    // The lowest differing offset and the lowest failed read, as they are found.
    difference: Option<u64>,
    failure: Option<(u64, MemError)>,
    interrupted: bool,
    /// (pair, side) to submit.
    ready: VecDeque<(usize, usize)>,
    in_flight: usize,
}

impl CompareRun {
    fn new(length: u64, chunk: usize, depth: usize) -> Result<CompareRun, MemError> {
        let mut pairs = Vec::with_capacity(depth);
        for _ in 0..depth {
            pairs.push(Pair {
                bufs: [HostBuffer::new(chunk)?, HostBuffer::new(chunk)?],
                at: 0,
                len: 0,
                done: [0, 0],
                busy: false,
            });
        }
        let mut run = CompareRun {
            pairs,
            length,
            chunk,
            next: 0,
            difference: None,
            failure: None,
            interrupted: false,
            ready: VecDeque::new(),
            in_flight: 0,
        };
        for i in 0..depth {
            run.assign(i, u64::MAX);
        }
        Ok(run)
    }

    /// Gives pair `i` the next chunk below `limit` and queues both its reads.
    fn assign(&mut self, i: usize, limit: u64) {
        if self.next >= self.length || self.next >= limit {
            return;
        }
        let pair = &mut self.pairs[i];
        pair.at = self.next;
        pair.len = (self.length - self.next).min(self.chunk as u64) as usize;
        pair.done = [0, 0];
        pair.busy = true;
        self.next += pair.len as u64;
        self.ready.extend([(i, 0), (i, 1)]);
    }

    /// Submits every ready read.
    ///
    /// # Safety
    /// `self` (its buffers) must stay where it is and alive until every read queued here
    /// has completed.
    unsafe fn submit_ready(&mut self, ring: &mut IoUring, ends: &[(&DirectFile, u64); 2]) {
        while let Some((i, side)) = self.ready.pop_front() {
            let pair = &mut self.pairs[i];
            let (file, base) = ends[side];
            let done = pair.done[side];
            // SAFETY: `done < len <= chunk`, the buffer's size: the address is inside it.
            let addr = unsafe { pair.bufs[side].as_mut_slice().as_mut_ptr().add(done) };
            let sqe = opcode::Read::new(types::Fd(file.fd().as_raw_fd()), addr, (pair.len - done) as u32)
                .offset(base + pair.at + done as u64)
                .build()
                .user_data((i * 2 + side) as u64);
            // SAFETY: the buffers outlive the read (this function's own promise, from
            // compare_uring); the queue holds 2 * depth entries, one per (pair, side), each
            // with at most one request at a time.
            unsafe { push(ring, &sqe) };
            self.in_flight += 1;
        }
    }

    /// One completed read (`tag`: pair and side): a retry, a failure, the rest of a short
    /// read, or, once both sides are in, the comparison and the pair's next chunk.
    fn complete(&mut self, tag: usize, result: i32, ends: &[(&DirectFile, u64); 2], stop: Option<&AtomicBool>) {
        self.in_flight -= 1;
        let (i, side) = (tag / 2, tag % 2);
        let pair = &mut self.pairs[i];
        if result == -Errno::INTR.raw_os_error() || result == -Errno::AGAIN.raw_os_error() {
            self.ready.push_back((i, side));
            return;
        }
        if result <= 0 {
            let errno = if result == 0 { Errno::NXIO } else { Errno::from_raw_os_error(-result) };
            let (file, base) = ends[side];
            let at = pair.at + pair.done[side] as u64;
            if self.failure.as_ref().is_none_or(|(f, _)| at < *f) {
                self.failure = Some((at, file.error("read", base + at, errno)));
            }
            pair.done[side] = pair.len; // nothing more is read into it
        } else {
            pair.done[side] += result as usize;
            if pair.done[side] < pair.len {
                self.ready.push_back((i, side)); // a short read: the rest
                return;
            }
        }
        if pair.done != [pair.len, pair.len] || !pair.busy {
            return; // the other side is still reading
        }
        pair.busy = false;
        if self.failure.is_none() {
            let (l, r) = (&pair.bufs[0].as_slice()[..pair.len], &pair.bufs[1].as_slice()[..pair.len]);
            note_difference(&mut self.difference, pair.at, l, r);
        }
        self.interrupted |= stopped(stop);
        // No more chunks past a difference or an error: only the ones below can matter.
        let limit = if self.failure.is_some() || self.interrupted { 0 } else { self.difference.unwrap_or(u64::MAX) };
        self.assign(i, limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Access;

    #[test]
    fn finds_the_first_difference() {
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
        let data: Vec<u8> = (0..65536u32).map(|i| i as u8).collect();
        std::fs::write(&pa, &data).unwrap();
        let mut other = data.clone();
        other[40000] ^= 1;
        other[60000] ^= 1;
        std::fs::write(&pb, &other).unwrap();
        let (a, b) = (DirectFile::open(&pa, Access::Read).unwrap(), DirectFile::open(&pb, Access::Read).unwrap());
        for sync in [false, true] {
            let cmp = |x, y, len, chunk| {
                if sync {
                    compare_sync(x, y, len, chunk, None)
                } else {
                    compare(x, y, len, chunk, 4, None)
                }
            };
            assert_eq!(cmp((&a, 0), (&b, 0), 65536, 8192).unwrap(), Some(40000));
            assert_eq!(cmp((&a, 0), (&b, 0), 65536, 4096).unwrap(), Some(40000));
            assert_eq!(cmp((&a, 0), (&b, 0), 36864, 8192).unwrap(), None);
            assert_eq!(cmp((&a, 4096), (&b, 4096), 61440, 4096).unwrap(), Some(40000 - 4096));
            let e = cmp((&a, 0), (&a, 0), 131072, 8192).unwrap_err();
            assert!(e.to_string().contains("read failed at offset 65536"), "{e}");
        }
        let stop = AtomicBool::new(true);
        assert!(matches!(compare((&a, 0), (&b, 0), 65536, 4096, 4, Some(&stop)), Err(MemError::Interrupted)));
    }
}
