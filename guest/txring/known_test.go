package txring

// Reproducers of kernel behaviour reported as wrong and not fixed yet.
// They run only with -known-issues (or NLMMAP_KNOWN_ISSUES=1).

import (
	"flag"
	"os"
	"testing"

	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

var knownIssues = flag.Bool("known-issues", os.Getenv("NLMMAP_KNOWN_ISSUES") == "1",
	"run the tests of kernel behaviour reported as wrong and not fixed yet (also NLMMAP_KNOWN_ISSUES=1)")

// skipKnownIssue skips a test that shows a reported kernel issue, saying
// which, unless -known-issues is set.
func skipKnownIssue(t *testing.T, issue string) {
	t.Helper()
	if !*knownIssues {
		t.Skipf("known kernel issue, reported: %s; run with -known-issues", issue)
	}
}

// TestDumpPartsFitFramesAfterLargeRecvmsg: netlink_mmap.rst says "Use
// frames of at least a page to get every part of a dump in its frame".
// netlink_dump() sizes a part by the largest recvmsg() buffer the socket
// ever used (nlk->max_recvmsg_len, up to 32 KiB), not by the frame it
// claimed, so after a single recvmsg() with a 64 KiB buffer (what many
// netlink libraries use) every part of a dump of 100 links is some
// 32 KB and comes as COPY even with 16 KiB frames.
func TestDumpPartsFitFramesAfterLargeRecvmsg(t *testing.T) {
	setup(t)
	skipKnownIssue(t, "dump parts are sized by the largest recvmsg() buffer, not by the RX frame: "+
		"after one 64 KiB recvmsg every part of a large dump is COPY even with 16 KiB frames")
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

// TestPollNoWriteBandOnFullTXRing: with a TX ring, netlink_poll() takes
// EPOLLOUT and EPOLLWRNORM away while the frame at the kernel's position
// is not free, but leaves the EPOLLWRBAND that datagram_poll() set, so a
// full TX ring still reports POLLWRBAND.
func TestPollNoWriteBandOnFullTXRing(t *testing.T) {
	setup(t)
	skipKnownIssue(t, "a full TX ring reports POLLWRBAND (netlink_poll clears only EPOLLOUT|EPOLLWRNORM)")
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
