package guest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultAgent(t *testing.T) {
	dir := t.TempDir()
	static := filepath.Join(dir, "static")
	cmd := exec.Command("go", "build", "-o", static, "../../cmd/smolvm-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	text := filepath.Join(dir, "text")
	os.WriteFile(text, []byte("#!/bin/sh\n"+strings.Repeat("# not an ELF file\n", 20)), 0o755)
	for _, c := range []struct {
		name, env, want, mention string
	}{
		{"static", static, static, ""},
		{"dynamic", "/bin/sh", "", "dynamically linked"},
		{"not elf", text, "", "bad magic"},
		{"missing", filepath.Join(dir, "none"), "", "none"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("SMOLVM_AGENT", c.env)
			got, err := DefaultAgent()
			if c.mention == "" {
				if err != nil || got != c.want {
					t.Fatalf("DefaultAgent() = %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("DefaultAgent() = %q, %v; want an error mentioning %q", got, err, c.mention)
			}
		})
	}
	// Without SMOLVM_AGENT the test binary's directory has no agent.
	t.Setenv("SMOLVM_AGENT", "")
	if got, err := DefaultAgent(); got != "" || err != nil {
		t.Errorf("DefaultAgent() next to the test binary = %q, %v", got, err)
	}
}
