#!/bin/sh
# Checks the host tools the p2pdma lab needs (Debian/Ubuntu) and adds those missing, only by
# adding packages (scripts/lib/apt-add.sh refuses to remove, downgrade or upgrade anything):
#
#   dpkg / apt       apt-get download + dpkg-deb (what the lab unpacks into its cache)
#   ca-certificates  for https mirrors
#
# Nothing else is installed. The lab unpacks what it boots into ~/.cache/p2pdma: Debian's
# kernels, a static busybox (busybox-static conflicts with a machine's busybox) and, when
# the machine has no qemu-system-x86_64, Debian's QEMU with the libraries the machine lacks
# (installing Debian 12's qemu-system-x86 removes the backports qemu-utils such machines
# often have). Kernel modules are decompressed by p2pdma itself.
set -eu
here=$(dirname "$0")
. "$here/../scripts/lib/apt-add.sh"
apt_add "lab dependencies" dpkg apt ca-certificates
