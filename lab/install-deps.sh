#!/bin/sh
# Install the host tools the p2pdma lab needs (Debian/Ubuntu). Idempotent: installs only
# what is missing. Uses the machine's own apt sources; never adds other suites.
#
#   qemu-system-x86  qemu-system-x86_64 (TCG is enough; KVM is not needed)
#   busybox-static   the guest userland (static busybox, copied into the initramfs)
#   kmod             modinfo (read module dependencies on the host)
#   xz-utils         decompress .ko.xz modules (busybox insmod may not read xz)
#   dpkg / apt       apt-get download + dpkg-deb (fetching the Debian unstable kernel)
#   ca-certificates  for https mirrors
set -eu

want="qemu-system-x86 busybox-static kmod xz-utils dpkg apt ca-certificates"
missing=""
for pkg in $want; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    echo "lab dependencies already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
echo "installing:$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
qemu-system-x86_64 --version | head -n1
