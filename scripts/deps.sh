#!/usr/bin/env bash
# Installs the Debian packages smolvm's build, tests and demo need, only when
# one is missing (a fresh machine of the project's kind lacks them).
set -euo pipefail
pkgs=(qemu-system-x86 linux-image-amd64 linux-image-cloud-amd64 busybox-static cpio fuse3 zstd docker-registry e2fsprogs)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
