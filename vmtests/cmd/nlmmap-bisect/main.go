// Command nlmmap-bisect checks the series patch by patch (package
// vmtests/bisect).
//
//	nlmmap-bisect -check -initramfs out/initramfs.cpio -out out/bisect          # make check-bisect
//	nlmmap-bisect -run TestOverrun -set debug -initramfs out/initramfs.cpio      # make bisect RUN=TestOverrun
//
// -check builds every prefix with CONFIG_NETLINK_MMAP=y and =n, boots each
// with the guest tests that apply to it, prints a line per prefix and exits
// non-zero if any failed. -run finds the first patch at which the selected
// guest tests fail.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nlmmap/nlmmap/kernel"
	"github.com/nlmmap/nlmmap/vmtests/bisect"
)

func main() {
	check := flag.Bool("check", false, "build and boot every prefix with CONFIG_NETLINK_MMAP=y and =n")
	run := flag.String("run", "", "bisect: the go test -run filter of the guest tests that fail")
	set := flag.String("set", "debug", "bisect: the configuration, debug (make vmtest's), y or n")
	initrd := flag.String("initramfs", "out/initramfs.cpio", "initramfs with the guest tests")
	out := flag.String("out", "out/bisect", "where prefix kernels and their runs go")
	root := flag.String("root", ".", "repository root (holds patches/ and kernel/config/)")
	patches := flag.String("patches", "", "directory of the series (default <root>/patches)")
	timeout := flag.Duration("timeout", 0, "per guest test (default: scaled)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := bisect.Options{
		Kernel:    kernel.Options{RepoRoot: *root, PatchesDir: *patches},
		Initramfs: *initrd, Out: *out, Run: *run, TestTimeout: *timeout, Log: os.Stdout,
	}
	start := time.Now()
	if *check {
		steps, err := bisect.Check(ctx, o, bisect.CheckSets)
		var build, boot time.Duration
		failed := 0
		for _, st := range steps {
			build += st.Prefix.Duration
			boot += st.Boot
			if st.Failed() {
				failed++
				fmt.Printf("FAIL prefix %02d %s:\n", st.Prefix.N, st.Prefix.Set)
				for _, d := range st.Details() {
					fmt.Printf("  %s\n", d)
				}
			}
		}
		fmt.Printf("check-bisect: %d prefix builds booted, %d failed; %s in all (builds %s, boots %s)\n",
			len(steps), failed, time.Since(start).Round(time.Second), build.Round(time.Second), boot.Round(time.Second))
		if err != nil {
			fmt.Printf("FAIL %v\n", err)
			os.Exit(1)
		}
		if failed > 0 {
			fmt.Println("Next: each failing prefix's console and outcome are in its run directory above; make repro FROM=<run directory> bundles one")
			os.Exit(1)
		}
		return
	}
	s, ok := bisect.Sets[*set]
	if !ok {
		fmt.Fprintf(os.Stderr, "nlmmap-bisect: unknown -set %q\nNext: use debug, y or n\n", *set)
		os.Exit(2)
	}
	res, err := bisect.Bisect(ctx, o, s)
	if res != nil {
		fmt.Print(res.Report(*run))
	}
	fmt.Printf("bisect: %s\n", time.Since(start).Round(time.Second))
	if err != nil {
		fmt.Fprintf(os.Stderr, "nlmmap-bisect: %v\n", err)
		os.Exit(2)
	}
}
