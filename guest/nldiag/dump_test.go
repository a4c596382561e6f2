package nldiag

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"golang.org/x/sys/unix"
)

// fakeConn answers a dump with prepared datagrams.
type fakeConn struct {
	sent    [][]byte
	answer  [][]byte // one datagram per recv
	trunc   bool     // the last datagram did not fit
	recvErr error    // after the answer
	sendErr error
	closed  int
}

func (c *fakeConn) send(b []byte) error {
	c.sent = append(c.sent, append([]byte(nil), b...))
	return c.sendErr
}

func (c *fakeConn) recv(b []byte) (int, bool, error) {
	if len(c.answer) == 0 {
		if c.recvErr == nil {
			return 0, false, unix.EAGAIN
		}
		return 0, false, c.recvErr
	}
	d := c.answer[0]
	c.answer = c.answer[1:]
	return copy(b, d), c.trunc && len(c.answer) == 0, nil
}

func (c *fakeConn) close() error { c.closed++; return nil }

// record is one SOCK_DIAG_BY_FAMILY message as the kernel sends it in a
// dump, with the payload given in hex.
func record(t *testing.T, parts ...string) nlmsg.Message {
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: unix.NLM_F_MULTI, Seq: dumpSeq},
		Data: unhex(t, parts...)}
}

func done(errno unix.Errno) nlmsg.Message {
	code := -int32(errno)
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.NLMSG_DONE, Flags: unix.NLM_F_MULTI, Seq: dumpSeq},
		Data: []byte{byte(code), byte(code >> 8), byte(code >> 16), byte(code >> 24)}}
}

func datagram(msgs ...nlmsg.Message) []byte {
	var b []byte
	for _, m := range msgs {
		b = m.Append(b)
	}
	return b
}

func TestRequest(t *testing.T) {
	c := &fakeConn{answer: [][]byte{datagram(done(0))}}
	if _, err := dump(c, unix.NETLINK_GENERIC, ShowRingCfg|ShowFlags); err != nil {
		t.Fatal(err)
	}
	// struct nlmsghdr: 36 bytes, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST|NLM_F_DUMP, seq 1;
	// struct netlink_diag_req: AF_NETLINK, NETLINK_GENERIC, ino 0, show 0xc, cookie 0.
	want := "24000000" + "1400" + "0103" + "01000000" + "00000000" +
		"1010" + "0000" + "00000000" + "0c000000" + "0000000000000000"
	if len(c.sent) != 1 || hex.EncodeToString(c.sent[0]) != want {
		t.Errorf("sent %x, want %s", c.sent, want)
	}
	if c.closed != 1 {
		t.Errorf("socket closed %d times, want 1", c.closed)
	}
}

