package boot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
)

// Test is one guest test or subtest with its result.
type Test struct {
	Package string
	Name    string // full name, e.g. TestA/sub
	// State is "pass", "fail", "skip", or "" when the test never
	// reported a result (crash, timeout, VM death).
	State    string
	Output   []string // lines attributed to this test (not its subtests)
	Elapsed  float64
	Children []*Test
	// implicit is set for a node that only exists because a subtest's
	// own name has a slash (t.Run("a/b", ...) reports as X/a/b with no
	// X/a): its state comes from its children.
	implicit bool
}

// Short is the last element of the name.
func (t *Test) Short() string {
	if i := strings.LastIndexByte(t.Name, '/'); i >= 0 {
		return t.Name[i+1:]
	}
	return t.Name
}

// SkipReason is the message the test gave for skipping: its last output
// line that is not go test's own framing.
func (t *Test) SkipReason() string {
	for i := len(t.Output) - 1; i >= 0; i-- {
		l := strings.TrimSpace(t.Output[i])
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- ") {
			continue
		}
		return l
	}
	return "skipped in the guest"
}

// Package is one guest package's top-level tests in the order they ran.
type Package struct {
	ImportPath string
	Tests      []*Test
	Output     []string // package-level output
}

// Results is the tree of everything in results.json.
type Results struct {
	Packages []*Package
	// Garbled counts lines that were not JSON events (e.g. cut off when the
	// VM died mid-write).
	Garbled int
}

// Find returns the test named name in package pkg, or nil.
func (r *Results) Find(pkg, name string) *Test {
	for _, p := range r.Packages {
		if p.ImportPath != pkg {
			continue
		}
		var find func([]*Test) *Test
		find = func(ts []*Test) *Test {
			for _, t := range ts {
				if t.Name == name {
					return t
				}
				if strings.HasPrefix(name, t.Name+"/") {
					return find(t.Children)
				}
			}
			return nil
		}
		return find(p.Tests)
	}
	return nil
}

// PackageOutput is the output of package pkg that belongs to no test.
func (r *Results) PackageOutput(pkg string) string {
	for _, p := range r.Packages {
		if p.ImportPath == pkg {
			return strings.Join(p.Output, "")
		}
	}
	return ""
}

// ReadResults reads results.json. A missing file is an empty result.
func ReadResults(path string) (*Results, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return &Results{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	return ParseResults(data), nil
}

// ParseResults builds the test tree from test2json events.
func ParseResults(data []byte) *Results {
	r := &Results{}
	pkgs := map[string]*Package{}
	tests := map[string]*Test{} // pkg + "\x00" + name
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e guestrun.Event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			r.Garbled++
			continue
		}
		p := pkgs[e.Package]
		if p == nil {
			p = &Package{ImportPath: e.Package}
			pkgs[e.Package] = p
			r.Packages = append(r.Packages, p)
		}
		if e.Test == "" {
			if e.Action == "output" {
				p.Output = append(p.Output, e.Output)
			}
			continue
		}
		t := lookup(p, tests, e.Test)
		t.implicit = false
		switch e.Action {
		case "output":
			t.Output = append(t.Output, e.Output)
		case "pass", "fail", "skip":
			// A later verdict wins: the runner's own "fail" after a
			// timeout overrides nothing but an absent one.
			if t.State == "" || e.Action == "fail" {
				t.State = e.Action
			}
			t.Elapsed = e.Elapsed
		}
	}
	for _, p := range r.Packages {
		for _, t := range p.Tests {
			settle(t)
		}
	}
	return r
}

// settle gives implicit nodes the state of their children: failed if one
// failed, unfinished if one never finished, skipped if all skipped, else
// passed.
func settle(t *Test) {
	for _, c := range t.Children {
		settle(c)
	}
	if !t.implicit {
		return
	}
	state := "skip"
	for _, c := range t.Children {
		switch {
		case c.State == "fail":
			state = "fail"
		case c.State == "" && state != "fail":
			state = ""
		case c.State == "pass" && state == "skip":
			state = "pass"
		}
	}
	t.State = state
}

// lookup finds or creates the test and its parents.
func lookup(p *Package, tests map[string]*Test, name string) *Test {
	key := p.ImportPath + "\x00" + name
	if t := tests[key]; t != nil {
		return t
	}
	t := &Test{Package: p.ImportPath, Name: name, implicit: true}
	tests[key] = t
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		parent := lookup(p, tests, name[:i])
		parent.Children = append(parent.Children, t)
	} else {
		p.Tests = append(p.Tests, t)
	}
	return t
}
