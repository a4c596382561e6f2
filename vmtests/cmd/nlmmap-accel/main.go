// Command nlmmap-accel chooses the QEMU accelerator for this host (see
// boot.ChooseAccel), prints "accelerator: <accel> (<why>)" to stderr and
// the accelerator alone to stdout, for make vmtest to pass on as
// NLMMAP_ACCEL.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nlmmap/nlmmap/kernel"
	"github.com/nlmmap/nlmmap/vmtests/boot"
)

func main() {
	k := flag.String("kernel", "", "bzImage to probe with")
	i := flag.String("initramfs", "", "initramfs to probe with")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	v, err := boot.ChooseAccel(ctx, boot.ProbeOptions{Kernel: *k, Initramfs: *i, CacheRoot: kernel.CacheRoot(nil), Log: os.Stderr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "nlmmap-accel: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, v)
	fmt.Println(v.Accel)
}
