package chunkstore

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/smolvm/smolvm/format"
)

// PackInput is one artifact to pack: its name in the bundle (kernel,
// initrd, memory, state, disk/NAME) and the file holding it.
type PackInput struct {
	Name string
	Path string
}

// PackOptions say what Pack builds.
type PackOptions struct {
	// Manifest gives the config, state and working set; Pack fills in
	// Artifacts from Inputs.
	Manifest format.Manifest
	Inputs   []PackInput
	// Store, when set, makes a thin bundle: new frames go to the store and
	// the bundle references them; pages already in the store are reused.
	Store *DirStore
	// Parent, when set, is a bundle whose pages are reused: its frames are
	// referenced (thin, when in Store) or copied raw into the new bundle.
	Parent *Bundle
	// FramePages is the number of pages per new frame (default
	// format.DefaultFramePages).
	FramePages int
	// Workers hash and compress in parallel (default GOMAXPROCS).
	Workers int
	// Progress, when set, is called with the input bytes consumed.
	Progress func(n int64)
}

// PackResult reports what Pack did. Logical bytes are the inputs' sizes;
// new bytes the compressed frames written by this pack (into the bundle or
// the store); reused pages were found already known (earlier in this pack,
// in the store or in the parent) and only referenced.
type PackResult struct {
	LogicalBytes   int64         `json:"logical_bytes"`
	ZeroPages      int64         `json:"zero_pages"`
	DataPages      int64         `json:"data_pages"`
	NewPages       int64         `json:"new_pages"`
	ReusedPages    int64         `json:"reused_pages"`
	NewFrames      int           `json:"new_frames"`
	NewBytes       int64         `json:"new_bytes"`
	CopiedFrames   int           `json:"copied_frames"`
	CopiedBytes    int64         `json:"copied_bytes"`
	ExternalFrames int           `json:"external_frames"`
	Frames         int           `json:"frames"`
	FileBytes      int64         `json:"file_bytes"`
	Seconds        float64       `json:"seconds"`
	MBPerSec       float64       `json:"mb_per_s"`
	ManifestDigest format.Digest `json:"-"`
	ManifestHex    string        `json:"manifest_digest"`
}

// Pack writes a bundle to path atomically (an unnamed temp file in path's
// directory, published by rename only when complete).
func Pack(ctx context.Context, path string, opts PackOptions) (*PackResult, error) {
	f, err := CreateAtomic(path)
	if err != nil {
		return nil, fmt.Errorf("chunkstore: pack: %w", err)
	}
	defer f.Abort()
	res, err := PackTo(ctx, f, opts)
	if err != nil {
		return nil, err
	}
	if err := f.Commit(); err != nil {
		return nil, fmt.Errorf("chunkstore: pack: %w", err)
	}
	return res, nil
}

// pageRef says where a known page lives: slot of a pack frame.
type pageRef struct {
	pf   int32 // index into packer.frames
	slot int32
}

// packFrame is a frame the new bundle will list: new (compressed by this
// pack), in the store, or in the parent.
type packFrame struct {
	kind   int // frameNew, frameStore, frameParent
	pages  []format.Digest
	length int64 // store frames: compressed length
	parent int   // parent frames: index in the parent's table
	index  int   // index in the new bundle's frame table, -1 until added
	data   []byte
	raw    []byte
	err    error
	done   chan struct{}
}

const (
	frameNew = iota
	frameStore
	frameParent
)

type packer struct {
	ctx    context.Context
	opts   PackOptions
	known  map[format.Digest]pageRef
	frames []*packFrame
	cur    *packFrame // new frame being filled
	res    PackResult
	work   chan *packFrame
	order  chan *packFrame
	bufs   sync.Pool
}

