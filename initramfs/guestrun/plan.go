package guestrun

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
)

// File names on the share.
const (
	PlanFile    = "plan.json"
	ResultsFile = "results.json"
	// ShareTag is the 9p mount tag of the share.
	ShareTag = "nlmmap"
	// ManifestPath is where the initramfs lists its test binaries.
	ManifestPath = "/nlmmap/manifest.json"
)

// Plan modes.
const (
	ModeRun   = "run"
	ModeProbe = "probe"
)

// Plan is what the host asks the guest to do.
type Plan struct {
	Mode string `json:"mode"` // ModeRun (default) or ModeProbe
	// Run selects tests like go test -run; empty runs all.
	Run string `json:"run,omitempty"`
	// TestTimeout bounds each top-level test.
	TestTimeout Duration `json:"test_timeout"`
	// KernelRelease is the release the host built; exported to tests as
	// NLMMAP_KERNEL_RELEASE.
	KernelRelease string `json:"kernel_release"`
	// Env is added to every test's environment.
	Env map[string]string `json:"env,omitempty"`
}

// Validate checks the plan for mistakes the guest cannot recover from.
func (p *Plan) Validate() error {
	switch p.Mode {
	case "", ModeRun, ModeProbe:
	default:
		return fmt.Errorf("plan: unknown mode %q", p.Mode)
	}
	if p.Run != "" {
		for _, part := range SplitRun(p.Run) {
			if _, err := regexp.Compile(part); err != nil {
				return fmt.Errorf("plan: run filter %q: %w", p.Run, err)
			}
		}
	}
	if p.Mode != ModeProbe && p.TestTimeout.D <= 0 {
		return fmt.Errorf("plan: test_timeout must be positive")
	}
	return nil
}

// WritePlan writes p to path.
func WritePlan(path string, p *Plan) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	return nil
}

// ReadPlan reads and validates the plan at path.
func ReadPlan(path string) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	var p Plan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Duration is a time.Duration that reads and writes as "1m30s" in JSON.
type Duration struct{ D time.Duration }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.D.String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	d.D = v
	return nil
}

// SplitRun splits a -run filter into its per-level parts like go test
// does: at slashes that are not inside brackets or parentheses.
func SplitRun(run string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(run); i++ {
		switch run[i] {
		case '[', '(':
			depth++
		case ']', ')':
			if depth > 0 {
				depth--
			}
		case '\\':
			i++
		case '/':
			if depth == 0 {
				parts = append(parts, run[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, run[start:])
}

// TopLevelFilter is the part of run that selects top-level tests ("" for
// all), and RunFor the -test.run argument that runs exactly test and,
// within it, what run selects below the top level.
func TopLevelFilter(run string) string {
	if run == "" {
		return ""
	}
	return SplitRun(run)[0]
}

// RunFor returns the -test.run value for one top-level test.
func RunFor(test, run string) string {
	arg := "^" + regexp.QuoteMeta(test) + "$"
	if parts := SplitRun(run); len(parts) > 1 {
		arg += "/" + strings.Join(parts[1:], "/")
	}
	return arg
}

// Manifest lists the test binaries in the initramfs.
type Manifest struct {
	Packages []ManifestPackage `json:"packages"`
}

// ManifestPackage is one guest test package.
type ManifestPackage struct {
	ImportPath string `json:"import_path"`
	// Name is the short name used in host test names (path below guest/).
	Name   string `json:"name"`
	Binary string `json:"binary"` // path inside the initramfs
	// Tests are the top-level tests, as listed at build time.
	Tests []string `json:"tests"`
}

// ReadManifest reads a manifest.
func ReadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", path, err)
	}
	return &m, nil
}