func TestDump(t *testing.T) {
	ringRec := record(t, ringHdr, ringGroups, ringMeminfo, ringFlags, ringRX, ringTX, ringStats)
	plainRec := record(t, plainHdr, plainMeminfo, plainFlags)
	tests := []struct {
		name   string
		conn   *fakeConn
		inodes []uint32 // of the records, for a dump that succeeds
		op     string   // of the error, for one that fails
		err    error    // wrapped by the error
		text   string   // in the error
	}{
		{
			name: "OneDatagram",
			conn: &fakeConn{answer: [][]byte{datagram(ringRec, plainRec, ringRec, done(0))}},
			// A bound group member is listed twice.
			inodes: []uint32{25, 1633, 25},
		},
		{
			name:   "DatagramPerRecord",
			conn:   &fakeConn{answer: [][]byte{datagram(plainRec), datagram(ringRec), datagram(done(0))}},
			inodes: []uint32{1633, 25},
		},
		{
			name:   "Empty",
			conn:   &fakeConn{answer: [][]byte{datagram(done(0))}},
			inodes: []uint32{},
		},
		{
			name: "DoneWithError",
			conn: &fakeConn{answer: [][]byte{datagram(plainRec), datagram(done(unix.ENOENT))}},
			op:   "dump", err: unix.ENOENT,
		},
		{
			name: "ErrorMessage",
			conn: &fakeConn{answer: [][]byte{datagram(nlmsg.Message{Header: nlmsg.Header{Type: unix.NLMSG_ERROR, Seq: dumpSeq},
				Data: append([]byte{0xea, 0xff, 0xff, 0xff}, make([]byte, nlmsg.HeaderLen)...)})}}, // -EINVAL
			op: "dump", err: unix.EINVAL,
		},
		{
			name: "Ack",
			conn: &fakeConn{answer: [][]byte{datagram(nlmsg.Message{Header: nlmsg.Header{Type: unix.NLMSG_ERROR, Seq: dumpSeq},
				Data: make([]byte, 4+nlmsg.HeaderLen)})}},
			op: "parse", err: nlmsg.ErrMalformed, text: "message type 2",
		},
		{
			name: "OtherSequence",
			conn: &fakeConn{answer: [][]byte{datagram(func() nlmsg.Message { m := plainRec; m.Seq = 9; return m }(), done(0))}},
			op:   "parse", err: nlmsg.ErrMalformed, text: "sequence number 9",
		},
		{
			name: "MalformedRecord",
			conn: &fakeConn{answer: [][]byte{datagram(plainRec, record(t, ringHdr, ringRX[:24]), done(0))}},
			op:   "parse", err: nlmsg.ErrMalformed, text: "inode 25: attribute length 20",
		},
		{
			name: "MalformedDatagram",
			conn: &fakeConn{answer: [][]byte{datagram(plainRec)[:30]}},
			op:   "parse", err: nlmsg.ErrMalformed,
		},
		{
			name: "Truncated",
			conn: &fakeConn{answer: [][]byte{datagram(plainRec)}, trunc: true},
			op:   "receive", err: unix.EMSGSIZE,
		},
		{
			name: "NoDone",
			conn: &fakeConn{answer: [][]byte{datagram(plainRec)}, recvErr: unix.EAGAIN},
			op:   "receive", err: unix.EAGAIN,
		},
		{
			name: "SendFails",
			conn: &fakeConn{sendErr: unix.ECONNREFUSED},
			op:   "send", err: unix.ECONNREFUSED,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socks, err := dump(tt.conn, unix.NETLINK_ROUTE, ShowAll)
			if tt.conn.closed != 1 {
				t.Errorf("socket closed %d times, want 1", tt.conn.closed)
			}
			if tt.op != "" {
				checkOpError(t, err, tt.op, tt.err, tt.text)
				if socks != nil {
					t.Errorf("records %+v with the error", socks)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			inodes := []uint32{}
			for _, s := range socks {
				inodes = append(inodes, s.Inode)
			}
			if !equal(inodes, tt.inodes) {
				t.Errorf("inodes %v, want %v", inodes, tt.inodes)
			}
		})
	}
}

func TestDumpProtocolRange(t *testing.T) {
	for _, proto := range []int{-1, AllProtocols + 1} {
		c := &fakeConn{}
		_, err := dump(c, proto, ShowAll)
		checkOpError(t, err, "dump", unix.EINVAL, "protocol")
		if len(c.sent) != 0 || c.closed != 1 {
			t.Errorf("protocol %d: %d requests sent, closed %d times; want none, once", proto, len(c.sent), c.closed)
		}
	}
}

func TestLookup(t *testing.T) {
	ringRec := record(t, ringHdr, ringRX, ringStats)
	plainRec := record(t, plainHdr, plainFlags)
	answer := func() *fakeConn {
		return &fakeConn{answer: [][]byte{datagram(ringRec, plainRec), datagram(ringRec, done(0))}}
	}

	recs, err := lookup(answer(), unix.NETLINK_ROUTE, ShowAll, 25)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Inode != 25 || recs[1].Inode != 25 || recs[0].Stats == nil || recs[0].Stats.Mapped != 1 {
		t.Errorf("lookup of inode 25 = %+v, want its two records", recs)
	}
	recs, err = lookup(answer(), unix.NETLINK_ROUTE, ShowAll, 1633)
	if err != nil || len(recs) != 1 || recs[0].PortID != 0x9aaafb3e {
		t.Errorf("lookup of inode 1633 = %+v, %v; want one record", recs, err)
	}
	recs, err = lookup(answer(), unix.NETLINK_ROUTE, ShowAll, 26)
	checkOpError(t, err, "lookup", ErrNotFound, "inode 26 among the 3 sockets of protocol 0")
	if recs != nil {
		t.Errorf("records %+v with the error", recs)
	}
	_, err = lookup(&fakeConn{answer: [][]byte{datagram(done(unix.ENOBUFS))}}, unix.NETLINK_ROUTE, ShowAll, 25)
	checkOpError(t, err, "dump", unix.ENOBUFS, "")
}

func TestOpError(t *testing.T) {
	if err := opError("send", nil); err != nil {
		t.Errorf("opError with a nil error = %v", err)
	}
	err := opError("receive", unix.EAGAIN)
	if got, want := err.Error(), "nldiag: receive: "+unix.EAGAIN.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var nilErr *OpError
	if nilErr.Error() != "<nil>" {
		t.Errorf("nil *OpError: %q", nilErr.Error())
	}
}

func checkOpError(t *testing.T, err error, op string, cause error, text string) {
	t.Helper()
	var oe *OpError
	switch {
	case !errors.As(err, &oe):
		t.Errorf("error %v (%T), want an *OpError", err, err)
	case oe.Op != op:
		t.Errorf("error %v: operation %q, want %q", err, oe.Op, op)
	case !errors.Is(err, cause):
		t.Errorf("error %v does not wrap %v", err, cause)
	case !strings.Contains(err.Error(), text):
		t.Errorf("error %v does not say %q", err, text)
	}
}

func equal(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
