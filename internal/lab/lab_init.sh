#!/bin/sh
# /init of the smolvm lab VM (level 1), built by internal/lab. The host side
# shares its root read-only as 9p tag "hostroot", a control directory as
# "ctl" (lab.conf, shares, run.sh; status is written back) and each writable
# share as "shareN". ttyS0 is the kernel console, ttyS1 carries the
# command's output and the final marker line to the host.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

out=/dev/ttyS1
stty -F $out raw -echo 2>/dev/null
NONCE=unknown
fail() {
	echo "smolvm-lab: init: $*" >/dev/console
	echo "smolvm-lab: lab VM setup failed: $*" >$out
	printf 'smolvm-lab-%s exit=%d\n' "$NONCE" 125 >$out
	poweroff -f
}

while read -r m; do
	insmod "$m" || fail "insmod $m"
done </etc/lab/modules

o9p=trans=virtio,version=9p2000.L,msize=512000
mkdir -p /host /rw /newroot
mount -t 9p -o $o9p,ro,cache=loose hostroot /host || fail "mount the host root over 9p"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "mount tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot ||
	fail "mount the overlay root"
ctl=/newroot/.smolvm-lab
mkdir -p $ctl
mount -t 9p -o $o9p ctl $ctl || fail "mount the control share"
. $ctl/lab.conf # sets NONCE

mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
# Loopback up: tests run servers on 127.0.0.1 inside the lab.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up || fail "bring up lo"
# Shares last, so that the tmpfs mounts above do not hide one under /tmp.
i=0
while IFS= read -r p; do
	mkdir -p "/newroot$p" && mount -t 9p -o $o9p "share$i" "/newroot$p" || fail "mount share $p"
	i=$((i + 1))
done <$ctl/shares

chroot /newroot /bin/sh /.smolvm-lab/run.sh >$out 2>&1 </dev/null
rc=$?
echo $rc >$ctl/status
printf '\nsmolvm-lab-%s exit=%d\n' "$NONCE" $rc >$out
sync
poweroff -f
