//! A verdict explained: [`Engine::explain`] walks a pair again (the fast `pair()` walk is
//! `verdict`'s) and records path, ACS findings and the host bridge decision; then human
//! reasons, concrete fixes and the kernel's own log lines.

use crate::config::{acs_bits, Acs};
use crate::verdict::{AcsRedirect, Engine, HostBridgeCheck, MapType, PairVerdict, Side};

impl Engine<'_> {
    /// Everything about one pair: path, ACS findings, host bridge decision, reasons, fixes,
    /// and the lines the kernel logs when it evaluates the pair verbosely.
    pub fn explain(&self, provider: usize, client: usize) -> PairVerdict {
        let mut checked: Vec<(u32, bool)> = Vec::new();
        let (dist, common) = self.walk(provider as u32, client as u32, |n, side| checked.push((n, side)));
        let mut redirect = Vec::new();
        let mut unknown = Vec::new();
        if common.is_some() {
            for &(n, provider_side) in &checked {
                let d = self.device(n as usize);
                match d.acs {
                    Acs::Present { offset, ctrl, .. } if ctrl & acs_bits::REDIRECT != 0 => redirect.push(AcsRedirect {
                        device: d.bdf,
                        bits: acs_bits::names(ctrl & acs_bits::REDIRECT),
                        ctrl,
                        cap_offset: offset,
                        side: if Some(n) == common {
                            Side::Common
                        } else if provider_side {
                            Side::Provider
                        } else {
                            Side::Client
                        },
                    }),
                    Acs::Unknown => unknown.push(d.bdf),
                    _ => {}
                }
            }
        }
        let result = self.pair(provider, client);
        let host_bridge = (common.is_none() || !redirect.is_empty()).then(|| self.host_bridge_check(provider, client));
        let path = self.path(provider as u32, client as u32, common);
        let mut v = PairVerdict {
            provider: self.device(provider).bdf,
            client: self.device(client).bdf.to_string(),
            client_name: self.device(client).name.clone(),
            client_bdf: Some(self.device(client).bdf),
            map_type: result.map_type,
            distance: result.distance,
            hops: dist,
            common_upstream: common.map(|c| self.device(c as usize).bdf),
            path,
            acs_redirect: redirect,
            acs_unknown: unknown,
            host_bridge,
            certain: true,
            reasons: Vec::new(),
            fixes: Vec::new(),
            kernel_log: Vec::new(),
            fix_costs: Vec::new(),
            fix_costs_note: None,
        };
        annotate(self, &mut v, provider, client);
        if self.p2pdma_absent() {
            absent(self, &mut v);
        }
        v
    }
}

/// On a kernel without CONFIG_PCI_P2PDMA: the build is the reason, a kernel with it the
/// fix; what such a kernel would decide is kept as a note. The kernel logs nothing.
pub(crate) fn absent(engine: &Engine<'_>, v: &mut PairVerdict) {
    let machine = &engine.topo.machine;
    let would = v.reasons.join("; ");
    v.reasons = vec![crate::kernel::absent_reason(machine)];
    if !would.is_empty() {
        v.reasons.push(format!("with CONFIG_PCI_P2PDMA, the kernel would decide: {would}"));
    }
    v.fixes = vec![crate::kernel::ABSENT_FIX.to_string()];
    v.kernel_log.clear();
    v.certain = true;
}

