//! The report page: one HTML document with its style, the tree (SVG), the matrix (a
//! table), machine facts, providers, the JSON data block and the script, all inline. A
//! Content-Security-Policy allows nothing but this page's own style and script (by hash),
//! so the page cannot load or send anything, whatever the data holds.

use std::fmt::Write;

use p2pdma_core::model::Device;
use p2pdma_core::Engine;
use sha2::{Digest, Sha256};

use super::data::ReportData;
use super::{esc, json_for_script, tree};
use crate::render::bytes;

const PAGE_CSS: &str = include_str!("assets/report.css");
const PAGE_JS: &str = include_str!("assets/report.js");

/// Standard base64 (RFC 4648, with padding), for CSP hashes.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn csp_hash(text: &str) -> String {
    format!("'sha256-{}'", base64(&Sha256::digest(text.as_bytes())))
}

/// The policy: no network of any kind; only the inline style and script below, by hash.
pub fn csp(style: &str, script: &str) -> String {
    format!(
        "default-src 'none'; script-src {}; style-src {}; img-src data:; base-uri 'none'; form-action 'none'",
        csp_hash(script),
        csp_hash(style)
    )
}

/// Short column and row labels: topology names where there are any, else addresses.
fn label(d: &Device) -> String {
    match &d.name {
        Some(n) => n.clone(),
        None if d.bdf.domain == 0 => format!("{:02x}:{:02x}.{}", d.bdf.bus, d.bdf.dev, d.bdf.func),
        None => d.bdf.to_string(),
    }
}

