//! Untrusted text made inert for a terminal. Names, paths, driver names, link speeds and
//! nvmetcli values come from trees and files p2pdma did not make; printed raw, an ESC or a
//! C1 CSI (U+009B) in them would drive the reader's terminal (set its title, write its
//! clipboard through OSC 52, hide or repaint lines), and a bidi override would show the
//! text in another order than the bytes. [`inert`] shows each such character visibly, as
//! `ls` and `lspci` do: `\e` for ESC, `\n`, `\t`, `\r`, `\xNN` for the other C0 controls,
//! DEL and the C1 controls, `\u{202e}` for the bidi embeddings, overrides and isolates
//! (U+202A–U+202E, U+2066–U+2069). Printable text is returned as it is, borrowed; a
//! backslash is printable and stays as it is (the escape is for the terminal, not a
//! round-trippable encoding). JSON output does not use this: serde escapes exactly.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// `s` with every control character and bidi override shown visibly; borrowed (no
/// allocation) when there is none.
pub fn inert(s: &str) -> Cow<'_, str> {
    render(s, false)
}

/// As [`inert`] but keeping line feeds and tabs: for whole texts whose lines p2pdma
/// composed itself (the binary's standard output and error pass through this).
pub fn inert_lines(s: &str) -> Cow<'_, str> {
    render(s, true)
}

/// [`inert`] as a `Display`, for `format!("{}", Inert(name))` without an allocation.
#[derive(Debug, Clone, Copy)]
pub struct Inert<'a>(pub &'a str);

impl fmt::Display for Inert<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_inert(f, self.0, false)
    }
}

/// Whether `c` is shown escaped (`keep_lines`: line feed and tab pass).
fn needs_escape(c: char, keep_lines: bool) -> bool {
    match c {
        '\n' | '\t' => !keep_lines,
        '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

fn render(s: &str, keep_lines: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| needs_escape(c, keep_lines)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    // Writing into a String cannot fail.
    let _ = write_inert(&mut out, s, keep_lines);
    Cow::Owned(out)
}

fn write_inert(out: &mut impl Write, s: &str, keep_lines: bool) -> fmt::Result {
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        if !needs_escape(c, keep_lines) {
            continue;
        }
        out.write_str(&s[plain..i])?;
        plain = i + c.len_utf8();
        match c {
            '\u{1b}' => out.write_str("\\e")?,
            '\n' => out.write_str("\\n")?,
            '\t' => out.write_str("\\t")?,
            '\r' => out.write_str("\\r")?,
            '\0'..='\u{9f}' => write!(out, "\\x{:02x}", c as u32)?,
            _ => write!(out, "\\u{{{:x}}}", c as u32)?,
        }
    }
    out.write_str(&s[plain..])
}

/// `s` as one POSIX shell word: as it is when it holds only characters no shell treats
/// specially (`nqn.2026-11.io.p2pdma:t`, `/dev/nvme0n1`, `127.0.0.1`), else quoted (shlex,
/// single quotes where possible) so that nothing in it is expanded, substituted or split
/// (`a;touch${IFS}/tmp/pwn;$(id)` stays one word). For every printed step meant for a shell.
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    // shlex refuses only a NUL byte, which no argument can hold: single quotes then.
    shlex::try_quote(s).unwrap_or_else(|_| Cow::Owned(format!("'{}'", s.replace('\'', "'\\''"))))
}

/// Whether `s` holds a character a terminal would act on (what [`inert_lines`] escapes):
/// for tests that prove nothing raw reaches the terminal.
pub fn has_raw_control(s: &str) -> bool {
    s.chars().any(|c| needs_escape(c, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_is_borrowed_unchanged() {
        for s in ["nvme-a", "0000:03:00.0", "8.0 GT/s PCIe", "naïve ünïcode ✓", "back\\slash", ""] {
            assert!(matches!(inert(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn controls_are_shown_as_ls_shows_them() {
        assert_eq!(inert("a\u{1b}]52;c;aGk=\u{7}b"), "a\\e]52;c;aGk=\\x07b");
        assert_eq!(inert("\u{1b}]0;title\u{7}"), "\\e]0;title\\x07");
        assert_eq!(inert("x\u{9b}31m\u{7f}\0"), "x\\x9b31m\\x7f\\x00");
        assert_eq!(inert("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(inert("evil\u{202e}fdp.exe\u{2066}"), "evil\\u{202e}fdp.exe\\u{2066}");
        assert_eq!(Inert("a\u{1b}b").to_string(), "a\\eb");
    }

    #[test]
    fn test_shell_quote_keeps_plain_words_and_quotes_the_rest() {
        for s in ["nqn.2026-11.io.p2pdma:t", "/dev/nvme0n1", "127.0.0.1", "0000:03:00.0", "1"] {
            assert!(matches!(shell_quote(s), Cow::Borrowed(b) if b == s), "{s}");
        }
        assert_eq!(shell_quote("a;touch${IFS}/tmp/pwn;$(id)"), "'a;touch${IFS}/tmp/pwn;$(id)'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "\"it's\"");
    }

    #[test]
    fn whole_texts_keep_their_lines_and_tabs() {
        assert_eq!(inert_lines("a\tb\nc\u{1b}[2J\n"), "a\tb\nc\\e[2J\n");
        assert!(matches!(inert_lines("a\tb\n"), Cow::Borrowed(_)));
        assert!(has_raw_control("\u{85}") && !has_raw_control("a\n\tb"));
    }
}
