// Command uinit is the guest's test runner, started by u-root's init. See
// package guestrun for what it does.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
)

func main() {
	kmsg := guestrun.OpenKmsg()
	// First thing: the host's boot watchdog waits for this.
	io.WriteString(kmsg, guestrun.MarkerUp+"\n")
	if err := guestrun.Guest(context.Background(), kmsg); err != nil {
		io.WriteString(kmsg, guestrun.Fatal(err.Error())+"\n")
		fmt.Fprintf(os.Stderr, "nlmmap: %v\n", err)
	}
	if err := guestrun.PowerOff(); err != nil {
		io.WriteString(kmsg, guestrun.Fatal(err.Error())+"\n")
	}
}
