package nldiag

import (
	"errors"
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"golang.org/x/sys/unix"
)

// TestIntegrationPlainSocket looks up a plain NETLINK_ROUTE socket (no
// rings: it runs on every kernel) through the kernel's netlink diag and
// checks each field against what the socket was set up with.
func TestIntegrationPlainSocket(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// Netlink diag lists bound sockets only.
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.RTNLGRP_LINK); err != nil {
		t.Fatal(err)
	}
	for _, opt := range []int{unix.NETLINK_NO_ENOBUFS, unix.NETLINK_PKTINFO} {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, opt, 1); err != nil {
			t.Fatal(err)
		}
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrNetlink).Pid
	rcvbuf, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		t.Fatal(err)
	}

	recs, err := LookupFD(fd, ShowAll)
	if err != nil {
		t.Fatal(err)
	}
	// From the socket table and from the group list.
	if len(recs) != 2 {
		t.Errorf("%d records of a bound group member, want 2", len(recs))
	}
	for i, s := range recs {
		t.Logf("record %d: %+v", i, s)
		switch {
		case s.Type != unix.SOCK_RAW || s.Protocol != unix.NETLINK_ROUTE || s.PortID != port:
			t.Errorf("type %d, protocol %d, port %d; want SOCK_RAW, NETLINK_ROUTE, %d", s.Type, s.Protocol, s.PortID, port)
		case !s.Member(unix.RTNLGRP_LINK) || s.Member(unix.RTNLGRP_NEIGH):
			t.Errorf("groups %x, want RTNLGRP_LINK only", s.Groups)
		case s.Flags != FlagNoENOBUFS|FlagPktinfo:
			t.Errorf("flags %#x, want NO_ENOBUFS|PKTINFO", s.Flags)
		case len(s.Meminfo) < unix.SK_MEMINFO_VARS || s.Meminfo[unix.SK_MEMINFO_RCVBUF] != uint32(rcvbuf):
			t.Errorf("meminfo %v, want SK_MEMINFO_RCVBUF %d", s.Meminfo, rcvbuf)
		case s.RX != nil || s.TX != nil || s.Stats != nil || s.Has(AttrPad):
			t.Errorf("ring attributes %v for a socket without rings", s.Attrs)
		}
	}

	// Nothing asked, nothing reported.
	recs, err = LookupFD(fd, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs[0].Attrs) != 0 || recs[0].PortID != port {
		t.Errorf("without ndiag_show: port %d, attributes %v", recs[0].PortID, recs[0].Attrs)
	}

	// Every protocol at once.
	socks, err := Dump(AllProtocols, ShowFlags)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range socks {
		found = found || s.Inode == recs[0].Inode && s.Protocol == unix.NETLINK_ROUTE
	}
	if !found {
		t.Errorf("NDIAG_PROTO_ALL dump of %d sockets without ours", len(socks))
	}
}

// TestIntegrationErrors checks the errors of lookups that cannot succeed.
func TestIntegrationErrors(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	unbound, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(unbound)
	_, err = LookupFD(unbound, ShowAll)
	checkOpError(t, err, "lookup", ErrNotFound, "")

	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(null)
	_, err = LookupFD(null, ShowAll)
	checkOpError(t, err, "getsockopt SO_PROTOCOL", unix.ENOTSOCK, "")

	// netlink_diag_dump() refuses protocols from MAX_LINKS (32) on.
	_, err = Dump(32, ShowAll)
	var oe *OpError
	if !errors.As(err, &oe) || oe.Op != "dump" || !errors.Is(err, unix.ENOENT) {
		t.Errorf("dump of protocol 32: %v, want a dump error wrapping ENOENT", err)
	}
}
