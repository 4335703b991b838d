//! `p2pdma report` and `topo --svg`: a self-contained HTML report (tree, matrix, paths,
//! machine facts) and the tree alone as SVG.
//!
//! Pure functions of an [`Engine`]: `tree` lays the topology out and draws it, `data`
//! builds the JSON block (the CLI's own report structs, the matrix compacted), `html`
//! assembles the page with its inline style and script (`assets/`). Only [`run`] and
//! [`write_svg`] touch files (through `out::write_file`: whole or not at all).

mod data;
mod html;
mod tree;

use std::borrow::Cow;
use std::path::Path;
use std::process::ExitCode;

use p2pdma_core::{spec, Engine, Topology};

use crate::source::SourceArgs;

/// Escapes text for HTML and XML (content and attribute values). Characters XML forbids
/// (controls other than tab and newlines) and those it discourages that a terminal would
/// act on (DEL, the C1 controls: `topo --svg -` may reach one) become U+FFFD, so a device
/// name read from a file can never break the document.
pub fn esc(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        matches!(c, '&' | '<' | '>' | '"' | '\'' | '\u{fffe}' | '\u{ffff}' | '\u{7f}'..='\u{9f}')
            || (c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
    };
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if bad(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// JSON that is safe inside `<script type="application/json">`: no `<` at all, so neither
/// `</script>` nor `<!--` can appear; `JSON.parse` reads `\u003c` back as `<`.
pub fn json_for_script<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into()).replace('<', "\\u003c")
}

/// A title and a one-line description of where the topology came from.
fn describe(source: &SourceArgs) -> (String, String, String) {
    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "report".into());
    if let Some(path) = &source.spec {
        // The source loaded already; the file's own name and description are a bonus.
        let parsed = p2pdma_host::input::read_text(path).ok().and_then(|t| spec::parse(&t, path).ok());
        let title = parsed.as_ref().and_then(|s| s.name.clone()).unwrap_or_else(|| stem(path));
        let desc = parsed.and_then(|s| s.description).unwrap_or_default();
        let src = format!("the topology file {}", path.display());
        let sub = if desc.is_empty() { src.clone() } else { format!("{desc} (topology file {})", path.display()) };
        return (title, sub, src);
    }
    if let Some(path) = &source.snapshot {
        let src = format!("the snapshot {}", path.display());
        return (stem(path), format!("snapshot {}", path.display()), src);
    }
    let host = p2pdma_host::procfs::hostname(&source.proc_root).unwrap_or_else(|| "this machine".into());
    let src = format!("the live machine ({} and {})", source.sysfs_root.display(), source.proc_root.display());
    (host, format!("live: {} and {}", source.sysfs_root.display(), source.proc_root.display()), src)
}

/// The report page for a topology (pure).
pub fn page(engine: &Engine<'_>, title: &str, subtitle: &str, source: &str) -> String {
    let data = data::build(engine, title, source);
    html::page(engine, &data, subtitle)
}

/// The standalone SVG of the tree (pure).
pub fn svg(engine: &Engine<'_>, title: &str) -> String {
    let topo: &Topology = engine.topo;
    let m = &topo.machine;
    let subtitle = format!(
        "{} {} family {} · kernel {} · IOMMU {} · {}",
        m.arch.as_deref().unwrap_or("?"),
        m.cpu_vendor.as_deref().unwrap_or("unknown CPU"),
        m.cpu_family.map(|f| format!("{f:#x}")).unwrap_or_else(|| "?".into()),
        m.kernel_release.as_deref().unwrap_or("?"),
        match m.iommu {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        },
        if engine.cpu_allows() { "CPU rule applies (AMD Zen)" } else { "CPU rule does not apply" }
    );
    let layout = tree::layout(engine, &engine.host_bridge_info(), &p2pdma_core::group::Grouping::new(engine));
    tree::svg(&layout, tree::Mode::Standalone { title: &format!("p2pdma topology: {title}"), subtitle: &subtitle })
}

/// `p2pdma report -o FILE`.
pub fn run(source: &SourceArgs, output: &Path) -> anyhow::Result<ExitCode> {
    let loaded = source.load()?;
    let engine = Engine::new(&loaded.topology)?;
    let (title, subtitle, src) = describe(source);
    let page = page(&engine, &title, &subtitle, &src);
    crate::out::write_file(output, page.as_bytes(), "the report")?;
    if output.as_os_str() != "-" {
        crate::out::note(&format!(
            "wrote {} ({}; {} devices)",
            output.display(),
            crate::render::bytes(page.len() as u64),
            loaded.topology.devices.len()
        ));
    }
    loaded.warn_unknown_acs();
    Ok(ExitCode::SUCCESS)
}

/// `p2pdma topo --svg FILE`.
pub fn write_svg(engine: &Engine<'_>, source: &SourceArgs, output: &Path) -> anyhow::Result<()> {
    let (title, _, _) = describe(source);
    crate::out::write_file(output, svg(engine, &title).as_bytes(), "the SVG")?;
    if output.as_os_str() != "-" {
        crate::out::note(&format!("wrote {}", output.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esc_escapes_markup_and_drops_xml_invalid_characters() {
        assert_eq!(esc("plain 03:00.0"), "plain 03:00.0");
        assert_eq!(esc(r#"<a href="x">&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
        assert_eq!(esc("a\u{0}b\u{1b}c\td"), "a\u{fffd}b\u{fffd}c\td");
        assert_eq!(esc("x\u{9b}2J\u{7f}"), "x\u{fffd}2J\u{fffd}");
    }

    #[test]
    fn json_for_script_cannot_close_the_script() {
        let s = json_for_script(&serde_json::json!({ "name": "</script><script>alert(1)</script><!--" }));
        assert!(!s.contains('<'), "{s}");
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["name"], "</script><script>alert(1)</script><!--");
    }
}
