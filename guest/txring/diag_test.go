package txring

// Reading a netlink socket's ring configuration and counters through
// NETLINK_SOCK_DIAG, from a separate plain socket.

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// From include/uapi/linux/netlink_diag.h; x/sys/unix lacks them.
const (
	ndiagShowMeminfo = 0x1
	ndiagShowRingCfg = 0x4
	ndiagShowFlags   = 0x8

	netlinkDiagMeminfo   = 0
	netlinkDiagRXRing    = 2
	netlinkDiagTXRing    = 3
	netlinkDiagFlags     = 4
	netlinkDiagRingStats = 5
	netlinkDiagPad       = 6

	ndiagFlagCBRunning = 0x1

	sizeofNetlinkDiagReq  = 24
	sizeofNetlinkDiagMsg  = 28
	sizeofDiagRing        = 16
	sizeofDiagRingStats   = 24
	sizeofSKMeminfoDrop   = 4 * (unix.SK_MEMINFO_DROPS + 1)
	diagReceiveBufferSize = 64 << 10
)

// ringStats is struct netlink_diag_ring_stats.
type ringStats struct {
	TXFrames  uint64 // ndrs_tx_frames: TX frames sent
	TXInvalid uint64 // ndrs_tx_invalid: TX frames rejected
	Mapped    uint32 // ndrs_mapped: mappings of the rings
	Pad       uint32 // ndrs_pad: must be zero
}

// sockDiag is what a SOCK_DIAG_BY_FAMILY dump says about one netlink
// socket, asked with NDIAG_SHOW_RING_CFG, NDIAG_SHOW_FLAGS and
// NDIAG_SHOW_MEMINFO.
type sockDiag struct {
	Protocol uint8
	PortID   uint32
	Ino      uint32
	Flags    uint32       // NETLINK_DIAG_FLAGS
	RX, TX   *ring.Params // NETLINK_DIAG_RX_RING/TX_RING, nil when absent
	Stats    *ringStats   // NETLINK_DIAG_RING_STATS, nil when absent
	Drops    uint32       // SK_MEMINFO_DROPS of NETLINK_DIAG_MEMINFO
	// Attrs are the attribute types in the order they came.
	Attrs []uint16
}

const diagShowAll = ndiagShowRingCfg | ndiagShowFlags | ndiagShowMeminfo

// diagNetlink dumps the netlink sockets of one protocol, asking for
// everything.
func diagNetlink(proto int) ([]sockDiag, error) { return diagNetlinkShow(proto, diagShowAll) }

// diagNetlinkShow dumps the netlink sockets of one protocol with the
// given NDIAG_SHOW_* flags.
func diagNetlinkShow(proto int, show uint32) ([]sockDiag, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("socket NETLINK_SOCK_DIAG: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval((30 * time.Second).Nanoseconds()) // a hang guard only
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}

	req := make([]byte, sizeofNetlinkDiagReq)
	req[0] = unix.AF_NETLINK
	req[1] = uint8(proto)
	binary.NativeEndian.PutUint32(req[8:], show)
	binary.NativeEndian.PutUint32(req[12:], ^uint32(0)) // any cookie
	binary.NativeEndian.PutUint32(req[16:], ^uint32(0))
	msg := nlmsg.Message{Header: nlmsg.Header{Type: unix.SOCK_DIAG_BY_FAMILY,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: 1}, Data: req}
	if err := unix.Sendto(fd, msg.Append(nil), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send SOCK_DIAG_BY_FAMILY: %w", err)
	}

	var socks []sockDiag
	buf := make([]byte, diagReceiveBufferSize)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("receive SOCK_DIAG_BY_FAMILY: %w", err)
		}
		msgs, err := nlmsg.Parse(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch {
			case m.Type == unix.NLMSG_DONE:
				return socks, m.DoneErr()
			case m.Err() != nil:
				return nil, m.Err()
			case m.Type != unix.SOCK_DIAG_BY_FAMILY:
				return nil, fmt.Errorf("unexpected message type %d in the diag dump", m.Type)
			}
			s, err := parseSockDiag(m.Data)
			if err != nil {
				return nil, err
			}
			socks = append(socks, s)
		}
	}
}

