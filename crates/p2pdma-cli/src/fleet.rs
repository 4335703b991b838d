//! Commands for many machines: `diff` (what changed between two snapshots, and the pairs it
//! flipped) and `metrics` (Prometheus text for node_exporter's textfile collector). The
//! logic is `p2pdma_core::diff` and `p2pdma_core::metrics`; this is files and printing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use p2pdma_core::diff::{self, Change, DeviceCounts, Diff, DiffGroup, Scope};
use p2pdma_core::{snapshot, spec, Bdf, Topology};

/// A snapshot (`p2pdma snapshot`), or a topology file (`.toml`).
fn load(path: &Path) -> anyhow::Result<Topology> {
    // By content, not name: a snapshot is a JSON object, and a TOML file cannot start with
    // `{` nor be valid JSON; a snapshot saved as `.toml` (or a topology file as `.json`) is
    // still read right, and other JSON is refused as not a snapshot.
    let text = p2pdma_host::input::read_text(path)?;
    let start = text.trim_start();
    if start.starts_with('<') {
        anyhow::bail!("{}: HTML or XML (a report?), not a snapshot or a topology file", path.display());
    }
    let json = start.starts_with('{') || serde_json::from_str::<serde::de::IgnoredAny>(start).is_ok();
    let mut topo = if json {
        snapshot::from_json(&text, path)?
    } else {
        spec::parse(&text, path)?.to_topology().map_err(|msg| anyhow::anyhow!("{}: {msg}", path.display()))?
    };
    // Names only label the output; the diff ignores them.
    topo.annotate_names(&p2pdma_host::pciids::names_for(&topo));
    Ok(topo)
}

