#!/usr/bin/env bash
# make demo: build a sample 256 MiB memory image (runs of zero, random and
# text-like pages), pack it, inspect, verify, extract and compare; then show
# a thin bundle of a second image with 5% of its pages changed sharing a
# chunk store with the first, and a corrupted bundle failing verify.
# Grows with each issue.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
SMOLVM=$BIN/smolvm
[ -x "$SMOLVM" ] || { echo "demo: $SMOLVM missing (run make build)" >&2; exit 1; }
SIZE=${DEMO_SIZE:-256M}
work=$(mktemp -d /tmp/smolvm-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ -t 1 ]; then
	step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
	step() { printf '\n== %s\n' "$*"; }
fi

step "generate a $SIZE sample memory image (60% zero, 20% random, 20% text-like pages)"
go run ./internal/sampleimage/gen -o "$work/mem.img" -size "$SIZE" -seed 1
ls -l "$work/mem.img"

step "smolvm pack"
"$SMOLVM" pack -o "$work/vm.smolmachine" --memory "$work/mem.img" --cpus 2 --cmdline "console=ttyS0"

step "smolvm inspect"
"$SMOLVM" inspect "$work/vm.smolmachine"

step "smolvm verify"
"$SMOLVM" verify "$work/vm.smolmachine"

step "smolvm extract memory, then cmp with the original"
"$SMOLVM" extract "$work/vm.smolmachine" memory -o "$work/mem.out"
cmp "$work/mem.img" "$work/mem.out" && echo "cmp: bit-identical"
echo "disk use of the extracted image (zero ranges are holes): $(du -h "$work/mem.out" | cut -f1) of $(du -h --apparent-size "$work/mem.out" | cut -f1)"

step "thin bundles sharing a store: a second image with 5% of its data pages changed"
cp "$work/mem.img" "$work/mem2.img"
go run ./internal/sampleimage/gen -mutate "$work/mem2.img" -fraction 0.05 -seed 2
"$SMOLVM" pack -o "$work/base.smolmachine" --store "$work/store" --memory "$work/mem.img"
before=$(du -sb "$work/store" | cut -f1)
"$SMOLVM" pack -o "$work/next.smolmachine" --store "$work/store" --memory "$work/mem2.img"
after=$(du -sb "$work/store" | cut -f1)
awk -v a="$before" -v b="$after" 'BEGIN { printf "store: %.1f MiB -> %.1f MiB: +%.1f%% for the second image\n", a/1048576, b/1048576, 100*(b-a)/a }'
"$SMOLVM" verify --store "$work/store" "$work/next.smolmachine"
"$SMOLVM" extract --store "$work/store" "$work/next.smolmachine" memory -o "$work/mem2.out"
cmp "$work/mem2.img" "$work/mem2.out" && echo "cmp: bit-identical"

step "corrupt one byte of frame data: verify must fail and name the frame"
cp "$work/vm.smolmachine" "$work/bad.smolmachine"
printf '\xff' | dd of="$work/bad.smolmachine" bs=1 seek=100000 conv=notrunc status=none
status=0
"$SMOLVM" verify "$work/bad.smolmachine" || status=$?
if [ "$status" -eq 0 ]; then
	echo "demo: verify passed on a corrupted bundle" >&2
	exit 1
fi
echo "verify failed as it must (exit status $status)"

# Boot a VM, snapshot it, resume clones lazily (scripts/demo-vm.sh; in the KVM
# lab without hardware KVM).
BIN="$BIN" ./scripts/demo-vm.sh

step "smolvm bench: boot vs lazy restore vs QEMU, one run each of a 256 MiB guest (in the KVM lab without hardware KVM)"
"$SMOLVM" bench --runs 1 --mem 256M --methods "${DEMO_BENCH_METHODS:-boot,uffd-prefetch,qemu-boot,qemu-restore}"

step "demo done"
