package rxring

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// NETLINK_SOCK_DIAG for netlink sockets (include/uapi/linux/netlink_diag.h).
const (
	ndiagShowMeminfo = 0x1 // NDIAG_SHOW_MEMINFO
	ndiagShowRingCfg = 0x4 // NDIAG_SHOW_RING_CFG

	netlinkDiagMeminfo   = 0 // NETLINK_DIAG_MEMINFO: u32[SK_MEMINFO_VARS]
	netlinkDiagRXRing    = 2 // NETLINK_DIAG_RX_RING: struct netlink_diag_ring
	netlinkDiagTXRing    = 3 // NETLINK_DIAG_TX_RING
	netlinkDiagRingStats = 5 // NETLINK_DIAG_RING_STATS: struct netlink_diag_ring_stats
	netlinkDiagPad       = 6 // NETLINK_DIAG_PAD: aligns RING_STATS (nla_reserve_64bit)

	sizeofDiagRingStats = 24 // u64 ndrs_tx_frames, u64 ndrs_tx_invalid, u32 ndrs_mapped, u32 pad

	sizeofDiagReq = 20 // struct netlink_diag_req
	sizeofDiagMsg = 28 // struct netlink_diag_msg
)

// sockDiag is what NETLINK_SOCK_DIAG reports about one netlink socket.
type sockDiag struct {
	RX, TX   *ring.Params // nil: no such ring
	HasStats bool         // NETLINK_DIAG_RING_STATS present
	TXFrames uint64       // ndrs_tx_frames
	TXBad    uint64       // ndrs_tx_invalid
	Mapped   uint32       // ndrs_mapped
	Drops    uint32       // SK_MEMINFO_DROPS
}

// diag dumps the netlink sockets of fd's protocol with
// NDIAG_SHOW_MEMINFO|NDIAG_SHOW_RING_CFG and returns fd's entry, found by
// the socket's inode number.
func diag(t *testing.T, fd int) sockDiag {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatalf("fstat: %v", err)
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		t.Fatalf("SO_PROTOCOL: %v", err)
	}

	s, err := openNetlink(unix.NETLINK_SOCK_DIAG)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	req := make([]byte, sizeofDiagReq)
	req[0] = unix.AF_NETLINK
	req[1] = byte(proto)
	binary.NativeEndian.PutUint32(req[8:], ndiagShowMeminfo|ndiagShowRingCfg)
	msg := nlmsg.Message{Header: nlmsg.Header{Type: unix.SOCK_DIAG_BY_FAMILY,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: 1}, Data: req}
	if err := unix.Sendto(s, msg.Append(nil), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatalf("sock_diag request: %v", err)
	}

	var (
		found bool
		d     sockDiag
		buf   = make([]byte, 64<<10)
	)
	for {
		n, _, err := unix.Recvfrom(s, buf, 0)
		if err != nil {
			t.Fatalf("sock_diag receive: %v", err)
		}
		msgs, err := nlmsg.Parse(buf[:n])
		if err != nil {
			t.Fatalf("sock_diag answer: %v", err)
		}
		for _, m := range msgs {
			switch {
			case m.Type == unix.NLMSG_DONE:
				if !found {
					t.Fatalf("sock_diag: no netlink socket with inode %d", st.Ino)
				}
				return d
			case m.Err() != nil:
				t.Fatalf("sock_diag: %v", m.Err())
			case len(m.Data) < sizeofDiagMsg:
				t.Fatalf("sock_diag: short netlink_diag_msg (%d bytes)", len(m.Data))
			}
			if uint64(binary.NativeEndian.Uint32(m.Data[16:])) != st.Ino {
				continue
			}
			// A bound member of a multicast group is reported twice, from
			// the socket table and from the group list (sk_hashed() is
			// never true for netlink sockets); both must agree.
			var e sockDiag
			attrs, err := nlmsg.Attrs(m.Data[sizeofDiagMsg:])
			if err != nil {
				t.Fatalf("sock_diag attributes: %v", err)
			}
			for _, a := range attrs {
				switch a.Type {
				case netlinkDiagMeminfo:
					if len(a.Data) < 4*(unix.SK_MEMINFO_DROPS+1) {
						t.Fatalf("NETLINK_DIAG_MEMINFO of %d bytes", len(a.Data))
					}
					e.Drops = binary.NativeEndian.Uint32(a.Data[4*unix.SK_MEMINFO_DROPS:])
				case netlinkDiagRXRing, netlinkDiagTXRing:
					if len(a.Data) != 16 {
						t.Fatalf("ring attribute %d of %d bytes, want 16", a.Type, len(a.Data))
					}
					p := &ring.Params{BlockSize: binary.NativeEndian.Uint32(a.Data),
						BlockNr: binary.NativeEndian.Uint32(a.Data[4:]), FrameSize: binary.NativeEndian.Uint32(a.Data[8:]),
						FrameNr: binary.NativeEndian.Uint32(a.Data[12:])}
					if a.Type == netlinkDiagRXRing {
						e.RX = p
					} else {
						e.TX = p
					}
				case netlinkDiagRingStats:
					if len(a.Data) != sizeofDiagRingStats {
						t.Fatalf("NETLINK_DIAG_RING_STATS of %d bytes, want %d", len(a.Data), sizeofDiagRingStats)
					}
					if e.HasStats {
						t.Fatal("NETLINK_DIAG_RING_STATS twice in one entry")
					}
					e.HasStats = true
					e.TXFrames = binary.NativeEndian.Uint64(a.Data)
					e.TXBad = binary.NativeEndian.Uint64(a.Data[8:])
					e.Mapped = binary.NativeEndian.Uint32(a.Data[16:])
					if pad := binary.NativeEndian.Uint32(a.Data[20:]); pad != 0 {
						t.Errorf("NETLINK_DIAG_RING_STATS: ndrs_pad %d, want 0", pad)
					}
				case netlinkDiagPad:
					if len(a.Data) != 0 {
						t.Errorf("NETLINK_DIAG_PAD of %d bytes, want 0", len(a.Data))
					}
				}
			}
			if found && !sameDiag(d, e) {
				t.Errorf("sock_diag reports inode %d twice, differently: %+v and %+v", st.Ino, d, e)
			}
			if !found {
				d, found = e, true
			}
		}
	}
}

