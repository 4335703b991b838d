//! The emulated machine (q35) and its QEMU command line. Knows nothing of P2P rules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{LabError, Result};

/// A QEMU-level description of the emulated machine (q35). Knows nothing of P2P rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabMachine {
    /// QEMU `-cpu` model: "qemu64" (TCG default: AMD vendor, old family), "EPYC", "Skylake-Server"...
    pub cpu: String,
    /// Number of guest CPUs (`-smp`); 1 is fastest under TCG on a small host.
    pub cpus: u32,
    /// Emulated Intel IOMMU: `-machine q35,kernel-irqchip=split`, `-device
    /// intel-iommu,intremap=on`, kernel `intel_iommu=on`.
    pub iommu: bool,
    /// Appended to the guest kernel command line.
    pub kernel_params: Vec<String>,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// PCIe devices, in order; parents before children.
    pub devices: Vec<LabDevice>,
    /// I/O errors QEMU injects into NVMe drives (its `blkdebug` block driver).
    pub disk_faults: Vec<DiskFault>,
}

/// An I/O error on every request that touches byte `offset` of the NVMe drive `device`
/// (its QEMU id), from the drive's first write on: QEMU's blkdebug arms its rules on a
/// block-layer event, and for raw images the only one is a write (`pwritev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFault {
    pub device: String,
    /// A multiple of 512 (blkdebug counts in sectors).
    pub offset: u64,
    /// Only reads or only writes fail; None: both.
    pub only: Option<FaultOp>,
    /// The errno QEMU's block layer sees (5, EIO; ENOSPC would stop the VM instead).
    pub errno: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Read,
    Write,
}

/// The blkdebug configuration for `device`'s faults; None when it has none.
pub fn blkdebug_config(machine: &LabMachine, device: &str) -> Option<String> {
    let faults: Vec<&DiskFault> = machine.disk_faults.iter().filter(|f| f.device == device).collect();
    if faults.is_empty() {
        return None;
    }
    let mut out = String::new();
    for f in faults {
        out.push_str("[inject-error]\nevent = \"pwritev\"\n");
        if let Some(op) = f.only {
            out.push_str(match op {
                FaultOp::Read => "iotype = \"read\"\n",
                FaultOp::Write => "iotype = \"write\"\n",
            });
        }
        out.push_str(&format!(
            "errno = \"{}\"\nsector = \"{}\"\nonce = \"off\"\nimmediately = \"on\"\n\n",
            f.errno,
            f.offset / 512
        ));
    }
    Some(out)
}

impl Default for LabMachine {
    fn default() -> Self {
        LabMachine {
            cpu: "qemu64".into(),
            cpus: 1,
            iommu: false,
            kernel_params: Vec::new(),
            memory_mib: 1024,
            devices: Vec::new(),
            disk_faults: Vec::new(),
        }
    }
}

/// One PCIe device of a [`LabMachine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabDevice {
    /// QEMU `id=` (also the bus name children attach to).
    pub id: String,
    /// Parent bus: "pcie.0", a pxb's id, a root port's id, a switch downstream port's id,
    /// a switch upstream port's id.
    pub bus: String,
    /// (slot, function) on that bus, e.g. (0x11, 0); `None` = QEMU picks.
    pub addr: Option<(u8, u8)>,
    /// Sets `multifunction=on` (on function 0 of a multifunction slot).
    pub multifunction: bool,
    /// What the device is.
    pub kind: LabDeviceKind,
}

/// The kinds of device the lab can emulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabDeviceKind {
    /// An extra host bridge (`pxb-pcie`). `numa_node` makes QEMU define NUMA nodes.
    PxbPcie { bus_nr: u8, numa_node: Option<u32> },
    /// `pcie-root-port` (QEMU gives it an ACS capability).
    RootPort { chassis: u8, slot: u16 },
    /// `x3130-upstream`, the upstream port of a switch (no ACS capability in QEMU).
    SwitchUpstream,
    /// `xio3130-downstream`, a switch downstream port (no ACS capability in QEMU).
    SwitchDownstream { chassis: u8, slot: u16 },
    /// An NVMe controller with one namespace backed by a sparse image the lab creates.
    /// `cmb_mib` adds a controller memory buffer (`cmb_size_mb`).
    Nvme { serial: String, size_mib: u64, cmb_mib: Option<u32> },
    /// A PCIe NIC (`e1000e`) on an isolated user-mode network; no guest driver is loaded.
    Nic,
    /// A GPU-like BAR-only device (`bochs-display`, 1234:1111, class 0x0380): a 16 MiB
    /// prefetchable framebuffer BAR and a 4 KiB register BAR, no P2P memory of its own.
    Display,
}

