//! Property tests: the topology-file and snapshot parsers never panic, whatever they are fed,
//! and whatever they accept can be analysed without panicking. (The config-space decoder
//! has its own in src/config.rs.) Also: `text::inert` and `text::shell_quote` on any text.

// Tests and examples read files; the crate itself may not touch the filesystem.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::path::Path;

use p2pdma_core::analysis::{check, find, matrix};
use p2pdma_core::{snapshot, spec, what_if, Engine, Topology};
use proptest::prelude::*;

fn analyse(t: &Topology) {
    let Ok(e) = Engine::new(t) else { return };
    let m = matrix(&e);
    for p in m.providers.iter().take(3) {
        for c in m.clients.iter().take(3) {
            let _ = check(&e, &p.to_string(), &[c.to_string()]);
        }
    }
    for c in m.clients.iter().take(3) {
        let _ = find(&e, &[c.to_string()]);
    }
}

/// The scenario files' texts, the corpus the mutations start from (never empty), sorted by
/// text as always (the regression file's `which` picks from this order).
fn scenario_texts() -> Vec<String> {
    let mut v: Vec<String> = common::scenarios().into_iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    v.sort();
    v
}

#[path = "../../../tests/support/mutate.rs"]
mod mutations;

/// What the mutations write besides random bytes: TOML's own punctuation.
const ALPHABET: &[u8] = b"0123456789abcdef\"=.[]\n";

fn mutate(text: &str, ops: &[(usize, u8, u8)]) -> String {
    mutations::mutate(text, ops, ALPHABET)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn spec_parser_never_panics_on_text(text in "\\PC{0,400}") {
        if let Ok(s) = spec::parse(&text, Path::new("f.toml")) {
            if let Ok(t) = s.to_topology() { analyse(&t) }
        }
    }

    #[test]
    fn spec_parser_never_panics_on_mutated_scenarios(which in 0usize..7, ops in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)) {
        let texts = scenario_texts();
        let text = mutate(&texts[which % texts.len()], &ops);
        if let Ok(s) = spec::parse(&text, Path::new("f.toml")) {
            if let Ok(t) = s.to_topology() { analyse(&t) }
        }
    }

    #[test]
    fn spec_numbers_at_the_edges_are_errors_not_panics(
        cmb in any::<u64>(), mem in any::<u64>(), ports in any::<u8>(), vfs in any::<u8>(),
        slot in any::<u8>(), func in any::<u8>(), bus in any::<u8>(), bridges in 1usize..12, rps in 0usize..40,
    ) {
        let mut text = String::new();
        for i in 0..bridges {
            text.push_str(&format!("[[host_bridge]]\nname = \"h{i}\"\n"));
            if i == 1 { text.push_str(&format!("bus = {bus}\n")); }
        }
        for i in 0..rps {
            text.push_str(&format!("[[root_port]]\nname = \"r{i}\"\nhost_bridge = \"h{}\"\n", i % bridges));
        }
        text.push_str(&format!("[[root_port]]\nname = \"rp\"\nslot = {slot}\n[[switch]]\nname = \"s\"\nparent = \"rp\"\nports = {ports}\n"));
        text.push_str(&format!("[[endpoint]]\nname = \"a\"\nkind = \"nvme\"\nparent = \"s.0\"\ncmb_mib = {}\nfunction = {func}\nvfs = {vfs}\n", cmb >> 1));
        text.push_str(&format!("[[endpoint]]\nname = \"b\"\nkind = \"gpu\"\nparent = \"s.1\"\np2pmem_mib = {}\n", mem >> 1));
        if let Ok(s) = spec::parse(&text, Path::new("f.toml")) {
            if let Ok(t) = s.to_topology() { analyse(&t) }
        }
    }

    #[test]
    fn snapshot_parser_never_panics_on_mutations(which in 0usize..7, ops in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)) {
        let texts = scenario_texts();
        let topo = spec::parse(&texts[which % texts.len()], Path::new("f.toml")).unwrap().to_topology().unwrap();
        let text = mutate(&snapshot::to_json(&topo), &ops);
        if let Ok(t) = snapshot::from_json(&text, Path::new("s.json")) {
            analyse(&t);
        }
    }

    #[test]
    fn kernel_params_what_if_never_panics(which in 0usize..7, params in "(pci=(disable_acs_redir|config_acs)=[0-9a-fA-FxX:.;@/pci ]{0,40}|\\PC{0,40}){1,3}") {
        let texts = scenario_texts();
        let mut topo = spec::parse(&texts[which % texts.len()], Path::new("f.toml")).unwrap().to_topology().unwrap();
        let _ = what_if::apply(&mut topo, &params);
        analyse(&topo);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Releases from anywhere: an answer or an error, never a panic (kernel images:
    /// p2pdma-host's tests/kernel_image.rs).
    #[test]
    fn release_parser_never_panics(release in ".{0,24}") {
        let _ = release.parse::<p2pdma_core::release::KernelRelease>();
        let _ = p2pdma_core::kernel::whitelisted_from(&release);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the input, `inert` leaves nothing a terminal acts on, and borrows exactly
    /// when there was nothing to show.
    #[test]
    fn inert_text_holds_no_raw_control(s in "(\\PC|[\\x00-\\x1f\\x7f-\\u{9f}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}]){0,40}") {
        let shown = p2pdma_core::text::inert(&s);
        prop_assert!(!p2pdma_core::text::has_raw_control(&shown) && !shown.contains(['\n', '\t']));
        prop_assert_eq!(matches!(shown, std::borrow::Cow::Borrowed(_)), shown == s);
    }

    /// A quoted word is one word holding the value, whatever shell code it is.
    #[test]
    fn shell_quote_is_one_word_with_the_value(s in "[^\\x00]{0,40}") {
        let quoted = p2pdma_core::text::shell_quote(&s);
        prop_assert_eq!(shlex::split(&quoted), Some(vec![s.clone()]));
    }
}
