package guestrun

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Event is one test2json event (see go doc test2json).
type Event struct {
	Time    *time.Time `json:",omitempty"`
	Action  string
	Package string  `json:",omitempty"`
	Test    string  `json:",omitempty"`
	Elapsed float64 `json:",omitempty"`
	Output  string  `json:",omitempty"`
}

// Runner runs the guest tests of a plan.
type Runner struct {
	Plan     *Plan
	Manifest *Manifest
	// Kmsg receives the markers, one Write per marker (/dev/kmsg).
	Kmsg io.Writer
	// Results receives the JSON events, one line each (results.json).
	Results io.Writer
	// Sync, if set, is called after each test to flush Results.
	Sync func() error
	// Log, if set, receives a human-readable line per test. In the guest
	// it stays nil: stdout is the serial console, shared with the kernel.
	Log io.Writer
	// Test2JSON is the path of the test2json binary.
	Test2JSON string
	// KillGrace is how long after the plan's timeout a test still gets to
	// report its own timeout before the runner kills it; default 30s.
	KillGrace time.Duration
	// Env is the base environment of the tests; default os.Environ().
	Env []string
	// Dir is the tests' working directory; default os.TempDir().
	Dir string
}

// Summary counts results.
type Summary struct{ Pass, Fail, Skip int }

func (r *Runner) mark(s string) {
	io.WriteString(r.Kmsg, s+"\n")
}

// Run runs every selected test of every package in the manifest.
func (r *Runner) Run(ctx context.Context) (Summary, error) {
	var sum Summary
	for _, pkg := range r.Manifest.Packages {
		tests, err := r.list(ctx, pkg)
		if err != nil {
			// A binary that cannot even list its tests fails as a package.
			r.emit(Event{Action: "output", Package: pkg.ImportPath, Output: err.Error() + "\n"})
			r.emit(Event{Action: "fail", Package: pkg.ImportPath})
			r.mark(End(pkg.ImportPath, "-", "FAIL"))
			sum.Fail++
			continue
		}
		for _, test := range tests {
			res := r.runOne(ctx, pkg, test)
			switch res {
			case "PASS":
				sum.Pass++
			case "SKIP":
				sum.Skip++
			default:
				sum.Fail++
			}
			if ctx.Err() != nil {
				return sum, ctx.Err()
			}
		}
	}
	return sum, nil
}

// list returns the top-level tests of pkg that the plan selects.
func (r *Runner) list(ctx context.Context, pkg ManifestPackage) ([]string, error) {
	filter := TopLevelFilter(r.Plan.Run)
	if filter == "" {
		filter = "."
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pkg.Binary, "-test.list", filter)
	cmd.Env = r.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("list tests of %s: %s -test.list %s: %w: %s", pkg.ImportPath, pkg.Binary, filter, err, strings.TrimSpace(stderr.String()))
	}
	var tests []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "Benchmark") || strings.ContainsAny(line, " \t") {
			continue
		}
		tests = append(tests, line)
	}
	sort.Strings(tests)
	return tests, nil
}

func (r *Runner) env() []string {
	env := r.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(append([]string{}, env...),
		"NLMMAP_IN_GUEST=1",
		"NLMMAP_KERNEL_RELEASE="+r.Plan.KernelRelease,
	)
	keys := make([]string, 0, len(r.Plan.Env))
	for k := range r.Plan.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+r.Plan.Env[k])
	}
	return env
}

func (r *Runner) emit(e Event) {
	if e.Time == nil {
		now := time.Now()
		e.Time = &now
	}
	data, _ := json.Marshal(e)
	r.Results.Write(append(data, '\n'))
}

// runOne runs one top-level test in its own process and returns PASS, FAIL
// or SKIP.
func (r *Runner) runOne(ctx context.Context, pkg ManifestPackage, test string) string {
	r.mark(Begin(pkg.ImportPath, test))
	start := time.Now()
	timeout := r.Plan.TestTimeout.D
	grace := r.KillGrace
	if grace == 0 {
		grace = 30 * time.Second
	}
	tctx, cancel := context.WithTimeout(ctx, timeout+grace)
	defer cancel()
	cmd := exec.CommandContext(tctx, r.Test2JSON, "-t", "-p", pkg.ImportPath,
		pkg.Binary, "-test.run", RunFor(test, r.Plan.Run), "-test.v=test2json",
		"-test.timeout", timeout.String(), "-test.count", "1")
	cmd.Env = r.env()
	cmd.Dir = r.Dir
	if cmd.Dir == "" {
		cmd.Dir = os.TempDir()
	}
	// test2json ignores SIGINT and SIGQUIT and leaves the test binary
	// running when it dies: kill the whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	var stderr bytes.Buffer
	cmd.Stderr = &stderr

	result := ""
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
		for sc.Scan() {
			line := sc.Bytes()
			r.Results.Write(append(append([]byte{}, line...), '\n'))
			var e Event
			if json.Unmarshal(line, &e) == nil && e.Test == test {
				switch e.Action {
				case "pass":
					result = "PASS"
				case "fail":
					result = "FAIL"
				case "skip":
					result = "SKIP"
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	err := cmd.Start()
	if err == nil {
		// Lets the host attribute what kmemleak finds later to the test
		// that allocated it: the test's processes and threads all get
		// higher PIDs than this one and lower ones than the next test's.
		r.mark(PID(pkg.ImportPath, test, cmd.Process.Pid))
		err = cmd.Wait()
	}
	pw.Close()
	<-scanned

	elapsed := time.Since(start)
	switch {
	case errors.Is(tctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		r.emit(Event{Action: "output", Package: pkg.ImportPath, Test: test,
			Output: fmt.Sprintf("nlmmap: %s timed out after %s (limit %s + %s grace) and was killed\n", test, elapsed.Round(time.Second), timeout, grace)})
		r.emit(Event{Action: "fail", Package: pkg.ImportPath, Test: test, Elapsed: elapsed.Seconds()})
		result = "FAIL"
	case result == "":
		msg := "exited without reporting a result"
		if err != nil {
			msg += ": " + err.Error()
		}
		if s := strings.TrimSpace(stderr.String()); s != "" {
			msg += ": " + s
		}
		r.emit(Event{Action: "output", Package: pkg.ImportPath, Test: test, Output: "nlmmap: " + test + " " + msg + "\n"})
		r.emit(Event{Action: "fail", Package: pkg.ImportPath, Test: test, Elapsed: elapsed.Seconds()})
		result = "FAIL"
	}
	if r.Sync != nil {
		r.Sync()
	}
	r.mark(End(pkg.ImportPath, test, result))
	if r.Log != nil {
		fmt.Fprintf(r.Log, "%s %s.%s (%s)\n", result, pkg.Name, test, elapsed.Round(10*time.Millisecond))
	}
	return result
}
