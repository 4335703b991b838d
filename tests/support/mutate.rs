//! Small mutations of real files reach deeper than random text: the proptest fuzz targets of
//! every parser share this one (included with `#[path]`), each with its format's alphabet.

/// `text` with each op applied: (position, kind, value): overwrite a byte, cut there, insert a
/// byte, or overwrite with a byte of `alphabet` (the format's own punctuation).
pub fn mutate(text: &str, ops: &[(usize, u8, u8)], alphabet: &[u8]) -> String {
    let mut b = text.as_bytes().to_vec();
    for &(pos, kind, val) in ops {
        if b.is_empty() {
            break;
        }
        let at = pos % b.len();
        match kind % 4 {
            0 => b[at] = val,
            1 => b.truncate(at),
            2 => b.insert(at, val),
            _ => b[at] = alphabet[val as usize % alphabet.len()],
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}
