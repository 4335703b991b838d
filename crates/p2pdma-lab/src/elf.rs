//! Just enough ELF64 reading for the lab: a kernel module's `.modinfo` strings and whether an
//! executable is static (no `PT_INTERP`).

/// Reads the `key=value` strings of a (decompressed) kernel module's `.modinfo` section.
/// Returns `None` if the bytes are not a little-endian ELF64 file with such a section.
pub fn modinfo(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    check_header(bytes)?;
    let shoff = usize::try_from(read_u64(bytes, 0x28)?).ok()?;
    let shentsize = usize::from(read_u16(bytes, 0x3a)?);
    let shnum = usize::from(read_u16(bytes, 0x3c)?);
    let shstrndx = usize::from(read_u16(bytes, 0x3e)?);
    if shentsize < 64 {
        return None;
    }
    let section = |index: usize| -> Option<(u32, usize, usize)> {
        let base = shoff.checked_add(index.checked_mul(shentsize)?)?;
        let name = read_u32(bytes, base)?;
        let offset = usize::try_from(read_u64(bytes, base + 24)?).ok()?;
        let size = usize::try_from(read_u64(bytes, base + 32)?).ok()?;
        Some((name, offset, size))
    };
    let (_, strtab_off, strtab_size) = section(shstrndx)?;
    let strtab = bytes.get(strtab_off..strtab_off.checked_add(strtab_size)?)?;
    for index in 0..shnum {
        let (name, offset, size) = section(index)?;
        let name = strtab.get(name as usize..)?;
        let end = name.iter().position(|&b| b == 0)?;
        if &name[..end] == b".modinfo" {
            let data = bytes.get(offset..offset.checked_add(size)?)?;
            let pairs = data
                .split(|&b| b == 0)
                .filter_map(|entry| {
                    let text = std::str::from_utf8(entry).ok()?;
                    let (key, value) = text.split_once('=')?;
                    Some((key.to_string(), value.to_string()))
                })
                .collect();
            return Some(pairs);
        }
    }
    None
}

/// Whether an ELF64 executable has no program interpreter (i.e. is statically linked;
/// static-pie counts as static). `None` if the bytes are not ELF64.
pub fn is_static_executable(bytes: &[u8]) -> Option<bool> {
    check_header(bytes)?;
    let phoff = usize::try_from(read_u64(bytes, 0x20)?).ok()?;
    let phentsize = usize::from(read_u16(bytes, 0x36)?);
    let phnum = usize::from(read_u16(bytes, 0x38)?);
    const PT_INTERP: u32 = 3;
    for index in 0..phnum {
        let base = phoff.checked_add(index.checked_mul(phentsize)?)?;
        if read_u32(bytes, base)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

fn check_header(bytes: &[u8]) -> Option<()> {
    // Magic, ELFCLASS64, ELFDATA2LSB.
    (bytes.get(..6)? == b"\x7fELF\x02\x01").then_some(())
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a minimal ELF64 relocatable with sections: null, .shstrtab, .modinfo.
    fn fake_module(modinfo_data: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.shstrtab\0.modinfo\0";
        let mut out = vec![0u8; 64];
        out[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let strtab_off = out.len();
        out.extend_from_slice(shstrtab);
        let modinfo_off = out.len();
        out.extend_from_slice(modinfo_data);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        let shoff = out.len();
        let mut section = |name: u32, off: usize, size: usize| {
            let mut sh = [0u8; 64];
            sh[..4].copy_from_slice(&name.to_le_bytes());
            sh[24..32].copy_from_slice(&(off as u64).to_le_bytes());
            sh[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            out.extend_from_slice(&sh);
        };
        section(0, 0, 0);
        section(1, strtab_off, shstrtab.len());
        section(11, modinfo_off, modinfo_data.len());
        out[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        out[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        out[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        out
    }

    #[test]
    fn reads_modinfo() {
        let module = fake_module(b"license=GPL\0depends=nvme-auth,nvme-keyring\0name=nvme_core\0");
        let info = modinfo(&module).unwrap();
        assert!(info.contains(&("depends".into(), "nvme-auth,nvme-keyring".into())));
        assert!(info.contains(&("name".into(), "nvme_core".into())));
    }

    #[test]
    fn garbage_is_none_not_panic() {
        assert!(modinfo(b"").is_none());
        assert!(modinfo(b"\x7fELF\x02\x01garbage").is_none());
        let mut module = fake_module(b"depends=\0");
        module[0x28] = 0xff; // section headers out of range
        assert!(modinfo(&module).is_none());
        assert!(is_static_executable(b"#!/bin/sh").is_none());
    }
}
