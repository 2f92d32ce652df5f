#!/usr/bin/env bash
# Installs the Debian packages smolvm's build, tests and demo need, only when
# one is missing (a fresh machine of the project's kind lacks them).
#
# QEMU must be 9 or newer: the lab VM (docs/LAB.md) runs KVM under QEMU's
# software emulation of AMD SVM, and with bookworm's QEMU 7.2 the lab VM's own
# kernel crashed now and then while it ran KVM guests (kernel stack overflow in
# exc_page_fault with the guest's GS base still loaded, CPU soft lockups). On
# bookworm the newer QEMU comes from Debian's bookworm-backports.
set -euo pipefail
pkgs=(qemu-system-x86 linux-image-amd64 linux-image-cloud-amd64 busybox-static cpio fuse3 zstd docker-registry e2fsprogs)
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}" >&2
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

qemu_major() { qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p'; }
if [ "$(qemu_major)" -lt 9 ]; then
	. /etc/os-release
	list=/etc/apt/sources.list.d/smolvm-backports.list
	echo "deps: QEMU $(qemu_major) is too old for the lab; installing qemu-system-x86 from ${VERSION_CODENAME}-backports" >&2
	echo "deb http://deb.debian.org/debian ${VERSION_CODENAME}-backports main" | $SUDO tee "$list" >/dev/null
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq -t "${VERSION_CODENAME}-backports" qemu-system-x86 >/dev/null
	if [ "$(qemu_major)" -lt 9 ]; then
		echo "deps: still QEMU $(qemu_major) after installing from backports: the lab needs QEMU 9 or newer" >&2
		exit 1
	fi
fi