/// Fills `reasons`, `fixes`, `kernel_log` and `certain` from the verdict's findings: the
/// path, the host bridge decision, then what unreadable ACS could change.
pub(crate) fn annotate(engine: &Engine<'_>, v: &mut PairVerdict, provider: usize, client: usize) {
    let p = engine.device(provider);
    let c = engine.device(client);
    let (pname, cname) = (p.bdf.to_string(), c.bdf.to_string());

    match (v.common_upstream, v.acs_redirect.is_empty()) {
        (Some(common), true) => {
            let what = if common == p.bdf {
                "provider and client are the same function".to_string()
            } else {
                let d = engine.device(engine.index_of(common).expect("common device is in the topology"));
                format!("provider and client share the upstream device {} ({})", d.label(), port_label(d))
            };
            v.reasons.push(format!(
                "{what}, and no device on the path redirects peer traffic (ACS RR/CR/EC): the kernel maps by PCI bus address, distance {}",
                v.hops
            ));
        }
        (Some(common), false) => explain_redirect(engine, v, common, &pname, &cname),
        (None, _) => {
            v.reasons.push(format!(
                "provider and client share no upstream bridge (different root ports{}): traffic must cross the host bridge",
                if v.host_bridge.as_ref().is_some_and(|h| !h.same_host_bridge) { " and host bridges" } else { "" }
            ));
        }
    }
    // Taken out while the findings are written next to it, then put back.
    if let Some(hb) = v.host_bridge.take() {
        explain_host_bridge(engine, v, &hb, &pname, &cname);
        v.host_bridge = Some(hb);
    }
    if v.map_type == MapType::ThruHostBridge && v.acs_redirect.is_empty() {
        v.fixes.push("works through the host bridge; for bus-address P2P that avoids the root complex, place both under one PCIe switch".into());
    }
    if !v.acs_unknown.is_empty() {
        explain_unknown_acs(engine, v, provider, client);
    }
    explain_unknown_cpu(engine, v, provider, client);
}

/// No CPU was named (an import without cpuinfo or lscpu): whether the kernel's CPU rule
/// (`cpu_supports_p2pdma`, AMD Zen) could change the verdict.
fn explain_unknown_cpu(engine: &Engine<'_>, v: &mut PairVerdict, provider: usize, client: usize) {
    if let Some(alt) = engine.pair_if_cpu_allowed(provider, client).filter(|alt| *alt != v.map_type) {
        v.certain = false;
        v.reasons.push(format!(
            "no input named the CPU: on an AMD Zen CPU (family 0x17 or later) the kernel allows this path through the host bridge, and the verdict becomes {}; give `lscpu` or /proc/cpuinfo for the certain answer",
            alt.as_str()
        ));
    }
}

/// A shared upstream device, but ACS redirect on the path: the kernel's log lines and the
/// three ways to turn redirect off.
fn explain_redirect(engine: &Engine<'_>, v: &mut PairVerdict, common: crate::Bdf, pname: &str, cname: &str) {
    let list: Vec<String> =
        v.acs_redirect.iter().map(|r| format!("{} ({} side, {})", r.device, side(r.side), r.bits.join("+"))).collect();
    v.reasons.push(format!(
        "provider and client share the upstream device {common}, but ACS redirect is set on {}: peer requests are sent up to the root complex instead",
        list.join(", ")
    ));
    let devices: Vec<String> = v.acs_redirect.iter().map(|r| r.device.to_string()).collect();
    let param = kernel_acs_param(&devices);
    v.kernel_log.push(format!("{cname}: ACS redirect is set between the client and provider ({pname})"));
    v.kernel_log.push(format!(
        "{cname}: to disable ACS redirect for this path, add the kernel parameter: pci=disable_acs_redir={param}"
    ));
    let iommu_note = match engine.topo.machine.iommu {
        Some(true) => " The IOMMU is on and asked for this redirect: turning it off lets these devices reach each other without the IOMMU seeing it, so they are no longer isolated from one another.",
        _ => " Turning redirect off lets devices below these ports reach each other without the IOMMU seeing it.",
    };
    v.fixes.push(format!(
        "add the kernel parameter pci=disable_acs_redir={param} and reboot (the kernel's own suggestion{}); the pair then maps by bus address.{iommu_note}",
        if param.contains(';') { "; quote it in the boot loader because of ';'" } else { "" }
    ));
    let cmds = setpci_commands(v);
    v.fixes.push(format!(
        "or, until the next reboot or reset: {} (clears RR/CR/EC only). Same isolation risk; and the kernel caches a provider's verdicts, so unbind and rebind the provider's driver ({pname}) afterwards",
        cmds.join(" && ")
    ));
    v.fixes.push(format!(
        "or, where the kernel has pci=config_acs (recent kernels; the lab's 7.2.13 does), pci=config_acs={} and reboot: RR, CR and EC off while keeping the Source Validation and Upstream Forwarding the IOMMU asks for",
        config_acs_param(&devices)
    ));
}

