package rxring

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// expect describes one datagram the ring must deliver.
type expect struct {
	what   string
	status ring.Status // VALID or COPY
	group  uint32
	pid    uint32 // nm_pid
	uid    uint32 // nm_uid and nm_gid
	from   uint32 // source port ID recvmsg reports for a COPY frame
	data   []byte // exact contents, or nil to use check
	check  func(b []byte) error
}

// checkRing checks the frames of c's RX ring against want, frame i
// against want[i], reading only (the frames stay where they are), and
// that the frame after them is UNUSED. It returns the nm_len of each.
func checkRing(t *testing.T, c *ring.Conn, want []expect) []uint32 {
	t.Helper()
	lens := make([]uint32, len(want))
	statuses := func() string {
		s := ""
		for i := range int(c.RX().FrameNr) {
			f, _ := c.RawRX(i)
			s += fmt.Sprintf("%d:%v/%d ", i, f.Status(), f.Len())
		}
		return s
	}
	for i, w := range want {
		f, err := c.RawRX(i)
		if err != nil {
			t.Fatal(err)
		}
		st := f.Status()
		if st != w.status {
			t.Fatalf("frame %d (%s) is %v, want %v; ring: %s", i, w.what, st, w.status, statuses())
		}
		lens[i] = f.Len()
		if f.Group() != w.group || f.PortID() != w.pid || f.UID() != w.uid || f.GID() != w.uid {
			t.Errorf("frame %d (%s): nm_group %d nm_pid %d nm_uid %d nm_gid %d, want %d %d %d %d",
				i, w.what, f.Group(), f.PortID(), f.UID(), f.GID(), w.group, w.pid, w.uid, w.uid)
		}
		if w.data != nil && int(f.Len()) != len(w.data) {
			t.Errorf("frame %d (%s): nm_len %d, want %d", i, w.what, f.Len(), len(w.data))
		}
		if st == ring.StatusValid {
			if int(f.Len()) > len(f.Payload()) {
				t.Fatalf("frame %d (%s): nm_len %d exceeds the frame", i, w.what, f.Len())
			}
			if err := w.verify(f.Payload()[:f.Len()]); err != nil {
				t.Errorf("frame %d (%s) in the ring: %v", i, w.what, err)
			}
		}
	}
	if n := int(c.RX().FrameNr); len(want) < n {
		if f, _ := c.RawRX(len(want)); f.Status() != ring.StatusUnused {
			t.Errorf("frame %d after the expected ones is %v, want UNUSED; ring: %s", len(want), f.Status(), statuses())
		}
	}
	return lens
}

func (w expect) verify(b []byte) error {
	if w.data != nil && !bytes.Equal(b, w.data) {
		return fmt.Errorf("contents differ: got %s, want %s", describe(b), describe(w.data))
	}
	if w.check != nil {
		return w.check(b)
	}
	return nil
}

// receiveAll reads len(want) datagrams through the Conn's reader and
// checks them, in order, against want and the nm_len values checkRing
// saw.
func receiveAll(t *testing.T, c *ring.Conn, want []expect, lens []uint32) {
	t.Helper()
	for i, w := range want {
		rec, err := c.Receive()
		if err != nil {
			t.Fatalf("Receive #%d (want %s): %v", i, w.what, err)
		}
		copied := w.status == ring.StatusCopy
		if rec.Copied != copied || rec.Group != w.group {
			t.Errorf("Receive #%d (%s): Copied %v Group %d, want %v %d", i, w.what, rec.Copied, rec.Group, copied, w.group)
		}
		if copied && rec.PortID != w.from {
			t.Errorf("Receive #%d (%s): source port ID %d, want %d", i, w.what, rec.PortID, w.from)
		}
		if len(rec.Data) != int(lens[i]) {
			t.Errorf("Receive #%d (%s): %d bytes, but the frame said nm_len %d", i, w.what, len(rec.Data), lens[i])
		}
		if err := w.verify(rec.Data); err != nil {
			t.Errorf("Receive #%d (%s): %v", i, w.what, err)
		}
	}
	connFD(t, c, func(fd int) {
		if !queueEmpty(t, fd) {
			t.Error("receive queue not empty after the expected datagrams")
		}
		if pollIn(t, fd) {
			t.Error("poll reports POLLIN after the expected datagrams")
		}
	})
}

// isAck returns a check for an NLMSG_ERROR answering seq with code.
func isAck(seq uint32, code int32) func([]byte) error {
	return func(b []byte) error {
		s, c, _, err := ackOf(b)
		if err != nil {
			return err
		}
		if s != seq || c != code {
			return fmt.Errorf("NLMSG_ERROR seq %d code %d, want seq %d code %d", s, c, seq, code)
		}
		return nil
	}
}

