package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Name is the filesystem's name: `mount` shows "smolmount on DIR type
// fuse.smolmount".
const Name = "smolmount"

// DefaultMaxRead is the largest READ request the kernel may send (max_read,
// max_pages) and the readahead asked for: 1 MiB, the kernel's limit.
const DefaultMaxRead = 1 << 20

// DefaultReadAheadKB is the readahead a root mount asks for: 1 MiB, so
// sequential reads become 1 MiB READs (measured: cold sequential reads about
// 2x faster than with the kernel's 128 KiB; 4 MiB gained nothing).
const DefaultReadAheadKB = 1024

// Options tune a mount. The zero value is usable.
type Options struct {
	// MaxRead caps one READ request in bytes (rounded to pages, at most
	// 1 MiB). 0 means DefaultMaxRead.
	MaxRead int
	// ReadAheadKB sets the mount's backing-device readahead
	// (/sys/class/bdi/MAJ:MIN/read_ahead_kb; root only, otherwise
	// ignored): 0 means DefaultReadAheadKB, negative leaves the kernel's
	// default, which caps FUSE readahead at 128 KiB whatever MaxReadAhead
	// says (and so every READ at 128 KiB).
	ReadAheadKB int
	// AllowOther lets users other than the mounting one read the mount
	// (the VMM may run as another user). Needs root or user_allow_other.
	AllowOther bool
	// ModTime is every file's mtime (the bundle file's, say).
	ModTime time.Time
	// Logger receives read errors and diagnostics; nil discards them.
	Logger *log.Logger
	// Debug logs every FUSE request (very verbose).
	Debug bool
	// CopyReads answers image reads through Image.ReadAt (one copy into
	// the request buffer) instead of the default: a vector of slices of
	// the cached frames, gathered by the kernel (no copy in the daemon).
	CopyReads bool
}

// attrTimeout: the content never changes while mounted, so the kernel may
// cache names and attributes for as long as it likes.
const attrTimeout = 24 * time.Hour

// Server is a live mount served by this process.
type Server struct {
	srv  *fuse.Server
	dir  string
	info MountInfo
	tree *tree
	done chan struct{}
}

// Mount serves b at dir until the mount goes away (Unmount, `smolmount -u`,
// umount). As root it mounts directly and never falls back to fusermount;
// otherwise it uses fusermount3 (package fuse3).
func Mount(dir string, b Bundle, opts Options) (*Server, error) {
	maxRead := opts.MaxRead
	if maxRead <= 0 || maxRead > DefaultMaxRead {
		maxRead = DefaultMaxRead
	}
	maxRead = (maxRead + os.Getpagesize() - 1) &^ (os.Getpagesize() - 1)
	if opts.ModTime.IsZero() {
		opts.ModTime = time.Now()
	}
	t, err := newTree(b, opts.ModTime, maxRead, opts.Logger)
	if err != nil {
		return nil, err
	}
	t.copyReads = opts.CopyReads
	abs, err := canonicalMountPoint(dir)
	if err != nil {
		return nil, err
	}
	root := &rootNode{dirNode{t: t}}
	timeout := attrTimeout
	isRoot := os.Geteuid() == 0
	fopts := &fs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		MountOptions: fuse.MountOptions{
			FsName:            Name,
			Name:              Name,
			AllowOther:        opts.AllowOther,
			Options:           []string{"ro", "default_permissions"},
			MaxWrite:          maxRead,
			MaxReadAhead:      maxRead,
			MaxBackground:     64,
			DirectMountStrict: isRoot,
			DisableXAttrs:     true,
			// Replies are in-memory bytes: splice would only cost a pipe
			// resize per read before falling back.
			DisableSplice: true,
			Debug:         opts.Debug,
			Logger:        opts.Logger,
		},
	}
	srv, err := fs.Mount(abs, root, fopts)
	if err != nil {
		return nil, fmt.Errorf("fusefs: mount %s: %w", abs, err)
	}
	s := &Server{srv: srv, dir: abs, tree: t, done: make(chan struct{})}
	go func() {
		srv.Wait()
		close(s.done)
	}()
	if s.info, err = FindMount(abs); err != nil {
		s.Close()
		return nil, err
	}
	if opts.ReadAheadKB == 0 {
		opts.ReadAheadKB = DefaultReadAheadKB
	}
	if opts.ReadAheadKB > 0 && isRoot {
		p := filepath.Join("/sys/class/bdi", s.info.Dev(), "read_ahead_kb")
		if err := os.WriteFile(p, []byte(strconv.Itoa(opts.ReadAheadKB)), 0); err != nil && opts.Logger != nil {
			opts.Logger.Printf("fusefs: readahead stays at the kernel's default: %v", err)
		}
	}
	return s, nil
}

// Dir is the absolute mount point.
func (s *Server) Dir() string { return s.dir }

// Info is the mount's line in /proc/self/mountinfo (device, type).
func (s *Server) Info() MountInfo { return s.info }

// Stats returns the filesystem's own counters.
func (s *Server) Stats() FSStats { return s.tree.stats.Snapshot() }

// Done is closed when the kernel has ended the mount (unmounted from here
// or from outside, or aborted).
func (s *Server) Done() <-chan struct{} { return s.done }

// Unmount ends the mount, waiting at most until ctx ends. A busy mount (a
// file still open) is retried briefly and then detached lazily and aborted:
// whoever still holds a file gets errors, never a hang.
func (s *Server) Unmount(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	default:
	}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Unmount() }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(2 * time.Second):
		err = fmt.Errorf("%w: plain unmount", ErrTimeout)
	}
	if err == nil {
		return s.wait(ctx)
	}
	if ferr := forceUnmount(ctx, s.info, s.dir); ferr != nil {
		return fmt.Errorf("fusefs: unmount %s: %v; forced: %w", s.dir, err, ferr)
	}
	return s.wait(ctx)
}

func (s *Server) wait(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fusefs: unmount %s: waiting for the server to stop: %w", s.dir, ctx.Err())
	}
}

// Close unmounts with a default bound of 10 seconds.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.Unmount(ctx)
	if errors.Is(err, ErrNotMounted) {
		return nil
	}
	return err
}
