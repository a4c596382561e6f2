// Command nlmmap-kernel builds (or finds in the cache) the kernel of one
// flavor and publishes it under out/<flavor>/.
//
//	nlmmap-kernel -flavor debug
//
// Environment: KERNEL_SRC, KERNEL_TARBALL, KERNEL_TARBALL_SHA256,
// NLMMAP_CACHE (see package kernel and README.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nlmmap/nlmmap/kernel"
)

func main() {
	flavor := flag.String("flavor", "debug", "kernel flavor: debug, baseline or coverage")
	root := flag.String("root", ".", "repository root (holds patches/ and kernel/config/)")
	out := flag.String("out", "", "where to publish <flavor>/bzImage etc. (default <root>/out)")
	frags := flag.String("fragments", "", "comma-separated fragment list replacing the flavor's (for experiments)")
	patches := flag.String("patches", "", "directory of the series to apply (default <root>/patches)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := kernel.Options{Flavor: *flavor, RepoRoot: *root, Out: *out, PatchesDir: *patches}
	if *frags != "" {
		o.Fragments = strings.Split(*frags, ",")
	}
	res, err := kernel.Build(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nlmmap-kernel: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "kernel: %s -> %s\n", res.Info.KernelRelease, res.BzImage)
}
