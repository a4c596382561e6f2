// Command nlmmap-vm runs the guest tests once (package vmtests/suite): it
// boots the kernel, prints progress while the guest works, and writes
// <rundir>/outcome.json, which TestGuest then reports (make vmtest runs it
// under gotestsum).
//
//	nlmmap-vm -kernel out/debug/bzImage -initramfs out/initramfs.cpio -rundir out/run [-run RE] [-snapshot out/last-failed]
//	nlmmap-vm -bundle out/repro/20261125-201500 -rundir out/replay   # replay a bundle (make repro BUNDLE=...)
//	nlmmap-vm -explain out/run                                        # what failed and how to rerun it
//
// It exits 0 when the run happened, pass or fail, and 2 when it could not
// run at all.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nlmmap/nlmmap/kernel"
	"github.com/nlmmap/nlmmap/vmtests/repro"
	"github.com/nlmmap/nlmmap/vmtests/suite"
)

func main() {
	kern := flag.String("kernel", "", "bzImage (with kernel.release and .config next to it)")
	initrd := flag.String("initramfs", "", "initramfs.cpio (with initramfs.json next to it)")
	runDir := flag.String("rundir", "out/run", "run directory, shared with the guest")
	run := flag.String("run", "", "go test -run filter for the guest tests")
	timeout := flag.Duration("timeout", envDuration("NLMMAP_TEST_TIMEOUT"), "per guest test (default $NLMMAP_TEST_TIMEOUT, else scaled to the accelerator and kernel)")
	bundle := flag.String("bundle", "", "replay this reproduction bundle")
	snapshot := flag.String("snapshot", "", "when the run fails, write a reproduction bundle here (replacing it)")
	explain := flag.String("explain", "", "print the failures of the run in this run directory, and how to rerun them")
	var env envFlag
	flag.Var(&env, "env", "KEY=VALUE added to the guest tests' environment (repeatable)")
	flag.Parse()

	if *explain != "" {
		out, err := suite.ReadOutcome(filepath.Join(*explain, suite.OutcomeFile))
		if err != nil {
			fail(err)
		}
		explainRun(out, *explain)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var b *repro.Bundle
	o := suite.Options{Kernel: *kern, Initramfs: *initrd, RunDir: *runDir, Run: *run, TestTimeout: *timeout, Env: env.m}
	if *bundle != "" {
		var err error
		if b, err = repro.Open(*bundle); err != nil {
			fail(err)
		}
		fmt.Fprintf(os.Stderr, "repro: replaying %s\nrepro: recorded run: %s\n", b.Dir, b.Meta.Summary)
		o = b.Replay(*runDir, os.Getenv("NLMMAP_ACCEL"))
	} else if *kern == "" || *initrd == "" {
		fail(fmt.Errorf("-kernel and -initramfs are required\nNext: run make vmtest, which builds and passes them"))
	}
	o.CacheRoot = kernel.CacheRoot(nil)
	o.Log = os.Stderr
	if err := os.MkdirAll(o.RunDir, 0o755); err != nil {
		fail(err)
	}
	out, err := suite.Run(ctx, o)
	if err != nil {
		fail(err)
	}
	if b != nil {
		fmt.Fprintf(os.Stderr, "repro: %s\n", repro.Compare(b.Outcome, out))
	}
	if *snapshot != "" && out.Failed() {
		if err := snap(out, *snapshot); err != nil {
			fmt.Fprintf(os.Stderr, "nlmmap-vm: could not keep the failing run for make repro: %v\n", err)
		}
	}
}

// snap replaces dir with a bundle of the run.
func snap(out *suite.Outcome, dir string) error {
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if _, err := repro.Write(out, tmp, repro.Options{}); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	os.RemoveAll(dir)
	return os.Rename(tmp, dir)
}

func explainRun(out *suite.Outcome, dir string) {
	fmt.Printf("%s\n", out.Summary())
	for _, v := range out.Failures() {
		fmt.Printf("FAIL %s/%s: %s\n", v.Name, v.Test, v.Reason())
	}
	bootSplats, after := out.Outside()
	for _, s := range append(bootSplats, after...) {
		fmt.Printf("FAIL console (%s): kernel %s: %s\n", s.Where, s.Kind, s.Title)
	}
	if !out.Failed() {
		return
	}
	fmt.Printf("console log: %s\n", filepath.Join(dir, "console.log"))
	fmt.Printf("Next: make repro writes a self-contained bundle of the last failing run (replay it anywhere with make repro BUNDLE=<dir>)")
	if cmds := out.ReproCommands(""); len(cmds) > 0 {
		fmt.Printf("; rerun one test with\n  %s", strings.Join(cmds, "\n  "))
	}
	fmt.Println()
}

func envDuration(name string) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		fail(fmt.Errorf("%s=%q: %v\nNext: give a Go duration such as 90s or 5m", name, s, err))
	}
	return d
}

type envFlag struct{ m map[string]string }

func (e *envFlag) String() string { return fmt.Sprint(e.m) }

func (e *envFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	if e.m == nil {
		e.m = map[string]string{}
	}
	e.m[k] = v
	return nil
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "nlmmap-vm: %v\n", err)
	os.Exit(2)
}
