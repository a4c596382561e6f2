package suite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
	"github.com/nlmmap/nlmmap/vmtests/boot"
	"github.com/nlmmap/nlmmap/vmtests/console"
)

// OutcomeFile is the file in the run directory that Run writes.
const OutcomeFile = "outcome.json"

// Options configures Run. Kernel, Initramfs and RunDir are required.
type Options struct {
	// Kernel is a bzImage with kernel.release and .config next to it
	// (as make kernel publishes them).
	Kernel string
	// Initramfs is an initramfs.cpio with its manifest initramfs.json
	// next to it.
	Initramfs string
	// RunDir is shared with the guest and receives plan.json,
	// results.json, console.log, qemu-cmdline.txt and outcome.json.
	RunDir string
	// Run is a go test -run filter for the guest tests; "" runs all.
	Run string
	// Env is added to every guest test's environment.
	Env map[string]string
	// Accel is "kvm" or "tcg"; "" chooses (NLMMAP_ACCEL, else a probe).
	// AccelReason says why, when Accel is given.
	Accel, AccelReason string
	// TestTimeout bounds each guest test; 0 takes NLMMAP_TEST_TIMEOUT, or
	// scales a default to the accelerator and the kernel (see
	// boot.ScaleTimeouts).
	TestTimeout time.Duration
	// MaxVM caps the VM timeout (e.g. to stay within go test -timeout).
	MaxVM time.Duration
	// Plan, when set, is used as it is (a replay): Run, Env and
	// TestTimeout are ignored. Its per-test timeout was scaled for
	// PlanAccel; on a slower accelerator it is scaled up by the same
	// factor as boot.ScaleTimeouts (never down).
	Plan      *guestrun.Plan
	PlanAccel string
	// QEMU replaces qemu-system-x86_64 (tests use a fake).
	QEMU string
	// CacheRoot is where the accelerator probe caches its verdict.
	CacheRoot string
	// Log receives progress lines; nil is silent.
	Log io.Writer
	// Getenv reads NLMMAP_ACCEL; default os.Getenv.
	Getenv func(string) string
}

// Outcome is a finished run: what ran, how, and what came of it.
type Outcome struct {
	Kernel        string        `json:"kernel"`
	Initramfs     string        `json:"initramfs"`
	KernelRelease string        `json:"kernel_release"`
	Debug         bool          `json:"debug"` // the kernel has KASAN
	Accel         string        `json:"accel"`
	AccelReason   string        `json:"accel_reason"`
	Timeouts      Timeouts      `json:"timeouts"`
	Plan          guestrun.Plan `json:"plan"`
	Cmdline       string        `json:"qemu_cmdline"`
	RunDir        string        `json:"run_dir"`
	Started       time.Time     `json:"started"`
	Seconds       float64       `json:"seconds"`
	// Expected are the guest tests the run filter selects, by package.
	Expected []guestrun.ManifestPackage `json:"expected"`
	Results  *boot.Results              `json:"results"`
	Console  *console.Log               `json:"console"`
	// BootError is the boot's failure in full, "" when the guest ran
	// to the end and powered off; BootKind is its boot.BootError kind.
	BootError       string `json:"boot_error,omitempty"`
	BootKind        string `json:"boot_kind,omitempty"`
	Running         string `json:"running,omitempty"` // "<pkg> <Test>" when the VM died
	PowerOffTimeout bool   `json:"power_off_timeout,omitempty"`
}

// Timeouts are the bounds the run used, as durations ("9m0s").
type Timeouts struct {
	Boot    string `json:"boot"`
	PerTest string `json:"per_test"`
	Step    string `json:"step"`
	VM      string `json:"vm"`
}

// ConsolePath is the run's console log.
func (o *Outcome) ConsolePath() string { return filepath.Join(o.RunDir, boot.ConsoleFile) }

