// Package nldiag asks NETLINK_SOCK_DIAG about netlink sockets: it dumps
// the sockets of one netlink protocol (SOCK_DIAG_BY_FAMILY with
// AF_NETLINK, struct netlink_diag_req) and parses each answer, struct
// netlink_diag_msg and its NETLINK_DIAG_* attributes, into a Socket: port
// ID, inode, groups, memory counters, flags, and the memory-mapped ring
// geometry and counters (NETLINK_DIAG_RX_RING, NETLINK_DIAG_TX_RING,
// NETLINK_DIAG_RING_STATS) that the series adds.
//
// # Example
//
//	recs, err := nldiag.LookupFD(fd, nldiag.ShowRingCfg|nldiag.ShowMeminfo)
//	if err != nil {
//		return err // an *OpError; errors.Is works on the errno it wraps
//	}
//	s := recs[0]
//	if s.RX != nil && s.Stats != nil {
//		fmt.Printf("RX ring %v, mapped %d times, %d drops\n", *s.RX, s.Stats.Mapped, s.Drops())
//	}
//
// The kernel lists a bound member of a multicast group twice (from the
// socket table and from the group list), so Lookup and LookupFD return
// every record of the socket; callers that care can check they agree.
//
// The kernel's netlink diag dumps only: there is no request for one
// socket, so Lookup dumps the protocol and picks the socket by inode. It
// lists bound sockets only (an unbound netlink socket is in no table).
//
// Parse is strict where the kernel is: a record that breaks the layout
// the series defines (an attribute of the wrong size or given twice, a
// non-zero ndrs_pad, a NETLINK_DIAG_PAD that is not empty or not right
// before NETLINK_DIAG_RING_STATS) is an error wrapping
// nlmsg.ErrMalformed. Attributes of unknown types are kept in
// Socket.Attrs and otherwise ignored. Parse needs no kernel; Dump, Lookup
// and LookupFD make the system calls, through a small interface that the
// host tests replace.
//
// It does not destroy sockets (SOCK_DESTROY), filter in the kernel, or
// dump other address families.
package nldiag
