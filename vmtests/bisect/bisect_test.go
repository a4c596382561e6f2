package bisect

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
	"github.com/nlmmap/nlmmap/kernel"
	"github.com/nlmmap/nlmmap/vmtests/boot"
	"github.com/nlmmap/nlmmap/vmtests/console"
	"github.com/nlmmap/nlmmap/vmtests/suite"
)

func TestSearch(t *testing.T) {
	for n := 1; n <= 12; n++ {
		for first := 1; first <= n; first++ {
			var calls []int
			got, err := Search(n, func(k int) (bool, error) {
				calls = append(calls, k)
				return k >= first, nil
			})
			if err != nil || got != first {
				t.Errorf("n=%d first=%d: Search = %d, %v", n, first, got, err)
			}
			seen := map[int]bool{}
			for _, k := range calls {
				if seen[k] || k == n || k == 0 {
					t.Errorf("n=%d first=%d: tried %v (repeats, or the ends it was given)", n, first, calls)
				}
				seen[k] = true
			}
			if len(calls) > 4 {
				t.Errorf("n=%d: %d steps, want at most 4", n, len(calls))
			}
		}
	}
	if _, err := Search(11, func(int) (bool, error) { return false, errors.New("boom") }); err == nil {
		t.Error("Search swallowed the error")
	}
}

// fakeOutcome is a run of two guest tests, rxring TestOverrun and basic
// TestUname, with the given results ("pass", "fail", "skip").
func fakeOutcome(rx, basic string, splat bool) *suite.Outcome {
	ev := func(pkg, test, action string) string {
		return fmt.Sprintf(`{"Action":%q,"Package":%q,"Test":%q}`+"\n", action, pkg, test)
	}
	res := boot.ParseResults([]byte(ev("x/rxring", "TestOverrun", rx) + ev("x/basic", "TestUname", basic)))
	out := &suite.Outcome{
		Expected: []guestrun.ManifestPackage{
			{ImportPath: "x/basic", Name: "basic", Tests: []string{"TestUname"}},
			{ImportPath: "x/rxring", Name: "rxring", Tests: []string{"TestOverrun"}},
		},
		Results: res, Console: &console.Log{Leaks: -1}, RunDir: "out/bisect/x/run",
	}
	if splat {
		out.Console.Splats = []console.Splat{{Kind: console.KindKASAN, Title: "BUG: KASAN: use-after-free in netlink_ring_release",
			Where: console.Where{Phase: console.PhaseTest, Package: "x/rxring", Test: "TestOverrun"}}}
	}
	return out
}

func fakeOptions(t *testing.T, n int, outcome func(set string, k int) *suite.Outcome) (*Options, *[]string) {
	var log []string
	o := &Options{
		Out: t.TempDir(), Initramfs: "initramfs.cpio", Run: "TestOverrun",
		Patches: func() ([]kernel.Patch, error) {
			var ps []kernel.Patch
			for i := 1; i <= n; i++ {
				ps = append(ps, kernel.Patch{Name: fmt.Sprintf("%04d-netlink-step-%d.patch", i, i)})
			}
			return ps, nil
		},
		BuildPrefix: func(_ context.Context, _ kernel.Options, s kernel.PrefixSet, k int) (kernel.Prefix, error) {
			log = append(log, fmt.Sprintf("build %d %s", k, s.Name))
			return kernel.Prefix{N: k, Set: s.Name, Patch: fmt.Sprintf("%04d-netlink-step-%d.patch", k, k), Duration: time.Minute}, nil
		},
		BuildPrefixes: func(_ context.Context, _ kernel.Options, sets []kernel.PrefixSet, visit func(kernel.Prefix) error) ([]kernel.Prefix, error) {
			var done []kernel.Prefix
			for k := 1; k <= n; k++ {
				for _, s := range sets {
					p := kernel.Prefix{N: k, Set: s.Name, Patch: fmt.Sprintf("%04d-p.patch", k)}
					done = append(done, p)
					if err := visit(p); err != nil {
						return done, err
					}
				}
			}
			return done, nil
		},
		Publish: func(dst, obj string, info kernel.BuildInfo) error { return nil },
		Boot: func(_ context.Context, so suite.Options) (*suite.Outcome, error) {
			k := so.Env["NLMMAP_SERIES_PATCHES"]
			log = append(log, "boot "+k+" "+so.Run)
			var n int
			fmt.Sscan(k, &n)
			set := "mmap=y"
			if strings.Contains(so.Kernel, "mmap_n") {
				set = "mmap=n"
			}
			return outcome(set, n), nil
		},
	}
	return o, &log
}

