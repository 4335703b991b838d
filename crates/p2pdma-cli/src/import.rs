//! `p2pdma import FILE... [-o machine.json] [--json]`: pastes → a snapshot, and the summary.
//! The summary is `ImportReport` (the JSON contract); the text is made from it, every string
//! that came from an input passed through `printable` (no escape sequence reaches the
//! terminal). Exit 0, 1 when a cross-check disagrees, 2 bad input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use p2pdma_core::snapshot;
use p2pdma_host::import::report::{CrossCheck, Outcome, Unknown};
use p2pdma_host::import::{self, printable, ImportReport};

use crate::out;

pub fn run(files: &[PathBuf], output: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let assembled = assemble(files)?;
    if let Some(path) = output {
        let mut doc: serde_json::Value = serde_json::from_str(&snapshot::to_json(&assembled.topology))?;
        // Where every fact came from, beside the topology (readers of the snapshot ignore it).
        let provenance = serde_json::json!({
            "facts": assembled.report.facts,
            "unknown": assembled.report.unknown,
            "left_out": assembled.report.left_out,
            "disagreements": assembled.report.disagreements,
        });
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("import".into(), provenance);
        }
        let text = serde_json::to_string_pretty(&doc)? + "\n";
        out::write_file(path, text.as_bytes(), "the snapshot")?;
        if path.as_os_str() != "-" && !json {
            out::note(&format!("wrote {} ({} devices)", path.display(), assembled.topology.devices.len()));
        }
    }
    if json {
        out::json(&assembled.report)?;
    } else if output.is_none_or(|p| p.as_os_str() != "-") {
        out::text(&summary(&assembled.report))?;
    }
    Ok(if assembled.report.crosscheck.disagrees() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The machine from the inputs: the text outputs assembled, or one sysfs tarball read alone.
fn assemble(files: &[PathBuf]) -> anyhow::Result<import::Assembled> {
    let mut inputs = Vec::new();
    for f in files {
        match import::read_any(f)? {
            import::AnyInput::Text(i) => inputs.push(i),
            import::AnyInput::Tarball(machine) if files.len() == 1 => return Ok(*machine),
            import::AnyInput::Tarball(_) => anyhow::bail!(
                "{}: a sysfs tarball is read alone (it holds the whole machine): import it without other inputs",
                f.display()
            ),
        }
    }
    let parsed = import::parse_inputs(&inputs)?;
    if parsed.iter().all(|p| p.parts.is_empty()) {
        anyhow::bail!(
            "no known output found in {} (import reads lspci -vvv/-x, lspci -tv, nvidia-smi topo -m, dmesg, hwloc XML, /proc/cmdline, uname -a, lscpu, sysfs tarballs)",
            files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(import::assemble(&parsed)?)
}

/// The text summary, from the report alone.
pub fn summary(r: &ImportReport) -> String {
    let mut s = String::new();
    write_inputs(&mut s, r);
    write_counts(&mut s, r);
    write_facts(&mut s, r);
    write_unknowns(&mut s, r);
    write_left_out(&mut s, r);
    write_disagreements(&mut s, r);
    write_topo_crosscheck(&mut s, &r.crosscheck);
    write_kernel_crosscheck(&mut s, &r.crosscheck);
    s
}

/// `read FILE: N lines, ...`: each input and the sections found in it.
fn write_inputs(s: &mut String, r: &ImportReport) {
    for i in &r.inputs {
        if i.sections.iter().any(|sec| sec.format == import::Format::SysfsTarball) {
            let files = i.sections.iter().map(|sec| sec.lines).sum::<usize>();
            let _ = writeln!(
                s,
                "read {}: sysfs tarball, {} entries ({files} files); {} device file(s), fifo(s) or hard link(s) skipped",
                printable(&i.name),
                i.lines,
                i.skipped_lines
            );
            continue;
        }
        let mut kinds: Vec<String> = Vec::new();
        for sec in &i.sections {
            kinds.push(format!("{} at line {}", sec.format.as_str(), sec.first_line));
        }
        let _ = writeln!(
            s,
            "read {}: {} lines, {} section(s){}; {} line(s) skipped",
            printable(&i.name),
            i.lines,
            i.sections.len(),
            if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) },
            i.skipped_lines
        );
    }
}

/// `machine: N devices, ...`.
fn write_counts(s: &mut String, r: &ImportReport) {
    let numa = r.numa_nodes.map_or("? NUMA nodes".to_string(), |n| format!("{n} NUMA node(s)"));
    let _ = writeln!(
        s,
        "machine: {} devices, {} host bridge(s) ({}), {numa}",
        r.devices,
        r.host_bridges.len(),
        r.host_bridges.join(" ")
    );
}

/// The machine's facts one by one, then how many devices have each device fact.
fn write_facts(s: &mut String, r: &ImportReport) {
    for f in r.facts.iter().filter(|f| f.subject == "machine") {
        let derived = f.derived.as_deref().map(|d| format!("; {d}")).unwrap_or_default();
        let _ = writeln!(s, "  {}: {} ({}{derived})", f.fact, printable(&f.value), printable(&f.origin.to_string()));
    }
    let mut per_fact: BTreeMap<&str, usize> = BTreeMap::new();
    for f in r.facts.iter().filter(|f| f.subject != "machine") {
        *per_fact.entry(f.fact).or_default() += 1;
    }
    let known: Vec<String> = per_fact.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(s, "known device facts: {}", if known.is_empty() { "none".into() } else { known.join(", ") });
}

/// The unknowns grouped by (fact, of the machine), in that order.
fn unknowns_by_fact(r: &ImportReport) -> BTreeMap<(&str, bool), Vec<&Unknown>> {
    let mut by_fact: BTreeMap<(&str, bool), Vec<&Unknown>> = BTreeMap::new();
    for u in &r.unknown {
        by_fact.entry((u.fact, u.subject == "machine")).or_default().push(u);
    }
    by_fact
}

/// `unknown:`, one line per fact: what it costs and the commands that would tell.
fn write_unknowns(s: &mut String, r: &ImportReport) {
    if r.unknown.is_empty() {
        return;
    }
    let _ = writeln!(s, "unknown:");
    for ((fact, machine), list) in unknowns_by_fact(r) {
        let first = list[0];
        if machine {
            let _ = writeln!(s, "  {fact}: {}; run `{}`", first.consequence, first.reveal);
        } else {
            let more = if list.len() > 3 { format!(" (and {} more)", list.len() - 3) } else { String::new() };
            let cmds: Vec<String> = list.iter().take(3).map(|u| format!("`{}`", u.reveal)).collect();
            let _ = writeln!(
                s,
                "  {fact} of {} device(s): {}; run {}{more}",
                list.len(),
                first.consequence,
                cmds.join(", ")
            );
        }
    }
}

/// `left out BDF: why (origin)`.
fn write_left_out(s: &mut String, r: &ImportReport) {
    for l in &r.left_out {
        let _ = writeln!(s, "left out {}: {} ({})", l.device, l.why, printable(&l.origin.to_string()));
    }
}

/// `disagree: SUBJECT FACT: value (origin) vs ...`.
fn write_disagreements(s: &mut String, r: &ImportReport) {
    for d in &r.disagreements {
        let values: Vec<String> =
            d.values.iter().map(|(v, o)| format!("{} ({})", printable(v), printable(&o.to_string()))).collect();
        let _ = writeln!(s, "disagree: {} {}: {}", d.subject, d.fact, values.join(" vs "));
    }
}

/// `nvidia-smi topo -m`'s cells against p2pdma's path classes: the counts, then each cell
/// that does not agree.
fn write_topo_crosscheck(s: &mut String, cc: &CrossCheck) {
    if cc.cells.is_empty() {
        return;
    }
    let c = cc.path_classes;
    let _ = writeln!(
        s,
        "nvidia-smi topo -m: {} cell(s) agree, {} disagree, {} not compared",
        c.agree, c.disagree, c.not_compared
    );
    for cell in cc.cells.iter().filter(|c| c.outcome != Outcome::Agree) {
        let dev = |b: Option<p2pdma_core::Bdf>| b.map_or("?".to_string(), |b| b.to_string());
        let verdict = if cell.outcome == Outcome::Disagree { "DISAGREE" } else { "not compared" };
        let _ = writeln!(
            s,
            "  {} {} × {} {}: nvidia-smi {}, p2pdma {}: {verdict}{} ({})",
            printable(&cell.row),
            dev(cell.row_device),
            printable(&cell.column),
            dev(cell.column_device),
            printable(&cell.nvidia_smi),
            cell.p2pdma.as_deref().unwrap_or("-"),
            cell.note.as_deref().map(|n| format!("; {}", printable(n))).unwrap_or_default(),
            printable(&cell.origin.to_string())
        );
    }
}

/// The kernel log's P2PDMA lines against p2pdma's verdicts: the counts, then every line.
fn write_kernel_crosscheck(s: &mut String, cc: &CrossCheck) {
    if cc.lines.is_empty() {
        return;
    }
    let c = cc.kernel_lines;
    let _ =
        writeln!(s, "kernel P2PDMA lines: {} agree, {} disagree, {} not compared", c.agree, c.disagree, c.not_compared);
    for l in &cc.lines {
        let outcome = match l.outcome {
            Outcome::Agree => "agree",
            Outcome::Disagree => "DISAGREE",
            Outcome::NotCompared => "not compared",
        };
        let _ = writeln!(
            s,
            "  {}: kernel {}, p2pdma {}: {outcome}{}",
            printable(&l.origin.to_string()),
            l.kernel,
            l.p2pdma.as_deref().unwrap_or("-"),
            l.note.as_deref().map(|n| format!("; {}", printable(n))).unwrap_or_default()
        );
    }
}
