//! The kernel log (`dmesg`, `journalctl -k`): the release, the command line, the IOMMU,
//! host bridges, and every line P2PDMA writes (`added peer-to-peer DMA memory`, the refusal
//! `cannot be used for peer-to-peer DMA as the client and provider (...) do not share an
//! upstream bridge or whitelisted host bridge`, `ACS redirect is set between the client and
//! provider (...)`). Timestamps (`[   18.887123]`, `[18.887]`) and journal prefixes
//! (`Jun 01 12:00:00 host kernel: `) are optional.

use p2pdma_core::model::IommuMode;
use p2pdma_core::Bdf;
use serde::Serialize;

use crate::import::sections::message;

use crate::Error;

/// What a kernel log says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KernelLog {
    /// From `Linux version 6.8.0-60-generic (...)`: (release, line in the section).
    pub release: Option<(String, usize)>,
    pub cmdline: Option<(String, usize)>,
    pub iommu: Option<(IommuMode, usize)>,
    /// `PCI host bridge to bus 0000:00`: (domain, bus, line).
    pub host_bridges: Vec<(u32, u8, usize)>,
    pub p2p: Vec<P2pLine>,
}

/// One P2PDMA line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum P2pEvent {
    /// `pci_p2pdma_add_resource`: the provider registered P2P memory; the range's first
    /// address and its length in bytes, when the range parses.
    Added { provider: Bdf, start: Option<u64>, size: Option<u64> },
    /// The kernel refused the pair: no common upstream bridge and no whitelisted host bridge.
    Refused { client: Bdf, provider: Bdf },
    /// A common bridge exists but ACS redirects (the pair goes through the host bridge).
    AcsRedirect { client: Bdf, provider: Bdf },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct P2pLine {
    pub event: P2pEvent,
    /// 1-based line in the section.
    pub line: usize,
}

/// Parses a kernel log section. Never panics; lines it does not know are ignored.
pub fn parse(text: &str) -> Result<KernelLog, Error> {
    let text = crate::import::bounded(text, "kernel log")?;
    let mut log = KernelLog::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let msg = message(line);
        if let Some(rest) = msg.split_once("Linux version ").map(|(_, r)| r) {
            if let Some(release) = rest.split_whitespace().next() {
                log.release.get_or_insert((release.to_string(), n));
            }
        } else if let Some((_, cmd)) =
            msg.split_once("Kernel command line: ").or_else(|| msg.split_once("Command line: "))
        {
            log.cmdline.get_or_insert((cmd.trim().to_string(), n));
        } else if let Some((_, rest)) = msg.split_once("PCI host bridge to bus ") {
            let addr = rest.split_whitespace().next().unwrap_or("");
            if let Some((d, b)) = addr.split_once(':') {
                if let (Ok(d), Ok(b)) = (u32::from_str_radix(d, 16), u8::from_str_radix(b, 16)) {
                    log.host_bridges.push((d, b, n));
                }
            }
        } else if let Some(mode) = iommu_mode(msg) {
            log.iommu = Some((mode, n));
        } else if let Some(event) = p2p_event(msg) {
            log.p2p.push(P2pLine { event, line: n });
        }
    }
    Ok(log)
}

fn iommu_mode(msg: &str) -> Option<IommuMode> {
    if let Some((_, t)) = msg.split_once("iommu: Default domain type: ") {
        return if t.starts_with("Passthrough") {
            Some(IommuMode::Passthrough)
        } else if t.starts_with("Translated") {
            Some(IommuMode::Translated)
        } else {
            None
        };
    }
    None
}

/// The address in `driver 0000:03:00.0: message` before `marker`.
fn device_before(msg: &str, marker: &str) -> Option<Bdf> {
    let (head, _) = msg.split_once(marker)?;
    head.split_whitespace().rev().find_map(|w| w.trim_end_matches(':').parse::<Bdf>().ok())
}

/// The address in the parentheses after `marker`.
fn device_in_parens_after(msg: &str, marker: &str) -> Option<Bdf> {
    let (_, tail) = msg.split_once(marker)?;
    let inner = tail.split_once('(')?.1.split_once(')')?.0;
    inner.trim().parse().ok()
}

fn p2p_event(msg: &str) -> Option<P2pEvent> {
    const REFUSED: &str = "cannot be used for peer-to-peer DMA as the client and provider";
    const ACS: &str = "ACS redirect is set between the client and provider";
    const ADDED: &str = "added peer-to-peer DMA memory";
    if msg.contains(REFUSED) {
        return Some(P2pEvent::Refused {
            client: device_before(msg, REFUSED)?,
            provider: device_in_parens_after(msg, REFUSED)?,
        });
    }
    if msg.contains(ACS) {
        return Some(P2pEvent::AcsRedirect {
            client: device_before(msg, ACS)?,
            provider: device_in_parens_after(msg, ACS)?,
        });
    }
    if let Some((_, range)) = msg.split_once(ADDED) {
        let provider = device_before(msg, ADDED)?;
        let num = |s: &str| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
        let bounds =
            range.trim().split_once('-').and_then(|(a, b)| Some((num(a)?, num(b.split_whitespace().next()?)?)));
        let start = bounds.map(|(a, _)| a);
        let size = bounds.and_then(|(a, b)| b.checked_sub(a)?.checked_add(1));
        return Some(P2pEvent::Added { provider, start, size });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bdf(s: &str) -> Bdf {
        s.parse().unwrap()
    }

    #[test]
    fn dmesg_reads_release_cmdline_bridges_and_p2p_lines() {
        let text = "[    0.000000] Linux version 6.8.0-60-generic (buildd@lcy02) (gcc 13.2)\n\
[    0.000000] Command line: BOOT_IMAGE=/vmlinuz root=/dev/sda1 iommu=pt\n\
[    0.512345] iommu: Default domain type: Passthrough (set via kernel command line)\n\
[    1.000000] PCI host bridge to bus 0000:00\n\
[    5.100000] nvme 0000:03:00.0: added peer-to-peer DMA memory 0x380000000000-0x380000ffffff\n\
Jun 01 12:00:00 box kernel: nvme 0000:04:00.0: ACS redirect is set between the client and provider (0000:03:00.0)\n\
[18.887] xe 0000:07:00.0: cannot be used for peer-to-peer DMA as the client and provider (0000:03:00.0) do not share an upstream bridge or whitelisted host bridge\n";
        let log = parse(text).unwrap();
        assert_eq!(log.release, Some(("6.8.0-60-generic".into(), 1)));
        assert_eq!(log.cmdline.as_ref().unwrap().0, "BOOT_IMAGE=/vmlinuz root=/dev/sda1 iommu=pt");
        assert_eq!(log.iommu, Some((IommuMode::Passthrough, 3)));
        assert_eq!(log.host_bridges, [(0, 0, 4)]);
        let events: Vec<&P2pEvent> = log.p2p.iter().map(|l| &l.event).collect();
        assert_eq!(
            events,
            [
                &P2pEvent::Added { provider: bdf("0000:03:00.0"), start: Some(0x3800_0000_0000), size: Some(16 << 20) },
                &P2pEvent::AcsRedirect { client: bdf("0000:04:00.0"), provider: bdf("0000:03:00.0") },
                &P2pEvent::Refused { client: bdf("0000:07:00.0"), provider: bdf("0000:03:00.0") },
            ]
        );
    }

    #[test]
    fn dmesg_ignores_damaged_p2p_lines() {
        let log =
            parse("xe 0000:07:00.0: cannot be used for peer-to-peer DMA as the client and provider (0000:03").unwrap();
        assert!(log.p2p.is_empty());
    }
}
