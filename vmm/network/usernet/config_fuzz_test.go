package usernet

import (
	"encoding/json"
	"testing"

	"github.com/smolvm/smolvm/vmm/network"
)

// FuzzParseHelperConfig: any line is refused with an error or read into a
// config that survives a round trip through its own line.
func FuzzParseHelperConfig(f *testing.F) {
	f.Add([]byte(`{"mac":"52:54:00:ab:cd:ef","forwards":["127.0.0.1:8080:80/tcp","[::1]:5353:53/udp"]}`))
	f.Add([]byte(`{"mac":"52:54:00:ab:cd:ef"}`))
	f.Add([]byte(`{"mac":"01:00:00:00:00:00","forwards":[]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, line []byte) {
		c, err := parseHelperConfig(line)
		if err != nil {
			return
		}
		hc := network.HelperConfig{MAC: network.MACString(c.MAC)}
		for _, fw := range c.Forwards {
			hc.Forwards = append(hc.Forwards, fw.String())
		}
		b, err := json.Marshal(hc)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := parseHelperConfig(b)
		if err != nil {
			t.Fatalf("round trip of %q: %v", b, err)
		}
		if c2.MAC != c.MAC || len(c2.Forwards) != len(c.Forwards) {
			t.Fatalf("round trip of %q changed it: %+v vs %+v", b, c2, c)
		}
		for i := range c.Forwards {
			if c2.Forwards[i] != c.Forwards[i] {
				t.Fatalf("forward %d: %v vs %v", i, c2.Forwards[i], c.Forwards[i])
			}
		}
	})
}