/// `p2pdma diff A B`: exit 0 same, 1 different (2, bad input, comes from main). `all` lists
/// every flipped pair (JSON: JSON lines, the diff first, then one line per pair).
pub fn run_diff(before: &Path, after: &Path, json: bool, all: bool) -> anyhow::Result<ExitCode> {
    let (a, b) = (load(before)?, load(after)?);
    let d = diff::diff(&a, &b)?;
    match (json, all) {
        (true, false) => crate::print_json(&d)?,
        (true, true) => diff_json_lines(&d)?,
        (false, _) => render_diff(&d, all, &mut Chunked::default())?,
    }
    Ok(if d.same { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Text written as it is made, a chunk at a time through `out::text` (inert).
#[derive(Default)]
pub struct Chunked {
    buf: String,
}

impl Chunked {
    fn line(&mut self, line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
        self.buf.write_fmt(line)?;
        self.buf.push('\n');
        if self.buf.len() > 1 << 18 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        crate::out::text(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// `--json --all`: the diff on one line, then every flipped pair on a line of its own.
fn diff_json_lines(d: &Diff) -> anyhow::Result<()> {
    let mut out = Chunked::default();
    out.line(format_args!("{}", serde_json::to_string(d)?))?;
    for f in &d.flips {
        for k in d.pairs_of(f) {
            let line =
                serde_json::json!({ "provider": k.provider, "client": k.client, "before": f.before, "after": f.after });
            out.line(format_args!("{line}"))?;
        }
    }
    out.flush()
}

/// 123,540
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `nvme-a (0000:01:00.0)`, `nic0-vf0 (0000:41:00.1) +254`: a group by its first member.
fn group_text(g: &DiffGroup) -> String {
    let first = match &g.label {
        Some(l) => format!("{l} ({})", g.device),
        None => g.device.to_string(),
    };
    match g.members.len() {
        1 => first,
        n => format!("{first} +{}", n - 1),
    }
}

fn pair_end(d: &Diff, bdf: Bdf, group: usize) -> String {
    match (&d.groups[group].label, d.groups[group].device == bdf) {
        (Some(l), true) => format!("{l} ({bdf})"),
        _ => bdf.to_string(),
    }
}

/// The group pairs shown under each transition, unless `--all` lists every pair.
const SHOWN: usize = 5;

/// Flips counted by transition, the largest group pairs named (every pair with `all`).
fn render_flips(d: &Diff, flips: &[usize], indent: &str, all: bool, out: &mut Chunked) -> anyhow::Result<()> {
    for t in diff::transitions(flips.iter().map(|&f| &d.flips[f])) {
        let (from, to) = (diff::verdict_short(t.before.as_ref()), diff::verdict_short(t.after.as_ref()));
        out.line(format_args!("{indent}{} pair(s) {from} -> {to}", thousands(t.pairs)))?;
        let mut these: Vec<usize> =
            flips.iter().copied().filter(|&f| d.flips[f].before == t.before && d.flips[f].after == t.after).collect();
        these.sort_by(|&x, &y| d.flips[y].pairs.cmp(&d.flips[x].pairs).then(x.cmp(&y)));
        if all {
            for f in &these {
                let flip = &d.flips[*f];
                for k in d.pairs_of(flip) {
                    let (p, c) = (pair_end(d, k.provider, flip.provider), pair_end(d, k.client, flip.client));
                    out.line(format_args!("{indent}  {p} -> {c}"))?;
                }
            }
            continue;
        }
        for &f in these.iter().take(SHOWN) {
            let flip = &d.flips[f];
            let (p, c) = (group_text(&d.groups[flip.provider]), group_text(&d.groups[flip.client]));
            match flip.pairs {
                1 => out.line(format_args!("{indent}  {p} -> {c}"))?,
                n => out.line(format_args!("{indent}  {p} -> {c}: {} pairs", thousands(n)))?,
            }
        }
        if these.len() > SHOWN {
            let rest: u64 = these[SHOWN..].iter().map(|&f| d.flips[f].pairs).sum();
            out.line(format_args!(
                "{indent}  and {} more group pair(s), {} pair(s); --all lists each pair",
                these.len() - SHOWN,
                thousands(rest)
            ))?;
        }
    }
    Ok(())
}

/// Device changes alike (same kind and field, within one run of the same flips): shown once.
fn alike(a: &Change, b: &Change) -> bool {
    a.scope == Scope::Device && b.scope == Scope::Device && a.kind == b.kind && a.field == b.field
}

pub fn render_diff(d: &Diff, all: bool, out: &mut Chunked) -> anyhow::Result<()> {
    if d.same {
        out.line(format_args!("same: no change that moves a verdict or a path"))?;
        return out.flush();
    }
    let n = d.devices;
    if n != DeviceCounts::default() {
        out.line(format_args!("devices: {} added, {} removed, {} changed", n.added, n.removed, n.changed))?;
    }
    // Changes one after another with the same flips (a port's ACS fields, a group's VFs)
    // share one list of them; flips already listed are only counted.
    let mut shown = vec![false; d.flips.len()];
    let mut i = 0;
    while i < d.changes.len() {
        let run = d.changes[i..].iter().take_while(|x| x.flips == d.changes[i].flips).count();
        let mut j = i;
        while j < i + run {
            let c = &d.changes[j];
            let same = d.changes[j..i + run].iter().take_while(|x| alike(c, x)).count();
            out.line(format_args!("{}", c.summary))?;
            if same > 1 {
                let last = &d.changes[j + same - 1].subject;
                out.line(format_args!("  and {} more device(s) alike, to {last}", same - 1))?;
            }
            j += same.max(1);
        }
        let flips = &d.changes[i].flips;
        if !flips.is_empty() && flips.iter().all(|&f| shown[f]) {
            // E.g. the IOMMU groups an ACS change above merged: their pairs are listed there.
            let pairs: u64 = flips.iter().map(|&f| d.flips[f].pairs).sum();
            out.line(format_args!("  {} pair(s), all shown above", thousands(pairs)))?;
        } else {
            render_flips(d, flips, "  ", false, out)?;
        }
        for &f in flips {
            shown[f] = true;
        }
        i += run;
    }
    let mut explained = vec![false; d.flips.len()];
    for f in d.changes.iter().flat_map(|c| &c.flips) {
        explained[*f] = true;
    }
    let unexplained: Vec<usize> = (0..d.flips.len()).filter(|&f| !explained[f]).collect();
    if !unexplained.is_empty() {
        out.line(format_args!("pairs changed by no fact above:"))?;
        render_flips(d, &unexplained, "  ", false, out)?;
    }
    if all {
        out.line(format_args!("every flipped pair:"))?;
        render_flips(d, &(0..d.flips.len()).collect::<Vec<_>>(), "  ", true, out)?;
    }
    out.line(format_args!("{} change(s), {} pair(s) changed", d.changes.len(), thousands(d.pairs)))?;
    out.flush()
}

/// `p2pdma metrics`: to standard output, or atomically to FILE (a temporary file in the same
/// directory, then renamed: the textfile collector never reads half a file).
pub fn write_metrics(text: &str, output: Option<&PathBuf>) -> anyhow::Result<()> {
    // The temporary file's name starts with a dot: node_exporter reads only `*.prom`.
    let path = output.map(PathBuf::as_path).unwrap_or(Path::new("-"));
    crate::out::write_file(path, text.as_bytes(), "the metrics")
}

/// `p2pdma manpages DIR`: section-1 pages from the clap definitions (clap_mangen), one for
/// the program and one per command (`p2pdma-lab-run.1`), as git and cargo ship theirs.
pub fn write_manpages(cmd: clap::Command, dir: &Path) -> anyhow::Result<usize> {
    // DIR is made (with its parents, as `man/man1` in a staging tree needs) when absent;
    // an existing file or device is refused rather than met with "File exists".
    let fail = |why: String| anyhow::anyhow!("cannot write the man pages into {}: {why}", dir.display());
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(fail("it is not a directory".into())),
        Err(_) => std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?,
    }
    fn walk(cmd: clap::Command, name: String, dir: &Path, count: &mut usize) -> anyhow::Result<()> {
        let cmd = cmd.name(name.clone()).bin_name(name.replace('-', " "));
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
        p2pdma_host::output::write_file(&path, &page, 0o644)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), crate::out::why(&e)))?;
        *count += 1;
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub.clone(), format!("{name}-{}", sub.get_name()), dir, count)?;
        }
        Ok(())
    }
    let mut count = 0;
    let mut cmd = cmd;
    cmd.build();
    walk(cmd, "p2pdma".into(), dir, &mut count)?;
    Ok(count)
}
