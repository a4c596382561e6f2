package txring

// Reading a netlink socket's ring configuration and counters through
// NETLINK_SOCK_DIAG, from a separate plain socket.

import (
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nldiag"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// diagShow is what the tests ask NETLINK_SOCK_DIAG for.
const diagShow = nldiag.ShowRingCfg | nldiag.ShowFlags | nldiag.ShowMeminfo

// diagSocket returns the diag record of the socket with inode ino.
func diagSocket(t testing.TB, proto int, ino uint32) nldiag.Socket {
	t.Helper()
	recs, err := nldiag.Lookup(proto, diagShow, ino)
	if err != nil {
		t.Fatalf("sock_diag of netlink protocol %d: %v", proto, err)
	}
	return recs[0]
}

// ringStatsOf returns the ring counters of the socket with inode ino.
func ringStatsOf(t testing.TB, proto int, ino uint32) nldiag.RingStats {
	t.Helper()
	if !haveRingStats() {
		return nldiag.RingStats{}
	}
	s := diagSocket(t, proto, ino)
	if s.Stats == nil {
		t.Fatalf("sock_diag: socket %d has no NETLINK_DIAG_RING_STATS", ino)
	}
	return *s.Stats
}

// haveRingStats reports whether sock_diag reports ring statistics (patch
// 09 of the series). On a prefix build without them the tests check the
// TX ring by what it sends and what it hands back, and skip the counters.
func haveRingStats() bool {
	have, ok := guesttest.SeriesPatches()
	return !ok || have >= 9
}

// statsOrZero returns *st, or nothing on a kernel without ring statistics.
func statsOrZero(st *nldiag.RingStats) nldiag.RingStats {
	if st == nil || !haveRingStats() {
		return nldiag.RingStats{}
	}
	return *st
}

// fdIno returns the inode number of the socket fd, as sock_diag reports it.
func fdIno(t testing.TB, fd int) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatalf("fstat socket: %v", err)
	}
	return uint32(st.Ino)
}

// connFD returns the descriptor of c's socket, for poll() and diag.
func connFD(t testing.TB, c *ring.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatalf("SyscallConn: %v", err)
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		t.Fatalf("SyscallConn.Control: %v", err)
	}
	return fd
}

// connIno returns the inode number of c's socket.
func connIno(t testing.TB, c *ring.Conn) uint32 { return fdIno(t, connFD(t, c)) }
