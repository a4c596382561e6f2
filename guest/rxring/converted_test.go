package rxring

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// TestConvertedAck checks messages the kernel builds directly in the
// receiver's ring, acknowledgements: a plain ack and an error ack each
// arrive in a VALID frame whose nm_len is the message's exact length,
// nm_pid, nm_group and the credentials 0 (the kernel sent it), with
// nothing on the receive queue, so no recvmsg is needed. The message is
// the one netlink_ack builds: NLMSG_ERROR to the requester's port ID,
// the request's header echoed (the whole request for an error). A
// reply built the ordinary way before its ack (RTM_GETLINK of lo) takes
// the frame before the ack's, as a COPY frame.
func TestConvertedAck(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 6) // acks built in the ring (VALID frames)
	rx := mustParams(t, 512, 8)
	c := dialRing(t, unix.NETLINK_ROUTE, rx)
	port, err := c.PortID()
	if err != nil {
		t.Fatal(err)
	}
	send := func(b []byte) {
		connFD(t, c, func(fd int) {
			if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
				t.Fatalf("sendto: %v", err)
			}
		})
	}
	reqs := [][]byte{noopAck(1), getLink(2, unix.NLM_F_ACK, noSuchIfindex, nil)}
	for _, r := range reqs {
		send(r)
	}

	// ack checks the NLMSG_ERROR header and what it echoes.
	ack := func(req []byte, code int32) func([]byte) error {
		return func(b []byte) error {
			msgs, err := nlmsg.Parse(b)
			if err != nil {
				return err
			}
			if len(msgs) != 1 || int(msgs[0].Len) != len(b) {
				return fmt.Errorf("want one message filling the datagram, got %s", describe(b))
			}
			m := msgs[0]
			_, c, echo, err := ackOf(b)
			if err != nil {
				return err
			}
			switch {
			case m.PortID != port:
				return fmt.Errorf("nlmsg_pid %d, want the requester's port ID %d", m.PortID, port)
			case c != code:
				return fmt.Errorf("error code %d, want %d", c, code)
			case !bytes.Equal(m.Data[4:4+nlmsg.HeaderLen], req[:nlmsg.HeaderLen]):
				return fmt.Errorf("echoed header %+v, want the request's (% x)", echo, req[:nlmsg.HeaderLen])
			case code == 0 && (m.Flags&unix.NLM_F_CAPPED == 0 || len(b) != nlmsg.HeaderLen+4+nlmsg.HeaderLen):
				return fmt.Errorf("ack of %d bytes, flags %#x: want a capped ack of %d bytes",
					len(b), m.Flags, nlmsg.HeaderLen+4+nlmsg.HeaderLen)
			case code != 0 && !bytes.Equal(m.Data[4:][:min(len(req), len(m.Data)-4)], req):
				return fmt.Errorf("error ack does not carry the whole request (%d bytes)", len(req))
			}
			return nil
		}
	}
	want := []expect{
		{what: "ack of NLMSG_NOOP", status: ring.StatusValid, check: ack(reqs[0], 0)},
		{what: "ENODEV ack of RTM_GETLINK", status: ring.StatusValid, check: ack(reqs[1], -int32(unix.ENODEV))},
	}
	lens := checkRing(t, c, want)
	for i, l := range lens {
		f, _ := c.RawRX(i)
		if got := nlmsgLenOf(f.Payload()); got != l {
			t.Errorf("frame %d: nm_len %d, but the message's nlmsg_len is %d", i, l, got)
		}
	}
	connFD(t, c, func(fd int) {
		if !queueEmpty(t, fd) {
			t.Error("receive queue holds a datagram, but both acks are in VALID frames")
		}
		if !pollIn(t, fd) {
			t.Error("poll does not report POLLIN with two VALID frames waiting")
		}
	})

	// A reply built in an ordinary skb, then the ack built in the ring.
	reqs = append(reqs, getLink(3, unix.NLM_F_ACK, 1, nil))
	send(reqs[2])
	want = append(want,
		expect{what: "RTM_NEWLINK reply for lo", status: ring.StatusCopy, check: isLinkEvent(unix.RTM_NEWLINK, "lo")},
		expect{what: "ack of RTM_GETLINK lo", status: ring.StatusValid, check: ack(reqs[2], 0)},
	)
	lens = checkRing(t, c, want)
	receiveAll(t, c, want, lens)
}

// nlmsgLenOf reads nlmsg_len of the message at the start of b.
func nlmsgLenOf(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }
