package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// Client talks to one VM's control socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the control socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	return &Client{socket: path, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Status asks GET /status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	return c.do(ctx, http.MethodGet, "status")
}

// Pause asks PUT /pause and returns the new status.
func (c *Client) Pause(ctx context.Context) (Status, error) {
	return c.do(ctx, http.MethodPut, "pause")
}

// Resume asks PUT /resume.
func (c *Client) Resume(ctx context.Context) (Status, error) {
	return c.do(ctx, http.MethodPut, "resume")
}

// Stop asks PUT /stop; the VM's process then exits and removes its state
// dir.
func (c *Client) Stop(ctx context.Context) (Status, error) { return c.do(ctx, http.MethodPut, "stop") }

func (c *Client) do(ctx context.Context, method, what string) (Status, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://smolvm/"+what, nil)
	if err != nil {
		return Status{}, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return Status{}, fmt.Errorf("%w: %s %s: control socket %s does not answer", ErrNotRunning, method, what, c.socket)
		}
		return Status{}, fmt.Errorf("control: %s %s via %s: %w", method, what, c.socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Status{}, fmt.Errorf("control: %s %s: %w", method, what, err)
	}
	if resp.StatusCode/100 != 2 {
		var e apiError
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = string(body)
		}
		return Status{}, fmt.Errorf("control: %s %s: %s: %s", method, what, resp.Status, e.Error)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return Status{}, fmt.Errorf("control: %s %s: bad answer: %w", method, what, err)
	}
	return st, nil
}
