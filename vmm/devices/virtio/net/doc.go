// Package net is smolvm's virtio-net device (virtio 1.x, section 5.1): one
// receive queue (0) and one transmit queue (1), the device configuration
// with the MAC address (VIRTIO_NET_F_MAC) and link status
// (VIRTIO_NET_F_STATUS), and no offloads. Frames leave and arrive through a
// Backend (user-mode networking in vmm/network, or a tap device).
//
// Receive buffers are not mergeable: without offloads no frame is larger
// than the MTU plus its Ethernet header. At the default MTU (1500) Linux's
// virtio_net posts "small" buffers of a header plus 1518 bytes; with a
// larger MTU offered (Config.MTU, VIRTIO_NET_F_MTU) it posts "big" buffers
// of 64 KiB+; either way every frame fits one chain. A frame that does not
// fit a chain is dropped and counted, never truncated.
//
// Threading: a reader goroutine (one per Device, stopped by Close) takes
// frames from the backend; receive and transmit each run on a virtio.Worker
// while the driver has the device active. QueueNotify only kicks a worker,
// so a vCPU thread never waits on the backend. When no receive buffer is
// posted the reader stops reading (the backend's own buffer takes the
// pressure); while the device is not active, arriving frames are dropped,
// as on a link that is down.
//
// This package must not know where frames go (no sockets, no netstack) and
// must not import KVM code.
package net
