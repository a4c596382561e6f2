package vmtests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/kernel"
	"github.com/nlmmap/nlmmap/vmtests/boot"
	"github.com/nlmmap/nlmmap/vmtests/console"
	"github.com/nlmmap/nlmmap/vmtests/suite"
)

// TestGuest reports each guest test of one run as a subtest
// TestGuest/<package>/<Test>[/<subtest>], and the kernel's reports outside
// any test as TestGuest/console/boot and TestGuest/console/after-tests.
//
// With NLMMAP_OUTCOME it reports a run that already happened (make vmtest
// boots with nlmmap-vm, which prints progress, then runs this); otherwise
// it boots the guest itself from NLMMAP_KERNEL and NLMMAP_INITRAMFS.
//
// Environment: NLMMAP_OUTCOME (an outcome.json), or NLMMAP_KERNEL and
// NLMMAP_INITRAMFS, NLMMAP_RUN (a go test -run filter for guest tests),
// NLMMAP_ACCEL (kvm|tcg; probed when unset), NLMMAP_TEST_TIMEOUT (per
// guest test; scaled default), NLMMAP_RUN_DIR (default out/run next to
// the kernel's out/<flavor>/), NLMMAP_QEMU (the harness's own tests use a
// fake).
func TestGuest(t *testing.T) {
	out := outcome(t)
	t.Logf("%s", out.Summary())
	for _, p := range out.Expected {
		t.Run(p.Name, func(t *testing.T) {
			for _, v := range out.Verdicts() {
				if v.Package != p.ImportPath {
					continue
				}
				t.Run(v.Test, func(t *testing.T) { verdict(t, out, v) })
			}
		})
	}
	bootSplats, after := out.Outside()
	t.Run("console", func(t *testing.T) {
		t.Run("boot", func(t *testing.T) { splats(t, out, bootSplats) })
		t.Run("after-tests", func(t *testing.T) { splats(t, out, after) })
	})
	if out.BootError != "" {
		t.Error(out.BootError)
	}
	if t.Failed() {
		t.Logf("console log: %s\nNext: make repro writes a self-contained bundle of this run (kernel, initramfs, plan, QEMU command line, console) to replay it with make repro BUNDLE=<dir>; to rerun one test:\n  %s",
			out.ConsolePath(), strings.Join(out.ReproCommands(""), "\n  "))
	}
}

// outcome reads the outcome named by NLMMAP_OUTCOME, or boots the guest.
func outcome(t *testing.T) *suite.Outcome {
	if p := os.Getenv("NLMMAP_OUTCOME"); p != "" {
		out, err := suite.ReadOutcome(p)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	kern, initrd := os.Getenv("NLMMAP_KERNEL"), os.Getenv("NLMMAP_INITRAMFS")
	if kern == "" || initrd == "" {
		t.Skip("TestGuest boots the guest tests under QEMU; run make vmtest, or set NLMMAP_KERNEL and NLMMAP_INITRAMFS (or NLMMAP_OUTCOME)")
	}
	o := suite.Options{
		Kernel: kern, Initramfs: initrd,
		RunDir:    os.Getenv("NLMMAP_RUN_DIR"),
		Run:       os.Getenv("NLMMAP_RUN"),
		QEMU:      os.Getenv("NLMMAP_QEMU"),
		CacheRoot: kernel.CacheRoot(nil),
		Log:       logWriter{t},
	}
	if o.RunDir == "" {
		o.RunDir = defaultRunDir(kern)
	}
	if s := os.Getenv("NLMMAP_TEST_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("NLMMAP_TEST_TIMEOUT=%q: %v", s, err)
		}
		o.TestTimeout = d
	}
	// Stay inside go test -timeout, so a hung guest is reported by us
	// (with the running test) rather than by a go test panic.
	if dl, ok := t.Deadline(); ok {
		o.MaxVM = (time.Until(dl) - time.Minute).Round(time.Second)
	}
	out, err := suite.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// defaultRunDir is out/run for a kernel published as out/<flavor>/bzImage.
func defaultRunDir(kern string) string {
	return filepath.Join(filepath.Dir(filepath.Dir(kern)), "run")
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// verdict reports one guest test: the kernel's reports during it first (a
// test that passed in Go still fails), then what the guest said.
func verdict(t *testing.T, out *suite.Outcome, v suite.Verdict) {
	t.Helper()
	for _, s := range v.Splats {
		msg := s.Text(out.ConsolePath())
		if v.Guest != nil && v.Guest.State == "pass" {
			msg = "the guest test passed, but the kernel reported this while it ran:\n" + msg
		}
		t.Errorf("%s", msg)
	}
	if v.Guest == nil {
		if pout := out.Results.PackageOutput(v.Package); pout != "" {
			t.Fatalf("guest test never reported a result: %s\nthe package's output:\n%s", v.Why, pout)
		}
		t.Fatalf("guest test never reported a result: %s", v.Why)
	}
	if v.Died {
		t.Errorf("the VM died or was killed while this test ran: %s", v.Why)
	}
	report(t, v.Guest, v.Why)
}

// splats fails t with each kernel report outside the tests.
func splats(t *testing.T, out *suite.Outcome, ss []console.Splat) {
	for _, s := range ss {
		t.Errorf("%s", s.Text(out.ConsolePath()))
	}
}

// report turns one guest test (and its subtests) into host test results.
func report(t *testing.T, g *boot.Test, why string) {
	t.Helper()
	if g == nil {
		t.Fatalf("guest test never reported a result: %s", why)
	}
	childFailed := false
	for _, c := range g.Children {
		ok := t.Run(c.Short(), func(t *testing.T) { report(t, c, why) })
		if !ok {
			childFailed = true
		}
	}
	out := strings.Join(g.Output, "")
	switch g.State {
	case "pass":
	case "skip":
		t.Skip(g.SkipReason())
	case "fail":
		if !childFailed {
			t.Errorf("guest test failed; its output:\n%s", out)
		}
	default:
		t.Errorf("guest test started but never reported a result: %s\nits output so far:\n%s", why, out)
	}
}
