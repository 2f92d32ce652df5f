// Package vsock is smolvm's virtio-vsock device (virtio device 19) in
// userspace, with Firecracker's "hybrid" host side: instead of host-kernel
// vsock (vhost), every VM has one unix socket.
//
//   - A host client connects to the socket at Path and writes
//     "CONNECT <port>\n"; the device opens a stream to guest port <port>
//     and, once the guest accepts, answers "OK <hostport>\n" (the host-side
//     port it allocated, from 2^30 up). After that the socket carries the
//     stream's bytes. A guest that refuses (RST) or does not answer within
//     ConnectTimeout gets the socket closed without an OK.
//   - A guest connecting to host CID 2, port P, is joined to the unix socket
//     Path_P (for example vsock.sock_53), which a host process listens on.
//     Nothing listening there: the guest's connect fails with a reset.
//
// The guest is always CID 3: clones need no global CID, and the same agent
// works over any transport that gives it a stream.
//
// The Mux (connection table) speaks packets: HandleTx takes the guest's
// packets from the tx queue, NextRx fills rx buffers, Wake says when more is
// ready. Per connection it runs one goroutine reading the host socket and
// one writing it; both end when the connection does. Memory is bounded by
// credit flow control (virtio 1.2, 5.10.6.3): the host reads no more than
// the guest's advertised free space and holds at most ReadBuf bytes of it;
// the guest may send no more than BufAlloc bytes ahead of what has been
// written to the host socket (a guest that does is reset).
//
// Close and half-close follow Linux's virtio transport: SHUTDOWN(SEND) from
// one side is EOF for the other while the other direction stays open; a
// SHUTDOWN with both flags from the guest is answered, once its data has
// been written (bounded by CloseTimeout), with RST, which the guest waits
// for. EOF on a host socket becomes SHUTDOWN(SEND) to the guest.
//
// Connections are not migrated by a snapshot: on Restore the device drops
// them and sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event queue, so
// the guest resets its sockets and re-reads its CID.
//
// This package must not import KVM code, block a vCPU thread on a socket, or
// keep a goroutine past Close.
package vsock
