#!/bin/sh
# Runs INSIDE the lab guest (busybox sh). Copies the PCI part of sysfs and a few /proc files
# into a tree that mirrors the real paths, for host-side unit tests:
#   capture-fixture.sh OUT_DIR
# OUT_DIR/sys/devices/pci*/.../<bdf>/{vendor,device,class,...,config}, driver/iommu_group/physfn
# symlinks (targets as the kernel shows them), p2pmem/{size,available,published};
# OUT_DIR/sys/bus/pci/devices/* and OUT_DIR/sys/class/iommu/* symlinks;
# OUT_DIR/sys/kernel/iommu_groups/<n>/devices/* symlinks;
# OUT_DIR/proc/{cmdline,cpuinfo (first processor),sys/kernel/osrelease}; OUT_DIR/dmesg.txt.
set -u
out=${1:?usage: capture-fixture.sh OUT_DIR}
mkdir -p "$out"

copy_link() { # copy_link SRC DEST: recreate the symlink SRC at DEST with the same target
    [ -L "$1" ] || return 0
    mkdir -p "$(dirname "$2")"
    ln -s "$(readlink "$1")" "$2"
}

for d in $(find /sys/devices/pci* -type d -name '[0-9a-f][0-9a-f][0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f].[0-7]' | sort); do
    t="$out$d"
    mkdir -p "$t"
    for f in vendor device class subsystem_vendor subsystem_device revision resource config \
             current_link_speed current_link_width max_link_speed max_link_width numa_node local_cpulist; do
        # Some attributes exist but fail to read (e.g. link speed on non-PCIe devices): skip those.
        if [ -f "$d/$f" ]; then
            cat "$d/$f" > "$t/$f" 2>/dev/null || rm -f "$t/$f"
        fi
    done
    for l in driver iommu_group physfn; do
        copy_link "$d/$l" "$t/$l"
    done
    if [ -d "$d/p2pmem" ]; then
        mkdir -p "$t/p2pmem"
        for f in size available published; do
            cat "$d/p2pmem/$f" > "$t/p2pmem/$f"
        done
    fi
done

for l in /sys/bus/pci/devices/* /sys/class/iommu/* /sys/kernel/iommu_groups/*/devices/*; do
    copy_link "$l" "$out$l"
done
for g in /sys/kernel/iommu_groups/*; do
    [ -f "$g/type" ] && cat "$g/type" > "$out$g/type"
done
mkdir -p "$out/sys/class/iommu" "$out/sys/bus/pci/devices"

mkdir -p "$out/proc/sys/kernel"
cat /proc/cmdline > "$out/proc/cmdline"
awk 'NF == 0 { exit } { print }' /proc/cpuinfo > "$out/proc/cpuinfo"
cat /proc/sys/kernel/osrelease > "$out/proc/sys/kernel/osrelease"
dmesg > "$out/dmesg.txt"
echo "captured $(find "$out" -type f | wc -l) files, $(du -s "$out" | cut -f1) KiB"
