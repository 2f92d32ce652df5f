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

# Network: eth0 (virtio-net) gets its address by DHCP. With smolvm's
# user-mode network that is 192.168.127.2, gateway and DNS 192.168.127.1,
# the host's loopback as host.smolvm.internal (docs/NET.md).
if [ -e /sys/class/net/eth0 ]; then
	cat >/run/udhcpc.script <<'EOF'
#!/bin/sh
case "$1" in
deconfig)
	ip addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
	: >/etc/resolv.conf
	[ -n "$domain" ] && echo "search $domain" >>/etc/resolv.conf
	for s in $dns; do echo "nameserver $s" >>/etc/resolv.conf; done
	echo "smolvm-init: $interface $ip"
	;;
esac
EOF
	chmod 755 /run/udhcpc.script
	ip link set eth0 up
	udhcpc -i eth0 -s /run/udhcpc.script -f -q -n -t 3 -T 1 2>/dev/null |
		grep '^smolvm-init:' || echo "smolvm-init: no DHCP lease on eth0"
fi

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
