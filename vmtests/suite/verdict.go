package suite

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nlmmap/nlmmap/vmtests/boot"
	"github.com/nlmmap/nlmmap/vmtests/console"
)

// Results of a guest test as the host sees them.
const (
	Pass = "PASS"
	Fail = "FAIL"
	Skip = "SKIP"
)

// Verdict is the judgement of one top-level guest test.
type Verdict struct {
	Package string // import path
	Name    string // package name below guest/, as in host test names
	Test    string
	// Guest is what the guest reported, nil if it never reported.
	Guest *boot.Test
	// Splats are the kernel reports attributed to the test.
	Splats []console.Splat
	// Why says why a test that never finished did not: the boot error.
	Why string
	// Died is set for the test that was running when the VM died or was
	// killed, whatever the guest managed to report for it.
	Died bool
}

// Result is PASS, FAIL or SKIP. A test fails if the guest says so, if it
// never finished, or if the kernel reported something during it.
func (v Verdict) Result() string {
	if len(v.Splats) > 0 || v.Guest == nil || v.Died {
		return Fail
	}
	switch v.Guest.State {
	case "pass":
		return Pass
	case "skip":
		return Skip
	}
	return Fail
}

// Reason is one line on why the test did not pass: the kernel's report,
// the guest's failure, the skip reason, or why it never finished.
func (v Verdict) Reason() string {
	switch {
	case len(v.Splats) > 0:
		s := v.Splats[0]
		r := fmt.Sprintf("kernel %s: %s", s.Kind, s.Title)
		if len(v.Splats) > 1 {
			r += fmt.Sprintf(" (and %d more report(s))", len(v.Splats)-1)
		}
		if v.Guest != nil && v.Guest.State == "pass" {
			r += "; the Go test itself passed"
		}
		return r
	case v.Guest == nil:
		return "never reported a result: " + v.Why
	case v.Died:
		return "the VM died while it ran: " + v.Why
	case v.Guest.State == "skip":
		return v.Guest.SkipReason()
	case v.Guest.State == "fail":
		return "failed in the guest"
	case v.Guest.State == "pass":
		return ""
	}
	return "started but never reported a result: " + v.Why
}

// Verdicts judges every expected guest test, in manifest order.
func (o *Outcome) Verdicts() []Verdict {
	why := "the guest runner did not run it"
	if o.BootError != "" {
		why = firstLine(o.BootError)
		if o.Running != "" && !strings.Contains(why, o.Running) {
			why += " (" + o.Running + " was running)"
		}
	}
	var out []Verdict
	for _, p := range o.Expected {
		for _, name := range p.Tests {
			v := Verdict{Package: p.ImportPath, Name: p.Name, Test: name, Why: why,
				Died: o.Running == p.ImportPath+" "+name}
			v.Guest = o.Results.Find(p.ImportPath, name)
			if o.Console != nil {
				v.Splats = o.Console.For(p.ImportPath, name)
			}
			out = append(out, v)
		}
	}
	return out
}

// Outside returns the kernel reports that belong to no guest test: at boot,
// after the tests, or attributed to a test the run did not expect.
func (o *Outcome) Outside() (bootSplats, after []console.Splat) {
	if o.Console == nil {
		return nil, nil
	}
	known := map[string]bool{}
	for _, p := range o.Expected {
		for _, t := range p.Tests {
			known[p.ImportPath+" "+t] = true
		}
	}
	for _, s := range o.Console.Splats {
		switch {
		case s.Where.Phase == console.PhaseBoot:
			bootSplats = append(bootSplats, s)
		case s.Where.Phase == console.PhaseTest && known[s.Where.Package+" "+s.Where.Test]:
		default:
			after = append(after, s)
		}
	}
	return bootSplats, after
}

// Counts counts verdicts by result.
type Counts struct {
	Pass, Fail, Skip int
	Splats           int // kernel reports, in tests or outside
}

// Count counts the verdicts and the kernel reports.
func (o *Outcome) Count() Counts {
	var c Counts
	for _, v := range o.Verdicts() {
		switch v.Result() {
		case Pass:
			c.Pass++
		case Skip:
			c.Skip++
		default:
			c.Fail++
		}
	}
	if o.Console != nil {
		c.Splats = len(o.Console.Splats)
	}
	return c
}

// Failed reports whether anything went wrong: a guest test failed, the
// kernel reported something, or the boot did not end well.
func (o *Outcome) Failed() bool {
	c := o.Count()
	return c.Fail > 0 || c.Splats > 0 || o.BootError != ""
}

// Failures lists the failing guest tests.
func (o *Outcome) Failures() []Verdict {
	var out []Verdict
	for _, v := range o.Verdicts() {
		if v.Result() == Fail {
			out = append(out, v)
		}
	}
	return out
}

// Summary is one line about the run.
func (o *Outcome) Summary() string {
	c := o.Count()
	s := fmt.Sprintf("%d guest tests: %d passed, %d failed, %d skipped; %d kernel report(s)", c.Pass+c.Fail+c.Skip, c.Pass, c.Fail, c.Skip, c.Splats)
	if o.Seconds > 0 {
		s += fmt.Sprintf("; VM ran %.0fs", o.Seconds)
	}
	if o.BootError != "" {
		s += "; " + firstLine(o.BootError)
	}
	return s
}

// ReproCommands are the commands that rerun the failing tests one at a
// time, sorted.
func (o *Outcome) ReproCommands(makeVars string) []string {
	var out []string
	for _, v := range o.Failures() {
		out = append(out, fmt.Sprintf("make vmtest%s RUN='^%s$'", makeVars, v.Test))
	}
	sort.Strings(out)
	return out
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
