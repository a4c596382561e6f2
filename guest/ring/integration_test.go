package ring

import (
	"errors"
	"os"
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"

	"golang.org/x/sys/unix"
)

// TestIntegrationKernelWithoutRings runs against the kernel the tests run
// on. A kernel without memory-mapped netlink must give a clean
// ErrNotSupported, and the failed Dial must not leak the socket; a kernel
// with it is the guest tests' business.
func TestIntegrationKernelWithoutRings(t *testing.T) {
	// With patch 02 alone the kernel takes the ring options but cannot map
	// the rings yet: Dial fails at mmap, neither cleanly nor usably.
	guesttest.NeedsPatch(t, 3)
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		return len(ents)
	}
	before := fds()
	p, err := ParamsFor(4096, 4)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(unix.NETLINK_ROUTE, Config{RX: p, TX: p})
	if err == nil {
		c.Close()
		t.Skip("this kernel has memory-mapped netlink; the guest tests cover it")
	}
	var oe *OpError
	switch {
	case errors.As(err, &oe) && (oe.Op == "socket" || oe.Op == "bind"):
		t.Skipf("no netlink socket here: %v", err)
	case !errors.Is(err, ErrNotSupported) || !errors.Is(err, unix.ENOPROTOOPT):
		t.Fatalf("Dial = %v, want ErrNotSupported wrapping ENOPROTOOPT", err)
	case oe.Op != "setsockopt NETLINK_RX_RING":
		t.Errorf("failed operation %q", oe.Op)
	}
	if after := fds(); after != before {
		t.Errorf("%d descriptors open before Dial, %d after it failed", before, after)
	}
}
