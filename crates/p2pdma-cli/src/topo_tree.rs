//! `topo`'s tree: one short line per function under its host bridge, as `lspci -tv` draws
//! it; a PF's VFs folded into one line (`+255 VFs (0000:41:00.1-0000:41:20.7)`) unless
//! `--vfs`; ACS registers, BARs and PCI names only with `-v`. Written line by line.

use std::collections::HashMap;
use std::io::{self, Write};

use p2pdma_core::alias::ShortNames;
use p2pdma_core::config::{acs_bits, Acs};
use p2pdma_core::model::Device;
use p2pdma_core::{Bdf, Engine};

use crate::render::{bytes, device_line};

struct Tree<'a> {
    devices: &'a [Device],
    short: &'a ShortNames,
    children: HashMap<Option<Bdf>, Vec<usize>>,
    /// Per PF: how many VFs, the first and the last address.
    vfs: HashMap<Bdf, (usize, Bdf, Bdf)>,
    expand_vfs: bool,
    verbose: bool,
}

pub fn write(
    w: &mut dyn Write,
    engine: &Engine<'_>,
    short: &ShortNames,
    expand_vfs: bool,
    verbose: bool,
) -> io::Result<()> {
    let topo = engine.topo;
    let mut children: HashMap<Option<Bdf>, Vec<usize>> = HashMap::new();
    let mut vfs: HashMap<Bdf, (usize, Bdf, Bdf)> = HashMap::new();
    for (i, d) in topo.devices.iter().enumerate() {
        match d.physfn {
            Some(pf) if !expand_vfs => {
                let e = vfs.entry(pf).or_insert((0, d.bdf, d.bdf));
                e.0 += 1;
                e.1 = e.1.min(d.bdf);
                e.2 = e.2.max(d.bdf);
            }
            _ => children.entry(d.upstream).or_default().push(i),
        }
    }
    let tree = Tree { devices: &topo.devices, short, children, vfs, expand_vfs, verbose };
    for (hb, w8) in topo.host_bridges.iter().zip(engine.host_bridge_info()) {
        let status = match (&w8.id, &w8.entry) {
            (None, _) => "no 00.0/root port device to identify it: never whitelisted".to_string(),
            (Some(id), None) => format!("{id}, not on the P2PDMA whitelist"),
            (Some(id), Some(e)) => format!(
                "{id}, whitelisted ({e}{})",
                if w8.same_host_bridge_only { ", same host bridge only" } else { "" }
            ),
        };
        writeln!(w, "\n{}  host bridge ({status})", hb.name)?;
        let roots: Vec<usize> = tree
            .children
            .get(&None)
            .map(|v| v.iter().copied().filter(|&i| topo.devices[i].host_bridge == hb.name).collect())
            .unwrap_or_default();
        tree.walk(w, &roots, "")?;
    }
    Ok(())
}

impl Tree<'_> {
    fn walk(&self, w: &mut dyn Write, list: &[usize], prefix: &str) -> io::Result<()> {
        for (k, &i) in list.iter().enumerate() {
            let d = &self.devices[i];
            let last = k + 1 == list.len();
            writeln!(w, "{prefix}{}{}", if last { "└─ " } else { "├─ " }, self.line(i))?;
            let next = format!("{prefix}{}", if last { "   " } else { "│  " });
            let kids = self.children.get(&Some(d.bdf));
            let folded = if self.expand_vfs { None } else { self.vfs.get(&d.bdf) };
            if let (true, Acs::Present { cap, ctrl, .. }) = (self.verbose, d.acs) {
                let bar = if kids.is_some() || folded.is_some() { "│  " } else { "   " };
                writeln!(w, "{next}{bar}ACSCap: {}", acs_bits::lspci(cap))?;
                writeln!(w, "{next}{bar}ACSCtl: {}", acs_bits::lspci(ctrl))?;
            }
            if let Some(&(n, first, last_vf)) = folded {
                let tail = if kids.is_some() { "├─ " } else { "└─ " };
                writeln!(w, "{next}{tail}+{n} VFs ({first}-{last_vf})")?;
            }
            if let Some(kids) = kids {
                self.walk(w, kids, &next)?;
            }
        }
        Ok(())
    }

    /// `0000:03:00.0  GPU0 gpu0  display controller 10de:2330 [nvidia]  16.0 GT/s x16`; with
    /// `-v` the long line of the report structs.
    fn line(&self, i: usize) -> String {
        let d = &self.devices[i];
        let short = self.short.get(i);
        if self.verbose {
            return match short {
                Some(s) => format!("{}  {s}{}", d.bdf, device_line(d).get(12..).unwrap_or_default()),
                None => device_line(d),
            };
        }
        let mut s = d.bdf.to_string();
        for name in [short, d.name.as_deref()].into_iter().flatten() {
            s.push_str("  ");
            s.push_str(name);
        }
        let kind = match d.port_type.filter(|_| d.is_pci_bridge()) {
            Some(t) => t.label(),
            None => d.class_name.as_deref().unwrap_or(d.kind()),
        };
        s.push_str(&format!("  {kind} {:04x}:{:04x}", d.vendor, d.device));
        if let Some(drv) = &d.driver {
            s.push_str(&format!(" [{drv}]"));
        }
        if let Some(pf) = d.physfn {
            s.push_str(&format!(" VF of {pf}"));
        }
        if let Some(l) = &d.link {
            if let (Some(speed), Some(width)) = (&l.current_speed, l.current_width) {
                s.push_str(&format!("  {speed} x{width}{}", if l.degraded() { " (degraded)" } else { "" }));
            }
        }
        if let Some(m) = &d.p2pmem {
            let published = if m.published { "" } else { ", NOT published" };
            s.push_str(&format!("  P2P memory {} free of {}{published}", bytes(m.available), bytes(m.size)));
        }
        s
    }
}
