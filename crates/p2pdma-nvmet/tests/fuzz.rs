//! Property tests for the nvmetcli `config.json` parser: mutations of a real saved file and
//! arbitrary text never panic; whatever parses is printed back and parses to the same config.

use p2pdma_nvmet::config;
use proptest::prelude::*;

const SAMPLE: &str = include_str!("../fixtures/nvmetcli-config.json");

#[path = "../../../tests/support/mutate.rs"]
mod mutations;

/// What the mutations write besides random bytes: JSON's own punctuation.
const ALPHABET: &[u8] = b"0123456789-\":,{}[]\\n$;`'";

fn mutate(text: &str, ops: &[(usize, u8, u8)]) -> String {
    mutations::mutate(text, ops, ALPHABET)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn test_nvmetcli_parser_never_panics_on_mutations(
        ops in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        if let Ok(c) = config::parse(&mutate(SAMPLE, &ops), "c.json") {
            let again = config::parse(&config::to_json(&c), "c.json");
            prop_assert!(again.is_ok(), "{:?}", again.err());
        }
    }

    #[test]
    fn test_nvmetcli_parser_never_panics_on_text(text in "\\PC{0,300}") {
        let _ = config::parse(&text, "c.json");
    }
}
