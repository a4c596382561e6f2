package taps

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
)

// dialRing opens a NETLINK_ROUTE socket with an RX and a TX ring, or skips
// the test on a kernel without memory-mapped netlink.
func dialRing(t *testing.T) *ring.Conn {
	t.Helper()
	// Messages built in the RX ring (patch 06), requests sent through the
	// TX ring (patch 08).
	guesttest.NeedsPatch(t, 8)
	p, err := ring.ParamsFor(4096, 16)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ring.Dial(unix.NETLINK_ROUTE, ring.Config{RX: p, TX: p})
	if errors.Is(err, ring.ErrNotSupported) {
		t.Skipf("kernel without memory-mapped netlink (setsockopt NETLINK_RX_RING: ENOPROTOOPT): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rtnl sends one request on a plain NETLINK_ROUTE socket and waits for its
// ack.
func rtnl(t *testing.T, typ, flags uint16, ifi unix.IfInfomsg, attrs []byte) error {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	body := make([]byte, unix.SizeofIfInfomsg)
	body[0] = ifi.Family
	binary.NativeEndian.PutUint16(body[2:], ifi.Type)
	binary.NativeEndian.PutUint32(body[4:], uint32(ifi.Index))
	binary.NativeEndian.PutUint32(body[8:], ifi.Flags)
	binary.NativeEndian.PutUint32(body[12:], ifi.Change)
	msg := nlmsg.Message{Header: nlmsg.Header{Type: typ, Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK | flags, Seq: 1},
		Data: append(body, attrs...)}
	if err := unix.Sendto(fd, msg.Append(nil), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatalf("send %d: %v", typ, err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("receive ack of %d: %v", typ, err)
		}
		ms, err := nlmsg.Parse(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Type == unix.NLMSG_ERROR {
				return m.Err()
			}
		}
	}
}

// addNlmon creates a netlink tap device that is up and returns its index.
func addNlmon(t *testing.T, name string) int {
	t.Helper()
	kind := nlmsg.AppendString(nil, unix.IFLA_INFO_KIND, "nlmon")
	attrs := nlmsg.AppendString(nil, unix.IFLA_IFNAME, name)
	attrs = nlmsg.AppendAttr(attrs, unix.IFLA_LINKINFO, kind)
	err := rtnl(t, unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL,
		unix.IfInfomsg{Flags: unix.IFF_UP, Change: unix.IFF_UP}, attrs)
	if errors.Is(err, unix.EOPNOTSUPP) {
		t.Skipf("kernel without nlmon (CONFIG_NLMON): %v", err)
	}
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rtnl(t, unix.RTM_DELLINK, 0, unix.IfInfomsg{Index: int32(ifc.Index)}, nil); err != nil {
			t.Errorf("delete %s: %v", name, err)
		}
	})
	return ifc.Index
}

// capture opens a packet socket on the tap device, or returns -1 on a
// kernel without packet sockets (CONFIG_PACKET).
func capture(t *testing.T, ifindex int) int {
	t.Helper()
	proto := uint16(unix.ETH_P_ALL)
	proto = proto<<8 | proto>>8 // network byte order
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
	if errors.Is(err, unix.EAFNOSUPPORT) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval((2 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return fd
}

// tapPackets reads how many messages a tap device was handed.
func tapPackets(t *testing.T, dev string) uint64 {
	t.Helper()
	b, err := os.ReadFile("/sys/class/net/" + dev + "/statistics/rx_packets")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func getLink(seq uint32, ifindex int32) []byte {
	body := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(body[4:], uint32(ifindex))
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.RTM_GETLINK, Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK, Seq: seq},
		Data: body}.Append(nil)
}

// TestTapSeesRingMessages: acks built in the RX ring reach an nlmon tap as
// copies with the same bytes, and the ring reader still gets them.
func TestTapSeesRingMessages(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	c := dialRing(t)
	ifindex := addNlmon(t, "nlmon0")
	cap := capture(t, ifindex)
	before := tapPackets(t, "nlmon0")

	const seq = 0x5eed
	// An ack for an existing link (built in the ring) and an error ack
	// (ENODEV, also built in the ring).
	if err := c.Send(getLink(seq, 1)); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(getLink(seq+1, 0x7fff0000)); err != nil {
		t.Fatal(err)
	}

	ring := map[uint32][]byte{} // seq -> NLMSG_ERROR bytes seen in the ring
	deadline := time.Now().Add(5 * time.Second)
	c.SetReadDeadline(deadline)
	for len(ring) < 2 {
		rec, err := c.Receive()
		if err != nil {
			t.Fatalf("ring receive: %v (have %d acks)", err, len(ring))
		}
		ms, err := nlmsg.Parse(rec.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Type == unix.NLMSG_ERROR && (m.Seq == seq || m.Seq == seq+1) {
				if rec.Info.Copied {
					t.Errorf("ack %#x arrived through a COPY frame, want it built in the ring", m.Seq)
				}
				ring[m.Seq] = m.Append(nil)
			}
		}
	}

	// nlmon counts what it is given as received packets.
	if after := tapPackets(t, "nlmon0"); after < before+2 {
		t.Errorf("nlmon0 saw %d messages while two acks were delivered", after-before)
	}
	if cap < 0 {
		t.Log("no packet sockets (CONFIG_PACKET): checked the tap's counter, not the bytes it got")
		return
	}

	tapped := map[uint32][]byte{}
	buf := make([]byte, 65536)
	for len(tapped) < 2 && time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(cap, buf, 0)
		if err != nil {
			t.Fatalf("capture on nlmon0: %v (have %d of 2 acks)", err, len(tapped))
		}
		ms, err := nlmsg.Parse(buf[:n])
		if err != nil {
			continue // not a netlink message we can parse: ignore
		}
		for _, m := range ms {
			if m.Type == unix.NLMSG_ERROR && (m.Seq == seq || m.Seq == seq+1) {
				tapped[m.Seq] = m.Append(nil)
			}
		}
	}
	for s, want := range ring {
		got, ok := tapped[s]
		if !ok {
			t.Errorf("the tap never saw the ack of seq %#x", s)
			continue
		}
		if string(got) != string(want) {
			t.Errorf("the tap's copy of ack %#x differs from the ring's:\n tap  %x\n ring %x", s, got, want)
		}
	}
}

// TestFilterGetsOrdinarySkbs: a socket filter on a ring socket sees every
// message (it runs on ordinary skbs), its verdict is applied, and what
// passes still arrives in the ring.
func TestFilterGetsOrdinarySkbs(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	for _, tc := range []struct {
		name   string
		accept bool
	}{{"accept", true}, {"drop", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRing(t)
			k := uint32(0)
			if tc.accept {
				k = 0xffff
			}
			prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: k}}
			fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
			raw, err := c.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var serr error
			raw.Control(func(fd uintptr) {
				serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog)
			})
			if serr != nil {
				t.Fatal(serr)
			}
			if err := c.Send(getLink(7, 1)); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			got := 0
			for {
				rec, err := c.Receive()
				if err != nil {
					var oe *ring.OpError
					if errors.As(err, &oe) && oe.Timeout() {
						break
					}
					t.Fatal(err)
				}
				got++
				if !rec.Info.Copied {
					t.Errorf("with a socket filter a message arrived built in the ring; want COPY (filters see ordinary skbs)")
				}
			}
			if tc.accept && got == 0 {
				t.Error("the accepting filter let nothing through")
			}
			if !tc.accept && got != 0 {
				t.Errorf("the dropping filter let %d datagram(s) through", got)
			}
		})
	}
}
