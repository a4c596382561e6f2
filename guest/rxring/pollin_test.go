package rxring

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// nfnetlink_log (include/uapi/linux/netfilter/nfnetlink_log.h).
const (
	nfnlSubsysULOG   = 4
	nfulnlMsgPacket  = nfnlSubsysULOG<<8 | 0
	nfulnlMsgConfig  = nfnlSubsysULOG<<8 | 1
	nfulaCfgCmd      = 1
	nfulaCfgMode     = 2
	nfulaCfgTimeout  = 4
	nfulaCfgQthresh  = 5
	nfulnlCmdBind    = 1
	nfulnlCmdUnbind  = 2
	nfulnlCopyPacket = 2

	// pollLogGroup is the log group of TestPollInOffBehindReserved; the
	// nfq tests use others.
	pollLogGroup = 11
)

// nflogConfig is NFULNL_MSG_CONFIG for group with NLM_F_ACK: cmd, and
// for a bind also copy mode (64 bytes of packet), flush timeout
// (hundredths of a second) and queue threshold.
func nflogConfig(seq uint32, group uint16, cmd uint8, timeout, qthresh uint32) []byte {
	b := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], group)
	b = nlmsg.AppendAttr(b, nfulaCfgCmd, []byte{cmd})
	if cmd == nfulnlCmdBind {
		mode := binary.BigEndian.AppendUint32(nil, 64)
		b = nlmsg.AppendAttr(b, nfulaCfgMode, append(mode, nfulnlCopyPacket, 0))
		b = nlmsg.AppendAttr(b, nfulaCfgTimeout, binary.BigEndian.AppendUint32(nil, timeout))
		b = nlmsg.AppendAttr(b, nfulaCfgQthresh, binary.BigEndian.AppendUint32(nil, qthresh))
	}
	return nlmsg.Message{Header: nlmsg.Header{Type: nfulnlMsgConfig,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK, Seq: seq}, Data: b}.Append(nil)
}

// setLinkUp brings interface ifindex up.
func setLinkUp(t *testing.T, ifindex int32) {
	t.Helper()
	fd := netlinkSocket(t, unix.NETLINK_ROUTE)
	ifi := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(ifi[4:], uint32(ifindex))
	binary.NativeEndian.PutUint32(ifi[8:], unix.IFF_UP)  // ifi_flags
	binary.NativeEndian.PutUint32(ifi[12:], unix.IFF_UP) // ifi_change
	req := nlmsg.Message{Header: nlmsg.Header{Type: unix.RTM_NEWLINK,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK, Seq: 1}, Data: ifi}.Append(nil)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatalf("RTM_NEWLINK: %v", err)
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		t.Fatalf("RTM_NEWLINK ack: %v", err)
	}
	if _, code, _, err := ackOf(buf[:n]); err != nil || code != 0 {
		t.Fatalf("setting link %d up: code %d, %v", ifindex, code, err)
	}
}

// logUDPTo installs, in an inet table of its own deleted when the test
// ends, a rule on the output hook that logs UDP through lo to dport to
// log group group.
func logUDPTo(t *testing.T, dport int, group uint16) {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatalf("nftables: %v", err)
	}
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "rxring_pollin"})
	chain := c.AddChain(&nftables.Chain{Name: "out", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter})
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIF, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(1)},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(dport))},
		&expr.Log{Key: 1 << unix.NFTA_LOG_GROUP, Group: group},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables: add table: %v", err)
	}
	t.Cleanup(func() {
		c.DelTable(table)
		if err := c.Flush(); err != nil {
			t.Errorf("nftables: delete table: %v", err)
		}
	})
}

// TestPollInOffBehindReserved checks that POLLIN stays off while the
// oldest frame user space has not handed back is RESERVED, even with a
// VALID frame behind it: the reader reads in ring order and must wait.
// An nfnetlink_log batch holds its frame RESERVED until it is flushed;
// with a flush timeout of a minute and a threshold of 100 packets, one
// logged packet keeps it open, and an ack sent meanwhile lands in the
// frame after it. Unbinding the group flushes the batch: POLLIN goes on.
func TestPollInOffBehindReserved(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 11) // nflog batches held RESERVED in the RX ring
	setLinkUp(t, 1)
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen UDP: %v", err)
	}
	defer recv.Close()
	send, err := net.DialUDP("udp4", nil, recv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatalf("dial UDP: %v", err)
	}
	defer send.Close()

	r := newRawRing(t, unix.NETLINK_NETFILTER, mustParams(t, pageSize, 4), ring.Params{})
	r.send(t, nflogConfig(1, pollLogGroup, nfulnlCmdBind, 6000, 100))
	r.wantAcks(t, []int{0}, []uint32{1})
	r.rx.setStatus(0, ring.StatusUnused)
	logUDPTo(t, recv.LocalAddr().(*net.UDPAddr).Port, pollLogGroup)

	want := func(when string, in bool) {
		t.Helper()
		if got := pollIn(t, r.fd); got != in {
			t.Errorf("%s: POLLIN %v, want %v; ring: %s", when, got, in, r.rx.statuses())
		}
	}
	if _, err := send.Write([]byte("logged")); err != nil {
		t.Fatalf("UDP send: %v", err)
	}
	if st := r.rx.status(1); st != ring.StatusReserved {
		t.Fatalf("frame 1 is %v after a logged packet, want RESERVED (an open batch); ring: %s", st, r.rx.statuses())
	}
	want("open batch in frame 1", false)
	r.send(t, noopAck(2))
	r.wantAcks(t, []int{2}, []uint32{2})
	want("VALID frame 2 behind the open batch in frame 1", false)

	r.send(t, nflogConfig(3, pollLogGroup, nfulnlCmdUnbind, 0, 0))
	if st := r.rx.status(1); st != ring.StatusValid {
		t.Fatalf("frame 1 is %v after unbinding, want VALID (the flushed batch); ring: %s", st, r.rx.statuses())
	}
	msgs, err := nlmsg.Parse(r.rx.payload(1)[:r.rx.hdr(1).Len])
	if err != nil || len(msgs) == 0 || msgs[0].Type != nfulnlMsgPacket {
		t.Errorf("frame 1 holds %s, want NFULNL_MSG_PACKET (%v)", describe(r.rx.payload(1)[:r.rx.hdr(1).Len]), err)
	}
	r.wantAcks(t, []int{3}, []uint32{3})
	want("batch flushed", true)
	r.rx.setStatus(1, ring.StatusUnused)
	want("frame 2 (ack) is the oldest", true)
	for _, i := range []int{2, 3} {
		r.rx.setStatus(i, ring.StatusUnused)
	}
	want("all given back", false)
}
