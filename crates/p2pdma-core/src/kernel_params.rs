//! The kernel's ACS command-line parameters and the ACS control value it programs at boot
//! (`pci_enable_acs` in drivers/pci/pci.c; kernel-p2pdma.md section 8).

use crate::bdf::Bdf;
use crate::config::acs_bits;

/// `pci=disable_acs_redir=` and `pci=config_acs=` as found on a command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcsParams {
    pub disable_acs_redir: Option<String>,
    pub config_acs: Option<String>,
}

impl AcsParams {
    /// Reads every `pci=` option; like `pci_setup`, options are comma-separated and a
    /// later occurrence replaces an earlier one.
    pub fn from_cmdline(cmdline: &str) -> Self {
        let mut params = AcsParams::default();
        for token in cmdline.split_whitespace() {
            let token = token.trim_matches('"');
            let Some(value) = token.strip_prefix("pci=") else { continue };
            for opt in value.split(',') {
                if let Some(v) = opt.strip_prefix("disable_acs_redir=") {
                    params.disable_acs_redir = Some(v.to_string());
                } else if let Some(v) = opt.strip_prefix("config_acs=") {
                    params.config_acs = Some(v.to_string());
                }
            }
        }
        params
    }
}

/// What a device looks like to `pci_dev_str_match`.
pub struct DeviceIdentity<'a> {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    pub subsystem: Option<(u16, u16)>,
    /// The devfn of each bridge above, nearest first, with the topmost device's BDF last:
    /// what the `bus:dev.fn/dev.fn` path form walks.
    pub upstream_chain: &'a [Bdf],
}

/// One `;`-separated device spec against a device, as `pci_dev_str_match` does.
/// None for a spec the kernel cannot parse (it stops reading the list there).
pub fn spec_matches(spec: &str, dev: &DeviceIdentity<'_>) -> Option<bool> {
    if let Some(ids) = spec.strip_prefix("pci:") {
        let nums: Vec<u16> = ids.split(':').map(|t| u16::from_str_radix(t, 16).ok()).collect::<Option<_>>()?;
        if nums.len() != 2 && nums.len() != 4 {
            return None;
        }
        let any_or = |want: u16, have: u16| want == 0 || want == have;
        let (sv, sd) = dev.subsystem.unwrap_or((0, 0));
        return Some(
            any_or(nums[0], dev.vendor)
                && any_or(nums[1], dev.device)
                && (nums.len() == 2 || (any_or(nums[2], sv) && any_or(nums[3], sd))),
        );
    }
    // Path form: [domain:]bus:dev.fn[/dev.fn]*, the last element being the device itself.
    let mut parts: Vec<&str> = spec.split('/').collect();
    let head = parts.remove(0);
    let mut current = dev.bdf;
    let mut chain = dev.upstream_chain.iter();
    for part in parts.iter().rev() {
        let (slot, func) = part.split_once('.')?;
        let slot = u8::from_str_radix(slot, 16).ok()?;
        let func = u8::from_str_radix(func, 16).ok()?;
        if current.dev != slot || current.func != func {
            return Some(false);
        }
        match chain.next() {
            Some(up) => current = *up,
            None => return Some(false),
        }
    }
    let want: Bdf = head.parse().ok()?;
    Some(want == current)
}

/// Walks a parameter's `;`-separated list; `(mask, flags)` of the first entry that matches.
/// `fixed` is `Some((mask, flags))` for disable_acs_redir; None means config_acs, where each
/// entry carries its own `flags@device`.
fn match_param(param: &str, fixed: Option<(u16, u16)>, dev: &DeviceIdentity<'_>) -> Option<(u16, u16)> {
    for entry in param.split(';') {
        let (mask, flags, device) = match fixed {
            Some((m, f)) => (m, f, entry),
            None => {
                let (bits, device) = entry.split_once('@')?;
                let (m, f) = parse_acs_flags(bits)?;
                (m, f, device)
            }
        };
        if mask & !acs_bits::ALL != 0 {
            return None; // "Invalid ACS flags specified"
        }
        match spec_matches(device, dev) {
            Some(true) => return Some((mask, flags)),
            Some(false) => {}
            None => return None, // "Can't parse ACS command line parameter"
        }
    }
    None
}

/// `config_acs` flags: rightmost character is bit 0; '0' off, '1' on, 'x' unchanged.
fn parse_acs_flags(bits: &str) -> Option<(u16, u16)> {
    let (mut mask, mut flags) = (0u16, 0u16);
    for (shift, ch) in bits.chars().rev().enumerate() {
        let bit = 1u16.checked_shl(shift as u32)?;
        match ch {
            '0' => mask |= bit,
            '1' => {
                mask |= bit;
                flags |= bit
            }
            'x' | 'X' => {}
            _ => return None, // "Invalid ACS flags... Ignoring"
        }
    }
    Some((mask, flags))
}

