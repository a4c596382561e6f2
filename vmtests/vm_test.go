package vmtests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
	"github.com/nlmmap/nlmmap/kernel"
	"github.com/nlmmap/nlmmap/vmtests/boot"
)

// TestGuest boots the guest once and reports each guest test as a subtest.
//
// Environment: NLMMAP_KERNEL, NLMMAP_INITRAMFS (required), NLMMAP_RUN (a
// go test -run filter for guest tests), NLMMAP_ACCEL (kvm|tcg; probed when
// unset), NLMMAP_TEST_TIMEOUT (per guest test; scaled default),
// NLMMAP_RUN_DIR (default out/run next to the kernel's out/<flavor>/),
// NLMMAP_QEMU (the QEMU binary; the harness's own tests use a fake).
func TestGuest(t *testing.T) {
	kern, initrd := os.Getenv("NLMMAP_KERNEL"), os.Getenv("NLMMAP_INITRAMFS")
	if kern == "" || initrd == "" {
		t.Skip("TestGuest boots the guest tests under QEMU; run make vmtest, or set NLMMAP_KERNEL and NLMMAP_INITRAMFS")
	}
	release, err := os.ReadFile(filepath.Join(filepath.Dir(kern), "kernel.release"))
	if err != nil {
		t.Fatalf("read the built kernel's release: %v\nNext: run make kernel", err)
	}
	manifest, err := guestrun.ReadManifest(strings.TrimSuffix(initrd, filepath.Ext(initrd)) + ".json")
	if err != nil {
		t.Fatalf("%v\nNext: run make initramfs", err)
	}
	run := os.Getenv("NLMMAP_RUN")
	expected, err := selected(manifest, run)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range expected {
		n += len(p.Tests)
	}
	if n == 0 {
		t.Fatalf("no guest test matches NLMMAP_RUN=%q\nNext: check the filter against the tests in %s", run, initrd)
	}
	runDir := os.Getenv("NLMMAP_RUN_DIR")
	if runDir == "" {
		runDir = filepath.Join(filepath.Dir(filepath.Dir(kern)), "run")
	}

	ctx := context.Background()
	qemuCmd := os.Getenv("NLMMAP_QEMU")
	verdict, err := boot.ChooseAccel(ctx, boot.ProbeOptions{Kernel: kern, Initramfs: initrd, CacheRoot: kernel.CacheRoot(nil), QEMU: qemuCmd})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(verdict)
	to := boot.ScaleTimeouts(verdict.Accel, boot.IsDebugKernel(kern), n)
	if s := os.Getenv("NLMMAP_TEST_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("NLMMAP_TEST_TIMEOUT=%q: %v", s, err)
		}
		to.PerTest = d
		to.VM = to.Boot + time.Duration(n)*d + time.Minute
	}
	// Stay inside go test -timeout, so a hung guest is reported by us
	// (with the running test) rather than by a go test panic.
	if dl, ok := t.Deadline(); ok {
		if left := time.Until(dl) - time.Minute; left < to.VM {
			to.VM = left.Round(time.Second)
		}
	}
	t.Logf("%d guest tests; timeouts: boot %s, per test %s, VM %s", n, to.Boot, to.PerTest, to.VM)

	res, bootErr := boot.Boot(ctx, boot.Options{
		Kernel: kern, Initramfs: initrd, RunDir: runDir, Accel: verdict.Accel,
		Plan: guestrun.Plan{
			Mode:          guestrun.ModeRun,
			Run:           run,
			TestTimeout:   guestrun.Duration{D: to.PerTest},
			KernelRelease: strings.TrimSpace(string(release)),
		},
		BootTimeout: to.Boot, VMTimeout: to.VM,
		QEMU: qemuCmd,
	})
	if res != nil {
		t.Logf("console: %s (VM ran %s)", res.ConsolePath, res.Duration.Round(100*time.Millisecond))
		if res.PowerOffTimeout {
			t.Log("the guest finished but did not power off; QEMU was killed")
		}
	}
	var results *boot.Results
	if res != nil {
		if results, err = boot.ReadResults(res.ResultsPath); err != nil {
			t.Error(err)
		}
	}
	if results == nil {
		results = &boot.Results{}
	}
	why := "the guest runner did not run it"
	if bootErr != nil {
		why = firstLine(bootErr.Error())
		var be *boot.BootError
		if errors.As(bootErr, &be) && be.Running != "" {
			why += " (" + be.Running + " was running)"
		}
	}
	for _, p := range expected {
		t.Run(p.Name, func(t *testing.T) {
			for _, name := range p.Tests {
				t.Run(name, func(t *testing.T) {
					g := results.Find(p.ImportPath, name)
					if g == nil {
						// E.g. the binary could not even list its tests.
						if out := results.PackageOutput(p.ImportPath); out != "" {
							t.Fatalf("guest test never reported a result: %s\nthe package's output:\n%s", why, out)
						}
					}
					report(t, g, why)
				})
			}
		})
	}
	if bootErr != nil {
		t.Error(bootErr)
	}
}

// selected is the manifest's packages with only the tests run selects.
func selected(m *guestrun.Manifest, run string) ([]guestrun.ManifestPackage, error) {
	top := guestrun.TopLevelFilter(run)
	re, err := regexp.Compile(top)
	if err != nil {
		return nil, fmt.Errorf("NLMMAP_RUN=%q: %w", run, err)
	}
	var out []guestrun.ManifestPackage
	for _, p := range m.Packages {
		q := p
		q.Tests = nil
		for _, name := range p.Tests {
			if re.MatchString(name) {
				q.Tests = append(q.Tests, name)
			}
		}
		if len(q.Tests) > 0 {
			out = append(out, q)
		}
	}
	return out, nil
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

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
