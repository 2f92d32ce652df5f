package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/smolvm/smolvm/internal/lab"
)

// LabOptions say how to run the bench inside the lab VM.
type LabOptions struct {
	// Args are the bench's own arguments (after "smolvm"); RunInLab adds
	// --json-out. The smolvm executable is re-invoked inside the lab.
	Args    []string
	Smolvm  string
	MemMB   int           // lab VM memory
	Timeout time.Duration // the whole lab run
	Log     io.Writer     // the inner run's progress
}

// RunInLab runs the bench inside the KVM lab (nested KVM on QEMU's TCG, for
// machines without hardware KVM) and reads its report back through a
// writable share.
func RunInLab(ctx context.Context, o LabOptions) (*Report, error) {
	share, err := os.MkdirTemp("", "smolvm-bench-lab-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(share)
	out := filepath.Join(share, "report.json")
	args := append(append([]string{o.Smolvm}, o.Args...), "--json-out", out)
	code, err := lab.Run(ctx, lab.Options{
		Cmd: args, Shares: []string{share}, MemMB: o.MemMB, CPUs: 2, Timeout: o.Timeout, Stdout: o.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	b, rerr := os.ReadFile(out)
	if code != 0 {
		return nil, fmt.Errorf("bench: the run inside the lab exited with status %d", code)
	}
	if rerr != nil {
		return nil, fmt.Errorf("bench: the run inside the lab wrote no report: %w", rerr)
	}
	return DecodeReport(b)
}

// DecodeReport reads a report written with --json.
func DecodeReport(b []byte) (*Report, error) {
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("bench: report: %w", err)
	}
	if rep.Env.Accel == "" {
		return nil, fmt.Errorf("bench: report: no env.accel: not a bench report")
	}
	return &rep, nil
}

// WriteJSON writes rep as indented JSON.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
