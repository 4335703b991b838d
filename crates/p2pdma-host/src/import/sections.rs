//! Finding the outputs in a paste: which lines are `lspci -vvv`, an `lspci -tv` tree,
//! `nvidia-smi topo -m`, a kernel log, hwloc XML, `lscpu`, ... by their content. Markdown
//! fences, shell prompts (`$ user@host:~$ lspci -tv`), `[sudo] password` lines, headings
//! and prose are skipped and counted.

use serde::Serialize;

/// The formats `import` knows, in priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `lspci -v`/`-vv`/`-vvv` (any of `-nn`, `-D`, `-k`), and `-x`/`-xxx`/`-xxxx` dumps.
    LspciVerbose,
    /// `lspci -t`/`-tv`/`-tvnn`.
    LspciTree,
    /// `nvidia-smi topo -m`.
    NvidiaSmiTopo,
    /// `dmesg` / `journalctl -k` lines.
    KernelLog,
    /// hwloc XML (`lstopo foo.xml`), v1, v2 and v3.
    HwlocXml,
    /// `/proc/cmdline`.
    Cmdline,
    /// `uname -a`.
    Uname,
    /// `lscpu`.
    Lscpu,
    /// `numactl --hardware`.
    Numactl,
    /// `GRUB_CMDLINE_LINUX[_DEFAULT]=` from `/etc/default/grub`: the next boot's parameters.
    Grub,
    /// A tar archive of a sysfs tree (`hwloc-gather-topology`), read alone.
    SysfsTarball,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::LspciVerbose => "lspci -vvv",
            Format::LspciTree => "lspci -tv",
            Format::NvidiaSmiTopo => "nvidia-smi topo -m",
            Format::KernelLog => "kernel log",
            Format::HwlocXml => "hwloc XML",
            Format::Cmdline => "/proc/cmdline",
            Format::Uname => "uname -a",
            Format::Lscpu => "lscpu",
            Format::Numactl => "numactl --hardware",
            Format::Grub => "/etc/default/grub",
            Format::SysfsTarball => "sysfs tarball",
        }
    }
}

/// One output found in a paste.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub format: Format,
    /// Its first line in the input, 1-based.
    pub first_line: usize,
    pub line_count: usize,
    /// Its lines, joined with `\n`.
    pub text: String,
}

/// What [`split_sections`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sections {
    pub sections: Vec<Section>,
    /// Non-blank lines no section took (prose, fences, prompts, headings, unknown outputs).
    pub skipped_lines: usize,
    pub total_lines: usize,
}

/// Splits `text` into the sections the parsers know. Never panics; linear in the input.
pub fn split_sections(text: &str) -> Sections {
    let lines: Vec<&str> = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut out = Sections { total_lines: lines.len(), ..Default::default() };
    let mut cur: Option<(Format, usize, usize)> = None; // format, first index, last index taken
    let close = |cur: &mut Option<(Format, usize, usize)>, out: &mut Sections| {
        if let Some((format, first, last)) = cur.take() {
            let text = lines[first..=last].join("\n");
            out.sections.push(Section { format, first_line: first + 1, line_count: last - first + 1, text });
        }
    };
    for (i, &line) in lines.iter().enumerate() {
        let blank = line.trim().is_empty();
        if let Some((Format::HwlocXml, _, last)) = cur.as_mut() {
            *last = i;
            if line.contains("</topology>") {
                close(&mut cur, &mut out);
            }
            continue;
        }
        if blank {
            continue; // held: a section resumes after blank lines if its next line belongs
        }
        if is_sudo_prompt(line) {
            out.skipped_lines += 1;
            continue;
        }
        if is_wrapper(line) {
            close(&mut cur, &mut out);
            out.skipped_lines += 1;
            continue;
        }
        if let Some((format, _, last)) = cur.as_mut() {
            let gap = i - *last > 1;
            if continues(*format, line, gap) {
                *last = i;
                continue;
            }
            close(&mut cur, &mut out);
        }
        match start(line) {
            Some(f) if f.single_line() => {
                out.sections.push(Section { format: f, first_line: i + 1, line_count: 1, text: line.to_string() });
            }
            Some(f) => {
                cur = Some((f, i, i));
                if f == Format::HwlocXml && line.contains("</topology>") {
                    close(&mut cur, &mut out);
                }
            }
            None => out.skipped_lines += 1,
        }
    }
    close(&mut cur, &mut out);
    out
}

impl Format {
    fn single_line(self) -> bool {
        matches!(self, Format::Cmdline | Format::Uname | Format::Grub)
    }
}

/// Fences, prompts and headings: they end a section and are skipped.
fn is_wrapper(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("```")
        || t.starts_with("~~~")
        || t.starts_with("$ ")
        || t.starts_with("# ")
        || t.starts_with("## ")
        || t.starts_with("### ")
        || t.starts_with("<details")
        || t.starts_with("</details")
        || t.starts_with("<summary")
        || is_prompt(t)
}

