// Command nlmmap-compare runs the same guest tests on several kernels and
// prints the results side by side (package vmtests/compare).
//
//	nlmmap-compare -initramfs out/initramfs.cpio -out out/compare baseline=out/baseline/bzImage debug=out/debug/bzImage
//
// A column named baseline is held to the baseline's rules: ring tests skip
// with ENOPROTOOPT, everything else passes. It exits non-zero if a rule is
// broken or a test fails anywhere.
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

	"github.com/nlmmap/nlmmap/kernel"
	"github.com/nlmmap/nlmmap/vmtests/compare"
	"github.com/nlmmap/nlmmap/vmtests/suite"
)

func main() {
	initrd := flag.String("initramfs", "out/initramfs.cpio", "initramfs with the guest tests")
	out := flag.String("out", "out/compare", "a run directory per kernel goes here")
	run := flag.String("run", "", "go test -run filter for the guest tests")
	reuse := flag.Bool("reuse", false, "print the table of the runs already in -out, without booting")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: nlmmap-compare [flags] name=bzImage name=bzImage...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 2 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var names []string
	var outs []*suite.Outcome
	for _, arg := range flag.Args() {
		name, kern, ok := strings.Cut(arg, "=")
		if !ok {
			flag.Usage()
			os.Exit(2)
		}
		var o *suite.Outcome
		var err error
		if *reuse {
			o, err = suite.ReadOutcome(filepath.Join(*out, name, suite.OutcomeFile))
		} else {
			fmt.Fprintf(os.Stderr, "compare: running the guest tests on %s (%s)\n", name, kern)
			o, err = suite.Run(ctx, suite.Options{
				Kernel: kern, Initramfs: *initrd, RunDir: filepath.Join(*out, name), Run: *run,
				CacheRoot: kernel.CacheRoot(nil), Log: os.Stderr,
			})
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "nlmmap-compare: %s: %v\n", name, err)
			os.Exit(2)
		}
		names = append(names, name)
		outs = append(outs, o)
	}
	t := compare.New(names, outs)
	fmt.Print(t)
	if probs := t.Problems(); len(probs) > 0 {
		fmt.Printf("compare: %d problem(s):\n", len(probs))
		for _, p := range probs {
			fmt.Printf("  %s\n", p)
		}
		fmt.Printf("Next: each kernel's console and outcome are in %s/<name>/; make repro FROM=%s/<name> bundles one\n", *out, *out)
		os.Exit(1)
	}
	fmt.Println("compare: the baseline skips exactly the ring tests (ENOPROTOOPT) and passes the rest; the series passes or skips every test")
}