// isLinkEvent returns a check for one message of type typ about the
// interface called name.
func isLinkEvent(typ uint16, name string) func([]byte) error {
	return func(b []byte) error {
		msgs, err := nlmsg.Parse(b)
		if err != nil {
			return err
		}
		if len(msgs) != 1 || msgs[0].Type != typ || len(msgs[0].Data) < unix.SizeofIfInfomsg {
			return fmt.Errorf("want one message of type %d, got %s", typ, describe(b))
		}
		attrs, err := nlmsg.Attrs(msgs[0].Data[unix.SizeofIfInfomsg:])
		if err != nil {
			return err
		}
		for _, a := range attrs {
			if a.Type == unix.IFLA_IFNAME {
				if got := string(bytes.TrimRight(a.Data, "\x00")); got != name {
					return fmt.Errorf("event for %q, want %q", got, name)
				}
				return nil
			}
		}
		return errors.New("event without IFLA_IFNAME")
	}
}

// rtnlDo sends an rtnetlink request with NLM_F_ACK on a plain socket and
// returns the error its acknowledgement carries.
func rtnlDo(fd int, m nlmsg.Message) error {
	m.Flags |= unix.NLM_F_REQUEST | unix.NLM_F_ACK
	if err := unix.Sendto(fd, m.Append(nil), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := nlmsg.Parse(buf[:n])
		if err != nil {
			return err
		}
		for _, r := range msgs {
			if r.Type == unix.NLMSG_ERROR && r.Seq == m.Seq {
				return r.Err()
			}
		}
	}
}

// linkMsg is an RTM_NEWLINK/RTM_DELLINK request for the interface name.
func linkMsg(typ uint16, flags uint16, seq uint32, name, kind string) nlmsg.Message {
	b := make([]byte, unix.SizeofIfInfomsg)
	b = nlmsg.AppendString(b, unix.IFLA_IFNAME, name)
	if kind != "" {
		b = nlmsg.AppendAttr(b, unix.IFLA_LINKINFO|unix.NLA_F_NESTED,
			nlmsg.AppendString(nil, unix.IFLA_INFO_KIND, kind))
	}
	return nlmsg.Message{Header: nlmsg.Header{Type: typ, Flags: flags, Seq: seq}, Data: b}
}

// TestCopyFallbackRouteEvents interleaves, on one NETLINK_ROUTE socket
// with an RX ring, RTNLGRP_LINK multicast events (rtnetlink builds them in
// ordinary skbs) with acknowledgements (built in the ring) and an error
// acknowledgement larger than a frame (falls back to an ordinary skb).
// Every datagram must take the next frame in the order it was sent: the
// events and the large ack as COPY frames, nm_group telling the events'
// group, and the reader must return all of them in that order with their
// exact contents, nothing lost.
func TestCopyFallbackRouteEvents(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 6) // acks built in the ring (VALID frames)
	const name = "nlmr0"
	actor := netlinkSocket(t, unix.NETLINK_ROUTE)
	t.Cleanup(func() { rtnlDo(actor, linkMsg(unix.RTM_DELLINK, 0, 99, name, "")) })

	rx := mustParams(t, 512, 16)
	c := dialRing(t, unix.NETLINK_ROUTE, rx)
	if err := c.JoinGroup(unix.RTNLGRP_LINK); err != nil {
		t.Fatal(err)
	}
	send := func(b []byte) {
		connFD(t, c, func(fd int) {
			if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
				t.Fatalf("sendto: %v", err)
			}
		})
	}

	pad := nlmsg.AppendAttr(nil, 0, bytes.Repeat([]byte{0xa5}, 2*rx.MaxPayload()))
	big := getLink(2, unix.NLM_F_ACK, noSuchIfindex, pad)

	send(noopAck(1))
	if err := rtnlDo(actor, linkMsg(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL, 1, name, "dummy")); err != nil {
		t.Fatalf("creating dummy link %s: %v", name, err)
	}
	send(big)
	send(getLink(3, unix.NLM_F_ACK, noSuchIfindex, nil))
	if err := rtnlDo(actor, linkMsg(unix.RTM_DELLINK, 0, 2, name, "")); err != nil {
		t.Fatalf("deleting dummy link %s: %v", name, err)
	}

	enodev := -int32(unix.ENODEV)
	want := []expect{
		{what: "ack of seq 1", status: ring.StatusValid, check: isAck(1, 0)},
		{what: "RTM_NEWLINK event", status: ring.StatusCopy, group: unix.RTNLGRP_LINK, check: isLinkEvent(unix.RTM_NEWLINK, name)},
		{what: "ENODEV ack of seq 2, larger than a frame", status: ring.StatusCopy, check: func(b []byte) error {
			if len(b) <= rx.MaxPayload() {
				return fmt.Errorf("%d bytes fit a frame's %d", len(b), rx.MaxPayload())
			}
			if err := isAck(2, enodev)(b); err != nil {
				return err
			}
			if !bytes.Equal(b[nlmsg.HeaderLen+4:][:len(big)], big) {
				return errors.New("the ack does not carry the request")
			}
			return nil
		}},
		{what: "ENODEV ack of seq 3", status: ring.StatusValid, check: isAck(3, enodev)},
		{what: "RTM_DELLINK event", status: ring.StatusCopy, group: unix.RTNLGRP_LINK, check: isLinkEvent(unix.RTM_DELLINK, name)},
	}
	lens := checkRing(t, c, want)
	receiveAll(t, c, want, lens)
}

