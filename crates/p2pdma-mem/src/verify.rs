//! Proof by read-back: both ranges read again with direct I/O (from the devices, not from
//! any cache) into host memory and compared byte for byte.

use crate::{DirectFile, HostBuffer, MemError};

/// The first offset (relative to the range starts) where `a` and `b` differ over
/// `length` bytes, read `chunk` bytes at a time; None when they are equal.
pub fn compare(
    a: (&DirectFile, u64),
    b: (&DirectFile, u64),
    length: u64,
    chunk: usize,
) -> Result<Option<u64>, MemError> {
    let mut left = HostBuffer::new(chunk)?;
    let mut right = HostBuffer::new(chunk)?;
    let mut at = 0u64;
    while at < length {
        let len = (length - at).min(chunk as u64) as usize;
        let (l, r) = (&mut left.as_mut_slice()[..len], &mut right.as_mut_slice()[..len]);
        a.0.read_exact_at(l, a.1 + at)?;
        b.0.read_exact_at(r, b.1 + at)?;
        if let Some(i) = l.iter().zip(r.iter()).position(|(x, y)| x != y) {
            return Ok(Some(at + i as u64));
        }
        at += len as u64;
    }
    Ok(None)
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
        std::fs::write(&pb, &other).unwrap();
        let (a, b) = (DirectFile::open(&pa, Access::Read).unwrap(), DirectFile::open(&pb, Access::Read).unwrap());
        assert_eq!(compare((&a, 0), (&b, 0), 65536, 8192).unwrap(), Some(40000));
        assert_eq!(compare((&a, 0), (&b, 0), 36864, 8192).unwrap(), None);
        assert_eq!(compare((&a, 4096), (&b, 4096), 61440, 4096).unwrap(), Some(40000 - 4096));
    }
}
