//! The real machines of `fixtures/machines/` (issue 21), each as the inputs one would paste
//! together (one folder each), for the importer's golden tests and the CLI's; included with
//! `#[path]` so the list exists once. Machines whose files alone place no device in a tree
//! (a lone dmesg excerpt, a lone `lspci -v` stanza) are tested by name where they are used.

pub const MACHINES: &[&[&str]] = &[
    &["threadripper-pro-wrx90-2xrtx6000ada-stelline/paste.md"],
    &["xeon-e5-2s-cisco-vic-manyvfs-hwloc/lstopo.xml"],
    &["power8-minsky-4xp100-multidomain-hwloc/lstopo.xml"],
    &[
        "epyc-9374f-2s-4xrtx6000ada-stelline/lspci-tree-numactl.md",
        "epyc-9374f-2s-4xrtx6000ada-stelline/lspci-vvv-gpu3-nics.md",
        "epyc-9374f-2s-4xrtx6000ada-stelline/nvidia-smi-topo.md",
        "epyc-9374f-2s-4xrtx6000ada-stelline/lscpu.md",
    ],
    &["amd-am5-ryzen9950x-2xarc-b70-tree/p2p-probe.log"],
    &["xeon-x5600-2s-hp-sl390s-3xtesla-hwloc/lstopo.xml"],
    &["xeon-8174-2s-dgx2-16xv100-plx-hwloc/lstopo.xml"],
    &["xeon-5500-2s-dell-r410-hwloc-v1/lstopo.xml"],
    &["xeon-e5-2680-2s-dell-dcs8000z-mic-nvme-hwloc/lstopo.xml"],
    &["xeon-e7-4870-4s-dell-r910-groups-hwloc/lstopo.xml"],
];
