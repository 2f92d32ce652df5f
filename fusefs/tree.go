package fusefs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/smolvm/smolvm/chunkstore"
)

// StatsName is the name of the statistics file at the mount's root.
const StatsName = ".stats"

// tree is the whole read-only namespace, built once from a Bundle.
type tree struct {
	files   map[string]content // path -> content, regular files only
	bundle  Bundle
	stats   *Stats
	mtime   time.Time
	blksize uint32
	logger  *log.Logger
	// copyReads: answer image reads by copying through Image.ReadAt
	// instead of handing the kernel slices of cached frames.
	copyReads bool
}

func newTree(b Bundle, mtime time.Time, blksize int, logger *log.Logger) (*tree, error) {
	t := &tree{files: map[string]content{}, bundle: b, stats: &Stats{}, mtime: mtime, blksize: uint32(blksize), logger: logger}
	add := func(p string, c content) error {
		if err := checkPath(p); err != nil {
			return err
		}
		if _, dup := t.files[p]; dup {
			return fmt.Errorf("fusefs: artifact path %q: %w", p, ErrDuplicate)
		}
		if c.Size() < 0 {
			return fmt.Errorf("fusefs: artifact %q: negative size %d", p, c.Size())
		}
		t.files[p] = c
		return nil
	}
	for _, img := range b.Images() {
		if err := add(img.Name(), img); err != nil {
			return nil, err
		}
	}
	for name, data := range b.Files() {
		if err := add(name, bytes.NewReader(data)); err != nil {
			return nil, err
		}
	}
	// A file may not also be a directory ("disk" and "disk/root").
	for p := range t.files {
		for dir := p; strings.Contains(dir, "/"); {
			dir = dir[:strings.LastIndex(dir, "/")]
			if _, clash := t.files[dir]; clash {
				return nil, fmt.Errorf("fusefs: %q is both a file and the directory of %q: %w", dir, p, ErrDuplicate)
			}
		}
	}
	return t, nil
}

func (t *tree) setTimes(a *fuse.Attr) {
	a.SetTimes(&t.mtime, &t.mtime, &t.mtime)
}

// dirNode is a read-only directory; its children are added once at mount.
type dirNode struct {
	fs.Inode
	t *tree
}

var (
	_ fs.NodeGetattrer = (*dirNode)(nil)
	_ fs.NodeOnAdder   = (*rootNode)(nil)
)

func (d *dirNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFDIR | 0o555
	d.t.setTimes(&out.Attr)
	return 0
}

// rootNode is the mount's root directory; OnAdd builds the tree under it.
type rootNode struct {
	dirNode
}

func (r *rootNode) OnAdd(ctx context.Context) {
	paths := make([]string, 0, len(r.t.files))
	for p := range r.t.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		parent := &r.Inode
		elems := strings.Split(p, "/")
		for _, el := range elems[:len(elems)-1] {
			ch := parent.GetChild(el)
			if ch == nil {
				ch = parent.NewPersistentInode(ctx, &dirNode{t: r.t}, fs.StableAttr{Mode: fuse.S_IFDIR})
				parent.AddChild(el, ch, false)
			}
			parent = ch
		}
		node := &fileNode{t: r.t, c: r.t.files[p], name: p}
		parent.AddChild(elems[len(elems)-1], parent.NewPersistentInode(ctx, node, fs.StableAttr{Mode: fuse.S_IFREG}), false)
	}
	r.AddChild(StatsName, r.NewPersistentInode(ctx, &statsNode{t: r.t}, fs.StableAttr{Mode: fuse.S_IFREG}), false)
}

// fileNode serves one immutable artifact. Its pages stay in the kernel's
// page cache across opens (FOPEN_KEEP_CACHE), shared by every reader and
// every MAP_PRIVATE mapping of the file.
type fileNode struct {
	fs.Inode
	t    *tree
	c    content
	name string
}

var (
	_ fs.NodeGetattrer = (*fileNode)(nil)
	_ fs.NodeOpener    = (*fileNode)(nil)
	_ fs.NodeReader    = (*fileNode)(nil)
)

func (n *fileNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFREG | 0o444
	out.Size = uint64(n.c.Size())
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = n.t.blksize
	n.t.setTimes(&out.Attr)
	return 0
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	n.t.stats.opens.Add(1)
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *fileNode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := n.c.Size()
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= size {
		n.t.stats.noteRead(len(dest), 0, false)
		return fuse.ReadResultData(nil), 0
	}
	want := min(int64(len(dest)), size-off)
	if img, ok := n.c.(chunkstore.Image); ok && !n.t.copyReads {
		res, err := readVector(ctx, img, off, want, n.t.stats)
		if err != nil {
			return n.readFailed(len(dest), off, want, err)
		}
		n.t.stats.noteRead(len(dest), int(want), false)
		return res, 0
	}
	got, err := n.c.ReadAt(dest[:want], off)
	if int64(got) == want && errors.Is(err, io.EOF) {
		err = nil
	}
	if err == nil && int64(got) != want {
		err = fmt.Errorf("short read: %d of %d bytes", got, want)
	}
	if err != nil {
		return n.readFailed(len(dest), off, want, err)
	}
	n.t.stats.noteRead(len(dest), got, false)
	return fuse.ReadResultData(dest[:got]), 0
}

// readFailed counts and logs a failed read and answers EIO.
func (n *fileNode) readFailed(requested int, off, want int64, err error) (fuse.ReadResult, syscall.Errno) {
	n.t.stats.noteRead(requested, 0, true)
	if n.t.logger != nil {
		n.t.logger.Printf("fusefs: read %s [%#x, +%#x): %v", n.name, off, want, err)
	}
	return nil, syscall.EIO
}

// statsNode serves .stats: a JSON snapshot taken at open, never cached
// (FOPEN_DIRECT_IO), so every open sees fresh counters.
type statsNode struct {
	fs.Inode
	t *tree
}

var (
	_ fs.NodeGetattrer = (*statsNode)(nil)
	_ fs.NodeOpener    = (*statsNode)(nil)
)

func (n *statsNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFREG | 0o444
	if sf, ok := f.(*statsHandle); ok {
		out.Size = uint64(len(sf.data))
	}
	n.t.setTimes(&out.Attr)
	return 0
}

func (n *statsNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	data, err := json.MarshalIndent(StatsFile{FS: n.t.stats.Snapshot(), Store: n.t.bundle.Stats()}, "", "  ")
	if err != nil {
		if n.t.logger != nil {
			n.t.logger.Printf("fusefs: %s: %v", StatsName, err)
		}
		return nil, 0, syscall.EIO
	}
	return &statsHandle{data: append(data, '\n')}, fuse.FOPEN_DIRECT_IO, 0
}

type statsHandle struct{ data []byte }

var _ fs.FileReader = (*statsHandle)(nil)

func (h *statsHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(h.data[off:min(int64(len(h.data)), off+int64(len(dest)))]), 0
}
