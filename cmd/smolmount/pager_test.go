package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/pager"
)

// A VMM-like client registers anonymous memory with the daemon's pager
// service and reads every page back bit-identical. This process only faults
// (the daemon child serves), and only inside syscalls.
func TestPagerService(t *testing.T) {
	const memSize = 8 << 20
	bundle, sources := testBundle(t, memSize)
	d := startDaemon(t, bundle)
	want, err := os.ReadFile(sources["memory"])
	if err != nil {
		t.Fatal(err)
	}
	sock, err := pager.DaemonSocket(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(-1, 0, memSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	regions := []pager.Region{{HostAddr: pager.HostAddr(mem), Length: memSize, Artifact: "memory"}}
	fd, err := pager.NewUserfaultfd(regions)
	if err != nil {
		t.Skipf("no userfaultfd: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pager.Dial(ctx, sock)
	if err != nil {
		t.Fatalf("%v; daemon stderr:\n%s", err, d.stderr)
	}
	// Cleanup order: the client, then the uffd, then the memory.
	t.Cleanup(func() { unix.Munmap(mem) })
	t.Cleanup(func() { unix.Close(fd) })
	t.Cleanup(func() { c.Close() })
	if err := c.Register(ctx, fd, regions, pager.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	got := make([]byte, pager.PageSize)
	done := make(chan error, 1)
	go func() {
		for off := 0; off < memSize; off += pager.PageSize {
			// write(2) reads the page in the kernel: a fault the daemon serves.
			n, _, errno := unix.Syscall(unix.SYS_WRITE, uintptr(p[1]), uintptr(unsafe.Pointer(&mem[off])), pager.PageSize)
			if errno != 0 || n != pager.PageSize {
				done <- fmt.Errorf("write page at %#x: %v", off, errno)
				return
			}
			if _, err := unix.Read(p[0], got); err != nil {
				done <- err
				return
			}
			if !bytes.Equal(got, want[off:off+pager.PageSize]) {
				done <- fmt.Errorf("page at %#x differs from the source", off)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case err := <-c.Err():
		t.Fatalf("pager: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("pages not served in 30s")
	}
	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PagesCopied+st.ZeroPages != memSize/pager.PageSize {
		t.Errorf("daemon filled %d+%d pages, want %d", st.PagesCopied, st.ZeroPages, memSize/pager.PageSize)
	}
}

// mmap mode through the smolmount binary: a MAP_PRIVATE mapping of the
// mounted memory file is bit-identical to the source, populated from a
// working set or not, and writes stay private.
func TestPagerMmapMode(t *testing.T) {
	const memSize = 8 << 20
	bundle, sources := testBundle(t, memSize)
	d := startDaemon(t, bundle)
	want, err := os.ReadFile(sources["memory"])
	if err != nil {
		t.Fatal(err)
	}
	ws := &pager.WorkingSet{Version: 1, PageSize: pager.PageSize, Ranges: []pager.PageRange{{Artifact: "memory", Page: 16, Count: 512}}}
	for _, populate := range []bool{false, true} {
		m, err := pager.MapFile(d.dir+"/memory", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if populate {
			if err := m.Populate(ws, "memory", 0, pager.PopulateRead); err != nil {
				m.Close()
				t.Fatal(err)
			}
		}
		same := bytes.Equal(m.Mem, want)
		m.Mem[0] ^= 0xff
		m.Close()
		if !same {
			t.Fatalf("populate=%v: mapping differs from the source", populate)
		}
	}
	got, err := os.ReadFile(d.dir + "/memory")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("a write to the private mapping reached the mount")
	}
}
