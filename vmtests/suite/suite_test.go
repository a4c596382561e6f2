package suite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
	"github.com/nlmmap/nlmmap/vmtests/boot"
	"github.com/nlmmap/nlmmap/vmtests/console"
	"github.com/nlmmap/nlmmap/vmtests/internal/fakevm"
)

const pkg = "example.com/nlmmap/guest/basic"

const fakeResults = `{"Action":"run","Package":"example.com/nlmmap/guest/basic","Test":"TestA"}
{"Action":"pass","Package":"example.com/nlmmap/guest/basic","Test":"TestA"}
{"Action":"run","Package":"example.com/nlmmap/guest/basic","Test":"TestB"}
{"Action":"output","Package":"example.com/nlmmap/guest/basic","Test":"TestB","Output":"--- PASS: TestB\n"}
{"Action":"pass","Package":"example.com/nlmmap/guest/basic","Test":"TestB"}
{"Action":"run","Package":"example.com/nlmmap/guest/basic","Test":"TestC"}
{"Action":"output","Package":"example.com/nlmmap/guest/basic","Test":"TestC","Output":"    c_test.go:3: kernel without memory-mapped netlink: ENOPROTOOPT\n"}
{"Action":"skip","Package":"example.com/nlmmap/guest/basic","Test":"TestC"}
`

const fakeConsole = `[    1.000000] nlmmap: userspace up
[    2.000000] nlmmap: BEGIN example.com/nlmmap/guest/basic TestA
[    2.000001] nlmmap: PID example.com/nlmmap/guest/basic TestA 50
[    2.100000] nlmmap: END example.com/nlmmap/guest/basic TestA PASS
[    3.000000] nlmmap: BEGIN example.com/nlmmap/guest/basic TestB
[    3.000001] nlmmap: PID example.com/nlmmap/guest/basic TestB 60
[    3.050000] ------------[ cut here ]------------
[    3.050001] WARNING: CPU: 0 PID: 61 at net/netlink/af_netlink.c:1775 netlink_setsockopt+0x94/0x25d
[    3.050002] Call Trace:
[    3.050003]  <TASK>
[    3.050004]  netlink_setsockopt+0xfe/0x385
[    3.050005]  </TASK>
[    3.050006] ---[ end trace 0000000000000000 ]---
[    3.100000] nlmmap: END example.com/nlmmap/guest/basic TestB PASS
[    4.000000] nlmmap: BEGIN example.com/nlmmap/guest/basic TestC
[    4.000001] nlmmap: PID example.com/nlmmap/guest/basic TestC 70
[    4.100000] nlmmap: END example.com/nlmmap/guest/basic TestC SKIP
[    5.000000] nlmmap: CHECKS
[    6.000000] nlmmap: KMEMLEAK BEGIN
[    6.000001] unreferenced object 0xff11000006c3e000 (size 64):
[    6.000002]   comm "init", pid 1, jiffies 4294682114
[    6.000003] nlmmap: KMEMLEAK END 1
[    6.100000] nlmmap: DONE
`

// setup writes a fake kernel, initramfs and manifest with tests A to D
// and returns Options for them.
func setup(t *testing.T, consoleText string) Options {
	t.Helper()
	f := fakevm.Layout(t, fakevm.Guest{
		ImportPath: pkg,
		Tests:      []string{"TestA", "TestB", "TestC", "TestD"},
		Results:    fakeResults,
		Console:    consoleText,
	})
	return Options{
		Kernel: f.Kernel, Initramfs: f.Initramfs, RunDir: filepath.Join(f.Dir, "out", "run"),
		Accel: "tcg", QEMU: f.QEMU,
	}
}

func TestRun(t *testing.T) {
	o := setup(t, fakeConsole)
	var log strings.Builder
	o.Log = &log
	out, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"TestA": Pass, "TestB": Fail, "TestC": Skip, "TestD": Fail}
	for _, v := range out.Verdicts() {
		if v.Result() != want[v.Test] {
			t.Errorf("%s: %s (%s), want %s", v.Test, v.Result(), v.Reason(), want[v.Test])
		}
	}
	vs := out.Verdicts()
	if r := vs[1].Reason(); !strings.Contains(r, "kernel WARNING: WARNING: CPU: 0 PID: 61") || !strings.Contains(r, "the Go test itself passed") {
		t.Errorf("TestB's reason = %q, want the kernel's WARNING and that Go passed", r)
	}
	if r := vs[2].Reason(); !strings.Contains(r, "ENOPROTOOPT") {
		t.Errorf("TestC's reason = %q, want the skip message", r)
	}
	if r := vs[3].Reason(); !strings.Contains(r, "never reported a result") {
		t.Errorf("TestD's reason = %q", r)
	}
	bootSplats, after := out.Outside()
	if len(bootSplats) != 0 || len(after) != 1 || after[0].Kind != console.KindKmemleak {
		t.Errorf("outside the tests: boot %v, after %v; want init's leak after the tests", bootSplats, after)
	}
	if !out.Failed() || out.Count() != (Counts{Pass: 1, Fail: 2, Skip: 1, Splats: 2}) {
		t.Errorf("Failed() = %v, Count() = %+v", out.Failed(), out.Count())
	}
	if out.Plan.KernelRelease != "6.12.117-nlmmap" || out.Plan.TestTimeout.D != boot.BasePerTestTimeout*3 {
		t.Errorf("plan = %+v, want the release and the TCG timeout", out.Plan)
	}
	for _, s := range []string{"guest user space up", "end-of-run checks", "4 guest tests: 1 passed, 2 failed, 1 skipped; 2 kernel report(s)"} {
		if !strings.Contains(log.String(), s) {
			t.Errorf("progress lacks %q:\n%s", s, log.String())
		}
	}
	// outcome.json has it all.
	back, err := ReadOutcome(filepath.Join(o.RunDir, OutcomeFile))
	if err != nil {
		t.Fatal(err)
	}
	if back.Summary() != out.Summary() || len(back.Verdicts()) != 4 || back.Cmdline == "" {
		t.Errorf("read back %q, want %q", back.Summary(), out.Summary())
	}
	if got := out.ReproCommands(""); len(got) != 2 || got[0] != "make vmtest RUN='^TestB$'" {
		t.Errorf("ReproCommands = %q", got)
	}
}

