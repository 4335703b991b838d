//! Commands for many machines: `diff` (what changed between two snapshots, and the pairs it
//! flipped) and `metrics` (Prometheus text for node_exporter's textfile collector). The
//! logic is `p2pdma_core::diff` and `p2pdma_core::metrics`; this is files and printing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use p2pdma_core::diff::{self, Diff, PairChange, PairKey};
use p2pdma_core::{snapshot, spec, Topology};

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

/// `p2pdma diff A B`: exit 0 same, 1 different (2, bad input, comes from main).
pub fn run_diff(before: &Path, after: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let (a, b) = (load(before)?, load(after)?);
    let d = diff::diff(&a, &b)?;
    if json {
        crate::print_json(&d)?;
    } else {
        crate::out::text(&render_diff(&d))?;
    }
    Ok(if d.same { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn pair_text(p: &PairChange) -> String {
    let end = |bdf: p2pdma_core::Bdf, label: &Option<String>| match label {
        Some(l) => format!("{l} ({bdf})"),
        None => bdf.to_string(),
    };
    format!(
        "{} -> {}: {} -> {}",
        end(p.provider, &p.provider_label),
        end(p.client, &p.client_label),
        diff::verdict_text(p.before.as_ref()),
        diff::verdict_text(p.after.as_ref())
    )
}

pub fn render_diff(d: &Diff) -> String {
    if d.same {
        return "same: no change that moves a verdict or a path\n".into();
    }
    let mut out = String::new();
    let find = |k: &PairKey| d.pairs.iter().find(|p| p.provider == k.provider && p.client == k.client);
    for c in &d.changes {
        writeln!(out, "{}", c.summary).unwrap();
        for p in c.pairs.iter().filter_map(find) {
            writeln!(out, "  flips {}", pair_text(p)).unwrap();
        }
    }
    let explained: Vec<&PairKey> = d.changes.iter().flat_map(|c| &c.pairs).collect();
    let unexplained: Vec<&PairChange> = d
        .pairs
        .iter()
        .filter(|p| !explained.iter().any(|k| k.provider == p.provider && k.client == p.client))
        .collect();
    if !unexplained.is_empty() {
        writeln!(out, "pairs changed by no fact above:").unwrap();
        for p in unexplained {
            writeln!(out, "  {}", pair_text(p)).unwrap();
        }
    }
    writeln!(out, "{} change(s), {} pair(s) changed", d.changes.len(), d.pairs.len()).unwrap();
    out
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
