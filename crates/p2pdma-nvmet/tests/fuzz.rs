//! Property tests for the nvmetcli `config.json` parser: mutations of a real saved file and
//! arbitrary text never panic; whatever parses is printed back and parses to the same config.

use p2pdma_nvmet::config;
use proptest::prelude::*;

const SAMPLE: &str = include_str!("../fixtures/nvmetcli-config.json");

/// Small mutations of the real file reach deeper than random text.
fn mutate(text: &str, ops: &[(usize, u8, u8)]) -> String {
    let mut b = text.as_bytes().to_vec();
    for &(pos, kind, val) in ops {
        if b.is_empty() {
            break;
        }
        let at = pos % b.len();
        match kind % 4 {
            0 => b[at] = val,
            1 => b.truncate(at),
            2 => b.insert(at, val),
            _ => b[at] = b"0123456789-\":,{}[]\\n$;`'"[val as usize % 24],
        }
    }
    String::from_utf8_lossy(&b).into_owned()
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
