package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/kvmtest"
)

// Issue 11's clone checks: a VM serving HTTP through -p is snapshotted, and
// two clones of the bundle run at once, each on its own host port. Each
// clone's httpd answers through its forward, each has a MAC of its own (not
// the source's, not the other's), reaches the host through its own user
// network, and smolvm ps lists its forward. Traffic only between the test
// (the lab's 127.0.0.1) and the guests.

var macRE = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)

// startNetClone starts `smolvm run BUNDLE --name NAME -p 127.0.0.1:PORT:80`
// without a command (the clone keeps running) and stops it in t.Cleanup.
func startNetClone(t *testing.T, root, bundle, name string, port int, stats string) *agentVM {
	t.Helper()
	return startAgentVM(t, name, root, "output", smolvmBin(t), "run", bundle, "--name", name, "--ready-timeout", "150s",
		"-p", fmt.Sprintf("127.0.0.1:%d:80", port), "--stats", stats)
}

// waitHTTP polls url until it answers 200 with a body containing want and
// returns the time from start to that answer. exited, when it closes,
// means the VM process died: no answer will come.
func waitHTTP(url, want string, start time.Time, exited <-chan struct{}, limit time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(limit)
	var last error
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
				return time.Since(start), nil
			}
			err = fmt.Errorf("HTTP %d, body %q", resp.StatusCode, body)
		}
		last = err
		select {
		case <-exited:
			return 0, fmt.Errorf("%s: the VM process exited (last: %v)", url, last)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: no answer containing %q within %v (last: %v)", url, want, limit, last)
		}
	}
}

// guestMAC is eth0's address in vm, through exec.
func guestMAC(t *testing.T, vm *agentVM) string {
	t.Helper()
	mac := strings.TrimSpace(vm.mustExec(t, "cat", "/sys/class/net/eth0/address"))
	if !macRE.MatchString(mac) {
		t.Fatalf("%s: eth0 address %q", vm.name, mac)
	}
	return mac
}