// TestCopyFallbackUsersock interleaves NETLINK_USERSOCK messages from
// other sockets to one with an RX ring: unicasts smaller than, exactly
// as large as, and larger than a frame holds, a multicast, and a unicast
// from an unprivileged sender. Messages from user space never go into
// the ring, so each must be announced by a COPY frame, in the order sent,
// nm_len its size, nm_group its group, nm_pid/nm_uid/nm_gid the sender's
// process ID and credentials (not its port ID), and the reader must
// return each exactly, with the sender's port ID as source.
func TestCopyFallbackUsersock(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 4) // COPY frames and dumps in the ring
	const group = 3
	rx := mustParams(t, 512, 16)
	c := dialRing(t, unix.NETLINK_USERSOCK, rx)
	if err := c.JoinGroup(group); err != nil {
		t.Fatal(err)
	}
	dst, err := c.PortID()
	if err != nil {
		t.Fatal(err)
	}

	// The sender binds to a port ID of its own choosing, so that its
	// port ID and its process ID differ.
	sender, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_USERSOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sender)
	var sport uint32
	for i := uint32(0); ; i++ {
		sport = 0x4e4c0000 + uint32(os.Getpid()&0xfff)<<4 + i
		err := unix.Bind(sender, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: sport})
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EADDRINUSE) || i == 15 {
			t.Fatalf("bind sender to port %#x: %v", sport, err)
		}
	}
	pid := uint32(os.Getpid())
	if sport == pid {
		t.Fatalf("sender port ID %d equals the process ID", sport)
	}

	msg := func(seq uint32, size int) []byte {
		data := make([]byte, size-nlmsg.HeaderLen)
		for i := range data {
			data[i] = byte(seq + uint32(i))
		}
		return nlmsg.Message{Header: nlmsg.Header{Type: 0x100, Seq: seq}, Data: data}.Append(nil)
	}
	sendTo := func(fd int, b []byte, port, groups uint32) error {
		return unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: port, Groups: groups})
	}
	maxp := rx.MaxPayload()
	m := [][]byte{
		msg(1, 32),
		msg(2, 3*maxp),
		msg(3, 48),
		msg(4, 64),
		msg(5, maxp),
		msg(6, maxp+4),
		msg(7, 20),
	}
	for i, b := range m[:3] {
		dstPort, groups := dst, uint32(0)
		if i == 2 {
			// A multicast is also unicast to the port ID given (and
			// that port is left out of the multicast). There is no
			// kernel socket at port 0 in NETLINK_USERSOCK, so name
			// the sender's own.
			dstPort, groups = sport, 1<<(group-1)
		}
		if err := sendTo(sender, b, dstPort, groups); err != nil {
			t.Fatalf("sending message %d: %v", i+1, err)
		}
	}
	var nobodyPort uint32
	err = asNobody(func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_USERSOCK)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		nobodyPort = sa.(*unix.SockaddrNetlink).Pid
		return sendTo(fd, m[3], dst, 0)
	})
	if err != nil {
		t.Fatalf("unprivileged sender: %v", err)
	}
	for i, b := range m[4:] {
		if err := sendTo(sender, b, dst, 0); err != nil {
			t.Fatalf("sending message %d: %v", i+5, err)
		}
	}

	want := []expect{
		{what: "small unicast", data: m[0]},
		{what: "unicast of 3 frames' payload", data: m[1]},
		{what: "multicast", data: m[2], group: group},
		{what: "unicast from uid 65534", data: m[3], uid: nobody, from: nobodyPort},
		{what: "unicast of exactly a frame's payload", data: m[4]},
		{what: "unicast of a frame's payload + 4", data: m[5]},
		{what: "small unicast after large ones", data: m[6]},
	}
	for i := range want {
		want[i].status = ring.StatusCopy
		want[i].pid = pid
		if want[i].from == 0 {
			want[i].from = sport
		}
	}
	lens := checkRing(t, c, want)
	receiveAll(t, c, want, lens)
}
