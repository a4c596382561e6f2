package nfq_test

import (
	"errors"
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nfq"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// TestGuestDial checks that Dial uses the rings where the kernel has them
// and falls back to a plain socket, without error, where ring.Dial fails
// with ErrNotSupported (ENOPROTOOPT).
func TestGuestDial(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	guesttest.NeedsPatch(t, 3) // a ring that can be set up can be mapped
	rc, err := ring.Dial(unix.NETLINK_NETFILTER, ring.Config{RX: nfq.DefaultRX, TX: nfq.DefaultTX})
	haveRings := err == nil
	switch {
	case haveRings:
		rc.Close()
	case errors.Is(err, ring.ErrNotSupported) && errors.Is(err, unix.ENOPROTOOPT):
		t.Log("kernel without memory-mapped netlink (ENOPROTOOPT): Dial must fall back")
	default:
		t.Fatalf("ring.Dial NETLINK_NETFILTER: %v", err)
	}
	for _, tc := range []struct {
		name           string
		opts           nfq.Options
		wantRX, wantTX bool
	}{
		{"default", nfq.Options{}, haveRings, haveRings},
		{"no tx", nfq.Options{NoTX: true}, haveRings, false},
		{"no rings", nfq.Options{NoRings: true}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, tc.opts)
			if c.Mapped() != tc.wantRX || c.MappedTX() != tc.wantTX {
				t.Errorf("Mapped %v, MappedTX %v; want %v, %v", c.Mapped(), c.MappedTX(), tc.wantRX, tc.wantTX)
			}
			if tc.wantRX && c.RX() != nfq.DefaultRX {
				t.Errorf("RX ring %v, want %v", c.RX(), nfq.DefaultRX)
			}
			if pid, err := c.PortID(); err != nil || pid == 0 {
				t.Errorf("PortID = %d, %v", pid, err)
			}
		})
	}
}