impl LabDeviceKind {
    fn qemu_name(&self) -> &'static str {
        match self {
            LabDeviceKind::PxbPcie { .. } => "pxb-pcie",
            LabDeviceKind::RootPort { .. } => "pcie-root-port",
            LabDeviceKind::SwitchUpstream => "x3130-upstream",
            LabDeviceKind::SwitchDownstream { .. } => "xio3130-downstream",
            LabDeviceKind::Nvme { .. } => "nvme",
            LabDeviceKind::Nic => "e1000e",
            LabDeviceKind::Display => "bochs-display",
        }
    }

    /// Whether the device is a bridge that devices are plugged into, and whether its
    /// secondary bus has a single slot (PCIe ports).
    fn bus_kind(&self) -> Option<BusKind> {
        match self {
            LabDeviceKind::PxbPcie { .. } => Some(BusKind::HostBridge),
            LabDeviceKind::RootPort { .. } | LabDeviceKind::SwitchDownstream { .. } => Some(BusKind::Port),
            LabDeviceKind::SwitchUpstream => Some(BusKind::SwitchInternal),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BusKind {
    /// pcie.0 or a pxb-pcie: root ports, extra host bridges (pcie.0 only), integrated endpoints.
    HostBridge,
    /// Below a root port or downstream port: one slot (device 0), endpoints or a switch.
    Port,
    /// Below a switch upstream port: downstream ports only.
    SwitchInternal,
}

/// The host files a QEMU command line refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabAssets {
    /// The QEMU program (argv[0]).
    pub qemu: PathBuf,
    /// Its firmware directories (`-L`, in this order); empty: its built-in ones.
    pub qemu_data_dirs: Vec<PathBuf>,
    /// Give each NVMe drive a DMA bounce buffer of this many bytes (QEMU 9.0 and later: see
    /// [`NVME_BOUNCE_BUFFER`]); `None` for older QEMU, which has one page for the machine.
    pub nvme_bounce_buffer: Option<u64>,
    /// The guest kernel (`-kernel`).
    pub kernel: PathBuf,
    /// The initramfs (`-initrd`).
    pub initrd: PathBuf,
    /// Where the NVMe backing images live: `<disk_dir>/<device id>.img`.
    pub disk_dir: PathBuf,
    /// A host directory shared with the guest over virtio-9p (mount tag [`SHARE_TAG`]).
    pub share_dir: Option<PathBuf>,
    /// Let kernel messages through to the console (`loglevel=7`) instead of `quiet loglevel=1`.
    pub kernel_log: bool,
}

impl LabAssets {
    /// Placeholder paths, for showing a command line before anything is built.
    pub fn placeholder() -> Self {
        LabAssets {
            qemu: "qemu-system-x86_64".into(),
            qemu_data_dirs: Vec::new(),
            nvme_bounce_buffer: None,
            kernel: "vmlinuz".into(),
            initrd: "initrd.cpio".into(),
            disk_dir: ".".into(),
            share_dir: None,
            kernel_log: false,
        }
    }

    /// The backing image of the NVMe device `id`.
    pub fn disk_path(&self, id: &str) -> PathBuf {
        self.disk_dir.join(format!("{id}.img"))
    }

    /// The blkdebug configuration of the NVMe device `id`, when it has faults.
    pub fn blkdebug_path(&self, id: &str) -> PathBuf {
        self.disk_dir.join(format!("{id}.blkdebug"))
    }
}

/// The DMA bounce buffer each NVMe drive gets on QEMU 9.0 and later. A drive's DMA into a
/// peer's CMB (MMIO) goes through it; QEMU's default is one page, so a 512 KiB command (the
/// emulated drive's largest, MDTS 7) would be cut into 128 mappings. 1 MiB maps one whole.
pub const NVME_BOUNCE_BUFFER: u64 = 1 << 20;

/// The 9p mount tag of [`LabAssets::share_dir`].
pub const SHARE_TAG: &str = "p2pdma-share";

/// The PCI address of the virtio-9p device on pcie.0 when a share is used (slot 0x1e), kept
/// away from the usual root-port slots.
pub const SHARE_SLOT: u8 = 0x1e;

/// The exact QEMU argv (argv[0] is `assets.qemu`).
pub fn qemu_args(machine: &LabMachine, assets: &LabAssets) -> Result<Vec<String>> {
    validate(machine)?;
    let mut args: Vec<String> = vec![assets.qemu.display().to_string()];
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    for dir in &assets.qemu_data_dirs {
        // -L takes the path as it is: not a comma-separated option value.
        let dir = dir.to_str().ok_or_else(|| {
            LabError::InvalidMachine(format!("path {} is not UTF-8: use another cache directory", dir.display()))
        })?;
        push(&["-L", dir]);
    }

    let machine_opt = if machine.iommu { "q35,kernel-irqchip=split" } else { "q35" };
    push(&["-machine", machine_opt, "-accel", "tcg", "-cpu", &machine.cpu]);
    push(&["-smp", &machine.cpus.to_string(), "-m", &format!("{}M", machine.memory_mib)]);
    push(&["-nodefaults", "-no-user-config", "-display", "none", "-serial", "mon:stdio", "-no-reboot"]);
    numa_args(machine, &mut push);
    if machine.iommu {
        // Must come before the PCI devices it translates for.
        push(&["-device", "intel-iommu,intremap=on"]);
    }
    push(&["-kernel", &path_arg(&assets.kernel)?, "-initrd", &path_arg(&assets.initrd)?]);
    push(&["-append", &kernel_command_line(machine, assets)]);

    for dev in &machine.devices {
        device_args(machine, assets, dev, &mut push)?;
    }

    if let Some(share) = &assets.share_dir {
        push(&[
            "-fsdev",
            &format!("local,id=fs-share,path={},security_model=none", path_arg(share)?),
            "-device",
            &format!("virtio-9p-pci,id=share,fsdev=fs-share,mount_tag={SHARE_TAG},bus=pcie.0,addr={SHARE_SLOT:#04x}.0"),
        ]);
    }
    Ok(args)
}

/// One device's `-device` option (and the `-drive` or `-netdev` behind it).
fn device_args(
    machine: &LabMachine,
    assets: &LabAssets,
    dev: &LabDevice,
    push: &mut impl FnMut(&[&str]),
) -> Result<()> {
    let mut opts = vec![dev.kind.qemu_name().to_string(), format!("id={}", dev.id), format!("bus={}", dev.bus)];
    if let Some((slot, function)) = dev.addr {
        opts.push(format!("addr={slot:#04x}.{function:x}"));
    }
    if dev.multifunction {
        opts.push("multifunction=on".into());
    }
    match &dev.kind {
        LabDeviceKind::PxbPcie { bus_nr, numa_node } => {
            opts.push(format!("bus_nr={bus_nr}"));
            if let Some(node) = numa_node {
                opts.push(format!("numa_node={node}"));
            }
        }
        LabDeviceKind::RootPort { chassis, slot } | LabDeviceKind::SwitchDownstream { chassis, slot } => {
            opts.push(format!("chassis={chassis}"));
            opts.push(format!("slot={slot}"));
        }
        LabDeviceKind::SwitchUpstream => {}
        LabDeviceKind::Nvme { serial, cmb_mib, .. } => {
            let drive = format!("drv-{}", dev.id);
            let image = path_arg(&assets.disk_path(&dev.id))?;
            let file = if blkdebug_config(machine, &dev.id).is_some() {
                let config = path_arg(&assets.blkdebug_path(&dev.id))?;
                format!("file.driver=blkdebug,file.config={config},file.image.filename={image}")
            } else {
                format!("file={image}")
            };
            // The images are scratch files, deleted after the run: the host need not
            // fdatasync them when the guest flushes (the guest still sends its flushes,
            // and the drive still reports a volatile write cache).
            push(&["-drive", &format!("{file},if=none,id={drive},format=raw,cache=unsafe")]);
            opts.push(format!("drive={drive}"));
            opts.push(format!("serial={serial}"));
            if let Some(cmb) = cmb_mib {
                opts.push(format!("cmb_size_mb={cmb}"));
            }
            if let Some(bytes) = assets.nvme_bounce_buffer {
                opts.push(format!("x-max-bounce-buffer-size={bytes}"));
            }
        }
        LabDeviceKind::Nic => {
            let netdev = format!("net-{}", dev.id);
            push(&["-netdev", &format!("user,id={netdev},restrict=on")]);
            opts.push(format!("netdev={netdev}"));
        }
        LabDeviceKind::Display => {}
    }
    push(&["-device", &opts.join(",")]);
    Ok(())
}

/// The guest kernel command line.
pub(crate) fn kernel_command_line(machine: &LabMachine, assets: &LabAssets) -> String {
    let mut params: Vec<&str> = vec!["console=ttyS0,115200", "panic=-1", "rdinit=/init"];
    if assets.kernel_log {
        params.push("loglevel=7");
    } else {
        params.extend(["quiet", "loglevel=1"]);
    }
    if machine.iommu {
        // With interrupt remapping, a TCG guest slowed by a loaded host can fail the boot's
        // timer check, and the kernel then panics ("timer doesn't work through
        // Interrupt-remapped IO-APIC", check_timer in arch/x86/kernel/apic/io_apic.c);
        // no_timer_check skips that check and nothing PCI depends on it.
        params.extend(["intel_iommu=on", "no_timer_check"]);
    }
    params.extend(machine.kernel_params.iter().map(String::as_str));
    params.join(" ")
}

/// `-object memory-backend-ram` + `-numa node` per node when a pxb asks for a NUMA node.
fn numa_args(machine: &LabMachine, push: &mut impl FnMut(&[&str])) {
    let Some(max_node) = machine
        .devices
        .iter()
        .filter_map(|d| match d.kind {
            LabDeviceKind::PxbPcie { numa_node, .. } => numa_node,
            _ => None,
        })
        .max()
    else {
        return;
    };
    let nodes = max_node + 1;
    let per_node = machine.memory_mib / nodes;
    for node in 0..nodes {
        // The first node takes the remainder so the total stays `memory_mib`.
        let size = if node == 0 { machine.memory_mib - per_node * (nodes - 1) } else { per_node };
        push(&["-object", &format!("memory-backend-ram,id=mem{node},size={size}M")]);
        push(&["-numa", &format!("node,nodeid={node},memdev=mem{node}")]);
    }
    for cpu in 0..machine.cpus {
        push(&["-numa", &format!("cpu,node-id={},socket-id={cpu}", cpu % nodes)]);
    }
}

/// QEMU option values are comma-separated: a comma in a path must be doubled.
fn path_arg(path: &Path) -> Result<String> {
    let text = path.to_str().ok_or_else(|| {
        LabError::InvalidMachine(format!("path {} is not UTF-8: use another directory", path.display()))
    })?;
    Ok(text.replace(',', ",,"))
}

/// Checks everything QEMU would reject (or silently get wrong), with a message saying how to fix it.
pub(crate) fn validate(machine: &LabMachine) -> Result<()> {
    validate_resources(machine)?;
    let mut seen = Seen::default();
    for dev in &machine.devices {
        seen.device(dev)?;
    }
    validate_faults(machine)
}

fn bad(msg: String) -> Result<()> {
    Err(LabError::InvalidMachine(msg))
}

/// CPU model and count, memory, kernel parameters, NUMA nodes.
fn validate_resources(machine: &LabMachine) -> Result<()> {
    if machine.cpu.is_empty() || !machine.cpu.chars().all(|c| c.is_ascii_alphanumeric() || "-_.,=+".contains(c)) {
        return bad(format!("cpu model {:?} is not a QEMU -cpu value (e.g. \"qemu64\", \"EPYC\")", machine.cpu));
    }
    if machine.cpus == 0 || machine.cpus > 64 {
        return bad(format!("cpus = {}: use 1..=64", machine.cpus));
    }
    if machine.memory_mib < 256 {
        return bad(format!("memory_mib = {}: the guest needs at least 256 MiB", machine.memory_mib));
    }
    for param in &machine.kernel_params {
        if param.is_empty() || param.chars().any(|c| c.is_control()) {
            return bad(format!("kernel parameter {param:?} is empty or has control characters"));
        }
    }
    let numa_nodes = machine
        .devices
        .iter()
        .filter_map(|d| match d.kind {
            LabDeviceKind::PxbPcie { numa_node, .. } => numa_node,
            _ => None,
        })
        .max()
        .map_or(0, |n| n + 1);
    if numa_nodes > 8 || (numa_nodes > 0 && machine.memory_mib / numa_nodes < 128) {
        return bad(format!(
            "{numa_nodes} NUMA nodes for {} MiB: use numa_node < 8 and at least 128 MiB per node",
            machine.memory_mib
        ));
    }
    Ok(())
}

/// What the devices checked so far use: bus names and their kinds, addresses per bus,
/// port chassis/slot pairs, NVMe serials, pxb bus numbers.
struct Seen {
    buses: HashMap<String, BusKind>,
    used_addrs: HashMap<(String, u8, u8), String>,
    slots: HashMap<(u8, u16), String>,
    serials: HashMap<String, String>,
    bus_numbers: HashMap<u8, String>,
}

impl Default for Seen {
    fn default() -> Self {
        Seen {
            buses: HashMap::from([("pcie.0".to_string(), BusKind::HostBridge)]),
            used_addrs: HashMap::new(),
            slots: HashMap::new(),
            serials: HashMap::new(),
            bus_numbers: HashMap::new(),
        }
    }
}

impl Seen {
    /// One device, in list order (parents before children).
    fn device(&mut self, dev: &LabDevice) -> Result<()> {
        let parent = self.placement(dev)?;
        self.address(dev, parent)?;
        self.kind(dev)?;
        if let Some(kind) = dev.kind.bus_kind() {
            self.buses.insert(dev.id.clone(), kind);
        }
        Ok(())
    }

    /// A unique id, on a bus listed before it that may hold this kind of device; the
    /// kind of that bus.
    fn placement(&self, dev: &LabDevice) -> Result<BusKind> {
        let id = &dev.id;
        if !valid_id(id) {
            return Err(LabError::InvalidMachine(format!(
                "device id {id:?}: use a letter then letters, digits, '-', '.', '_' (max 32)"
            )));
        }
        if self.buses.contains_key(id) || self.used_addrs.values().any(|other| other == id) {
            return Err(LabError::InvalidMachine(format!(
                "device id {id:?} is used twice (ids must be unique and not \"pcie.0\")"
            )));
        }
        let Some(&parent) = self.buses.get(&dev.bus) else {
            return Err(LabError::InvalidMachine(format!(
                "device {id:?}: bus {:?} is not \"pcie.0\" or the id of an earlier pxb, root port or switch port \
                 (list parents before children)",
                dev.bus
            )));
        };
        let allowed = match (&dev.kind, parent) {
            (LabDeviceKind::PxbPcie { .. }, BusKind::HostBridge) => dev.bus == "pcie.0",
            (LabDeviceKind::RootPort { .. }, BusKind::HostBridge) => true,
            (LabDeviceKind::SwitchUpstream, BusKind::Port) => true,
            (LabDeviceKind::SwitchDownstream { .. }, BusKind::SwitchInternal) => true,
            (
                LabDeviceKind::Nvme { .. } | LabDeviceKind::Nic | LabDeviceKind::Display,
                BusKind::HostBridge | BusKind::Port,
            ) => true,
            _ => false,
        };
        if !allowed {
            return Err(LabError::InvalidMachine(format!(
                "device {id:?} ({}) cannot sit on bus {:?}: pxb-pcie goes on pcie.0; root ports on pcie.0 or a pxb; \
                 a switch upstream port below a root/downstream port; downstream ports below an upstream port; \
                 endpoints on a host bridge or below a root/downstream port",
                dev.kind.qemu_name(),
                dev.bus
            )));
        }
        Ok(parent)
    }

    /// The device's address on its bus: in range, free, function 0 first.
    fn address(&mut self, dev: &LabDevice, parent: BusKind) -> Result<()> {
        let id = &dev.id;
        let Some((slot, function)) = dev.addr else {
            if dev.multifunction {
                return bad(format!("device {id:?}: multifunction needs an explicit addr"));
            }
            // Record the id so duplicates are caught.
            self.used_addrs.insert((format!("auto:{id}"), 0, 0), id.clone());
            return Ok(());
        };
        if slot > 31 || function > 7 {
            return bad(format!(
                "device {id:?}: addr ({slot:#x}, {function}) is out of range (slot 0..=31, function 0..=7)"
            ));
        }
        if parent == BusKind::Port && slot != 0 {
            return bad(format!("device {id:?}: a PCIe port has one slot; use addr (0, function)"));
        }
        if dev.bus == "pcie.0" && (slot == 0 || slot == 0x1f || slot == SHARE_SLOT) {
            return bad(format!(
                "device {id:?}: slot {slot:#x} on pcie.0 is taken by the q35 host bridge (0), ICH9 (0x1f) or \
                 the lab's 9p share ({SHARE_SLOT:#x}); pick another"
            ));
        }
        if let Some(other) = self.used_addrs.insert((dev.bus.clone(), slot, function), id.clone()) {
            return bad(format!("devices {other:?} and {id:?} both use addr ({slot:#x}, {function}) on {:?}", dev.bus));
        }
        if function != 0 && !self.used_addrs.contains_key(&(dev.bus.clone(), slot, 0)) {
            return bad(format!(
                "device {id:?}: function {function} needs function 0 of slot {slot:#x} listed before it"
            ));
        }
        Ok(())
    }

    /// What each kind needs: pxb bus numbers, port chassis/slot pairs, NVMe serials and sizes.
    fn kind(&mut self, dev: &LabDevice) -> Result<()> {
        let id = &dev.id;
        match &dev.kind {
            LabDeviceKind::PxbPcie { bus_nr, .. } => {
                if *bus_nr == 0 {
                    return bad(format!("pxb {id:?}: bus_nr 0 is pcie.0's; use e.g. 0x80"));
                }
                if let Some(other) = self.bus_numbers.insert(*bus_nr, id.clone()) {
                    return bad(format!("pxbs {other:?} and {id:?} both use bus_nr {bus_nr}"));
                }
            }
            LabDeviceKind::RootPort { chassis, slot } | LabDeviceKind::SwitchDownstream { chassis, slot } => {
                if let Some(other) = self.slots.insert((*chassis, *slot), id.clone()) {
                    return bad(format!(
                        "ports {other:?} and {id:?} both use chassis {chassis} slot {slot}; make each pair unique"
                    ));
                }
            }
            LabDeviceKind::Nvme { serial, size_mib, cmb_mib } => {
                if serial.is_empty() || serial.len() > 20 || !serial.chars().all(|c| c.is_ascii_graphic() && c != ',') {
                    return bad(format!(
                        "nvme {id:?}: serial {serial:?} must be 1-20 printable ASCII characters without ','"
                    ));
                }
                if let Some(other) = self.serials.insert(serial.clone(), id.clone()) {
                    return bad(format!(
                        "nvme {other:?} and {id:?} both have serial {serial:?}; serials must be unique"
                    ));
                }
                if *size_mib == 0 || *size_mib > 1 << 20 {
                    return bad(format!("nvme {id:?}: size_mib {size_mib} must be 1..=1048576"));
                }
                if let Some(cmb) = cmb_mib {
                    if *cmb == 0 || *cmb > 4096 || !cmb.is_power_of_two() {
                        return bad(format!("nvme {id:?}: cmb_mib {cmb} must be a power of two up to 4096"));
                    }
                }
            }
            LabDeviceKind::SwitchUpstream | LabDeviceKind::Nic | LabDeviceKind::Display => {}
        }
        Ok(())
    }
}

/// Each injected fault on an NVMe drive, at a sector boundary inside it, with a real errno.
fn validate_faults(machine: &LabMachine) -> Result<()> {
    for f in &machine.disk_faults {
        let size = machine.devices.iter().find(|d| d.id == f.device).and_then(|d| match d.kind {
            LabDeviceKind::Nvme { size_mib, .. } => Some(size_mib << 20),
            _ => None,
        });
        match size {
            None => return bad(format!("disk fault on {:?}: no NVMe drive has that id", f.device)),
            Some(size) if f.offset >= size || f.offset % 512 != 0 => {
                return bad(format!(
                    "disk fault on {:?}: offset {} must be a multiple of 512 below the drive's {size} bytes",
                    f.device, f.offset
                ))
            }
            _ => {}
        }
        if !(1..=133).contains(&f.errno) {
            return bad(format!("disk fault on {:?}: errno {} is not an errno", f.device, f.errno));
        }
    }
    Ok(())
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && id.len() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !id.starts_with("drv-")
        && !id.starts_with("net-")
        && id != "share"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str, bus: &str, addr: Option<(u8, u8)>, kind: LabDeviceKind) -> LabDevice {
        LabDevice { id: id.into(), bus: bus.into(), addr, multifunction: false, kind }
    }

    fn nvme(serial: &str, cmb: Option<u32>) -> LabDeviceKind {
        LabDeviceKind::Nvme { serial: serial.into(), size_mib: 64, cmb_mib: cmb }
    }

    fn switch_machine() -> LabMachine {
        LabMachine {
            devices: vec![
                dev("rp0", "pcie.0", Some((0x11, 0)), LabDeviceKind::RootPort { chassis: 1, slot: 1 }),
                dev("up0", "rp0", None, LabDeviceKind::SwitchUpstream),
                dev("dp0", "up0", None, LabDeviceKind::SwitchDownstream { chassis: 2, slot: 0 }),
                dev("dp1", "up0", None, LabDeviceKind::SwitchDownstream { chassis: 2, slot: 1 }),
                dev("nvme-a", "dp0", None, nvme("nvme-a", Some(16))),
                dev("nvme-b", "dp1", None, nvme("nvme-b", None)),
            ],
            ..LabMachine::default()
        }
    }

    fn assets() -> LabAssets {
        LabAssets { disk_dir: "/tmp/run".into(), ..LabAssets::placeholder() }
    }

    #[test]
    fn switch_machine_argv() {
        let args = qemu_args(&switch_machine(), &assets()).unwrap();
        let joined = args.join(" ");
        assert_eq!(
            joined,
            "qemu-system-x86_64 -machine q35 -accel tcg -cpu qemu64 -smp 1 -m 1024M -nodefaults -no-user-config \
             -display none -serial mon:stdio -no-reboot -kernel vmlinuz -initrd initrd.cpio \
             -append console=ttyS0,115200 panic=-1 rdinit=/init quiet loglevel=1 \
             -device pcie-root-port,id=rp0,bus=pcie.0,addr=0x11.0,chassis=1,slot=1 \
             -device x3130-upstream,id=up0,bus=rp0 \
             -device xio3130-downstream,id=dp0,bus=up0,chassis=2,slot=0 \
             -device xio3130-downstream,id=dp1,bus=up0,chassis=2,slot=1 \
             -drive file=/tmp/run/nvme-a.img,if=none,id=drv-nvme-a,format=raw,cache=unsafe \
             -device nvme,id=nvme-a,bus=dp0,drive=drv-nvme-a,serial=nvme-a,cmb_size_mb=16 \
             -drive file=/tmp/run/nvme-b.img,if=none,id=drv-nvme-b,format=raw,cache=unsafe \
             -device nvme,id=nvme-b,bus=dp1,drive=drv-nvme-b,serial=nvme-b"
        );
        // -append's value is one argv element.
        let append = args.iter().position(|a| a == "-append").unwrap();
        assert!(args[append + 1].starts_with("console=ttyS0"));
    }

    #[test]
    fn newer_qemu_gets_its_firmware_dirs_and_nvme_bounce_buffers() {
        let assets = LabAssets {
            qemu_data_dirs: vec!["/cache/qemu/10/usr/share/qemu".into(), "/usr/share/qemu".into()],
            nvme_bounce_buffer: Some(NVME_BOUNCE_BUFFER),
            ..assets()
        };
        let joined = qemu_args(&switch_machine(), &assets).unwrap().join(" ");
        assert!(
            joined.starts_with("qemu-system-x86_64 -L /cache/qemu/10/usr/share/qemu -L /usr/share/qemu -machine q35")
        );
        assert!(joined.contains("serial=nvme-a,cmb_size_mb=16,x-max-bounce-buffer-size=1048576 "), "{joined}");
        assert!(joined.ends_with("serial=nvme-b,x-max-bounce-buffer-size=1048576"), "{joined}");
    }

    #[test]
    fn iommu_multifunction_cpu_params_share() {
        let mut machine = LabMachine {
            cpu: "EPYC".into(),
            iommu: true,
            kernel_params: vec!["pci=disable_acs_redir=0000:00:11.0".into()],
            devices: vec![
                dev("rp0", "pcie.0", Some((0x11, 0)), LabDeviceKind::RootPort { chassis: 1, slot: 1 }),
                dev("n0", "rp0", Some((0, 0)), nvme("a", Some(16))),
                dev("n1", "rp0", Some((0, 1)), nvme("b", None)),
            ],
            ..LabMachine::default()
        };
        machine.devices[1].multifunction = true;
        let share = LabAssets { share_dir: Some("/tmp/a,b".into()), kernel_log: true, ..assets() };
        let args = qemu_args(&machine, &share).unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("-machine q35,kernel-irqchip=split"));
        assert!(joined.contains("-cpu EPYC"));
        let iommu = args.iter().position(|a| a == "intel-iommu,intremap=on").unwrap();
        let first_device = args.iter().position(|a| a.starts_with("pcie-root-port")).unwrap();
        assert!(iommu < first_device);
        assert!(joined.contains("loglevel=7 intel_iommu=on no_timer_check pci=disable_acs_redir=0000:00:11.0"));
        assert!(!joined.contains("quiet"));
        assert!(joined.contains("nvme,id=n0,bus=rp0,addr=0x00.0,multifunction=on,drive=drv-n0,serial=a,cmb_size_mb=16"));
        assert!(joined.contains("nvme,id=n1,bus=rp0,addr=0x00.1,drive=drv-n1,serial=b"));
        assert!(joined.contains("-fsdev local,id=fs-share,path=/tmp/a,,b,security_model=none"));
        assert!(joined.contains("virtio-9p-pci,id=share,fsdev=fs-share,mount_tag=p2pdma-share,bus=pcie.0,addr=0x1e.0"));
    }

    #[test]
    fn pxb_numa_and_nic() {
        let machine = LabMachine {
            cpus: 2,
            devices: vec![
                dev("pxb1", "pcie.0", None, LabDeviceKind::PxbPcie { bus_nr: 0x80, numa_node: Some(1) }),
                dev("rp1", "pxb1", None, LabDeviceKind::RootPort { chassis: 3, slot: 0 }),
                dev("nic0", "rp1", None, LabDeviceKind::Nic),
            ],
            ..LabMachine::default()
        };
        let joined = qemu_args(&machine, &assets()).unwrap().join(" ");
        assert!(joined.contains("-object memory-backend-ram,id=mem0,size=512M -numa node,nodeid=0,memdev=mem0"));
        assert!(joined.contains("-object memory-backend-ram,id=mem1,size=512M -numa node,nodeid=1,memdev=mem1"));
        assert!(joined.contains("-numa cpu,node-id=0,socket-id=0 -numa cpu,node-id=1,socket-id=1"));
        assert!(joined.contains("-device pxb-pcie,id=pxb1,bus=pcie.0,bus_nr=128,numa_node=1"));
        assert!(joined.contains("-device pcie-root-port,id=rp1,bus=pxb1,chassis=3,slot=0"));
        assert!(joined.contains("-netdev user,id=net-nic0,restrict=on -device e1000e,id=nic0,bus=rp1,netdev=net-nic0"));
    }

    #[test]
    fn rejects_bad_machines_with_hints() {
        let check = |machine: &LabMachine, needle: &str| {
            let err = qemu_args(machine, &assets()).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
        };
        let base = switch_machine();

        let mut m = base.clone();
        m.devices[1].bus = "nowhere".into();
        check(&m, "list parents before children");

        let mut m = base.clone();
        m.devices.swap(0, 1);
        check(&m, "list parents before children");

        let mut m = base.clone();
        m.devices[5].id = "nvme-a".into();
        check(&m, "used twice");

        let mut m = base.clone();
        m.devices[5].kind = nvme("nvme-a", None);
        check(&m, "serials must be unique");

        let mut m = base.clone();
        m.devices[3].kind = LabDeviceKind::SwitchDownstream { chassis: 2, slot: 0 };
        check(&m, "chassis 2 slot 0");

        let mut m = base.clone();
        m.devices[4].addr = Some((3, 0));
        check(&m, "one slot");

        let mut m = base.clone();
        m.devices[4].bus = "up0".into();
        check(&m, "cannot sit on bus");

        let mut m = base.clone();
        m.devices[4].kind = nvme("x", Some(3));
        check(&m, "power of two");

        let mut m = base.clone();
        m.devices[0].addr = Some((0x1f, 0));
        check(&m, "ICH9");

        let mut m = base.clone();
        m.devices[0].id = "1bad".into();
        check(&m, "use a letter");

        let mut m = base.clone();
        m.devices[0].id = "rp,x".into();
        check(&m, "use a letter");

        let mut m = base.clone();
        m.cpu = "qemu64 -evil".into();
        check(&m, "cpu model");

        let mut m = base.clone();
        m.kernel_params.push("a\nb".into());
        check(&m, "control characters");

        let mut m = base;
        m.devices[4].addr = Some((0, 1));
        check(&m, "function 0");
    }
}
