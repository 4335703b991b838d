//! Property tests for the sysfs attribute decoders, through the one reader of the machine:
//! a real-shaped fixture tree (the `switch` topology file) whose provider's attributes are
//! replaced by arbitrary bytes: `config` (config space, any length around the 4 KiB bound),
//! `vendor`/`device`/`class` (hex), `local_cpulist`, `current_link_speed`/`max_link_speed`
//! and the widths, `resource` (BARs) and `p2pmem/size`. `machine::read` never panics: it
//! reads a topology or returns an error, and what it reads is analysed (verdicts, matrix,
//! link degradation, metrics) without panicking.

mod common;

use std::path::Path;

use common::{write_tree, Privilege};
use p2pdma_core::{analysis, metrics, Engine};
use p2pdma_host::input::read_spec;
use p2pdma_host::machine;
use p2pdma_host::roots::Roots;
use proptest::prelude::*;

fn attr_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "(0x)?[0-9a-fA-F]{0,10}\n?".prop_map(String::into_bytes),
        "[0-9]{1,3}(\\.[0-9])? GT/s( PCIe)?\n".prop_map(String::into_bytes),
        "([0-9]{1,4}(-[0-9]{1,4})?,?){0,6}\n".prop_map(String::into_bytes),
        "(0x[0-9a-f]{16} ?){0,4}\n?".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..80),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn test_sysfs_decoders_never_panic_on_arbitrary_attributes(
        config in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            (4000usize..4200).prop_map(|n| vec![0x10; n]),
        ],
        attrs in proptest::collection::vec(attr_text(), 10),
        resource in proptest::collection::vec("(0x[0-9a-f]{1,16} ){0,3}0x[0-9a-f]{1,16}", 0..8),
    ) {
        let (_, topo) = read_spec(Path::new("../../examples/topologies/switch.toml")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (sys, proc) = write_tree(&topo, dir.path(), Privilege::Root);
        let dev = std::fs::canonicalize(sys.join("bus/pci/devices/0000:03:00.0")).unwrap();
        std::fs::write(dev.join("config"), &config).unwrap();
        let names = [
            "vendor", "device", "class", "local_cpulist", "current_link_speed", "max_link_speed",
            "current_link_width", "max_link_width", "numa_node", "p2pmem/size",
        ];
        for (name, value) in names.iter().zip(&attrs) {
            std::fs::write(dev.join(name), value).unwrap();
        }
        std::fs::write(dev.join("resource"), resource.join("\n")).unwrap();
        if let Ok(t) = machine::read(&Roots { sys, proc }, None) {
            for d in &t.devices {
                let _ = d.link.as_ref().map(|l| l.degraded());
            }
            if let Ok(engine) = Engine::new(&t) {
                let _ = analysis::matrix(&engine);
                let _ = metrics::exposition(&engine, &metrics::Options { pairs: true, ..Default::default() });
            }
        }
    }
}
