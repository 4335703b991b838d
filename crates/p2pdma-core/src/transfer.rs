//! The rules a copy must pass before its first byte: ranges inside both ends, alignment to
//! each end's logical block size, no overlap on one device, a chunk the buffers can hold.
//! Pure: the OS layer measures the ends ([`End`]) and this module judges them.

use serde::Serialize;

pub use crate::error::RangeError;

/// What the OS layer measured about one end of a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct End {
    /// As given on the command line (or resolved to).
    pub path: String,
    pub kind: EndKind,
    /// Bytes readable (block device size, or file length).
    pub size: u64,
    /// The offset and length alignment direct I/O needs (the logical block size).
    pub block_size: u32,
    /// Where the bytes physically live, to spot two ends sharing them: the whole disk
    /// (`major:minor`) and the byte offset of this end on it (a partition's start), or the
    /// file's `device:inode` and 0.
    pub extent_owner: String,
    pub extent_base: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndKind {
    BlockDevice,
    File,
}

/// The range a copy covers, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ranges {
    pub src_offset: u64,
    pub dst_offset: u64,
    pub length: u64,
}

/// Checks a copy of `length` bytes (default: the rest of `src`) from `src_offset` to
/// `dst_offset`. A regular-file destination may grow; every other end must hold the range.
pub fn plan_ranges(
    src: &End,
    dst: &End,
    src_offset: u64,
    dst_offset: u64,
    length: Option<u64>,
) -> Result<Ranges, crate::Error> {
    let length = plan_read(src, src_offset, length)?;
    match dst.kind {
        EndKind::BlockDevice => fits(dst, dst_offset, length)?,
        // A file grows from its end, never with a hole before the range, and only as far as
        // a file offset goes (a signed 64-bit number).
        EndKind::File if dst_offset > dst.size => {
            return Err(RangeError::GapInFile { path: dst.path.clone(), offset: dst_offset, size: dst.size }.into())
        }
        EndKind::File => fits(&End { size: i64::MAX as u64, ..dst.clone() }, dst_offset, length)?,
    }
    aligned(dst, "--dst-offset", dst_offset)?;
    aligned(dst, "length", length)?;
    if src.extent_owner == dst.extent_owner {
        let (s0, d0) = (src.extent_base + src_offset, dst.extent_base + dst_offset);
        if s0 < d0 + length && d0 < s0 + length {
            return Err(RangeError::Overlap {
                src: src.path.clone(),
                dst: dst.path.clone(),
                src_start: src_offset,
                src_end: src_offset + length,
                dst_start: dst_offset,
                dst_end: dst_offset + length,
            }
            .into());
        }
    }
    Ok(Ranges { src_offset, dst_offset, length })
}

/// Checks a read of `length` bytes (default: the rest) at `offset` of `src`; the length.
pub fn plan_read(src: &End, offset: u64, length: Option<u64>) -> Result<u64, crate::Error> {
    if offset > src.size {
        return Err(RangeError::OffsetPastEnd { path: src.path.clone(), offset, size: src.size }.into());
    }
    let length = length.unwrap_or(src.size - offset);
    if length == 0 {
        return Err(RangeError::Empty.into());
    }
    fits(src, offset, length)?;
    aligned(src, "--src-offset", offset)?;
    aligned(src, "length", length)?;
    Ok(length)
}

fn aligned(end: &End, what: &'static str, value: u64) -> Result<(), RangeError> {
    if value.is_multiple_of(u64::from(end.block_size.max(1))) {
        Ok(())
    } else {
        Err(RangeError::Unaligned { path: end.path.clone(), what, value, block_size: end.block_size })
    }
}

fn fits(end: &End, offset: u64, length: u64) -> Result<(), RangeError> {
    match offset.checked_add(length) {
        Some(stop) if stop <= end.size => Ok(()),
        _ => Err(RangeError::PastEnd { path: end.path.clone(), offset, length, size: end.size }),
    }
}

/// What every chunk must be a multiple of: buffers are whole pages, I/Os whole blocks.
pub fn chunk_multiple(page: usize, ends: &[&End]) -> usize {
    ends.iter().map(|e| e.block_size as usize).fold(page, lcm)
}

/// Checks a chunk size against [`chunk_multiple`] and returns the chunk to use: no larger
/// than the copy needs.
pub fn check_chunk(chunk: usize, page: usize, ends: &[&End], length: u64) -> Result<usize, crate::Error> {
    let multiple = chunk_multiple(page, ends);
    if chunk == 0 || !chunk.is_multiple_of(multiple) {
        return Err(RangeError::BadChunk { chunk, multiple }.into());
    }
    let needed = length.div_ceil(multiple as u64).saturating_mul(multiple as u64);
    Ok(usize::try_from(needed).map_or(chunk, |n| chunk.min(n)))
}

