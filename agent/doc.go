// Package agent is the protocol between smolvm on the host and
// smolvm-agent in the guest (docs/AGENT.md): length-prefixed, typed frames
// over any byte stream (vsock in a VM, a unix socket pair in tests), a
// version handshake that refuses a mismatch, command execution with
// separate stdout/stderr streams, stdin, signals and exit status, and the
// agent's "ready" notification.
//
// Server is the guest side (it runs real processes and is plain Go, so it
// runs and is tested on the host too); Start/Run are the host side;
// DialHybrid speaks Firecracker's hybrid vsock convention
// ("CONNECT <port>\n") on a VM's vsock unix socket.
//
// It must not know about VMs, KVM or state directories: it only moves
// frames over a net.Conn.
package agent
