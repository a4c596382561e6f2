package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hugelgupf/vmtest/qemu"
	"github.com/nlmmap/nlmmap/initramfs/guestrun"
	"github.com/nlmmap/nlmmap/internal/hostdeps"
)

// DefaultQEMU is the QEMU binary.
const DefaultQEMU = "qemu-system-x86_64"

// Files in the run directory.
const (
	ConsoleFile = "console.log"
	CmdlineFile = "qemu-cmdline.txt"
)

// Options configures one boot.
type Options struct {
	Kernel    string
	Initramfs string
	// RunDir is shared with the guest over 9p and receives plan.json,
	// results.json and console.log. Old copies are removed first.
	RunDir string
	Plan   guestrun.Plan
	Accel  string // "kvm" or "tcg"
	// BootTimeout bounds the time to "nlmmap: userspace up".
	BootTimeout time.Duration
	// VMTimeout bounds the whole run.
	VMTimeout time.Duration
	// StepTimeout, if set, bounds each guest test (BEGIN to END marker)
	// and the end-of-run checks (CHECKS to DONE) as seen from the host. The
	// guest runner enforces the plan's timeout itself; this catches a
	// guest that stops answering (a stuck kernel), so set it above the
	// plan's timeout plus the runner's grace.
	StepTimeout time.Duration
	// Progress, if set, is called with every marker the guest writes.
	Progress func(guestrun.Marker)
	// PowerOffGrace is how long the guest gets to power off after DONE;
	// default 30s.
	PowerOffGrace time.Duration
	QEMU          string   // default DefaultQEMU; may carry arguments
	Append        []string // extra kernel arguments
	Log           io.Writer
}

// Result describes a finished boot.
type Result struct {
	Accel       string
	ConsolePath string
	ResultsPath string
	Cmdline     string
	Duration    time.Duration
	// PowerOffTimeout is set when the guest finished but had to be killed.
	PowerOffTimeout bool
}

// Failure kinds of a BootError.
const (
	NoUserspace = "no-userspace" // the kernel never reached user space
	VMTimeout   = "vm-timeout"   // the guest did not finish in time
	Stuck       = "stuck"        // a test (or the checks) outlived StepTimeout
	Stopped     = "stopped"      // QEMU exited before the guest finished
	GuestFatal  = "guest-fatal"  // the guest runner itself failed
	Start       = "start"        // QEMU could not be started
)

// BootError is a boot that did not run the plan to the end.
type BootError struct {
	Kind    string
	Timeout time.Duration
	// Running is "<pkg> <Test>" of the test that was running, if any.
	Running string
	Message string
	// ReachedUserspace is true once "nlmmap: userspace up" was seen.
	ReachedUserspace bool
	Tail             []string
	Console          string
	Cmdline          string
	Err              error
}