func TestRunReplaysAPlan(t *testing.T) {
	o := setup(t, fakeConsole)
	o.Plan = &guestrun.Plan{Mode: guestrun.ModeRun, Run: "TestB", TestTimeout: guestrun.Duration{D: 42 * time.Second}, KernelRelease: "recorded", Env: map[string]string{"NLMMAP_SERIES_PATCHES": "4"}}
	o.Run = "ignored"
	out, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	got, err := guestrun.ReadPlan(filepath.Join(o.RunDir, guestrun.PlanFile))
	if err != nil {
		t.Fatal(err)
	}
	if got.Run != "TestB" || got.TestTimeout.D != 42*time.Second || got.KernelRelease != "recorded" || got.Env["NLMMAP_SERIES_PATCHES"] != "4" {
		t.Errorf("plan.json = %+v, want the replayed plan", got)
	}
	if len(out.Verdicts()) != 1 {
		t.Errorf("%d verdicts, want only TestB", len(out.Verdicts()))
	}
}

// TestRunReplayTimeoutOnSlowerAccel checks that a plan recorded under one
// accelerator keeps its per-test timeout on the same or a faster one, and
// gets it scaled up on a slower one (a KVM recording replayed under TCG).
func TestRunReplayTimeoutOnSlowerAccel(t *testing.T) {
	tests := []struct {
		recorded, now string
		want          time.Duration
	}{
		{"", "tcg", 42 * time.Second},
		{"tcg", "tcg", 42 * time.Second},
		{"kvm", "kvm", 42 * time.Second},
		{"tcg", "kvm", 42 * time.Second},
		{"kvm", "tcg", 3 * 42 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.recorded+"->"+tt.now, func(t *testing.T) {
			o := setup(t, fakeConsole)
			o.Plan = &guestrun.Plan{Mode: guestrun.ModeRun, TestTimeout: guestrun.Duration{D: 42 * time.Second}}
			o.PlanAccel, o.Accel = tt.recorded, tt.now
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			got, err := guestrun.ReadPlan(filepath.Join(o.RunDir, guestrun.PlanFile))
			if err != nil {
				t.Fatal(err)
			}
			if got.TestTimeout.D != tt.want {
				t.Errorf("per-test timeout %s, want %s", got.TestTimeout.D, tt.want)
			}
		})
	}
}

func TestRunStuckGuest(t *testing.T) {
	defer func(d time.Duration) { stepSlack = d }(stepSlack)
	stepSlack = time.Second
	stuck := "[    1.0] nlmmap: userspace up\n[    2.0] nlmmap: BEGIN example.com/nlmmap/guest/basic TestA\n"
	o := setup(t, stuck)
	t.Setenv("FAKE_HANG", "1")
	o.TestTimeout = time.Second
	start := time.Now()
	out, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %s to give up on a stuck guest", d)
	}
	if out.BootKind != boot.Stuck || out.Running != pkg+" TestA" {
		t.Fatalf("boot kind %q running %q, want %q and TestA:\n%s", out.BootKind, out.Running, boot.Stuck, out.BootError)
	}
	v := out.Verdicts()[0]
	if v.Result() != Fail || !strings.Contains(v.Reason(), "TestA did not end within") {
		t.Errorf("TestA: %s, %q; want a failure naming the stuck test", v.Result(), v.Reason())
	}
}

func TestRunRefusesBadInput(t *testing.T) {
	o := setup(t, fakeConsole)
	o.Run = "Nothing"
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "Next:") {
		t.Errorf("Run with a filter that selects nothing = %v, want an error saying what to do", err)
	}
	o.Run = ""
	os.Remove(filepath.Join(filepath.Dir(o.Kernel), "kernel.release"))
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "make kernel") {
		t.Errorf("Run without kernel.release = %v, want it to say make kernel", err)
	}
}