// Run boots the guest once, runs the selected guest tests and judges the
// result. It returns an error (and no Outcome) only when it could not even
// boot: missing files, a bad filter, no test selected. A boot that goes
// wrong is part of the Outcome, which is also written to RunDir/outcome.json.
func Run(ctx context.Context, o Options) (*Outcome, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if v := o.Getenv("NLMMAP_TEST_TIMEOUT"); v != "" && o.TestTimeout == 0 {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("NLMMAP_TEST_TIMEOUT=%q is not a positive duration\nNext: give a Go duration such as 90s or 5m", v)
		}
		o.TestTimeout = d
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	release, err := os.ReadFile(filepath.Join(filepath.Dir(o.Kernel), "kernel.release"))
	if err != nil {
		return nil, fmt.Errorf("read the kernel's release: %w\nNext: run make kernel (it publishes bzImage with kernel.release and .config)", err)
	}
	manifestPath := strings.TrimSuffix(o.Initramfs, filepath.Ext(o.Initramfs)) + ".json"
	manifest, err := guestrun.ReadManifest(manifestPath)
	if err != nil {
		return nil, fmt.Errorf("%w\nNext: run make initramfs", err)
	}
	run := o.Run
	if o.Plan != nil {
		run = o.Plan.Run
	}
	expected, err := Select(manifest, run)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, p := range expected {
		n += len(p.Tests)
	}
	if n == 0 {
		return nil, fmt.Errorf("no guest test matches the filter %q\nNext: check it against the tests in %s", run, manifestPath)
	}
	runDir, err := filepath.Abs(o.RunDir)
	if err != nil {
		return nil, err
	}
	out := &Outcome{
		Kernel: o.Kernel, Initramfs: o.Initramfs, RunDir: runDir,
		KernelRelease: strings.TrimSpace(string(release)),
		Debug:         boot.IsDebugKernel(o.Kernel),
		Expected:      expected,
		Started:       time.Now(),
	}

	verdict := boot.Verdict{Accel: o.Accel, Reason: o.AccelReason}
	if verdict.Reason == "" {
		verdict.Reason = "given"
	}
	if o.Accel == "" {
		if verdict, err = boot.ChooseAccel(ctx, boot.ProbeOptions{Kernel: o.Kernel, Initramfs: o.Initramfs, CacheRoot: o.CacheRoot, QEMU: o.QEMU, Getenv: o.Getenv, Log: o.Log}); err != nil {
			return nil, err
		}
	}
	out.Accel, out.AccelReason = verdict.Accel, verdict.Reason
	to := boot.ScaleTimeouts(verdict.Accel, out.Debug, n)
	plan := guestrun.Plan{Mode: guestrun.ModeRun, Run: o.Run, Env: o.Env, KernelRelease: out.KernelRelease}
	switch {
	case o.Plan != nil:
		plan = *o.Plan
		to.PerTest = plan.TestTimeout.D
		if o.PlanAccel != "" && o.PlanAccel != verdict.Accel {
			was := boot.ScaleTimeouts(o.PlanAccel, out.Debug, n).PerTest
			now := boot.ScaleTimeouts(verdict.Accel, out.Debug, n).PerTest
			if now > was {
				to.PerTest = time.Duration(float64(to.PerTest) * float64(now) / float64(was))
			}
		}
	case o.TestTimeout > 0:
		to.PerTest = o.TestTimeout
	}
	plan.TestTimeout = guestrun.Duration{D: to.PerTest}
	to.VM = to.Boot + time.Duration(n)*to.PerTest + time.Minute
	if o.MaxVM > 0 && to.VM > o.MaxVM {
		to.VM = o.MaxVM
	}
	// The runner kills a test after its timeout plus 30s of grace and 5s
	// of wait; a test that is still there a minute later means the guest
	// is not answering.
	step := to.PerTest + stepSlack
	out.Plan = plan
	out.Timeouts = Timeouts{Boot: to.Boot.String(), PerTest: to.PerTest.String(), Step: step.String(), VM: to.VM.String()}
	logf("vm: %s, %d guest test(s) of %s; %s; timeouts: boot %s, per test %s, VM %s",
		out.KernelRelease, n, o.Kernel, verdict, to.Boot, to.PerTest, to.VM)

	pr := &progress{log: logf, total: n, start: time.Now(), every: 30 * time.Second}
	res, bootErr := boot.Boot(ctx, boot.Options{
		Kernel: o.Kernel, Initramfs: o.Initramfs, RunDir: runDir, Accel: verdict.Accel,
		Plan: plan, BootTimeout: to.Boot, VMTimeout: to.VM, StepTimeout: step,
		QEMU: o.QEMU, Log: o.Log, Progress: pr.marker,
	})
	if res == nil {
		// Boot refused to start (bad options, no QEMU): nothing ran.
		return nil, bootErr
	}
	out.Cmdline, out.Seconds, out.PowerOffTimeout = res.Cmdline, res.Duration.Seconds(), res.PowerOffTimeout
	if bootErr != nil {
		out.BootError = bootErr.Error()
		var be *boot.BootError
		if errors.As(bootErr, &be) {
			out.BootKind, out.Running = be.Kind, be.Running
		}
	}
	if out.Results, err = boot.ReadResults(res.ResultsPath); err != nil {
		out.Results = &boot.Results{}
		out.BootError = strings.TrimSpace(out.BootError + "\n" + err.Error())
	}
	if out.Console, err = console.ScanFile(res.ConsolePath); err != nil {
		out.Console = &console.Log{Leaks: -1}
		out.BootError = strings.TrimSpace(out.BootError + "\n" + err.Error())
	}
	if err := out.Write(filepath.Join(runDir, OutcomeFile)); err != nil {
		return out, err
	}
	logf("vm: %s", out.Summary())
	return out, nil
}