/// `user@host:~$ cmd`, `root@host:/# cmd`.
fn is_prompt(t: &str) -> bool {
    let Some(first) = t.split_whitespace().next() else { return false };
    first.contains('@') && (first.ends_with('$') || first.ends_with('#') || first.ends_with("$:"))
}

fn is_sudo_prompt(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("[sudo] password for") || t.starts_with("Password:")
}

/// Which section a line starts, if any.
fn start(line: &str) -> Option<Format> {
    let t = line.trim();
    if t.starts_with("<?xml") || t.starts_with("<topology") {
        return Some(Format::HwlocXml);
    }
    if is_lspci_header(line) {
        return Some(Format::LspciVerbose);
    }
    if is_tree_root(t) {
        return Some(Format::LspciTree);
    }
    if is_topo_header(t) {
        return Some(Format::NvidiaSmiTopo);
    }
    if is_kernel_line(t) {
        return Some(Format::KernelLog);
    }
    if t.starts_with("Architecture:") {
        return Some(Format::Lscpu);
    }
    if t.starts_with("available:") && t.contains("nodes") {
        return Some(Format::Numactl);
    }
    if t.starts_with("GRUB_CMDLINE_LINUX") {
        return Some(Format::Grub);
    }
    if is_uname(t) {
        return Some(Format::Uname);
    }
    if is_cmdline(t) {
        return Some(Format::Cmdline);
    }
    None
}

/// Whether `line` belongs to the open section; `gap` when blank lines came between.
fn continues(format: Format, line: &str, gap: bool) -> bool {
    let t = line.trim();
    let indented = line.starts_with(' ') || line.starts_with('\t');
    match format {
        Format::LspciVerbose => is_lspci_header(line) || is_hex_dump(t) || (!gap && indented),
        Format::LspciTree => !gap && is_tree_line(line),
        Format::NvidiaSmiTopo => {
            let first = t.split_whitespace().next().unwrap_or("");
            crate::import::nvsmi::is_label(first)
                || t.starts_with("Legend")
                || t.starts_with("NIC Legend")
                || (indented && (t.contains(" = ") || t.contains(": ")))
        }
        Format::KernelLog => is_kernel_line(t) || (!gap && is_timestamped(t)),
        Format::Lscpu => !gap && (indented || is_key_value(t)),
        Format::Numactl => !gap && (t.starts_with("node") || t.starts_with("available:") || indented),
        Format::HwlocXml | Format::Cmdline | Format::Uname | Format::Grub | Format::SysfsTarball => false,
    }
}

fn is_key_value(t: &str) -> bool {
    match t.split_once(':') {
        Some((k, _)) => {
            !k.is_empty() && k.len() < 48 && k.chars().all(|c| c.is_ascii_alphanumeric() || " ()-_/.".contains(c))
        }
        None => false,
    }
}

/// `c1:00.0 VGA compatible controller: ...`, `0000:c1:00.0 ...` (at the start of the line).
pub(crate) fn is_lspci_header(line: &str) -> bool {
    let Some((addr, rest)) = line.split_once(' ') else { return false };
    addr.parse::<p2pdma_core::Bdf>().is_ok() && addr.contains('.') && rest.contains(':') && !rest.starts_with(' ')
}

/// `00: 86 80 ...`, `f00: ...`: a config-space dump line.
pub(crate) fn is_hex_dump(t: &str) -> bool {
    let Some((off, rest)) = t.split_once(": ") else { return false };
    (2..=3).contains(&off.len())
        && off.bytes().all(|b| b.is_ascii_hexdigit())
        && rest.split(' ').filter(|s| !s.is_empty()).count() == 16
        && rest.split(' ').filter(|s| !s.is_empty()).all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// The first line of a tree: `-+-[0000:00]-+-00.0`, `-[0000:00]-+-00.0`, ` +-[0000:20]-+-`.
fn is_tree_root(t: &str) -> bool {
    let s = t.trim_start_matches(['|', ' ', '+', '\\', '-']);
    s.starts_with('[')
        && s.get(1..).is_some_and(|r| r.split(']').next().is_some_and(|b| b.contains(':')))
        && t.starts_with(['-', '+', '\\'])
}

/// Any tree line: drawing characters, then a branch to a device or a root bus.
fn is_tree_line(line: &str) -> bool {
    let t = line.trim_start_matches([' ', '|']);
    (t.starts_with("+-")
        || t.starts_with("\\-")
        || t.starts_with("-+-")
        || t.starts_with("-[")
        || t.starts_with("-\\-"))
        && t.trim_start_matches(['+', '\\', '-']).starts_with(|c: char| c.is_ascii_hexdigit() || c == '[')
}

fn is_topo_header(t: &str) -> bool {
    let mut tokens = t.split_whitespace();
    let first = tokens.next().unwrap_or("");
    (first.starts_with("GPU") || first.starts_with("NIC") || first.starts_with("mlx"))
        && crate::import::nvsmi::is_label(first)
        && (t.contains("CPU Affinity") || tokens.next().is_some_and(crate::import::nvsmi::is_label))
}

/// `[   18.887123] ...` or `[18.887] ...`.
pub(crate) fn is_timestamped(t: &str) -> bool {
    strip_timestamp(t).is_some()
}

/// The message after a dmesg timestamp, if the line has one.
pub(crate) fn strip_timestamp(t: &str) -> Option<&str> {
    let rest = t.strip_prefix('[')?;
    let (stamp, msg) = rest.split_once(']')?;
    let stamp = stamp.trim();
    (!stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit() || b == b'.')).then(|| msg.trim_start())
}

