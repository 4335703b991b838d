//! The host bridge whitelist compiled into a kernel image: the x86 bzImage's compressed
//! payload is found (setup header, else the compressor's magic), decompressed with
//! well-kept crates (ruzstd, xz2, flate2, lz4_flex), and `pci_p2pdma_whitelist` is found in it by its first entry.
//!
//! Layout (drivers/pci/p2pdma.c, unchanged since the table came in 5.4): `struct
//! pci_p2pdma_whitelist_entry { unsigned short vendor; int device; enum flags; }`, i.e.
//! three little-endian 32-bit words (vendor and padding, device with `PCI_ANY_ID` = -1,
//! flags with `REQ_SAME_HOST_BRIDGE` = 1), ending with an all-zero entry. Every release's
//! table starts with Intel 8086:3c00 flags 1.

use std::io::Read;

use p2pdma_core::model::WhitelistEntry;
use p2pdma_core::whitelist::{self, ANY_DEVICE};

/// Why an image gave no whitelist (said with the file's name by the caller, as a warning:
/// the release table stands in).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// No compressed payload found by header or magic.
    #[error("not a kernel image p2pdma can read (no bzImage header and no gzip, xz, zstd or lz4 payload)")]
    NoPayload,
    #[error("cannot decompress its {format} payload ({cause})")]
    Decompress { format: &'static str, cause: String },
    /// Decompressed, but no `pci_p2pdma_whitelist` in it.
    #[error(
        "no pci_p2pdma_whitelist table in it (a kernel without CONFIG_PCI_P2PDMA, or a layout p2pdma does not know)"
    )]
    NoTable,
}

/// The compressors the kernel's x86 boot code supports (bzip2 and lzo left out: Debian,
/// Ubuntu and Fedora use zstd, xz or gzip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Gzip,
    Xz,
    Zstd,
    Lz4,
}

impl Format {
    const ALL: [(Format, &'static [u8]); 4] = [
        (Format::Zstd, &[0x28, 0xb5, 0x2f, 0xfd]),
        (Format::Xz, &[0xfd, b'7', b'z', b'X', b'Z', 0x00]),
        (Format::Gzip, &[0x1f, 0x8b, 0x08]),
        (Format::Lz4, &[0x02, 0x21, 0x4c, 0x18]),
    ];

    fn name(self) -> &'static str {
        match self {
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Zstd => "zstd",
            Format::Lz4 => "lz4",
        }
    }

    fn detect(data: &[u8]) -> Option<Format> {
        Format::ALL.iter().find(|(_, m)| data.starts_with(m)).map(|(f, _)| *f)
    }
}

/// Decompressed images larger than this are refused (a vmlinux is about 60 MiB).
const MAX_IMAGE: u64 = 512 << 20;