/// The matrix: a grid skeleton with its size; report.js draws the cells in view from the
/// data block, so that a thousand devices (tens of thousands of cells) stay fast.
fn matrix_html(out: &mut String, engine: &Engine<'_>, data: &ReportData<'_>) {
    let m = &data.matrix;
    let topo = engine.topo;
    if m.providers.is_empty() {
        out.push_str(r#"<p class="empty" id="no-matrix">No device with P2P memory or a memory BAR, so nothing can be a peer-to-peer target.</p>"#);
        return;
    }
    let folds = m.group_of.iter().enumerate().any(|(i, &g)| g != i);
    let vertical =
        folds || m.clients.len() > 6 || m.clients.iter().any(|&c| label(&topo.devices[c]).chars().count() > 9);
    // The layer toggle: the kernel's verdict, or the hardware path class (report.js).
    out.push_str(
        r#"<div class="layers" id="layers" role="radiogroup" aria-label="matrix layer"><label><input type="radio" name="layer" value="verdict" checked> kernel verdict</label><label><input type="radio" name="layer" value="path"> path class (nvidia-smi topo -m)</label></div>"#,
    );
    write!(
        out,
        r#"<div class="matrix-scroll" id="matrix-scroll"><table id="matrix" class="matrix{}" role="grid" aria-rowcount="{}" aria-colcount="{}"><thead><tr aria-rowindex="1"><th class="corner" aria-colindex="1"><span>provider ↓ · client →</span></th></tr></thead><tbody></tbody></table></div><noscript><p class="empty">The matrix is drawn by the page's script; <code>p2pdma topo</code> prints it as text.</p></noscript>"#,
        if vertical { " vert" } else { "" },
        m.providers.len() + 1,
        m.clients.len() + 1
    )
    .unwrap();
    out.push_str(
        r#"<ul class="legend" id="legend"><li><span class="sw m-b">BUSn</span> by PCI bus address below a common bridge, distance n</li><li><span class="sw m-h">HBn</span> through the host bridge (root complex), distance n</li><li><span class="sw m-n">NO</span> the kernel refuses (not supported)</li><li><span class="sw m-s">SELF</span> the provider's own memory</li>"#,
    );
    if m.verdicts.iter().any(|v| !v.certain) {
        out.push_str(r#"<li><span class="sw m-b u">?</span> depends on ACS that could not be read (run as root)</li>"#);
    }
    out.push_str("</ul>");
    out.push_str(
        r#"<ul class="legend" id="legend-path" hidden><li><span class="sw pc-X">X</span> the device itself</li><li><span class="sw pc-PIX">PIX</span> at most one PCIe switch between them</li><li><span class="sw pc-PXB">PXB</span> several PCIe switches, no host bridge</li><li><span class="sw pc-PHB">PHB</span> through a host bridge (root complex)</li><li><span class="sw pc-NODE">NODE</span> between host bridges of one NUMA node</li><li><span class="sw pc-SYS">SYS</span> across NUMA nodes (the socket interconnect)</li><li>the wiring, not the kernel's decision: ACS may still send a PIX pair through the root complex</li></ul>"#,
    );
}

fn fact(out: &mut String, name: &str, value: &str, class: &str, note: &str) {
    write!(out, r#"<div class="fact {class}"><dt>{}</dt><dd>{}"#, esc(name), esc(value)).unwrap();
    if !note.is_empty() {
        write!(out, r#"<small>{}</small>"#, esc(note)).unwrap();
    }
    out.push_str("</dd></div>");
}

fn facts_html(out: &mut String, data: &ReportData<'_>, unknown_acs: usize, topo: &p2pdma_core::Topology) {
    let m = data.machine;
    out.push_str(r#"<dl class="facts" id="facts">"#);
    let cpu = format!(
        "{} family {}",
        m.cpu_vendor.as_deref().unwrap_or("unknown CPU"),
        m.cpu_family.map(|f| format!("{f:#x}")).unwrap_or_else(|| "?".into())
    );
    fact(out, "CPU", &cpu, "", m.cpu_model_name.as_deref().unwrap_or(""));
    if data.cpu_allows_p2pdma {
        fact(out, "CPU rule", "applies", "good", "AMD Zen or newer: the kernel lets P2P through any host bridge");
    } else {
        fact(out, "CPU rule", "does not apply", "", "not AMD Zen: crossing the host bridge needs a whitelisted bridge");
    }
    host_bridges_fact(out, data);
    fact(out, "Kernel", m.kernel_release.as_deref().unwrap_or("unknown"), "", m.arch.as_deref().unwrap_or(""));
    p2pdma_fact(out, m);
    let (iommu, iommu_note) = match m.iommu {
        Some(true) => ("on", "the kernel enables ACS redirect on ports that have ACS"),
        Some(false) => ("off", ""),
        None => ("unknown", ""),
    };
    fact(out, "IOMMU", iommu, if m.iommu == Some(true) { "warn" } else { "" }, iommu_note);
    if let Some(info) = &topo.iommu_groups {
        let (value, class, note) = groups_fact(topo, info);
        fact(out, "IOMMU groups", &value, class, &note);
    }
    let mut params = Vec::new();
    if let Some(v) = &data.acs_params.disable_acs_redir {
        params.push(format!("pci=disable_acs_redir={v}"));
    }
    if let Some(v) = &data.acs_params.config_acs {
        params.push(format!("pci=config_acs={v}"));
    }
    let params_text = if params.is_empty() { "no ACS parameters".to_string() } else { params.join(" ") };
    let cmdline = match m.cmdline.as_deref() {
        Some(c) if !c.trim().is_empty() => format!("command line: {c}"),
        _ => "command line unknown".into(),
    };
    fact(out, "Kernel parameters", &params_text, if params.is_empty() { "" } else { "warn" }, &cmdline);
    if unknown_acs > 0 {
        fact(
            out,
            "ACS unknown",
            &format!("{unknown_acs} device(s)"),
            "warn",
            "config space past 64 bytes needs root; verdicts that depend on it are marked ?",
        );
    }
    out.push_str("</dl>");
}

/// Each host bridge and whether the kernel's whitelist has it (a count when there are many).
fn host_bridges_fact(out: &mut String, data: &ReportData<'_>) {
    let wl: Vec<String> = data
        .host_bridges
        .iter()
        .map(|b| {
            let w = &b.whitelist;
            match (&w.id, &w.entry) {
                (None, _) => format!("{}: unidentified", b.bridge.name),
                (Some(id), None) => format!("{} {id}: not whitelisted", b.bridge.name),
                (Some(id), Some(e)) => format!("{} {id}: whitelisted ({e})", b.bridge.name),
            }
        })
        .collect();
    let listed = data.host_bridges.iter().filter(|b| b.whitelist.entry.is_some()).count();
    let class = if listed > 0 { "good" } else { "" };
    if wl.len() <= 2 {
        fact(out, "Host bridges", &wl.join("; "), class, "the kernel's P2PDMA whitelist");
    } else {
        let value = format!("{listed} of {} on the P2PDMA whitelist", wl.len());
        fact(out, "Host bridges", &value, &format!("{class} wide"), &wl.join("; "));
    }
}

/// Whether the kernel has P2PDMA, what says so, and where its whitelist comes from.
fn p2pdma_fact(out: &mut String, m: &p2pdma_core::model::Machine) {
    let caps = p2pdma_core::kernel::capabilities(m);
    let (built, class) = match caps.p2pdma.built {
        p2pdma_core::model::Built::Yes => ("CONFIG_PCI_P2PDMA=y", "good"),
        p2pdma_core::model::Built::No => ("not built: no P2P at all", "warn"),
        p2pdma_core::model::Built::Unknown => ("unknown (judged as built)", ""),
    };
    let note = format!(
        "{}; whitelist: {}",
        caps.p2pdma.evidence.as_deref().unwrap_or("no evidence"),
        caps.whitelist_source.describe()
    );
    fact(out, "P2PDMA", built, class, &note);
}

fn providers_html(out: &mut String, data: &ReportData<'_>) {
    if data.providers.is_empty() {
        out.push_str(r#"<p class="empty">No device has P2P memory (<code>p2pmem/</code>).</p>"#);
        return;
    }
    let numa = data.providers.iter().any(|r| r.numa_node.is_some());
    write!(
        out,
        r#"<div class="table-scroll"><table class="providers" id="providers"><thead><tr><th>provider</th><th>driver</th><th>free of total</th>{}</tr></thead><tbody>"#,
        if numa { "<th>NUMA</th>" } else { "" }
    )
    .unwrap();
    for r in &data.providers {
        write!(
            out,
            r#"<tr><td><b>{}</b> <span class="mono">{}</span></td><td>{}</td><td><meter min="0" max="{}" value="{}"></meter> {} of {}{}</td>"#,
            esc(r.name.as_deref().unwrap_or("")),
            r.provider,
            esc(r.driver.as_deref().unwrap_or("-")),
            r.size,
            r.available,
            bytes(r.available),
            bytes(r.size),
            if r.published { "" } else { ", not published (automatic selection skips it)" },
        )
        .unwrap();
        if numa {
            write!(out, "<td>{}</td>", r.numa_node.map(|n| n.to_string()).unwrap_or_else(|| "-".into())).unwrap();
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The whole page.
pub fn page(engine: &Engine<'_>, data: &ReportData<'_>, subtitle: &str) -> String {
    let topo = engine.topo;
    let layout = tree::layout(engine, &engine.host_bridge_info(), &p2pdma_core::group::Grouping::new(engine));
    let svg = tree::svg(&layout, tree::Mode::Embedded);
    let style = format!("{PAGE_CSS}\n{}", tree::CSS);
    let m = &data.matrix;
    let c = &m.counts;
    let unknown_acs = topo.devices.iter().filter(|d| d.acs == p2pdma_core::config::Acs::Unknown).count();

    let mut out = String::with_capacity(svg.len() * 2 + m.cells.len() * m.clients.len() * 8 + 65536);
    write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="{}">
<title>p2pdma report: {}</title>
<link rel="icon" href="data:,">
<style>{style}</style>
</head><body>
<header class="top"><div class="brand">p2pdma</div><div class="head"><h1>{}</h1><p class="sub">{}</p></div>
<ul class="chips" id="summary"><li><b>{}</b> device{}</li><li><b>{}</b> provider{}</li><li><b>{}</b> DMA endpoint{}</li><li class="m-b"><b>{}</b> bus address</li><li class="m-h"><b>{}</b> host bridge</li><li class="m-n"><b>{}</b> not supported</li></ul></header>
<section class="card machine"><h2>Machine facts the verdicts rest on</h2>"#,
        esc(&csp(&style, PAGE_JS)),
        esc(&data.created_by),
        esc(&data.title),
        esc(&data.title),
        esc(subtitle),
        topo.devices.len(),
        plural(topo.devices.len()),
        c.providers,
        plural(c.providers),
        c.clients,
        plural(c.clients),
        c.bus_addr,
        c.thru_host_bridge,
        c.not_supported,
    )
    .unwrap();
    facts_html(&mut out, data, unknown_acs, topo);
    out.push_str(
        r#"</section>
<main class="grid"><section class="card tree-card"><h2>Topology <small>host bridges, root ports, switches, endpoints; click a device for its facts</small></h2><ul class="tree-legend"><li><i class="k-prov"></i>P2P memory provider</li><li><i class="k-sw"></i>PCIe switch</li><li><i class="k-redir"></i>ACS redirect on</li><li><i class="k-warn"></i>link below its maximum</li><li><i class="k-path"></i>selected path</li></ul><div class="tree-scroll" id="tree-scroll">"#,
    );
    out.push_str(&svg);
    out.push_str(
        r#"</div></section><div class="side"><section class="card matrix-card"><h2>P2P matrix <small>rows: devices with P2P memory or a memory BAR · columns: DMA-capable endpoints · click a cell</small></h2>"#,
    );
    matrix_html(&mut out, engine, data);
    out.push_str(
        r#"</section><section class="card details" id="details" aria-live="polite"><h2>Verdict</h2><p class="hint">Select a cell of the matrix: its path lights up in the tree, with the kernel's reasons and the fixes.</p></section><section class="card"><h2>Providers <small>P2P memory (p2pmem)</small></h2>"#,
    );
    providers_html(&mut out, data);
    write!(
        out,
        r#"</section></div></main>
<footer>Made by {} from {}. Self-contained: this page loads nothing and sends nothing.</footer>
<script type="application/json" id="p2pdma-data">{}</script>
<script>{PAGE_JS}</script>
</body></html>
"#,
        esc(&data.created_by),
        esc(&data.source),
        json_for_script(data)
    )
    .unwrap();
    out
}

/// The IOMMU groups in one line, and the what-if they were predicted under: with
/// `report --kernel-params`, the page is the machine after a chosen fix.
fn groups_fact(topo: &p2pdma_core::Topology, info: &p2pdma_core::model::GroupInfo) -> (String, &'static str, String) {
    use p2pdma_core::iommu_groups::members;
    use p2pdma_core::model::GroupSource;
    let groups = members(topo);
    // Readable on a server of thousands of VFs: the first groups, each cut after a few members.
    const GROUPS: usize = 20;
    const MEMBERS: usize = 8;
    let shared: Vec<String> = groups
        .iter()
        .filter(|(_, m)| m.len() > 1)
        .map(|(g, m)| {
            let mut s = format!("{g}: {}", m.iter().take(MEMBERS).map(|b| b.to_string()).collect::<Vec<_>>().join(" "));
            if m.len() > MEMBERS {
                s.push_str(&format!(" +{} more", m.len() - MEMBERS));
            }
            s
        })
        .collect();
    let more = shared.len().saturating_sub(GROUPS);
    let listed = shared.iter().take(GROUPS).cloned().collect::<Vec<_>>().join("; ");
    let source = match (info.source, &info.kernel_params) {
        (GroupSource::Kernel, _) => "read from the kernel".to_string(),
        (GroupSource::Predicted, None) => "predicted from the kernel's rules".to_string(),
        (GroupSource::Predicted, Some(p)) => format!("WHAT-IF after {p}: predicted"),
    };
    let mut note = format!("{source}; shared: {}", if shared.is_empty() { "none".into() } else { listed });
    if more > 0 {
        note.push_str(&format!("; and {more} more shared groups (`p2pdma topo --json`)"));
    }
    if !info.uncertain.is_empty() {
        note.push_str(&format!("; {} device(s) uncertain (quirks or unreadable ACS)", info.uncertain.len()));
    }
    let value = format!("{} groups, {} shared", groups.len(), shared.len());
    (value, if info.kernel_params.is_some() || !info.uncertain.is_empty() { "warn" } else { "" }, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")];
        for (i, o) in cases {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn csp_forbids_remote_loads() {
        let p = csp("a", "b");
        assert!(p.starts_with("default-src 'none';") && !p.contains("http") && !p.contains("unsafe"), "{p}");
    }
}