func TestKVMNetClones(t *testing.T) {
	kvmtest.Require(t)
	ensureLoopback(t)
	useBinHelpers(t)
	srv := startNetTestServer(t, 1<<20)
	tok := token(t)
	p0, p1, p2 := freeTCPPort(t), freeTCPPort(t), freeTCPPort(t)
	for p1 == p0 || p2 == p0 || p2 == p1 {
		p1, p2 = freeTCPPort(t), freeTCPPort(t)
	}

	// The source: booted with the default guest and network, httpd
	// started through exec, serving through -p P0.
	bootStart := time.Now()
	src := bootAgentVM(t, "netsrc", "-p", fmt.Sprintf("127.0.0.1:%d:80", p0))
	root := src.root
	t.Cleanup(func() { stopBundleDaemons(t, root) })
	src.mustExec(t, "sh", "-c", "set -e; mkdir -p /www; echo 'clone-page "+tok+"' >/www/index.html; "+
		"setsid httpd -f -p 80 -h /www </dev/null >/dev/null 2>&1 &")
	bootServing, err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/", p0), "clone-page "+tok, bootStart, src.exited, 4*time.Minute)
	if err != nil {
		t.Fatalf("source: %v", err)
	}
	srcMAC := guestMAC(t, src)

	dir := t.TempDir()
	bundle := filepath.Join(dir, "netsrc.smolmachine")
	res := snapshotJSON(t, root, "netsrc", bundle)
	if res.WorkingSetError != "" || res.WorkingSetPages == 0 {
		t.Fatalf("no working set recorded: %q", res.WorkingSetError)
	}
	src.mustExec(t, "sh", "-c", "poweroff -f >/dev/null 2>&1 &")
	select {
	case <-src.exited:
	case <-time.After(time.Minute):
		t.Fatal("source VM still running a minute after poweroff")
	}

	// Two clones at once, each with its own forward; both are polled
	// from their process start until their httpd answers.
	type clone struct {
		vm      *agentVM
		port    int
		stats   string
		serving time.Duration
		err     error
		mac     string
	}
	clones := []*clone{{port: p1}, {port: p2}}
	done := make(chan *clone, len(clones))
	for i, c := range clones {
		name := fmt.Sprintf("netc%d", i+1)
		c.stats = filepath.Join(dir, name+".json")
		start := time.Now()
		c.vm = startNetClone(t, root, bundle, name, c.port, c.stats)
		go func() {
			c.serving, c.err = waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/", c.port), "clone-page "+tok, start, c.vm.exited, 5*time.Minute)
			done <- c
		}()
	}
	for range clones {
		if c := <-done; c.err != nil {
			t.Errorf("%s: %v", c.vm.name, c.err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Each clone: a MAC of its own (the agent applied it), the guest
	// address of the lease, the host reachable through its own network,
	// and its forward reaching it and not the other clone.
	macs := map[string]string{srcMAC: "netsrc"}
	hello := fmt.Sprintf("http://host.smolvm.internal:%d/hello", srv.port)
	var readys []string
	for _, c := range clones {
		name := c.vm.name
		st := readRunStats(t, c.stats)
		if !slices.Contains(st.Identity.Applied, "mac") || !slices.Contains(st.Identity.Applied, "announce") || len(st.Identity.Errors) > 0 {
			t.Errorf("%s: identity applied %v, errors %v: want the new MAC applied and announced", name, st.Identity.Applied, st.Identity.Errors)
		}
		readys = append(readys, fmt.Sprintf("%.2f s", st.ReadyS))
		c.mac = guestMAC(t, c.vm)
		if other, ok := macs[c.mac]; ok {
			t.Errorf("%s has MAC %s, the same as %s", name, c.mac, other)
		}
		macs[c.mac] = name
		out := c.vm.mustExec(t, "sh", "-c", "set -e; hostname; cat /sys/class/net/eth0/address >/www/mac.txt; "+
			"ip -4 addr show eth0 | grep -o 'inet [0-9.]*'; wget -q -O - "+hello)
		for _, want := range []string{name, "inet 192.168.127.2", "hello-from-host " + srv.token} {
			if !strings.Contains(out, want) {
				t.Errorf("%s printed %q: want %q in it", name, out, want)
			}
		}
	}
	for _, c := range clones {
		// The page written in each clone above comes back through its
		// own forward.
		if _, err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/mac.txt", c.port), c.mac, time.Now(), c.vm.exited, time.Minute); err != nil {
			t.Errorf("%s: %v", c.vm.name, err)
		}
	}

	// smolvm ps lists each clone's forward.
	out, errOut, code := smolvmIn(t, root, time.Minute, "ps", "--json")
	var ents []psEntry
	if err := json.Unmarshal([]byte(out), &ents); code != 0 || err != nil {
		t.Fatalf("ps --json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	fwds := map[string][]string{}
	for _, e := range ents {
		if e.Status != nil {
			fwds[e.Name] = e.Status.Forwards
		}
	}
	for _, c := range clones {
		if want := []string{fmt.Sprintf("127.0.0.1:%d->80/tcp", c.port)}; !slices.Equal(fwds[c.vm.name], want) {
			t.Errorf("ps: %s forwards %q, want %q\n%s", c.vm.name, fwds[c.vm.name], want, out)
		}
	}
	if tab, _, code := smolvmIn(t, root, time.Minute, "ps"); code != 0 || !strings.Contains(tab, fmt.Sprintf("127.0.0.1:%d->80/tcp", p1)) {
		t.Errorf("ps table: exit %d\n%s", code, tab)
	}

	t.Logf("MACs: source %s, %s %s, %s %s", srcMAC, clones[0].vm.name, clones[0].mac, clones[1].vm.name, clones[1].mac)
	t.Logf("figure: boot to serving HTTP through -p (httpd started by exec once the agent answered): %v [%s]",
		bootServing.Round(time.Millisecond), kvmtest.Label())
	t.Logf("figure: restore to serving HTTP through -p, two clones started at once: %v and %v (agent ready at %s); %.1fx faster than the boot [%s]",
		clones[0].serving.Round(time.Millisecond), clones[1].serving.Round(time.Millisecond), strings.Join(readys, " and "),
		bootServing.Seconds()/max(clones[0].serving, clones[1].serving).Seconds(), kvmtest.Label())
}