fn u32_at(data: &[u8], off: usize) -> Option<u32> {
    data.get(off..off + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The compressed payload: by the bzImage setup header (`HdrS`, `payload_offset` and
/// `payload_length`, boot protocol 2.08+), else the first compressor magic found.
fn payload(image: &[u8]) -> Option<(Format, &[u8])> {
    if image.get(0x202..0x206) == Some(b"HdrS") {
        let setup_sects = match image.get(0x1f1).copied().unwrap_or(0) {
            0 => 4,
            n => n as usize,
        };
        let start = (setup_sects + 1) * 512;
        if let (Some(off), Some(len)) = (u32_at(image, 0x248), u32_at(image, 0x24c)) {
            let (off, len) = (start + off as usize, len as usize);
            if let Some(p) = image.get(off..off.saturating_add(len)) {
                if let Some(f) = Format::detect(p) {
                    return Some((f, p));
                }
            }
        }
    }
    (0..image.len()).find_map(|i| Format::detect(&image[i..]).map(|f| (f, &image[i..])))
}

fn decompress(format: Format, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match format {
        Format::Zstd => {
            let mut src = data;
            let mut d = ruzstd::decoding::StreamingDecoder::new(&mut src).map_err(|e| e.to_string())?;
            (&mut d).take(MAX_IMAGE).read_to_end(&mut out).map_err(|e| e.to_string())?;
        }
        Format::Gzip => {
            flate2::read::GzDecoder::new(data).take(MAX_IMAGE).read_to_end(&mut out).map_err(|e| e.to_string())?;
        }
        Format::Xz => {
            // The kernel's xz uses the x86 BCJ filter (liblzma decodes it; pure-Rust xz
            // readers do not) and appends the uncompressed size after the stream.
            let mut d = xz2::read::XzDecoder::new(data);
            if let Err(e) = (&mut d).take(MAX_IMAGE).read_to_end(&mut out) {
                if out.is_empty() {
                    return Err(e.to_string());
                }
            }
        }
        Format::Lz4 => {
            // The legacy format: blocks of a 32-bit length and up to 8 MiB of output each.
            let mut rest = &data[4..];
            while let Some(len) = u32_at(rest, 0) {
                let len = len as usize;
                let Some(block) = rest.get(4..4 + len) else { break };
                let chunk = lz4_flex::block::decompress(block, 8 << 20).map_err(|e| e.to_string())?;
                out.extend_from_slice(&chunk);
                if out.len() as u64 > MAX_IMAGE {
                    return Err("larger than 512 MiB".into());
                }
                rest = &rest[4 + len..];
            }
            if out.is_empty() {
                return Err("no lz4 block".into());
            }
        }
    }
    Ok(out)
}

/// The first entry of every release's table: 8086:3c00, `REQ_SAME_HOST_BRIDGE`.
const FIRST_ENTRY: [u8; 12] = [0x86, 0x80, 0, 0, 0x00, 0x3c, 0, 0, 1, 0, 0, 0];
const MAX_ENTRIES: usize = 256;

/// Finds `pci_p2pdma_whitelist` in a decompressed kernel by its first entry and reads it
/// up to the zero entry; every entry must look like one (flags 0 or 1, a 16-bit or any
/// device) or the match is not the table.
pub fn find_table(vmlinux: &[u8]) -> Option<Vec<WhitelistEntry>> {
    let mut from = 0;
    while let Some(pos) = vmlinux[from..].windows(FIRST_ENTRY.len()).position(|w| w == FIRST_ENTRY) {
        let start = from + pos;
        if let Some(entries) = read_table(&vmlinux[start..]) {
            return Some(entries);
        }
        from = start + 1;
    }
    None
}

fn read_table(data: &[u8]) -> Option<Vec<WhitelistEntry>> {
    let mut out = Vec::new();
    for i in 0..MAX_ENTRIES {
        let word = |k: usize| u32_at(data, i * 12 + k * 4);
        let (vendor, device, flags) = (word(0)?, word(1)?, word(2)?);
        if vendor == 0 && device == 0 && flags == 0 {
            return (!out.is_empty()).then_some(out);
        }
        let device = match device {
            0xffff_ffff => ANY_DEVICE,
            d if d < 0xffff => d as u16,
            _ => return None,
        };
        if vendor == 0 || vendor > 0xffff || flags > 1 {
            return None;
        }
        let vendor = vendor as u16;
        let label = whitelist::label_of(vendor, device).unwrap_or("").to_string();
        out.push(WhitelistEntry { vendor, device, same_host_bridge_only: flags == 1, label });
    }
    None
}

/// The whitelist compiled into a kernel image (bzImage, or an uncompressed vmlinux).
pub fn whitelist_from_image(image: &[u8]) -> Result<Vec<WhitelistEntry>, ImageError> {
    if let Some(t) = find_table(image) {
        return Ok(t);
    }
    let (format, data) = payload(image).ok_or(ImageError::NoPayload)?;
    let vmlinux = decompress(format, data).map_err(|cause| ImageError::Decompress { format: format.name(), cause })?;
    find_table(&vmlinux).ok_or(ImageError::NoTable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(u32, u32, u32)]) -> Vec<u8> {
        let mut v = b"\x7fELF padding".to_vec();
        v.extend_from_slice(&[0x86, 0x80, 0, 0, 0x00, 0x3c, 0, 0, 7, 0, 0, 0]); // a look-alike, bad flags
        for &(a, b, c) in entries.iter().chain([(0, 0, 0)].iter()) {
            for w in [a, b, c] {
                v.extend_from_slice(&w.to_le_bytes());
            }
        }
        v.extend_from_slice(b"trailing");
        v
    }

    #[test]
    fn table_is_found_by_its_first_entry_and_read_to_the_zero_entry() {
        let img = table(&[(0x8086, 0x3c00, 1), (0x8086, 0x0b25, 0), (0x1ae0, 0xffff_ffff, 0)]);
        let t = find_table(&img).unwrap();
        assert_eq!(t.len(), 3);
        assert!(t[0].same_host_bridge_only);
        assert_eq!((t[1].vendor, t[1].device), (0x8086, 0x0b25));
        assert_eq!(t[1].label, "Intel DSA (Sapphire Rapids)");
        assert_eq!(t[2].device, ANY_DEVICE);
    }

    #[test]
    fn compressed_payloads_are_found_and_bad_ones_named() {
        let raw = table(&[(0x8086, 0x3c00, 1), (0x8086, 0x2030, 0)]);
        let mut gz = Vec::new();
        {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::fast());
            enc.write_all(&raw).unwrap();
            enc.finish().unwrap();
        }
        let mut image = b"some boot code".to_vec();
        image.extend_from_slice(&gz);
        assert_eq!(whitelist_from_image(&image).unwrap().len(), 2);
        assert_eq!(whitelist_from_image(b"plain text"), Err(ImageError::NoPayload));
        let mut broken = vec![0x28, 0xb5, 0x2f, 0xfd];
        broken.extend_from_slice(&[0xff; 64]);
        assert!(matches!(whitelist_from_image(&broken), Err(ImageError::Decompress { format: "zstd", .. })));
        let mut no_table = Vec::new();
        {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(&mut no_table, flate2::Compression::fast());
            enc.write_all(b"a kernel without P2PDMA").unwrap();
            enc.finish().unwrap();
        }
        assert_eq!(whitelist_from_image(&no_table), Err(ImageError::NoTable));
    }
}
