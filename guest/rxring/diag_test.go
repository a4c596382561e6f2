package rxring

import (
	"errors"
	"strings"
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nldiag"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// diag returns what NETLINK_SOCK_DIAG reports about fd, asked with
// NDIAG_SHOW_MEMINFO|NDIAG_SHOW_RING_CFG.
// diagHasRings reports whether NETLINK_SOCK_DIAG reports rings (patch 09
// of the series). On a prefix build without it the tests still check the
// rings themselves and skip what they would read back through sock_diag.
func diagHasRings() bool {
	have, ok := guesttest.SeriesPatches()
	return !ok || have >= 9
}

func diag(t *testing.T, fd int) nldiag.Socket {
	t.Helper()
	recs, err := nldiag.LookupFD(fd, nldiag.ShowMeminfo|nldiag.ShowRingCfg)
	if err != nil {
		t.Fatalf("sock_diag: %v", err)
	}
	// A bound member of a multicast group is reported twice, from the
	// socket table and from the group list (sk_hashed() is never true for
	// netlink sockets); both must agree.
	for _, e := range recs[1:] {
		if !sameDiag(recs[0], e) {
			t.Errorf("sock_diag reports inode %d twice, differently: %+v and %+v", e.Inode, recs[0], e)
		}
	}
	return recs[0]
}

func sameDiag(a, b nldiag.Socket) bool {
	return sameRing(a.RX, b.RX) && sameRing(a.TX, b.TX) && (a.Stats == nil) == (b.Stats == nil) &&
		ringStats(a) == ringStats(b) && a.Drops() == b.Drops()
}

// ringStats returns d's NETLINK_DIAG_RING_STATS, zero when absent.
func ringStats(d nldiag.Socket) nldiag.RingStats {
	if d.Stats == nil {
		return nldiag.RingStats{}
	}
	return *d.Stats
}

// mapped returns ndrs_mapped for fd, failing if the kernel did not report
// ring statistics (it does for every socket with a ring or a mapping). On
// a prefix build without patch 09 there is nothing to read: ok is false.
func mapped(t *testing.T, fd int) (n uint32, ok bool) {
	t.Helper()
	if !diagHasRings() {
		return 0, false
	}
	d := diag(t, fd)
	if d.Stats == nil {
		t.Fatal("sock_diag with NDIAG_SHOW_RING_CFG did not report NETLINK_DIAG_RING_STATS")
	}
	return d.Stats.Mapped, true
}

// kernelLog starts collecting kernel log records; the returned function
// returns the records logged since, one message each.
func kernelLog(t *testing.T) func() []string {
	t.Helper()
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/kmsg: %v", err)
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		t.Fatalf("seek /dev/kmsg: %v", err)
	}
	return func() []string {
		defer unix.Close(fd)
		var msgs []string
		buf := make([]byte, 8192)
		for {
			n, err := unix.Read(fd, buf)
			switch {
			case errors.Is(err, unix.EPIPE): // records overwritten meanwhile
				continue
			case err != nil:
				return msgs
			}
			rec := string(buf[:n])
			if i := strings.IndexByte(rec, ';'); i >= 0 {
				rec = rec[i+1:]
			}
			msgs = append(msgs, strings.TrimSpace(rec))
		}
	}
}

// TestDiagRingOfGroupMember asks NETLINK_SOCK_DIAG for the ring
// configuration of a socket that is a member of a multicast group. Such
// sockets are also reported from the multicast list, which
// __netlink_diag_dump walks under read_lock_irqsave(&nl_table_lock); the
// ring attributes must be filled without taking a lock that is not safe
// there (an earlier version of the series used spin_lock_bh, and lockdep
// warned on the debug kernel).
func TestDiagRingOfGroupMember(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 9) // ring configuration in sock_diag
	rx := mustParams(t, pageSize/2, 4)
	r := newRawRing(t, unix.NETLINK_ROUTE, rx, ring.Params{})
	if err := unix.SetsockoptInt(r.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.RTNLGRP_LINK); err != nil {
		t.Fatal(err)
	}
	since := kernelLog(t)
	d := diag(t, r.fd)
	if !sameRing(d.RX, &rx) || d.Stats == nil || d.Stats.Mapped != 1 {
		t.Errorf("sock_diag reports RX %v, ring stats %v; want %v, mapped 1", d.RX, d.Stats, rx)
	}
	for _, m := range since() {
		if strings.HasPrefix(m, "WARNING:") || strings.HasPrefix(m, "BUG:") {
			t.Errorf("kernel log during the dump: %s", m)
		}
	}
}

// TestDiagRingStatsPresence checks when NETLINK_DIAG_RING_STATS is
// reported: for a socket with a ring or a mapping, not for one without,
// nor after its rings are torn down; and that a socket that never sent
// through a TX ring counts no TX frames.
func TestDiagRingStatsPresence(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 9) // ring configuration in sock_diag
	fd := netlinkSocket(t, unix.NETLINK_ROUTE)
	rx := mustParams(t, pageSize/2, 4)
	want := func(step string, has bool, mapped uint32) {
		t.Helper()
		d := diag(t, fd)
		if (d.Stats != nil) != has || ringStats(d) != (nldiag.RingStats{Mapped: mapped}) {
			t.Errorf("%s: ring stats %v; want present %v, mapped %d, no TX frames", step, d.Stats, has, mapped)
		}
	}
	want("no ring", false, 0)
	if err := setRingRaw(fd, ring.OptRXRing, paramsReq(rx)); err != nil {
		t.Fatal(err)
	}
	want("RX ring", true, 0)
	mem, err := mmapRing(fd, rx.Size(), 0, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	want("RX ring mapped", true, 1)
	munmap(mem)
	want("unmapped", true, 0)
	if err := setRingRaw(fd, ring.OptRXRing, teardown); err != nil {
		t.Fatal(err)
	}
	want("torn down", false, 0)
}