func TestBisect(t *testing.T) {
	// TestOverrun passes up to patch 6 and has a KASAN report from 7 on.
	o, log := fakeOptions(t, 11, func(_ string, k int) *suite.Outcome { return fakeOutcome("pass", "pass", k >= 7) })
	res, err := Bisect(context.Background(), *o, Debug)
	if err != nil {
		t.Fatal(err)
	}
	if res.First != 7 || res.Patch != "0007-netlink-step-7.patch" {
		t.Errorf("first = %d %s, want 7", res.First, res.Patch)
	}
	if want := []string{"build 11 debug", "boot 11 TestOverrun", "build 5 debug", "boot 5 TestOverrun", "build 8 debug", "boot 8 TestOverrun", "build 6 debug", "boot 6 TestOverrun", "build 7 debug", "boot 7 TestOverrun"}; !reflect.DeepEqual(*log, want) {
		t.Errorf("steps %q\nwant %q", *log, want)
	}
	rep := res.Report("TestOverrun")
	for _, s := range []string{`"TestOverrun" first fails with patch 07, 0007-netlink-step-7.patch`, "rxring/TestOverrun: kernel KASAN: BUG: KASAN: use-after-free", "FAIL prefix 07", "PASS prefix 06"} {
		if !strings.Contains(rep, s) {
			t.Errorf("report lacks %q:\n%s", s, rep)
		}
	}
}

func TestBisectNothingToFind(t *testing.T) {
	o, log := fakeOptions(t, 11, func(string, int) *suite.Outcome { return fakeOutcome("pass", "pass", false) })
	res, err := Bisect(context.Background(), *o, MmapY)
	if err != nil {
		t.Fatal(err)
	}
	if res.First != 0 || len(*log) != 2 || !strings.Contains(res.Report("TestOverrun"), "passes with the whole series") {
		t.Errorf("first %d after %q; report:\n%s", res.First, *log, res.Report("TestOverrun"))
	}
	o.Run = ""
	if _, err := Bisect(context.Background(), *o, MmapY); err == nil || !strings.Contains(err.Error(), "Next:") {
		t.Errorf("Bisect without a test = %v", err)
	}
}

func TestCheck(t *testing.T) {
	// Prefix 3 fails its basic test with y; with n, a ring test runs at
	// prefix 2 (it must skip).
	o, _ := fakeOptions(t, 3, func(set string, k int) *suite.Outcome {
		switch {
		case set == "mmap=y" && k == 3:
			return fakeOutcome("pass", "fail", false)
		case set == "mmap=n" && k == 2:
			return fakeOutcome("pass", "pass", false)
		case set == "mmap=n":
			return fakeOutcome("skip", "pass", false)
		}
		return fakeOutcome("pass", "pass", false)
	})
	var out strings.Builder
	o.Log = &out
	steps, err := Check(context.Background(), *o, CheckSets)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		r := "ok"
		if s.Failed() {
			r = "failed: " + strings.Join(s.Details(), "; ")
		}
		got = append(got, fmt.Sprintf("%d %s %s", s.Prefix.N, s.Prefix.Set, r))
	}
	want := []string{
		"1 mmap=y ok", "1 mmap=n ok",
		"2 mmap=y ok", "2 mmap=n failed: rxring/TestOverrun: PASS with CONFIG_NETLINK_MMAP=n, want SKIP (ENOPROTOOPT); run directory: out/bisect/x/run",
		"3 mmap=y failed: basic/TestUname: failed in the guest; run directory: out/bisect/x/run", "3 mmap=n ok",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(out.String(), "FAIL prefix 03 mmap=y") || !strings.Contains(out.String(), "PASS prefix 01 mmap=n") {
		t.Errorf("progress lines:\n%s", out.String())
	}
}
