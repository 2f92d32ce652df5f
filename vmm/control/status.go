package control

import (
	"context"
	"time"
)

// Machine is what the control socket drives: vmm.Machine implements it.
type Machine interface {
	Pause(ctx context.Context) error
	Resume()
	Stop()
}

// State is a VM's run state as the control socket reports it.
type State string

// States.
const (
	StateRunning  State = "running"
	StatePaused   State = "paused"
	StateStopping State = "stopping"
)

// AgentInfo is what the guest agent said when it reported ready.
type AgentInfo struct {
	Version     int     `json:"version"`
	Hostname    string  `json:"hostname,omitempty"`
	Kernel      string  `json:"kernel,omitempty"`
	GuestUptime float64 `json:"guest_uptime_s,omitempty"`
}

// Info is the static description of a VM, fixed when it starts.
type Info struct {
	Name     string   `json:"name"`
	PID      int      `json:"pid"`
	CPUs     int      `json:"cpus,omitempty"`
	MemBytes int64    `json:"mem_bytes,omitempty"`
	Kernel   string   `json:"kernel,omitempty"`
	Initrd   string   `json:"initrd,omitempty"`
	Disks    []string `json:"disks,omitempty"`
	StateDir string   `json:"state_dir"`
	Vsock    string   `json:"vsock_socket,omitempty"`
	// Forwards are the host ports forwarded to the guest (-p), in Docker's
	// ps form "127.0.0.1:8080->80/tcp".
	Forwards []string `json:"forwards,omitempty"`
}

// Status is GET /status's answer.
type Status struct {
	Info
	State     State      `json:"state"`
	StartedAt time.Time  `json:"started_at"`
	Ready     bool       `json:"ready"`
	ReadyAt   *time.Time `json:"ready_at,omitempty"`
	// ReadySeconds is ReadyAt - StartedAt: the VM's start-to-ready time.
	ReadySeconds float64    `json:"ready_after_s,omitempty"`
	Agent        *AgentInfo `json:"agent,omitempty"`
}

// apiError is the body of every non-2xx answer.
type apiError struct {
	Error string `json:"error"`
}
