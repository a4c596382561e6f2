// Command nlmmap-initramfs builds (or finds up to date) out/initramfs.cpio
// with the guest runner and every guest test package. Run it from the
// repository root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nlmmap/nlmmap/initramfs"
)

func main() {
	out := flag.String("out", "out", "output directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := initramfs.Build(ctx, initramfs.Options{Out: *out}); err != nil {
		fmt.Fprintf(os.Stderr, "nlmmap-initramfs: %v\n", err)
		os.Exit(1)
	}
}