/// The ACS control value the kernel writes at enumeration, from what firmware left there.
/// Command-line settings start again from the firmware value, not from the IOMMU defaults.
pub fn predict_acs_ctrl(
    cap: u16,
    firmware_ctrl: u16,
    iommu: bool,
    params: &AcsParams,
    dev: &DeviceIdentity<'_>,
) -> u16 {
    let mut ctrl = firmware_ctrl;
    if iommu {
        ctrl |= cap & acs_bits::IOMMU_DEFAULT;
    }
    let redirect = acs_bits::REDIRECT;
    if let Some(p) = &params.disable_acs_redir {
        if let Some((mask, flags)) = match_param(p, Some((redirect, !redirect)), dev) {
            ctrl = (firmware_ctrl & !mask) | (flags & mask);
        }
    }
    if let Some(p) = &params.config_acs {
        if let Some((mask, flags)) = match_param(p, None, dev) {
            ctrl = (firmware_ctrl & !mask) | (flags & mask);
        }
    }
    ctrl
}

/// The inverse of [`predict_acs_ctrl`] as far as it goes: the firmware value that explains
/// `ctrl` under `params`. Bits the kernel overwrote are unknown and taken as 0 (firmware
/// that leaves ACS alone, as QEMU's does).
pub fn estimate_firmware_ctrl(cap: u16, ctrl: u16, iommu: bool, params: &AcsParams, dev: &DeviceIdentity<'_>) -> u16 {
    let redirect = acs_bits::REDIRECT;
    if let Some((mask, _)) = params.config_acs.as_deref().and_then(|p| match_param(p, None, dev)) {
        return ctrl & !mask;
    }
    if let Some((mask, _)) =
        params.disable_acs_redir.as_deref().and_then(|p| match_param(p, Some((redirect, !redirect)), dev))
    {
        return ctrl & !mask;
    }
    if iommu {
        ctrl & !(cap & acs_bits::IOMMU_DEFAULT)
    } else {
        ctrl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(bdf: &str, chain: &[Bdf]) -> DeviceIdentity<'static> {
        let chain: &'static [Bdf] = Box::leak(chain.to_vec().into_boxed_slice());
        DeviceIdentity {
            bdf: bdf.parse().unwrap(),
            vendor: 0x1b36,
            device: 0x000c,
            subsystem: None,
            upstream_chain: chain,
        }
    }

    #[test]
    fn cmdline_parsing_takes_the_last_pci_option() {
        let p = AcsParams::from_cmdline(
            "quiet pci=noats,disable_acs_redir=0000:00:11.0;02:00.0 pci=config_acs=1x0@pci:8086:0",
        );
        assert_eq!(p.disable_acs_redir.as_deref(), Some("0000:00:11.0;02:00.0"));
        assert_eq!(p.config_acs.as_deref(), Some("1x0@pci:8086:0"));
    }

    #[test]
    fn iommu_enables_sv_rr_cr_uf_like_the_lab_saw() {
        let d = ident("0000:00:11.0", &[]);
        assert_eq!(predict_acs_ctrl(0x5f, 0, true, &AcsParams::default(), &d), 0x001d);
        assert_eq!(predict_acs_ctrl(0x5f, 0, false, &AcsParams::default(), &d), 0);
    }

    #[test]
    fn disable_acs_redir_restarts_from_firmware_value() {
        // lab-facts: IOMMU on + disable_acs_redir for the root port -> "Configured ACS to 0x0000".
        let d = ident("0000:00:11.0", &[]);
        let p = AcsParams::from_cmdline("pci=disable_acs_redir=0000:00:11.0");
        assert_eq!(predict_acs_ctrl(0x5f, 0, true, &p, &d), 0);
        let other = ident("0000:00:12.0", &[]);
        assert_eq!(predict_acs_ctrl(0x5f, 0, true, &p, &other), 0x1d);
        let by_id = AcsParams::from_cmdline("pci=disable_acs_redir=pci:1b36:000c");
        assert_eq!(predict_acs_ctrl(0x5f, 0x1d, false, &by_id, &d), 0x11);
    }

    #[test]
    fn config_acs_sets_and_clears_bits() {
        let d = ident("0000:00:11.0", &[]);
        let p = AcsParams::from_cmdline("pci=config_acs=101x@00:11.0");
        // bit0 x (firmware), bit1 1... reading right to left: x=SV unchanged, 1=TB, 0=RR, 1=CR
        assert_eq!(predict_acs_ctrl(0x5f, 0x0001, true, &p, &d), 0x000b);
        let bad = AcsParams::from_cmdline("pci=config_acs=10z@00:11.0");
        assert_eq!(predict_acs_ctrl(0x5f, 0, true, &bad, &d), 0x1d, "invalid flags are ignored");
    }

    #[test]
    fn path_form_walks_devfns_upward() {
        let chain = ["0000:02:00.0".parse().unwrap(), "0000:01:00.0".parse().unwrap(), "0000:00:10.0".parse().unwrap()];
        let d = ident("0000:03:00.0", &chain);
        let m = |s: &str| spec_matches(s, &d);
        assert_eq!(m("0000:03:00.0"), Some(true));
        assert_eq!(m("00:10.0/0.0/0.0/0.0"), Some(true));
        assert_eq!(m("00:11.0/0.0/0.0/0.0"), Some(false));
        assert_eq!(m("00:10.0/0.0/1.0/0.0"), Some(false));
        assert_eq!(m("zz"), None);
    }
}