/// A kernel message `import` reads, with or without a timestamp or journal prefix.
pub(crate) fn is_kernel_line(t: &str) -> bool {
    let msg = message(t);
    const MARKERS: &[&str] = &[
        "Linux version ",
        "Command line: ",
        "Kernel command line: ",
        "PCI host bridge to bus ",
        "peer-to-peer DMA",
        "DMAR: IOMMU enabled",
        "AMD-Vi: ",
        "iommu: Default domain type",
        "ACS redirect",
        "disable_acs_redir",
    ];
    MARKERS.iter().any(|m| msg.contains(m))
}

fn is_uname(t: &str) -> bool {
    t.starts_with("Linux ") && (t.ends_with("GNU/Linux") || t.contains(" SMP ")) && t.contains('#')
}

fn is_cmdline(t: &str) -> bool {
    // Prose that mentions `root=` is not a command line: every word of one is a parameter
    // (`key=value`, or a bare flag such as `ro`, `quiet`), the first one included.
    t.starts_with("BOOT_IMAGE=")
        || (t.split_whitespace().any(|w| w.starts_with("root="))
            && t.split_whitespace().next().is_some_and(|w| w.contains('='))
            && t.split_whitespace().all(|w| !w.ends_with(':') && !w.ends_with('.') && !w.ends_with(',')))
}

/// The message of a kernel log line: without the dmesg timestamp or journal prefix.
pub fn message(line: &str) -> &str {
    let t = line.trim();
    if let Some(m) = strip_timestamp(t) {
        return m;
    }
    // `Jun 01 12:00:00 host kernel: msg` / `2025-06-01T12:00:00+0000 host kernel: msg`
    if let Some((head, msg)) = t.split_once(" kernel: ") {
        if head.len() < 64 && head.bytes().any(|b| b == b':') {
            return strip_timestamp(msg.trim_start()).unwrap_or(msg);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_sections_skips_fences_prompts_and_prose() {
        let text = "# Heading\nSome prose.\n```\n$ me@box:~$ lspci -tv\n-[0000:00]-+-00.0  Host\n           \\-01.0-[01]----00.0  Dev\n```\n\nMore prose\n```\n$ me@box:~$ sudo lspci -vvv -s 01:00.0\n[sudo] password for me:\n01:00.0 Ethernet controller: X Y\n\tControl: I/O-\n\n01:00.1 Ethernet controller: X Y\n\tControl: I/O-\n```\n";
        let s = split_sections(text);
        let formats: Vec<Format> = s.sections.iter().map(|s| s.format).collect();
        assert_eq!(formats, [Format::LspciTree, Format::LspciVerbose]);
        assert_eq!(s.sections[0].first_line, 5);
        assert_eq!(s.sections[0].line_count, 2);
        assert_eq!(s.sections[1].line_count, 5, "blank line between devices kept");
        // heading, prose, 2 fences, prompt, prose, fence, prompt, sudo, fence
        assert_eq!(s.skipped_lines, 10);
    }

    #[test]
    fn split_sections_finds_a_kernel_line_inside_prose() {
        let text = "=== probe ===\n[18.887] xe 0000:07:00.0: cannot be used for peer-to-peer DMA as the client and provider (0000:03:00.0) do not share an upstream bridge or whitelisted host bridge\n--- context ---\n";
        let s = split_sections(text);
        assert_eq!(s.sections.len(), 1);
        assert_eq!(s.sections[0].format, Format::KernelLog);
        assert_eq!(s.skipped_lines, 2);
    }

    #[test]
    fn split_sections_takes_single_line_formats() {
        let s = split_sections(
            "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro iommu=pt\nLinux box 6.8.0-60-generic #63-Ubuntu SMP PREEMPT x86_64 x86_64 x86_64 GNU/Linux\n",
        );
        let formats: Vec<Format> = s.sections.iter().map(|s| s.format).collect();
        assert_eq!(formats, [Format::Cmdline, Format::Uname]);
        let prose = split_sections(
            "Boot it with root=/dev/sda1 and see.
root=/dev/sda1 ro quiet
",
        );
        assert_eq!(prose.sections.len(), 1);
        assert_eq!((prose.sections[0].format, prose.sections[0].first_line), (Format::Cmdline, 2));
    }
}
