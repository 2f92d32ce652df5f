#!/bin/sh
# /init of smolvm's default guest, built by vmm/guest (see its doc.go).
# Kernel parameter smolvm.cmd=BASE64: a shell script to run instead of the
# interactive shell; the guest powers off after it.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
hostname smolvm
ip link set lo up 2>/dev/null

# Kernel modules, in dependency order (written by vmm/guest).
while read -r m; do
	insmod "$m" || echo "smolvm-init: insmod $m failed"
done </etc/smolvm/modules

# Guest agent hook: vmm/guest Options.Agent installs the agent here.
if [ -x /usr/sbin/smolvm-agent ]; then
	/usr/sbin/smolvm-agent &
fi

read -r up _ </proc/uptime
echo "smolvm-init: uptime $up"
echo "smolvm-init: ready"

cmd=
set -f
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	smolvm.cmd=*) cmd=${arg#smolvm.cmd=} ;;
	esac
done
set +f
if [ -n "$cmd" ]; then
	if script=$(echo "$cmd" | base64 -d) && [ -n "$script" ]; then
		sh -c "$script"
		echo "smolvm-init: exit=$?"
	else
		echo "smolvm-init: smolvm.cmd is not valid base64"
	fi
	sync
	poweroff -f
fi

setsid cttyhack sh
sync
poweroff -f
