package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/smolvm/smolvm/vmm/control"
)

// servePSVM serves a control socket under root for a VM described by
// info (in this process: ps only talks HTTP to it, nothing is mapped).
func servePSVM(t *testing.T, root string, info control.Info) {
	t.Helper()
	d, err := control.Create(root, info.Name)
	if err != nil {
		t.Fatal(err)
	}
	info.StateDir = d.Path
	srv := control.NewServer(&fakeVM{stopped: make(chan struct{})}, info)
	ln, err := control.Listen(d.ControlSocket())
	if err != nil {
		d.Remove()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		d.Remove()
	})
}

// TestPSForwards: the -p flags of a VM reach `smolvm ps` through
// control.Info: parsed, formatted as Docker's ps does, served on the
// control socket, and shown in the table and the JSON.
func TestPSForwards(t *testing.T) {
	root := t.TempDir()
	t.Setenv("SMOLVM_RUN_DIR", root)
	for _, vm := range []struct {
		name    string
		publish []string
		want    []string
	}{
		{"fwd", []string{"8080:80", "0.0.0.0:5353:53/udp", "[::1]:2222:22"},
			[]string{"127.0.0.1:8080->80/tcp", "0.0.0.0:5353->53/udp", "[::1]:2222->22/tcp"}},
		{"nofwd", nil, nil},
	} {
		nc, err := parseNetFlags("user", vm.publish)
		if err != nil {
			t.Fatal(err)
		}
		got := publishedForwards(nc)
		if !slices.Equal(got, vm.want) {
			t.Fatalf("%s: publishedForwards = %q, want %q", vm.name, got, vm.want)
		}
		servePSVM(t, root, control.Info{Name: vm.name, CPUs: 1, MemBytes: 64 << 20, Forwards: got})
	}

	var js bytes.Buffer
	if err := runPS(&js, true); err != nil {
		t.Fatal(err)
	}
	var ents []psEntry
	if err := json.Unmarshal(js.Bytes(), &ents); err != nil {
		t.Fatalf("ps --json printed %q: %v", js.String(), err)
	}
	fwds := map[string][]string{}
	for _, e := range ents {
		if e.Status == nil {
			t.Fatalf("ps --json: %s has no status:\n%s", e.Name, js.String())
		}
		fwds[e.Name] = e.Status.Forwards
	}
	if len(fwds) != 2 || !slices.Equal(fwds["fwd"], []string{"127.0.0.1:8080->80/tcp", "0.0.0.0:5353->53/udp", "[::1]:2222->22/tcp"}) || fwds["nofwd"] != nil {
		t.Errorf("ps --json forwards: %q\n%s", fwds, js.String())
	}
	if !strings.Contains(js.String(), `"forwards": [`) {
		t.Errorf("ps --json has no \"forwards\" key:\n%s", js.String())
	}

	var tab bytes.Buffer
	if err := runPS(&tab, false); err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	var header []string
	for _, l := range strings.Split(strings.TrimSpace(tab.String()), "\n") {
		f := strings.Fields(l)
		if header == nil {
			header = f
			continue
		}
		rows[f[0]] = f
	}
	if len(header) == 0 || header[len(header)-1] != "FORWARDS" {
		t.Fatalf("ps header %q: no FORWARDS column\n%s", header, tab.String())
	}
	for name, want := range map[string]string{"fwd": "127.0.0.1:8080->80/tcp,0.0.0.0:5353->53/udp,[::1]:2222->22/tcp", "nofwd": "-"} {
		r := rows[name]
		if len(r) == 0 || r[len(r)-1] != want {
			t.Errorf("ps row %q: want it to end in %q\n%s", r, want, tab.String())
		}
	}
}
