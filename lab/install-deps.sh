#!/bin/sh
# Install the host tools the p2pdma lab needs (Debian/Ubuntu), only by adding packages
# (scripts/lib/apt-add.sh: it refuses to remove, downgrade or upgrade anything).
#
#   busybox-static   the guest userland (static busybox, copied into the initramfs)
#   dpkg / apt       apt-get download + dpkg-deb (the Debian kernels and QEMU the lab unpacks)
#   ca-certificates  for https mirrors
#
# QEMU is not installed here: the lab runs the machine's qemu-system-x86_64 when it has one,
# else Debian's, unpacked into ~/.cache/p2pdma with the libraries the machine lacks
# (`p2pdma lab fetch --qemu suite`). Installing Debian 12's qemu-system-x86 would remove the
# backports qemu-utils such machines often have. Kernel modules are decompressed by p2pdma.
set -eu
here=$(dirname "$0")
. "$here/../scripts/lib/apt-add.sh"
apt_add "lab dependencies" busybox-static dpkg apt ca-certificates
