package vsock_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smolvm/smolvm/agent"
	"github.com/smolvm/smolvm/internal/kvmtest"
)

// console collects a guest's console for waiting on lines.
type console struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func (c *console) wait(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(c.String(), s) {
		if time.Now().After(deadline) {
			out := c.String()
			if len(out) > 3000 {
				out = "..." + out[len(out)-3000:]
			}
			t.Fatalf("console lacks %q after %v:\n%s", s, timeout, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// staticSelf returns this test binary, which must be statically linked to
// run in the guest (scripts/test-kvm.sh builds it with CGO_ENABLED=0).
func staticSelf(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s is dynamically linked; build the test with CGO_ENABLED=0 (it runs in the guest too)", exe)
		}
	}
	return exe
}

// TestKVMVsock boots the default guest with this test binary as its agent
// (probe_test.go) and a vsock device, then checks both ways of connecting:
// the guest greets host port 53 (a unix socket <path>_53 here) and echoes
// on port 52, which the host reaches with CONNECT 52. Moves 1 MiB each way
// with a checksum, runs 8 connections at once, measures small-message round
// trips, and checks that a port nobody listens on is refused.
func TestKVMVsock(t *testing.T) {
	kvmtest.Require(t)
	dir, err := os.MkdirTemp("", "vsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "v.sock")
	helloLn, err := net.Listen("unix", fmt.Sprintf("%s_%d", path, probeHelloPort))
	if err != nil {
		t.Fatal(err)
	}
	defer helloLn.Close()
	pm := newProbeMachine(t, probeConfig(t, path), nil)
	out, stop := pm.out, pm.stop
	boot := time.Now()

	// Guest -> host: the probe's greeting on port 53.
	helloLn.(*net.UnixListener).SetDeadline(time.Now().Add(3 * time.Minute))
	hc, err := helloLn.Accept()
	if err != nil {
		t.Fatalf("no guest connection to port %d: %v\n%s", probeHelloPort, err, out.String())
	}
	greetAt := time.Since(boot)
	hc.SetDeadline(time.Now().Add(time.Minute))
	greeting, err := io.ReadAll(hc)
	if err != nil || string(greeting) != "hello from cid 3\n" {
		t.Fatalf("guest greeting %q, %v", greeting, err)
	}
	hc.Write([]byte("hi guest\n"))
	hc.Close()
	out.wait(t, `vsockprobe: host replied "hi guest\n"`, time.Minute)

	// Host -> guest: echo of 1 MiB.
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer dcancel()
	c, err := agent.DialHybrid(dctx, path, probeEchoPort)
	if err != nil {
		t.Fatalf("CONNECT %d: %v\n%s", probeEchoPort, err, out.String())
	}
	data := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.UnixConn).CloseWrite()
		}
		werr <- err
	}()
	back, err := io.ReadAll(c)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("echo read after %d bytes: %v", len(back), err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !bytes.Equal(back, data) {
		t.Fatalf("echo of 1 MiB: got %d bytes sha256 %x, want %x", len(back), sha256.Sum256(back), sha256.Sum256(data))
	}

	// Round trips of 64 bytes on one connection.
	c, err = agent.DialHybrid(dctx, path, probeEchoPort)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	msg := make([]byte, 64)
	var rtts []time.Duration
	for i := range 50 {
		msg[0] = byte(i)
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("round trip %d: %q, %v", i, got, err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	c.Close()
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })

	// Eight connections at once.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := agent.DialHybrid(dctx, path, probeEchoPort)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			msg := bytes.Repeat([]byte{byte(i)}, 64<<10)
			go func() { c.Write(msg); c.(*net.UnixConn).CloseWrite() }()
			got, err := io.ReadAll(c)
			if err == nil && !bytes.Equal(got, msg) {
				err = fmt.Errorf("connection %d: echo of %d bytes came back as %d", i, len(msg), len(got))
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A port nobody listens on: the guest resets, the host sees no OK.
	if _, err := agent.DialHybrid(dctx, path, 4242); !errors.Is(err, agent.ErrNotListening) {
		t.Errorf("CONNECT 4242: %v, want agent.ErrNotListening", err)
	}

	t.Logf("[%s] guest greeting %v after start; 1 MiB echo %v (%.1f MB/s each way); 64-byte round trip median %v p90 %v",
		kvmtest.Label(), greetAt.Round(time.Millisecond), elapsed.Round(time.Millisecond),
		float64(len(data))/elapsed.Seconds()/1e6, rtts[len(rtts)/2].Round(time.Microsecond), rtts[len(rtts)*9/10].Round(time.Microsecond))
	stop()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("vsock socket left after Close: %v", err)
	}
}
