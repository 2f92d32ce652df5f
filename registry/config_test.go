package registry

import (
	"encoding/json"
	"errors"
	"testing"
)

// validConfig builds a config for a real bundle (no registry needed).
func validConfig(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	bundle, _ := makeBundle(t, dir, 1<<20, 11, "")
	lzcfg, err := configOnePack(bundle)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(lzcfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseConfig(t *testing.T) {
	good := validConfig(t)
	if _, err := ParseConfig(good); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	mutate := func(f func(c *Config)) []byte {
		var c Config
		if err := json.Unmarshal(good, &c); err != nil {
			t.Fatal(err)
		}
		f(&c)
		b, _ := json.Marshal(&c)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"not json", []byte("{")},
		{"wrong format", mutate(func(c *Config) { c.Format = "x" })},
		{"tail byte flipped", mutate(func(c *Config) { c.Tail[10] ^= 1 })},
		{"tail cut", mutate(func(c *Config) { c.Tail = c.Tail[1:]; c.TailOffset++ })},
		{"size mismatch", mutate(func(c *Config) { c.BundleSize++ })},
		{"manifest digest", mutate(func(c *Config) { c.ManifestDigest = c.Packs[0].Digest })},
		{"frame outside pack", mutate(func(c *Config) { c.Frames[0][1] = c.Packs[0].Size })},
		{"bad pack index", mutate(func(c *Config) { c.Frames[0][0] = 5 })},
		{"missing frame", mutate(func(c *Config) { c.Frames = c.Frames[1:] })},
		{"bad pack digest", mutate(func(c *Config) { c.Packs[0].Digest = "md5:00" })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(tc.b)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("want ErrCorrupt, got %v", err)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(validConfig(f))
	f.Add([]byte(`{"format":"smolvm-registry/v1","bundle_size":200,"tail_offset":16,"tail":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		// Whatever parses must be self-consistent.
		for i, l := range c.locs {
			if l.offset < 0 || l.offset+l.length > l.size || l.length != c.fr.Frame(i).Length {
				t.Fatalf("frame %d located outside its pack: %+v", i, l)
			}
		}
	})
}
