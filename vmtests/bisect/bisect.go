package bisect

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/kernel"
	"github.com/nlmmap/nlmmap/vmtests/suite"
)

// Configurations prefixes are built with.
var (
	MmapY = kernel.PrefixSet{Name: "mmap=y", Fragments: []string{"base.config", "mmap.config"}}
	MmapN = kernel.PrefixSet{Name: "mmap=n", Fragments: []string{"base.config", "nommap.config"}}
	// Debug is make vmtest's default flavor: what fails there is what a
	// bisection with it finds.
	Debug = kernel.PrefixSet{Name: "debug", Fragments: []string{"base.config", "mmap.config", "debug.config"}}

	// CheckSets are the configurations make check-bisect builds.
	CheckSets = []kernel.PrefixSet{MmapY, MmapN}
)

// Sets maps the names make accepts to configurations.
var Sets = map[string]kernel.PrefixSet{"y": MmapY, "n": MmapN, "debug": Debug, MmapY.Name: MmapY, MmapN.Name: MmapN}

// ringPackages are the guest packages whose every test needs rings: with
// CONFIG_NETLINK_MMAP=n they must all skip.
var ringPackages = []string{"rxring", "txring"}

// Options configures Check and Bisect.
type Options struct {
	Kernel    kernel.Options
	Initramfs string
	// Out holds a directory per set and prefix: the published kernel
	// and the run directory.
	Out string
	// Run is a go test -run filter for the guest tests (Bisect needs one).
	Run string
	// TestTimeout bounds each guest test; 0 scales.
	TestTimeout time.Duration
	Log         io.Writer

	// The steps, replaced by tests.
	BuildPrefixes func(context.Context, kernel.Options, []kernel.PrefixSet, func(kernel.Prefix) error) ([]kernel.Prefix, error)
	BuildPrefix   func(context.Context, kernel.Options, kernel.PrefixSet, int) (kernel.Prefix, error)
	Boot          func(context.Context, suite.Options) (*suite.Outcome, error)
	Publish       func(dst, obj string, info kernel.BuildInfo) error
	// Patches lists the series; default kernel.ListPatches of the
	// kernel options' patches directory.
	Patches func() ([]kernel.Patch, error)
}

func (o *Options) defaults() {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Kernel.Log == nil {
		o.Kernel.Log = o.Log
	}
	if o.BuildPrefixes == nil {
		o.BuildPrefixes = kernel.BuildPrefixes
	}
	if o.BuildPrefix == nil {
		o.BuildPrefix = kernel.BuildPrefix
	}
	if o.Boot == nil {
		o.Boot = suite.Run
	}
	if o.Publish == nil {
		o.Publish = kernel.Publish
	}
	if o.Patches == nil {
		o.Patches = func() ([]kernel.Patch, error) {
			dir := o.Kernel.PatchesDir
			if dir == "" {
				root := o.Kernel.RepoRoot
				if root == "" {
					root = "."
				}
				dir = filepath.Join(root, "patches")
			}
			return kernel.ListPatches(dir)
		}
	}
}

// Step is one prefix built and booted.
type Step struct {
	Prefix  kernel.Prefix
	Outcome *suite.Outcome
	Boot    time.Duration
	// Problems are what is wrong with the step beyond failing tests
	// (a ring test that ran with CONFIG_NETLINK_MMAP=n).
	Problems []string
	Err      error // the boot could not even start
}

// Failed reports whether the prefix did not pass.
func (s Step) Failed() bool {
	return s.Err != nil || len(s.Problems) > 0 || s.Outcome == nil || s.Outcome.Failed()
}

// Line is the step as one line: result, prefix, set, counts, timings.
func (s Step) Line() string {
	res := "PASS"
	if s.Failed() {
		res = "FAIL"
	}
	var what string
	switch {
	case s.Err != nil:
		what = firstLine(s.Err.Error())
	case s.Outcome != nil:
		c := s.Outcome.Count()
		what = fmt.Sprintf("%d passed, %d failed, %d skipped, %d kernel report(s)", c.Pass, c.Fail, c.Skip, c.Splats)
	}
	return fmt.Sprintf("%s prefix %02d %-7s %-62s %s (build %s, boot %s)", res, s.Prefix.N, s.Prefix.Set, s.Prefix.Patch, what,
		s.Prefix.Duration.Round(time.Second), s.Boot.Round(time.Second))
}

// Details lists why a failed step failed.
func (s Step) Details() []string {
	var out []string
	if s.Err != nil {
		out = append(out, s.Err.Error())
	}
	out = append(out, s.Problems...)
	if s.Outcome != nil {
		for _, v := range s.Outcome.Failures() {
			out = append(out, fmt.Sprintf("%s/%s: %s", v.Name, v.Test, v.Reason()))
		}
		bootSplats, after := s.Outcome.Outside()
		for _, sp := range append(bootSplats, after...) {
			out = append(out, fmt.Sprintf("console (%s): kernel %s: %s", sp.Where, sp.Kind, sp.Title))
		}
		if s.Outcome.BootError != "" {
			out = append(out, firstLine(s.Outcome.BootError))
		}
		if len(out) > 0 {
			out = append(out, "run directory: "+s.Outcome.RunDir)
		}
	}
	return out
}

