package fusefs

import (
	"encoding/json"
	"fmt"

	"github.com/smolvm/smolvm/chunkstore"
)

// ConfigName is the file holding the machine config (the manifest's config).
const ConfigName = "config.json"

// opened adapts an opened chunkstore.Bundle to Bundle.
type opened struct {
	b      *chunkstore.Bundle
	images []chunkstore.Image
	files  map[string][]byte
}

// FromChunkstore serves every artifact of b (kernel, initrd, memory, state,
// disk/NAME) as an image file and its config as config.json. Closing b
// stays with the caller.
func FromChunkstore(b *chunkstore.Bundle) (Bundle, error) {
	m := b.Manifest()
	cfg, err := json.MarshalIndent(m.Config, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("fusefs: config: %w", err)
	}
	o := &opened{b: b, files: map[string][]byte{ConfigName: append(cfg, '\n')}}
	for _, a := range m.Artifacts {
		img, err := b.Image(a.Name)
		if err != nil {
			return nil, fmt.Errorf("fusefs: artifact %q: %w", a.Name, err)
		}
		o.images = append(o.images, img)
	}
	return o, nil
}

func (o *opened) Images() []chunkstore.Image { return o.images }
func (o *opened) Files() map[string][]byte   { return o.files }
func (o *opened) Stats() any                 { return o.b.Stats() }
