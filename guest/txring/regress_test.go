package txring

// Regression tests of kernel behaviour that was reported as wrong during
// the development of the series and fixed.

import (
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// TestDumpPartsFitFramesAfterLargeRecvmsg: netlink_mmap.rst says "Use
// frames of at least a page to get every part of a dump in its frame".
// netlink_dump() used to size a part by the largest recvmsg() buffer the
// socket ever used (nlk->max_recvmsg_len, up to 32 KiB), not by the frame
// it claimed, so after a single recvmsg() with a 64 KiB buffer (what many
// netlink libraries use) every part of a dump of 100 links was some 32 KB
// and came as COPY even with 16 KiB frames.
func TestDumpPartsFitFramesAfterLargeRecvmsg(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // requests sent from the TX ring
	createDummies(t, 100)

	// A plain socket answers one request into a 64 KiB buffer, then gets
	// its rings.
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if err := unix.Sendto(fd, getLink(1, 1, 0), 0, kernelAddr); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if _, _, err := unix.Recvfrom(fd, make([]byte, 64<<10), 0); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	rx := mustParams(t, 16384, 8)
	c, err := ring.New(fd, ring.Config{RX: rx, TX: mustParams(t, 4096, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	if err := c.Send(dumpLinks(2)); err != nil {
		t.Fatal(err)
	}
	ds := readDump(t, c, 2, nil)
	checkLinkDump(t, ds, 2)
	valid, copied, empty := checkParts(t, ds, rx)
	t.Logf("%d datagrams (%d VALID, %d COPY, %d empty): %s", len(ds), valid, copied, empty, describe(ds[:min(4, len(ds))]))
	if copied != 0 {
		t.Errorf("%d of %d dump parts larger than a 16 KiB frame", copied, len(ds))
	}
}

// TestPollNoWriteBandOnFullTXRing: with a TX ring, netlink_poll() used to
// take EPOLLOUT and EPOLLWRNORM away while the frame at the kernel's
// position was not free, but left the EPOLLWRBAND that datagram_poll()
// set, so a full TX ring still reported POLLWRBAND.
func TestPollNoWriteBandOnFullTXRing(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // the TX ring

	const pollWrNorm, pollWrBand = 0x100, 0x200 // x/sys/unix lacks them
	c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: mustParams(t, 4096, 4), TX: mustParams(t, 2048, 1)})
	if err := c.Enqueue(noop(1)); err != nil {
		t.Fatal(err)
	}
	if ev := pollWait(t, connFD(t, c), unix.POLLOUT|pollWrNorm|pollWrBand, 0); ev != 0 {
		t.Errorf("poll on a full TX ring: %#x, want none of POLLOUT, POLLWRNORM, POLLWRBAND", ev)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	receiveUntil(t, c, 1)
}
