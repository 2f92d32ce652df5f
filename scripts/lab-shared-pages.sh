#!/usr/bin/env bash
# Lab experiment (run inside the lab: go build -o .lab/bin/labrun ./internal/lab/cmd/labrun;
# .lab/bin/labrun -cpus 4 -- bash scripts/lab-shared-pages.sh): does a clone whose guest RAM maps pages another clone already
# brought in (mmap paging, page cache warm) run its first guest code faster
# than a uffd clone (fresh private pages every time)?
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd); BIN=${BIN:-$root/bin}; SMOLVM=$BIN/smolvm
work=$(mktemp -d /tmp/exp.XXXXXX)
export SMOLVM_RUN_DIR=$work/run SMOLVM_SMOLMOUNT=$BIN/smolmount
jnum() { grep -o "\"$2\": *[^,}]*" "$1" | head -1 | sed 's/.*: *//; s/"//g'; }
"$SMOLVM" boot --name src --cpus 1 --mem 256M --net none </dev/null >"$work/boot.log" 2>&1 &
bp=$!
cleanup() {
	kill "$bp" 2>/dev/null
	for m in "$SMOLVM_RUN_DIR"/bundles/*; do case $(basename "$m") in *.*) continue;; esac; [ -d "$m" ] && "$BIN/smolmount" -u "$m" >/dev/null 2>&1; done
	rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 600); do [ -S "$SMOLVM_RUN_DIR/src/control.sock" ] && break; sleep 0.2; done
t0=$(date +%s.%N)
timeout 300 "$SMOLVM" exec --wait 280s src -- true
echo "boot ready (from socket) $(awk -v a=$t0 -v b=$(date +%s.%N) 'BEGIN{print b-a}') s"
timeout 600 "$SMOLVM" snapshot src -o "$work/b.smolmachine" --stop >/dev/null
wait $bp || true
for mode in ${MODES:-uffd mmap uffd mmap mmap eager eager}; do
	st=$work/st.json
	[ "$mode" = drop ] && { sync; echo 3 > /proc/sys/vm/drop_caches; echo "-- dropped caches"; continue; }
	timeout 300 "$SMOLVM" run "$work/b.smolmachine" --paging "$mode" --ready-timeout 200s --stats "$st" -- true >/dev/null
	printf '%-6s ready %6.3f resumed %6.3f connected %6.3f read %9s faults %s apply %s wait %s\n' "$mode" \
		"$(jnum $st ready_s)" "$(jnum $st resumed_s)" "$(jnum $st connected_s)" "$(jnum $st bytes_read)" "$(jnum $st faults)" "$(jnum $st apply_s)" "$(jnum $st wait_s)"
done