// boot publishes a prefix's kernel and runs the guest tests on it.
func (o *Options) boot(ctx context.Context, p kernel.Prefix) Step {
	st := Step{Prefix: p}
	dir := filepath.Join(o.Out, safe(p.Set), fmt.Sprintf("%02d", p.N))
	if err := o.Publish(dir, p.Obj, p.Info); err != nil {
		st.Err = err
		return st
	}
	start := time.Now()
	out, err := o.Boot(ctx, suite.Options{
		Kernel: filepath.Join(dir, "bzImage"), Initramfs: o.Initramfs,
		RunDir: filepath.Join(dir, "run"), Run: o.Run, TestTimeout: o.TestTimeout,
		Env:       map[string]string{guesttest.SeriesPatchesEnv: strconv.Itoa(p.N)},
		CacheRoot: kernel.CacheRoot(o.Kernel.Getenv),
	})
	st.Boot = time.Since(start)
	st.Outcome, st.Err = out, err
	if out != nil && p.Set == MmapN.Name {
		for _, v := range out.Verdicts() {
			for _, rp := range ringPackages {
				if v.Name == rp && v.Result() != suite.Skip {
					st.Problems = append(st.Problems, fmt.Sprintf("%s/%s: %s with CONFIG_NETLINK_MMAP=n, want SKIP (ENOPROTOOPT)", v.Name, v.Test, v.Result()))
				}
			}
		}
	}
	return st
}

// Check builds every prefix with every set and boots each, printing a line
// per step as it goes. It returns every step; it stops early only when a
// prefix does not build.
func Check(ctx context.Context, o Options, sets []kernel.PrefixSet) ([]Step, error) {
	o.defaults()
	var steps []Step
	_, err := o.BuildPrefixes(ctx, o.Kernel, sets, func(p kernel.Prefix) error {
		st := o.boot(ctx, p)
		steps = append(steps, st)
		fmt.Fprintln(o.Log, st.Line())
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return nil
	})
	return steps, err
}

// Search finds the first of prefixes 1..n at which bad is true, given that
// it is true at n and taken to be false at 0 (the base, where the series
// has not begun), by binary search. bad is called at most about log2(n)
// times, never twice for one prefix.
func Search(n int, bad func(k int) (bool, error)) (int, error) {
	lo, hi := 0, n
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		b, err := bad(mid)
		if err != nil {
			return 0, err
		}
		if b {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}

// Result is a finished bisection.
type Result struct {
	// First is the first failing prefix (1-based patch number); 0 when
	// the whole series passes.
	First int
	Patch string // its file name
	Steps []Step // in the order they ran
}

// Bisect finds the first patch of the series at which the guest tests
// that o.Run selects fail with set: it checks the whole series first, then
// searches.
func Bisect(ctx context.Context, o Options, set kernel.PrefixSet) (*Result, error) {
	o.defaults()
	if o.Run == "" {
		return nil, fmt.Errorf("bisect: no test given\nNext: name the failing guest test, e.g. make bisect RUN=TestOverrun")
	}
	patches, err := o.Patches()
	if err != nil {
		return nil, err
	}
	n := len(patches)
	if n == 0 {
		return nil, fmt.Errorf("bisect: the series is empty")
	}
	res := &Result{}
	tried := map[int]bool{}
	bad := func(k int) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		p, err := o.BuildPrefix(ctx, o.Kernel, set, k)
		if err != nil {
			return false, fmt.Errorf("bisect: %w\nNext: a prefix that does not build cannot be tested; make check-series shows which prefixes build", err)
		}
		st := o.boot(ctx, p)
		res.Steps = append(res.Steps, st)
		tried[k] = st.Failed()
		fmt.Fprintln(o.Log, st.Line())
		if st.Err != nil {
			return false, fmt.Errorf("bisect: prefix %d: %w", k, st.Err)
		}
		return st.Failed(), nil
	}
	fmt.Fprintf(o.Log, "bisect: %d patches; checking the whole series first\n", n)
	whole, err := bad(n)
	if err != nil {
		return res, err
	}
	if !whole {
		return res, nil
	}
	first, err := Search(n, bad)
	if err != nil {
		return res, err
	}
	res.First, res.Patch = first, patches[first-1].Name
	return res, nil
}

// Report is the bisection's conclusion for people.
func (r *Result) Report(run string) string {
	var b strings.Builder
	steps := append([]Step(nil), r.Steps...)
	sort.Slice(steps, func(i, j int) bool { return steps[i].Prefix.N < steps[j].Prefix.N })
	for _, st := range steps {
		fmt.Fprintln(&b, st.Line())
	}
	if r.First == 0 {
		fmt.Fprintf(&b, "bisect: %q passes with the whole series: nothing to bisect\nNext: check the filter (make vmtest RUN=%q) and the configuration (SET=debug is make vmtest's)\n", run, run)
		return b.String()
	}
	fmt.Fprintf(&b, "bisect: %q first fails with patch %02d, %s\n", run, r.First, r.Patch)
	for _, st := range steps {
		if st.Prefix.N == r.First {
			for _, d := range st.Details() {
				fmt.Fprintf(&b, "  %s\n", d)
			}
		}
	}
	if r.First == 1 {
		b.WriteString("Next: it fails from the first patch on; check whether it fails on the unpatched kernel too: make vmtest FLAVOR=baseline RUN=" + run + "\n")
	} else {
		fmt.Fprintf(&b, "Next: read patch %02d; make repro FROM=<the run directory above> bundles the failing prefix's run\n", r.First)
	}
	return b.String()
}

func safe(s string) string {
	return strings.NewReplacer("=", "_", "/", "_", " ", "_").Replace(s)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