// stepSlack is what the host adds to the per-test timeout before it
// declares the guest stuck: the runner's 30s of grace and 5s of waiting
// after killing a test, and a minute for a slow guest.
var stepSlack = 95 * time.Second

// progress prints a line when user space is up, then at most one line per
// interval while tests run, and when the checks start.
type progress struct {
	log   func(string, ...any)
	total int
	start time.Time
	every time.Duration

	mu      sync.Mutex
	done    int
	failed  int
	last    time.Time
	running string
}

func (p *progress) marker(m guestrun.Marker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	switch m.Kind {
	case guestrun.KindUp:
		p.log("vm: guest user space up after %s", now.Sub(p.start).Round(100*time.Millisecond))
		p.last = now
	case guestrun.KindBegin:
		p.running = shortPkg(m.Package) + " " + m.Test
	case guestrun.KindEnd:
		p.done++
		if m.Result == "FAIL" {
			p.failed++
		}
		p.running = ""
	case guestrun.KindChecks:
		p.log("vm: %d/%d guest tests done (%d failed) in %s; end-of-run checks (kmemleak scan, coverage copy)", p.done, p.total, p.failed, now.Sub(p.start).Round(time.Second))
		p.last = now
		return
	}
	if now.Sub(p.last) >= p.every && p.running != "" {
		p.log("vm: %d/%d guest tests done (%d failed) in %s, running %s", p.done, p.total, p.failed, now.Sub(p.start).Round(time.Second), p.running)
		p.last = now
	}
}

func shortPkg(importPath string) string {
	if i := strings.Index(importPath, "/guest/"); i >= 0 {
		return importPath[i+len("/guest/"):]
	}
	return importPath
}

// Select is the manifest's packages with only the top-level tests the run
// filter selects.
func Select(m *guestrun.Manifest, run string) ([]guestrun.ManifestPackage, error) {
	re, err := regexp.Compile(guestrun.TopLevelFilter(run))
	if err != nil {
		return nil, fmt.Errorf("run filter %q: %w", run, err)
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

// Write writes the outcome as JSON.
func (o *Outcome) Write(path string) error {
	data, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return fmt.Errorf("write outcome: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write outcome: %w", err)
	}
	return nil
}

// ReadOutcome reads an outcome.json.
func ReadOutcome(path string) (*Outcome, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read outcome: %w\nNext: run make vmtest (it writes out/run/%s)", err, OutcomeFile)
	}
	var o Outcome
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("read outcome %s: %w", path, err)
	}
	if o.Results == nil {
		o.Results = &boot.Results{}
	}
	if o.Console == nil {
		o.Console = &console.Log{Leaks: -1}
	}
	return &o, nil
}
