package control

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSnapshotEndpoint(t *testing.T) {
	m := &fakeMachine{}
	srv, c, _ := startControl(t, m)
	out := filepath.Join(t.TempDir(), "x.smolmachine")
	// Not enabled: refused.
	if err := c.Snapshot(tctx(t), SnapshotRequest{Output: out}, nil); err == nil || !strings.Contains(err.Error(), "cannot be snapshotted") {
		t.Fatalf("snapshot without a handler: %v", err)
	}
	var mu sync.Mutex
	var got []SnapshotRequest
	release := make(chan struct{})
	srv.SetSnapshot(func(ctx context.Context, req SnapshotRequest) (any, error) {
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		if req.Store == "/slow" {
			<-release
		}
		if req.Store == "/fail" {
			return nil, errors.New("disk full")
		}
		return map[string]string{"output": req.Output}, nil
	})
	tests := []struct {
		name string
		req  SnapshotRequest
		err  string // "" ok
	}{
		{"ok", SnapshotRequest{Output: out}, ""},
		{"relative", SnapshotRequest{Output: "x.smolmachine"}, "absolute"},
		{"relative store", SnapshotRequest{Output: out, Store: "store"}, "absolute"},
		{"fails", SnapshotRequest{Output: out, Store: "/fail"}, "disk full"},
	}
	for _, tt := range tests {
		var res map[string]string
		err := c.Snapshot(tctx(t), tt.req, &res)
		switch {
		case tt.err == "" && (err != nil || res["output"] != out):
			t.Errorf("%s: %v %v", tt.name, res, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: err %v, want %q", tt.name, err, tt.err)
		}
	}
	// A snapshot in progress refuses a pause and a second snapshot.
	done := make(chan error, 1)
	go func() { done <- c.Snapshot(context.Background(), SnapshotRequest{Output: out, Store: "/slow"}, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := c.Pause(tctx(t)); err == nil || !strings.Contains(err.Error(), "snapshot is in progress") {
		t.Errorf("pause during a snapshot: %v", err)
	}
	if err := c.Snapshot(tctx(t), SnapshotRequest{Output: out}, nil); err == nil || !strings.Contains(err.Error(), "in progress") {
		t.Errorf("second snapshot: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// --stop marks the VM stopping.
	if err := c.Snapshot(tctx(t), SnapshotRequest{Output: out, Stop: true}, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(tctx(t)); err != nil || st.State != StateStopping {
		t.Fatalf("after snapshot --stop: %v %v", st.State, err)
	}
	// A stopping VM refuses a pause, a resume and another snapshot.
	if _, err := c.Pause(tctx(t)); err == nil || !strings.Contains(err.Error(), "is stopping") {
		t.Errorf("pause of a stopping VM: %v", err)
	}
	if _, err := c.Resume(tctx(t)); err == nil || !strings.Contains(err.Error(), "is stopping") {
		t.Errorf("resume of a stopping VM: %v", err)
	}
	if err := c.Snapshot(tctx(t), SnapshotRequest{Output: out}, nil); err == nil || !strings.Contains(err.Error(), "is stopping") {
		t.Errorf("snapshot of a stopping VM: %v", err)
	}
}