// PackTo writes a bundle to w (streamed, no seeks).
func PackTo(ctx context.Context, w io.Writer, opts PackOptions) (*PackResult, error) {
	start := time.Now()
	if opts.FramePages == 0 {
		opts.FramePages = format.DefaultFramePages
	}
	if opts.FramePages < 1 || opts.FramePages > format.MaxFramePages {
		return nil, fmt.Errorf("chunkstore: pack: %d pages per frame (want 1..%d)", opts.FramePages, format.MaxFramePages)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	p := &packer{ctx: ctx, opts: opts, known: make(map[format.Digest]pageRef)}
	p.bufs.New = func() any { return make([]byte, 0, opts.FramePages*format.PageSize) }
	if err := p.indexSources(); err != nil {
		return nil, err
	}
	fw, err := format.NewWriter(w)
	if err != nil {
		return nil, err
	}

	// Compression workers, and one writer that adds frames in order.
	p.work = make(chan *packFrame, 2*opts.Workers)
	p.order = make(chan *packFrame, 4*opts.Workers+storeWriters)
	puts := make(chan *packFrame, storeWriters)
	var wg sync.WaitGroup
	for i := 0; i < opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range p.work {
				f.raw = format.EncodeFrame(nil, f.data)
				p.bufs.Put(f.data[:0]) //nolint:staticcheck // slices are fine in a Pool here
				f.data = nil
				if opts.Store != nil {
					puts <- f
					continue
				}
				close(f.done)
			}
		}()
	}
	// Store writes wait on file system latency more than on CPU: a wider
	// pool does them in parallel; the writer only lists the frames.
	var pwg sync.WaitGroup
	if s := opts.Store; s != nil {
		for range storeWriters {
			pwg.Add(1)
			go func() {
				defer pwg.Done()
				for f := range puts {
					f.err = s.Put(ctx, format.FrameDigest(f.pages), f.raw, f.pages)
					close(f.done)
				}
			}()
		}
	}
	writeErr := make(chan error, 1)
	go func() { writeErr <- p.writeFrames(fw) }()

	m := opts.Manifest
	m.Artifacts = nil
	var packErr error
	for _, in := range opts.Inputs {
		a, err := p.packInput(in)
		if err != nil {
			packErr = err
			break
		}
		m.Artifacts = append(m.Artifacts, a)
	}
	if packErr == nil {
		p.flush()
	}
	close(p.work)
	close(p.order)
	wg.Wait()
	close(puts)
	pwg.Wait()
	if err := <-writeErr; err != nil && packErr == nil {
		packErr = err
	}
	if packErr != nil {
		return nil, packErr
	}
	// Map pack frame numbers to frame table indexes.
	for i := range m.Artifacts {
		es := m.Artifacts[i].Extents
		for j := range es {
			es[j].Frame = int32(p.frames[es[j].Frame].index)
		}
	}
	t, err := fw.Finish(&m)
	if err != nil {
		return nil, fmt.Errorf("chunkstore: pack: %w", err)
	}
	r := &p.res
	r.Frames = fw.Frames()
	r.FileBytes = fw.Offset()
	r.Seconds = time.Since(start).Seconds()
	if r.Seconds > 0 {
		r.MBPerSec = float64(r.LogicalBytes) / 1e6 / r.Seconds
	}
	r.ManifestDigest = t.ManifestDigest
	r.ManifestHex = t.ManifestDigest.String()
	return r, nil
}

// indexSources learns the pages of the store and the parent.
func (p *packer) indexSources() error {
	if s := p.opts.Store; s != nil {
		err := s.Walk(p.ctx, func(sf StoredFrame) error {
			p.addKnown(&packFrame{kind: frameStore, pages: sf.Pages, length: sf.Length, index: -1})
			return nil
		})
		if err != nil {
			return fmt.Errorf("chunkstore: pack: indexing store %s: %w", s.Dir(), err)
		}
	}
	if b := p.opts.Parent; b != nil {
		frames := b.Format().Frames()
		for i := range frames {
			p.addKnown(&packFrame{kind: frameParent, pages: frames[i].PageDigests, parent: i, index: -1})
		}
	}
	return nil
}

// addKnown registers a source frame and the pages it holds (first
// occurrence wins).
func (p *packer) addKnown(f *packFrame) {
	pf := int32(len(p.frames))
	p.frames = append(p.frames, f)
	for s, d := range f.pages {
		if d == format.ZeroPageDigest {
			continue
		}
		if _, ok := p.known[d]; !ok {
			p.known[d] = pageRef{pf: pf, slot: int32(s)}
		}
	}
}

// storeWriters is the number of goroutines writing frames to a store.
const storeWriters = 8

// batchPages is how many pages are read and hashed at a time.
const batchPages = 1024

func (p *packer) packInput(in PackInput) (format.Artifact, error) {
	a := format.Artifact{Name: in.Name}
	if !format.ValidArtifactName(in.Name) {
		return a, fmt.Errorf("chunkstore: pack: bad artifact name %q (want kernel, initrd, memory, state or disk/NAME)", in.Name)
	}
	f, err := os.Open(in.Path)
	if err != nil {
		return a, fmt.Errorf("chunkstore: pack %s: %w", in.Name, err)
	}
	defer f.Close()
	src := newSparseReader(f)
	buf := make([]byte, batchPages*format.PageSize)
	digests := make([]format.Digest, batchPages)
	zero := make([]bool, batchPages)
	var page int64
	var cur *format.Extent
	for {
		if err := p.ctx.Err(); err != nil {
			return a, err
		}
		// Holes of a sparse file are zero pages: skip them unread.
		if skip := src.holeAt(a.Size); skip > 0 {
			a.Size += skip
			page += skip / format.PageSize
			p.res.ZeroPages += skip / format.PageSize
			cur = nil
			if p.opts.Progress != nil {
				p.opts.Progress(skip)
			}
		}
		n, err := src.read(buf, a.Size)
		if err != nil {
			return a, fmt.Errorf("chunkstore: pack %s: reading %s at offset %d: %w", in.Name, in.Path, a.Size, err)
		}
		if n == 0 {
			break
		}
		a.Size += int64(n)
		if a.Size > format.MaxImageSize {
			return a, fmt.Errorf("chunkstore: pack %s: %s is larger than %d bytes", in.Name, in.Path, int64(format.MaxImageSize))
		}
		np := (n + format.PageSize - 1) / format.PageSize
		clear(buf[n : np*format.PageSize]) // zero-pad the partial last page
		p.hashBatch(buf[:np*format.PageSize], digests[:np], zero[:np])
		for i := 0; i < np; i++ {
			if zero[i] {
				p.res.ZeroPages++
				cur = nil
				page++
				continue
			}
			p.res.DataPages++
			ref, ok := p.known[digests[i]]
			if ok {
				p.res.ReusedPages++
				if src := p.frames[ref.pf]; src.kind != frameNew {
					src.index = -2 // used: add it to the table
				}
			} else {
				ref = p.addNew(digests[i], buf[i*format.PageSize:(i+1)*format.PageSize])
			}
			if cur != nil && cur.Frame == ref.pf && cur.Slot+cur.Count == ref.slot && cur.End() == page {
				cur.Count++
			} else {
				a.Extents = append(a.Extents, format.Extent{Page: page, Count: 1, Frame: ref.pf, Slot: ref.slot})
				cur = &a.Extents[len(a.Extents)-1]
			}
			page++
		}
		if p.opts.Progress != nil {
			p.opts.Progress(int64(n))
		}
		if n < len(buf) {
			break
		}
	}
	p.res.LogicalBytes += a.Size
	return a, nil
}

