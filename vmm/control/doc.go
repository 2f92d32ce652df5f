// Package control is smolvm's control plane for running VMs (docs/CONTROL.md):
// each VM has a state directory ($XDG_RUNTIME_DIR/smolvm/NAME, or
// /run/smolvm/NAME) holding its pid file, its control socket (HTTP+JSON
// over a unix socket: GET /status, PUT /pause, /resume, /stop) and its
// vsock socket. Names are unique; the directory of a VM that died is
// recognised (its pid is gone or reused, and its control socket does not
// answer) and removed, never mistaken for a live VM.
//
// Dirs creates, finds, lists and cleans state directories; Server serves
// the control socket for a Machine; Client talks to it.
//
// It must not know how a VM runs (no KVM, no devices): the machine is an
// interface, and the guest agent's protocol belongs to package agent.
package control