func (e *BootError) Error() string {
	var b strings.Builder
	switch e.Kind {
	case NoUserspace:
		fmt.Fprintf(&b, "boot: the kernel did not reach user space within %s (no %q on the console); QEMU was killed", e.Timeout, guestrun.MarkerUp)
	case VMTimeout:
		fmt.Fprintf(&b, "boot: the guest did not finish within %s; QEMU was killed", e.Timeout)
		if e.Running != "" {
			fmt.Fprintf(&b, " while %s was running (last BEGIN marker)", e.Running)
		}
	case Stuck:
		fmt.Fprintf(&b, "boot: %s did not end within %s; the guest runner kills a test after its own timeout, so the guest stopped answering (a stuck kernel?); QEMU was killed", e.Running, e.Timeout)
	case Stopped:
		if !e.ReachedUserspace {
			b.WriteString("boot: QEMU exited before the guest reached user space")
			break
		}
		b.WriteString("boot: the VM stopped before the guest runner finished (a kernel panic or a crash of init?)")
		if e.Running != "" {
			fmt.Fprintf(&b, "; %s was running (last BEGIN marker)", e.Running)
		}
	case GuestFatal:
		fmt.Fprintf(&b, "boot: the guest runner failed: %s", e.Message)
	case Start:
		fmt.Fprintf(&b, "boot: start QEMU: %v", e.Err)
	}
	if e.Err != nil && e.Kind != Start {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	if len(e.Tail) > 0 {
		fmt.Fprintf(&b, "\nLast %d console lines:\n  %s", len(e.Tail), strings.Join(e.Tail, "\n  "))
	}
	switch e.Kind {
	case NoUserspace:
		fmt.Fprintf(&b, "\nNext: read %s; if it is empty the kernel lacks the serial console (CONFIG_SERIAL_8250_CONSOLE) or never started; try NLMMAP_ACCEL=tcg if this used kvm", e.Console)
	case Start:
		b.WriteString("\nNext: check that qemu-system-x86_64 runs (apt-get install qemu-system-x86)")
	default:
		fmt.Fprintf(&b, "\nNext: read the whole console log %s", e.Console)
	}
	if e.Cmdline != "" {
		fmt.Fprintf(&b, "\nQEMU command line: %s", e.Cmdline)
	}
	return b.String()
}

func (e *BootError) Unwrap() error { return e.Err }

// QEMUArgs are the machine arguments for accel.
func QEMUArgs(accel string) []string {
	return []string{"-machine", "q35,accel=" + accel, "-cpu", "max", "-smp", "2", "-m", "1G"}
}

// stepPoll is how often Boot checks StepTimeout.
var stepPoll = time.Second

// KernelArgs are the kernel arguments every boot gets.
// printk.devkmsg=on: markers written to /dev/kmsg must never be ratelimited.
var KernelArgs = []string{"console=ttyS0", "printk.devkmsg=on"}

// Boot boots the kernel with the initramfs, lets the guest run the plan and
// waits until it powers off or a timeout kills it.
func Boot(ctx context.Context, o Options) (*Result, error) {
	if o.QEMU == "" {
		o.QEMU = DefaultQEMU
		if err := hostdeps.Ensure(logOrDiscard(o.Log), hostdeps.Boot...); err != nil {
			return nil, fmt.Errorf("boot: %w", err)
		}
	}
	if o.PowerOffGrace == 0 {
		o.PowerOffGrace = 30 * time.Second
	}
	if o.BootTimeout <= 0 || o.VMTimeout <= 0 {
		return nil, errors.New("boot: BootTimeout and VMTimeout must be set")
	}
	for _, f := range []string{o.Kernel, o.Initramfs} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("boot: %w\nNext: run make kernel and make initramfs", err)
		}
	}
	runDir, err := filepath.Abs(o.RunDir)
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	res := &Result{
		Accel:       o.Accel,
		ConsolePath: filepath.Join(runDir, ConsoleFile),
		ResultsPath: filepath.Join(runDir, guestrun.ResultsFile),
	}
	for _, f := range []string{res.ConsolePath, res.ResultsPath, filepath.Join(runDir, guestrun.PlanFile), filepath.Join(runDir, CmdlineFile)} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("boot: clean run directory: %w", err)
		}
	}
	if err := guestrun.WritePlan(filepath.Join(runDir, guestrun.PlanFile), &o.Plan); err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	console, err := os.Create(res.ConsolePath)
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	w := newWatcher()
	w.progress = o.Progress
	pr, pw := io.Pipe()
	go w.consume(pr)

	qemuCmd := strings.Join(append([]string{o.QEMU}, QEMUArgs(o.Accel)...), " ")
	opts, err := qemu.OptionsFor(qemu.ArchAMD64,
		qemu.WithQEMUCommand(qemuCmd),
		qemu.WithKernel(o.Kernel),
		qemu.WithInitramfs(o.Initramfs),
		qemu.P9Directory(runDir, guestrun.ShareTag),
		qemu.HaltOnKernelPanic(),
		qemu.WithAppendKernel(append(append([]string{}, KernelArgs...), o.Append...)...),
		qemu.WithSerialOutput(console, pw),
	)
	if err != nil {
		console.Close()
		pw.Close()
		return nil, fmt.Errorf("boot: QEMU options: %w", err)
	}
	if args, err := opts.Cmdline(); err == nil {
		res.Cmdline = quote(args)
		// For reproducing the boot by hand (and, later, repro bundles).
		os.WriteFile(filepath.Join(runDir, CmdlineFile), []byte(res.Cmdline+"\n"), 0o644)
	}
	vmctx, kill := context.WithCancel(ctx)
	defer kill()
	start := time.Now()
	vm, err := opts.Start(vmctx)
	if err != nil {
		pw.Close()
		console.Close()
		return nil, &BootError{Kind: Start, Err: err, Cmdline: res.Cmdline}
	}
	waited := make(chan error, 1)
	go func() { waited <- vm.Wait() }()

	bootTimer := time.NewTimer(o.BootTimeout)
	defer bootTimer.Stop()
	vmTimer := time.NewTimer(o.VMTimeout)
	defer vmTimer.Stop()
	var offTimer <-chan time.Time
	var stepTick <-chan time.Time
	if o.StepTimeout > 0 {
		t := time.NewTicker(stepPoll)
		defer t.Stop()
		stepTick = t.C
	}
	up, done := w.up, w.done
	var reason string
	var running string
	var waitErr error
loop:
	for {
		select {
		case <-up:
			bootTimer.Stop()
			up = nil
		case <-bootTimer.C:
			if reason == "" {
				reason = NoUserspace
				kill()
			}
		case <-vmTimer.C:
			if reason == "" {
				reason = VMTimeout
				running = w.running()
				kill()
			}
		case now := <-stepTick:
			if step := w.overdue(now, o.StepTimeout); step != "" && reason == "" {
				reason, running = Stuck, step
				kill()
			}
		case <-done:
			done = nil
			offTimer = time.After(o.PowerOffGrace)
		case <-offTimer:
			res.PowerOffTimeout = true
			kill()
		case waitErr = <-waited:
			break loop
		}
	}
	<-w.fin
	res.Duration = time.Since(start)
	// 9p's mapped-file model creates the guest's files 0600 on the host.
	os.Chmod(res.ResultsPath, 0o644)
	tail, fatal, reachedUp, finished := w.snapshot()
	be := &BootError{Kind: reason, Tail: tail, Console: res.ConsolePath, Cmdline: res.Cmdline, Running: running, ReachedUserspace: reachedUp}
	switch {
	case reason == NoUserspace:
		be.Timeout = o.BootTimeout
		return res, be
	case reason == VMTimeout:
		be.Timeout = o.VMTimeout
		return res, be
	case reason == Stuck:
		be.Timeout = o.StepTimeout
		return res, be
	case fatal != "":
		be.Kind, be.Message = GuestFatal, fatal
		return res, be
	case ctx.Err() != nil:
		return res, fmt.Errorf("boot: %w", ctx.Err())
	case !finished:
		be.Kind, be.Running, be.Err = Stopped, w.running(), waitErr
		return res, be
	}
	return res, nil
}

func logOrDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func quote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \t\n'\"") {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			out[i] = a
		}
	}
	return strings.Join(out, " ")
}