func parseSockDiag(b []byte) (sockDiag, error) {
	if len(b) < sizeofNetlinkDiagMsg {
		return sockDiag{}, fmt.Errorf("netlink_diag_msg of %d bytes", len(b))
	}
	s := sockDiag{
		Protocol: b[2],
		PortID:   binary.NativeEndian.Uint32(b[4:]),
		Ino:      binary.NativeEndian.Uint32(b[16:]),
	}
	attrs, err := nlmsg.Attrs(b[nlmsg.Align(sizeofNetlinkDiagMsg):])
	if err != nil {
		return s, err
	}
	// Attributes are parsed by type: NETLINK_DIAG_PAD may come before
	// NETLINK_DIAG_RING_STATS to align its 64-bit counters.
	for i, a := range attrs {
		s.Attrs = append(s.Attrs, a.Type)
		switch a.Type {
		case netlinkDiagRXRing, netlinkDiagTXRing:
			if len(a.Data) != sizeofDiagRing {
				return s, fmt.Errorf("ring attribute %d of %d bytes", a.Type, len(a.Data))
			}
			p := &ring.Params{
				BlockSize: binary.NativeEndian.Uint32(a.Data),
				BlockNr:   binary.NativeEndian.Uint32(a.Data[4:]),
				FrameSize: binary.NativeEndian.Uint32(a.Data[8:]),
				FrameNr:   binary.NativeEndian.Uint32(a.Data[12:]),
			}
			if a.Type == netlinkDiagRXRing {
				s.RX = p
			} else {
				s.TX = p
			}
		case netlinkDiagRingStats:
			if len(a.Data) != sizeofDiagRingStats {
				return s, fmt.Errorf("NETLINK_DIAG_RING_STATS of %d bytes, want %d", len(a.Data), sizeofDiagRingStats)
			}
			if s.Stats != nil {
				return s, fmt.Errorf("NETLINK_DIAG_RING_STATS twice")
			}
			s.Stats = &ringStats{
				TXFrames:  binary.NativeEndian.Uint64(a.Data),
				TXInvalid: binary.NativeEndian.Uint64(a.Data[8:]),
				Mapped:    binary.NativeEndian.Uint32(a.Data[16:]),
				Pad:       binary.NativeEndian.Uint32(a.Data[20:]),
			}
		case netlinkDiagPad:
			// nla_align_64bit() puts an empty one right before the
			// attribute it aligns, and only before that.
			if len(a.Data) != 0 {
				return s, fmt.Errorf("NETLINK_DIAG_PAD of %d bytes, want 0", len(a.Data))
			}
			if i+1 >= len(attrs) || attrs[i+1].Type != netlinkDiagRingStats {
				return s, fmt.Errorf("NETLINK_DIAG_PAD not followed by NETLINK_DIAG_RING_STATS")
			}
		case netlinkDiagFlags:
			if len(a.Data) >= 4 {
				s.Flags = binary.NativeEndian.Uint32(a.Data)
			}
		case netlinkDiagMeminfo:
			if len(a.Data) >= sizeofSKMeminfoDrop {
				s.Drops = binary.NativeEndian.Uint32(a.Data[4*unix.SK_MEMINFO_DROPS:])
			}
		}
	}
	return s, nil
}

// diagSocket returns the diag record of the socket with inode ino.
func diagSocket(t testing.TB, proto int, ino uint32) sockDiag {
	t.Helper()
	socks, err := diagNetlink(proto)
	if err != nil {
		t.Fatalf("sock_diag dump of netlink protocol %d: %v", proto, err)
	}
	for _, s := range socks {
		if s.Ino == ino {
			return s
		}
	}
	t.Fatalf("sock_diag: no netlink socket of protocol %d with inode %d among %d", proto, ino, len(socks))
	return sockDiag{}
}

// ringStatsOf returns the ring counters of the socket with inode ino.
func ringStatsOf(t testing.TB, proto int, ino uint32) ringStats {
	t.Helper()
	s := diagSocket(t, proto, ino)
	if s.Stats == nil {
		t.Fatalf("sock_diag: socket %d has no NETLINK_DIAG_RING_STATS", ino)
	}
	return *s.Stats
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