func sameDiag(a, b sockDiag) bool {
	return sameRing(a.RX, b.RX) && sameRing(a.TX, b.TX) && a.HasStats == b.HasStats &&
		a.TXFrames == b.TXFrames && a.TXBad == b.TXBad && a.Mapped == b.Mapped && a.Drops == b.Drops
}

// mapped returns ndrs_mapped for fd, failing if the kernel did not report
// ring statistics (it does for every socket with a ring or a mapping).
func mapped(t *testing.T, fd int) uint32 {
	t.Helper()
	d := diag(t, fd)
	if !d.HasStats {
		t.Fatal("sock_diag with NDIAG_SHOW_RING_CFG did not report NETLINK_DIAG_RING_STATS")
	}
	return d.Mapped
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
	rx := mustParams(t, pageSize/2, 4)
	r := newRawRing(t, unix.NETLINK_ROUTE, rx, ring.Params{})
	if err := unix.SetsockoptInt(r.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.RTNLGRP_LINK); err != nil {
		t.Fatal(err)
	}
	since := kernelLog(t)
	d := diag(t, r.fd)
	if !sameRing(d.RX, &rx) || d.Mapped != 1 {
		t.Errorf("sock_diag reports RX %v, mapped %d; want %v, 1", d.RX, d.Mapped, rx)
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
	fd := netlinkSocket(t, unix.NETLINK_ROUTE)
	rx := mustParams(t, pageSize/2, 4)
	want := func(step string, has bool, mapped uint32) {
		t.Helper()
		d := diag(t, fd)
		if d.HasStats != has || d.Mapped != mapped || d.TXFrames != 0 || d.TXBad != 0 {
			t.Errorf("%s: ring stats present %v, mapped %d, TX frames %d/%d; want present %v, mapped %d, no TX frames",
				step, d.HasStats, d.Mapped, d.TXFrames, d.TXBad, has, mapped)
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
