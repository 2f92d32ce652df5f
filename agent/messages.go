package agent

import "fmt"

// Hello is the first frame each side sends on a connection. Its layout is
// the same in every protocol version, so that a mismatch is always
// reported clearly.
type Hello struct {
	Version int    `json:"version"`
	Agent   string `json:"agent,omitempty"` // sender's name and build, informational
	// Then (host): the host's next frame follows this hello without
	// waiting for the answer, so the agent may read it first and answer
	// both in one write (FrameIdentity: hello and identity-done). An agent
	// that does not know it answers hello at once, as before.
	Then FrameType `json:"then,omitempty"`
}

// Error codes in ErrorMsg.
const (
	CodeVersion   = "version"   // protocol versions differ
	CodeMalformed = "malformed" // the receiver could not parse a frame
	CodeStart     = "start"     // the command could not be started
)

// ErrorMsg is an Error frame's payload.
type ErrorMsg struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// RemoteError is an error the peer reported.
type RemoteError struct {
	Code, Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("agent: %s error from peer: %s", e.Code, e.Message)
}

// Unwrap lets errors.Is find ErrRemote.
func (e *RemoteError) Unwrap() error { return ErrRemote }

// ExecRequest asks the agent to run a command.
type ExecRequest struct {
	// Args is the command and its arguments; Args[0] is looked up in PATH.
	Args []string `json:"args"`
	// Env entries ("K=V") are added to the agent's environment (later
	// entries win).
	Env []string `json:"env,omitempty"`
	// Dir is the working directory ("" = the agent's, "/").
	Dir string `json:"dir,omitempty"`
	// Stdin: the host sends Stdin frames; false gives the command
	// /dev/null.
	Stdin bool `json:"stdin,omitempty"`
}

// Started is sent once the command runs.
type Started struct {
	PID int `json:"pid"`
}

// SignalRequest asks the agent to signal the command's process group.
type SignalRequest struct {
	Signal int `json:"signal"`
}

// ExitStatus is how the command ended: Code is its exit status, or 128+N
// when signal N killed it (then Signal is N).
type ExitStatus struct {
	Code   int `json:"code"`
	Signal int `json:"signal,omitempty"`
}

// Ready is the agent's notification that the guest is up.
type Ready struct {
	Version  int     `json:"version"`
	Hostname string  `json:"hostname,omitempty"`
	Kernel   string  `json:"kernel,omitempty"`
	Uptime   float64 `json:"uptime_s,omitempty"` // guest uptime when sent, seconds
	PID      int     `json:"pid,omitempty"`      // the agent's pid
}

func checkVersion(peer Hello, who string) error {
	if peer.Version != Version {
		return fmt.Errorf("%w: %s speaks protocol version %d, this side speaks %d (rebuild the guest initramfs with a matching smolvm-agent)",
			ErrVersion, who, peer.Version, Version)
	}
	return nil
}
