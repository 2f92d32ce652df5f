#!/bin/sh
# Boots the default guest (cloud kernel, smolvm's initramfs, 2 vCPUs, 256M)
# N times with smolvm and N times with QEMU/KVM, alternately, INSIDE the lab,
# and counts the boots that did not reach /init's command (triple fault, hang
# or error). L1 KVM is traced (tracefs); the buffer stops by itself at the
# first SHUTDOWN exit (a triple fault) or the first exception KVM injects
# (none in a healthy boot), so a failed boot keeps the events that led to it.
# Each failed boot leaves OUT/TAG-VMM-fail-I.log (console) and .trace.
#
# Run it from the repo root on the host (docs/VMM.md, "Lab failures"):
#   CGO_ENABLED=0 go build -o .lab/loop/smolvm ./cmd/smolvm
#   go build -o .lab/loop/labrun ./internal/lab/cmd/labrun
#   mkdir -p .lab/loop/out
#   flock /work/lab.lock .lab/loop/labrun -timeout 14m -share $PWD/.lab/loop/out \
#     -env SMOLVM_LOOP_BIN=$PWD/.lab/loop/smolvm -- sh scripts/lab-boot-loop.sh 25 $PWD/.lab/loop/out run1
# SMOLVM_LOOP_VMMS="smolvm" (or "qemu") runs only one of them.
n=${1:?usage: lab-boot-loop.sh N OUTDIR TAG}; out=${2:?}; tag=${3:?}
bin=${SMOLVM_LOOP_BIN:?SMOLVM_LOOP_BIN: a static smolvm build}
k=$(ls /boot/vmlinuz-*-cloud-amd64 | sort | tail -1)
initrd=$(ls -t /var/cache/smolvm/guest-*.cpio.gz | head -1)
cmd=$(printf 'echo cpus=$(grep -c ^processor /proc/cpuinfo)' | base64 -w0)
T=/sys/kernel/tracing
mount -t tracefs nodev $T 2>/dev/null
echo 16384 >$T/buffer_size_kb
for e in kvm_exit kvm_entry kvm_inj_exception kvm_cr kvm_msr kvm_apic_ipi kvm_apic_accept_irq kvm_inj_virq \
	kvm_userspace_exit kvm_nested_vmexit kvm_pic_set_irq kvm_set_irq; do
	echo 1 >$T/events/kvm/$e/enable || echo "no trace event kvm:$e"
done
echo "traceoff if exit_reason == 127" >$T/events/kvm/kvm_exit/trigger
echo "traceoff" >$T/events/kvm/kvm_inj_exception/trigger
echo "L1 modules (name size base): $(grep -E '^(kvm|kvm_amd) ' /proc/modules | awk '{print $1, $2, $6}' | tr '\n' ' ')"
mkdir -p "$out"
start=$(date +%s)
sf=0 qf=0 trig=0 i=1
while [ $i -le $n ]; do
	for vmm in ${SMOLVM_LOOP_VMMS:-smolvm qemu}; do
		echo >$T/trace
		echo 1 >$T/tracing_on
		if [ $vmm = smolvm ]; then
			timeout 90 "$bin" boot --kernel "$k" --cpus 2 --mem 256M \
				--cmdline "console=ttyS0 panic=-1 smolvm.cmd=$cmd" >"$out/$tag-cur.log" 2>&1 </dev/null
		else
			timeout 90 qemu-system-x86_64 -accel kvm -cpu host -smp 2 -m 256 -nodefaults -no-user-config \
				-display none -no-reboot -serial stdio -kernel "$k" -initrd "$initrd" \
				-append "console=ttyS0 panic=-1 smolvm.cmd=$cmd" >"$out/$tag-cur.log" 2>&1 </dev/null
		fi
		rc=$?
		on=$(cat $T/tracing_on)
		echo 0 >$T/tracing_on
		[ "$on" = 0 ] && trig=$((trig + 1))
		if [ $rc -ne 0 ] || ! grep -q "cpus=2" "$out/$tag-cur.log"; then
			if [ $vmm = smolvm ]; then sf=$((sf + 1)); else qf=$((qf + 1)); fi
			cp "$out/$tag-cur.log" "$out/$tag-$vmm-fail-$i.log"
			tail -n 6000 $T/trace >"$out/$tag-$vmm-fail-$i.trace"
			echo "$vmm boot $i: FAIL rc=$rc trace-stopped=$((1 - on)): $(tail -c 150 "$out/$tag-cur.log" | tr '\n' ' ')"
		else
			echo "$vmm boot $i: ok"
		fi
	done
	i=$((i + 1))
done
echo "SUMMARY $tag: boots each=$n smolvm_fails=$sf qemu_fails=$qf trace_stops=$trig seconds=$(($(date +%s) - start))"
