package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// IdentityRequest gives a restored clone an identity of its own (every
// clone of a snapshot starts with the same RNG state, hostname and
// machine-id, and its clock stopped when the snapshot was taken). The
// agent applies each field that is set.
type IdentityRequest struct {
	// Entropy is host randomness to mix into the guest's pool
	// (RNDADDENTROPY, credited) before the CRNG is reseeded (RNDRESEEDCRNG).
	Entropy []byte `json:"entropy,omitempty"`
	// Hostname is set with sethostname(2).
	Hostname string `json:"hostname,omitempty"`
	// MachineID (32 lowercase hex digits) replaces /etc/machine-id.
	MachineID string `json:"machine_id,omitempty"`
	// TimeUnixNano steps CLOCK_REALTIME to the host's time.
	TimeUnixNano int64 `json:"time_unix_nano,omitempty"`
	// OldMAC and MAC: the interface whose address is OldMAC gets MAC (a
	// clone's network device has a new address).
	OldMAC string `json:"old_mac,omitempty"`
	MAC    string `json:"mac,omitempty"`
	// RenewLease asks, after the MAC change, for a DHCP lease of the new
	// MAC (the guest's DHCP client run once more): on a bridged network the
	// clone must not keep the source's address. The user-mode network gives
	// every MAC the same static lease, so the VMM leaves it off there.
	RenewLease bool `json:"renew_lease,omitempty"`
}

// IdentityResult says what the agent applied: the names of the steps done
// ("entropy", "reseed", "hostname", "machine-id", "clock", "mac", "lease",
// "announce") and the
// failures, each naming its step.
type IdentityResult struct {
	Applied []string `json:"applied"`
	Errors  []string `json:"errors,omitempty"`
	// Uptime is the guest's uptime when it answered, seconds.
	Uptime float64 `json:"uptime_s,omitempty"`
	// ApplyS is how long the guest took to apply it, seconds (of the
	// identity step's round trip, the part spent in the guest).
	ApplyS float64 `json:"apply_s,omitempty"`
	// WaitS is how long the guest's agent took from accepting the
	// connection to having the whole request, seconds.
	WaitS float64 `json:"wait_s,omitempty"`
	// StepS is how long each applied or failed step took in the guest,
	// seconds, by step name.
	StepS map[string]float64 `json:"step_s,omitempty"`
}

// MaxIdentityEntropy bounds IdentityRequest.Entropy.
const MaxIdentityEntropy = 4096

// serveIdentity answers a FrameIdentity session (after the hellos) on c.
// accepted is when the connection was accepted.
func (s *Server) serveIdentity(c net.Conn, w io.Writer, f Frame, accepted time.Time) error {
	var req IdentityRequest
	if err := f.decode(&req); err != nil {
		s.refuse(w, err)
		return fmt.Errorf("agent: identity request: %w", err)
	}
	if len(req.Entropy) > MaxIdentityEntropy {
		err := fmt.Errorf("%w: %d bytes of entropy, at most %d", ErrMalformed, len(req.Entropy), MaxIdentityEntropy)
		s.refuse(w, err)
		return err
	}
	if s.Identity == nil {
		msg := "this agent cannot apply an identity"
		_ = writeJSON(w, FrameError, ErrorMsg{Code: CodeStart, Message: msg})
		return errors.New("agent: identity: " + msg)
	}
	start := time.Now()
	res := s.Identity(req)
	res.ApplyS = time.Since(start).Seconds()
	res.WaitS = start.Sub(accepted).Seconds()
	if res.Applied == nil {
		res.Applied = []string{}
	}
	// The handshake's deadline ran from accept; applying the identity
	// (a DHCP lease, a restored guest faulting its memory in page by
	// page) may outlast it, and the answer must still go out.
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := writeJSON(w, FrameIdentityDone, res); err != nil {
		return fmt.Errorf("agent: identity: %w", err)
	}
	return nil
}

// SetIdentity is the host's side: on conn (a new connection to the agent's
// ExecPort) it sends req and returns what the agent applied. It closes
// conn. Errors in applying single steps are in the result, not the error.
func SetIdentity(ctx context.Context, conn net.Conn, req IdentityRequest) (IdentityResult, error) {
	frames, err := identityFrames(req)
	if err != nil {
		conn.Close()
		return IdentityResult{}, err
	}
	if _, err := conn.Write(frames); err != nil {
		conn.Close()
		return IdentityResult{}, fmt.Errorf("agent: identity: %w", err)
	}
	return readIdentity(ctx, conn)
}

// DialIdentity connects to the agent on the VM's hybrid vsock socket and
// gives it req: CONNECT, hello and the request in one write, so a restored
// clone's identity costs one round trip after the guest accepts. dialTimeout
// bounds the connect (the OK); ctx the whole. connected is called once the
// guest accepted (then a failure is not a refused connection, and the
// identity may have been applied). Errors before that are DialHybrid's.
func DialIdentity(ctx context.Context, dialTimeout time.Duration, socketPath string, req IdentityRequest, connected func()) (IdentityResult, error) {
	frames, err := identityFrames(req)
	if err != nil {
		return IdentityResult{}, err
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	conn, err := DialHybridWith(dctx, socketPath, ExecPort, frames)
	cancel()
	if err != nil {
		return IdentityResult{}, err
	}
	if connected != nil {
		connected()
	}
	return readIdentity(ctx, conn)
}

// identityFrames is hello and the identity request, to go out in one
// write: the agent reads frame by frame from its connection, so the
// request waits there while it answers hello. An agent that refuses the
// hello answers an Error instead of its Hello and never reads the request.
func identityFrames(req IdentityRequest) ([]byte, error) {
	var out bytes.Buffer
	hello := hostHello
	hello.Then = FrameIdentity
	if err := writeJSON(&out, FrameHello, hello); err != nil {
		return nil, fmt.Errorf("agent: identity: %w", err)
	}
	if err := writeJSON(&out, FrameIdentity, req); err != nil {
		return nil, fmt.Errorf("agent: identity: %w", err)
	}
	return out.Bytes(), nil
}

// readIdentity reads the agent's hello and its answer to the identity
// request already sent on conn, and closes conn.
func readIdentity(ctx context.Context, conn net.Conn) (IdentityResult, error) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	}
	var res IdentityResult
	if _, err := readHello(conn); err != nil {
		return res, fmt.Errorf("agent: identity: %w", err)
	}
	if err := expect(conn, FrameIdentityDone, &res); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return res, fmt.Errorf("agent: identity: %w", err)
	}
	return res, nil
}