// hashBatch computes page digests (and zero flags) of a batch in parallel.
func (p *packer) hashBatch(b []byte, digests []format.Digest, zero []bool) {
	n := len(digests)
	w := p.opts.Workers
	per := (n + w - 1) / w
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				pg := b[i*format.PageSize : (i+1)*format.PageSize]
				zero[i] = format.IsZero(pg)
				if !zero[i] {
					digests[i] = format.PageDigest(pg)
				}
			}
		}()
	}
	wg.Wait()
}

// addNew appends a page to the new frame being filled.
func (p *packer) addNew(d format.Digest, pg []byte) pageRef {
	if p.cur == nil {
		p.cur = &packFrame{kind: frameNew, index: -1, data: p.bufs.Get().([]byte), done: make(chan struct{})}
		p.frames = append(p.frames, p.cur)
	}
	f := p.cur
	ref := pageRef{pf: int32(len(p.frames) - 1), slot: int32(len(f.pages))}
	f.pages = append(f.pages, d)
	f.data = append(f.data, pg...)
	p.known[d] = ref
	p.res.NewPages++
	if len(f.pages) == p.opts.FramePages {
		p.flush()
	}
	return ref
}

// flush hands the frame being filled to the workers and the writer.
func (p *packer) flush() {
	if p.cur == nil {
		return
	}
	f := p.cur
	p.cur = nil
	p.order <- f // bounded: back-pressure from the writer
	p.work <- f
}

// writeFrames adds new frames to the bundle (or store) in order. Source
// frames (store, parent) are added on first use, in useFrame.
func (p *packer) writeFrames(fw *format.Writer) error {
	var err error
	for f := range p.order {
		<-f.done
		if err != nil {
			continue // drain
		}
		err = p.addNewFrame(fw, f)
	}
	if err != nil {
		return err
	}
	// Source frames referenced by extents; their order in the table is
	// their pack number order (deterministic).
	for _, f := range p.frames {
		if f.kind != frameNew && f.used() {
			if err := p.addSourceFrame(fw, f); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *packFrame) used() bool { return f.index == -2 }

func (p *packer) addNewFrame(fw *format.Writer, f *packFrame) error {
	raw := f.raw
	f.raw = nil
	p.res.NewFrames++
	p.res.NewBytes += int64(len(raw))
	if f.err != nil {
		return f.err
	}
	var err error
	if p.opts.Store != nil {
		f.index, err = fw.AddExternalFrame(int64(len(raw)), f.pages)
		p.res.ExternalFrames++
	} else {
		f.index, err = fw.AddFrame(raw, f.pages)
	}
	if err != nil {
		return fmt.Errorf("chunkstore: pack: %w", err)
	}
	return nil
}

func (p *packer) addSourceFrame(fw *format.Writer, f *packFrame) error {
	var err error
	switch f.kind {
	case frameStore:
		f.index, err = fw.AddExternalFrame(f.length, f.pages)
		p.res.ExternalFrames++
	case frameParent:
		parent := p.opts.Parent
		info := parent.Format().Frame(f.parent)
		var raw []byte
		raw, err = parent.Source().Get(p.ctx, info.Digest)
		if err == nil {
			// Never propagate a damaged frame into a new bundle.
			_, err = format.DecodeFrame(info, raw, nil)
		}
		if err != nil {
			return fmt.Errorf("chunkstore: pack: parent frame %d: %w", f.parent, err)
		}
		if s := p.opts.Store; s != nil {
			if err = s.Put(p.ctx, info.Digest, raw, f.pages); err != nil {
				return err
			}
			f.index, err = fw.AddExternalFrame(int64(len(raw)), f.pages)
			p.res.ExternalFrames++
		} else {
			f.index, err = fw.AddFrame(raw, f.pages)
			p.res.CopiedFrames++
			p.res.CopiedBytes += int64(len(raw))
		}
	}
	if err != nil {
		return fmt.Errorf("chunkstore: pack: %w", err)
	}
	return nil
}