/// The host bridge decision: the CPU rule, the whitelist, or why neither allows the pair.
fn explain_host_bridge(engine: &Engine<'_>, v: &mut PairVerdict, hb: &HostBridgeCheck, pname: &str, cname: &str) {
    let ids: Vec<String> = hb
        .bridges
        .iter()
        .map(|b| format!("{} ({})", b.host_bridge, b.id.as_deref().unwrap_or("no 00.0 or root port device")))
        .collect();
    if hb.cpu_allows {
        v.reasons.push(format!(
            "the CPU ({}) is AMD Zen or newer, which the kernel trusts to route P2P through the host bridge",
            hb.cpu
        ));
    } else if hb.whitelist_allows {
        let entries: Vec<String> = hb.bridges.iter().filter_map(|b| b.entry.clone()).collect();
        v.reasons.push(format!(
            "host bridge {} is on the kernel's P2PDMA whitelist ({})",
            ids.join(" and "),
            entries.join(", ")
        ));
    } else {
        explain_host_bridge_refused(engine, v, hb, pname, cname);
    }
}

/// Neither the CPU nor the whitelist lets the pair through the host bridge: each bridge's
/// reason, the kernel's log lines, and the fixes.
fn explain_host_bridge_refused(
    engine: &Engine<'_>,
    v: &mut PairVerdict,
    hb: &HostBridgeCheck,
    pname: &str,
    cname: &str,
) {
    if hb.cpu_rule_absent {
        let (ma, mi) = crate::whitelist::CPU_RULE_SINCE;
        v.reasons.push(format!(
            "the CPU ({}) is AMD Zen or newer, but this release has no CPU rule: cpu_supports_p2pdma came in {ma}.{mi} (dea286bb71ba)",
            hb.cpu
        ));
        v.fixes.push(format!("a kernel {ma}.{mi} or newer lets AMD Zen CPUs route P2P through the host bridge"));
    } else {
        v.reasons.push(format!("the CPU ({}) is not AMD Zen or newer (the kernel's CPU rule)", hb.cpu));
    }
    for b in &hb.bridges {
        match (&b.id, &b.entry) {
            (None, _) => v.reasons.push(format!(
                "host bridge {} has no function 00.0 or root port first on its root bus, so the kernel cannot identify it",
                b.host_bridge
            )),
            (Some(id), None) => {
                let (_, source) = crate::kernel::whitelist_in_force(&engine.topo.machine);
                v.reasons.push(format!(
                    "host bridge {} ({id}) is not on the kernel's P2PDMA whitelist ({})",
                    b.host_bridge,
                    source.describe()
                ));
                if let Some(from) = crate::kernel::whitelisted_from(id) {
                    v.fixes.push(format!("a kernel {from} whitelists host bridge {id}"));
                }
            }
            (Some(id), Some(entry)) if b.same_host_bridge_only && !hb.same_host_bridge => v.reasons.push(format!(
                "host bridge {} ({id}, {entry}) is whitelisted only for devices under the same host bridge",
                b.host_bridge
            )),
            _ => {}
        }
    }
    // The kernel warns only when ACS redirect led here, and only for bridges it looked at.
    if !v.acs_redirect.is_empty() {
        for b in &hb.bridges {
            if let (Some(id), None) = (&b.id, &b.entry) {
                let root = b.root_device.map(|r| r.to_string()).unwrap_or_default();
                v.kernel_log.push(format!("{root}: Host bridge not in P2PDMA whitelist: {id}"));
                break;
            }
        }
    }
    v.kernel_log.push(format!(
        "{cname}: cannot be used for peer-to-peer DMA as the client and provider ({pname}) do not share an upstream bridge or whitelisted host bridge"
    ));
    if v.acs_redirect.is_empty() {
        v.fixes.push("place provider and client under one PCIe switch whose downstream ports do not redirect (ACS RR/CR/EC off): P2P then stays below the switch, by bus address".into());
    }
    if hb.bridges.iter().any(|b| b.same_host_bridge_only) && !hb.same_host_bridge {
        v.fixes.push(
            "or place both under the same host bridge (root complex): this one is whitelisted only within itself"
                .into(),
        );
    }
    v.fixes.push("or use a platform the kernel allows through the host bridge: an AMD Zen (family 0x17+) CPU or a whitelisted host bridge; a root complex known to forward peer traffic can be added to pci_p2pdma_whitelist in drivers/pci/p2pdma.c".into());
}