fn lcm(a: usize, b: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    if a == 0 || b == 0 {
        a.max(b)
    } else {
        a / gcd(a, b) * b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(path: &str, size: u64, bs: u32, owner: &str, base: u64) -> End {
        End {
            path: path.into(),
            kind: EndKind::BlockDevice,
            size,
            block_size: bs,
            extent_owner: owner.into(),
            extent_base: base,
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn whole_device_by_default() {
        let (a, b) = (disk("/dev/a", 64 * MIB, 512, "259:0", 0), disk("/dev/b", 64 * MIB, 512, "259:1", 0));
        assert_eq!(plan_ranges(&a, &b, 0, 0, None).unwrap().length, 64 * MIB);
        assert_eq!(plan_ranges(&a, &b, MIB, 0, None).unwrap().length, 63 * MIB);
    }

    #[test]
    fn refuses_ranges_past_either_end() {
        let (a, b) = (disk("/dev/a", 64 * MIB, 512, "259:0", 0), disk("/dev/b", 32 * MIB, 512, "259:1", 0));
        let e = plan_ranges(&a, &b, 0, 0, None).unwrap_err();
        assert!(matches!(e, crate::Error::Range(RangeError::PastEnd { ref path, .. }) if path == "/dev/b"), "{e}");
        assert!(plan_ranges(&a, &b, 65 * MIB, 0, Some(512)).is_err());
        assert!(plan_ranges(&a, &b, 0, u64::MAX - 100, Some(4096)).is_err());
        // A file destination grows from its end, without a hole, up to what a file offset holds.
        let mut f = b.clone();
        f.kind = EndKind::File;
        assert!(plan_ranges(&a, &f, 0, 0, None).is_ok());
        assert!(plan_ranges(&a, &f, 0, 32 * MIB, None).is_ok());
        let e = plan_ranges(&a, &f, 0, 32 * MIB + 512, None).unwrap_err();
        assert!(matches!(e, crate::Error::Range(RangeError::GapInFile { .. })), "{e}");
        f.size = u64::MAX - 512;
        assert!(matches!(
            plan_ranges(&a, &f, 0, u64::MAX - 1023, Some(4096)),
            Err(crate::Error::Range(RangeError::PastEnd { .. }))
        ));
    }

    #[test]
    fn alignment_is_per_device() {
        let (a, b) = (disk("/dev/a", 64 * MIB, 512, "259:0", 0), disk("/dev/b", 64 * MIB, 4096, "259:1", 0));
        assert!(plan_ranges(&a, &b, 512, 0, Some(4096)).is_ok());
        let e = plan_ranges(&a, &b, 0, 512, Some(4096)).unwrap_err();
        assert!(
            e.to_string().contains("/dev/b: --dst-offset 512 is not a multiple of its logical block size (4096)"),
            "{e}"
        );
        let e = plan_ranges(&a, &b, 0, 0, Some(1536)).unwrap_err();
        assert!(e.to_string().contains("/dev/b: length 1536"), "{e}");
        assert!(matches!(plan_ranges(&a, &b, 0, 0, Some(0)), Err(crate::Error::Range(RangeError::Empty))));
    }

    #[test]
    fn overlap_on_shared_storage_is_refused() {
        let a = disk("/dev/a", 64 * MIB, 512, "259:0", 0);
        assert!(plan_ranges(&a, &a, 0, 32 * MIB, Some(32 * MIB)).is_ok());
        assert!(matches!(
            plan_ranges(&a, &a, 0, MIB, Some(2 * MIB)),
            Err(crate::Error::Range(RangeError::Overlap { .. }))
        ));
        // A partition starting 1 MiB into the disk overlaps the disk's second MiB.
        let part = disk("/dev/a1", 8 * MIB, 512, "259:0", MIB);
        assert!(matches!(
            plan_ranges(&a, &part, MIB, 0, Some(4096)),
            Err(crate::Error::Range(RangeError::Overlap { .. }))
        ));
        assert!(plan_ranges(&a, &part, 0, 0, Some(MIB)).is_ok());
    }

    #[test]
    fn chunks_hold_whole_pages_and_blocks() {
        let (a, b) = (disk("/dev/a", MIB, 512, "x", 0), disk("/dev/b", MIB, 8192, "y", 0));
        assert_eq!(check_chunk(8192, 4096, &[&a, &b], MIB).ok(), Some(8192));
        assert!(matches!(
            check_chunk(4096, 4096, &[&a, &b], MIB),
            Err(crate::Error::Range(RangeError::BadChunk { chunk: 4096, multiple: 8192 }))
        ));
        assert!(check_chunk(0, 4096, &[&a], MIB).is_err());
        // A copy smaller than the chunk gets a buffer just big enough.
        assert_eq!(check_chunk(1 << 20, 4096, &[&a, &b], 9000).ok(), Some(16384));
    }
}