/// ACS that could not be read: whether it could change the verdict.
fn explain_unknown_acs(engine: &Engine<'_>, v: &mut PairVerdict, provider: usize, client: usize) {
    let list: Vec<String> = v.acs_unknown.iter().map(|b| b.to_string()).collect();
    match engine.pair_if_redirected(provider, client) {
        alt if alt != v.map_type => {
            v.certain = false;
            v.reasons.push(format!(
                    "the ACS control of {} could not be read (config space past 64 bytes needs root): assumed not redirecting; if it does, the verdict becomes {}",
                    list.join(", "),
                    alt.as_str()
                ));
        }
        _ => v.reasons.push(format!(
            "the ACS control of {} could not be read (needs root); it does not change this verdict",
            list.join(", ")
        )),
    }
    v.fixes.push("run as root (or take a snapshot as root) so that ACS can be read".into());
}

/// Fills `fix_costs`: for each ACS fix of `v`, the IOMMU groups that would merge. Costly
/// (the topology is booted again in thought per fix), so only `check` asks for it.
pub(crate) fn fix_costs(engine: &Engine<'_>, v: &mut PairVerdict) {
    if v.acs_redirect.is_empty() {
        return;
    }
    let devices: Vec<String> = v.acs_redirect.iter().map(|r| r.device.to_string()).collect();
    let bdfs: Vec<crate::Bdf> = v.acs_redirect.iter().map(|r| r.device).collect();
    v.fix_costs = crate::what_if::fix_costs(
        engine.topo,
        &bdfs,
        &kernel_acs_param(&devices),
        &config_acs_param(&devices),
        &setpci_commands(v).join(" && "),
    );
    if v.fix_costs.iter().any(|c| !c.merges.is_empty()) {
        v.fix_costs_note = Some(
            "no fix keeps these groups apart: the kernel counts a port as isolating only with ACS SV, RR, CR and UF on (REQ_ACS_FLAGS, drivers/iommu/iommu.c), and RR/CR are what send this pair's traffic to the root complex: configure for P2P or for device assignment, not both".into(),
        );
    }
}

fn setpci_commands(v: &PairVerdict) -> Vec<String> {
    v.acs_redirect
        .iter()
        .map(|r| format!("setpci -s {} {:#x}.w=0000:{:04x}", r.device, r.cap_offset + 6, acs_bits::REDIRECT))
        .collect()
}

/// `pci=config_acs=` for the devices: RR, CR, EC off, SV and UF on, the rest as firmware
/// left them (flags right to left from SV: x0100x1 = DT x, EC 0, UF 1, CR 0, RR 0, TB x, SV 1).
fn config_acs_param(devices: &[String]) -> String {
    let entries: Vec<String> = devices.iter().map(|d| format!("x0100x1@{d}")).collect();
    entries.join(";")
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Provider => "provider",
        Side::Common => "common device",
        Side::Client => "client",
    }
}

fn port_label(d: &crate::model::Device) -> &'static str {
    d.port_type.map(|t| t.label()).unwrap_or_else(|| d.kind())
}

/// The device list as the kernel prints it: `;`-joined, in a 128-byte buffer (the kernel
/// silently drops what does not fit).
fn kernel_acs_param(devices: &[String]) -> String {
    let mut out = String::new();
    for d in devices {
        if out.len() + d.len() + 1 > 127 {
            break;
        }
        out.push_str(d);
        out.push(';');
    }
    out.pop();
    out
}
