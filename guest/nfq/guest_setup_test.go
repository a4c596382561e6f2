package nfq_test

// Set-up shared by the guest tests: the loopback interface, nftables rules
// that queue or log loopback UDP to a test port, UDP sockets, and checks of
// the IPv4/UDP packets the kernel hands to the listener.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/nlmmap/nlmmap/guest/nfq"
	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"golang.org/x/sys/unix"
)

// readTimeout bounds every wait for a packet: the kernel delivers at once,
// so running into it means a packet was lost.
const readTimeout = 15 * time.Second

// loopbackUp brings lo (ifindex 1) up with RTM_NEWLINK, as the bare guest
// does not; the kernel then adds 127.0.0.1/8 to it.
func loopbackUp(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("socket NETLINK_ROUTE: %v", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(readTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatalf("SO_RCVTIMEO: %v", err)
	}
	ifi := make([]byte, unix.SizeofIfInfomsg)
	ifi[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(ifi[4:], 1)            // ifi_index
	binary.NativeEndian.PutUint32(ifi[8:], unix.IFF_UP)  // ifi_flags
	binary.NativeEndian.PutUint32(ifi[12:], unix.IFF_UP) // ifi_change
	req := nlmsg.Message{Header: nlmsg.Header{Type: unix.RTM_NEWLINK,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK, Seq: 1}, Data: ifi}
	if err := unix.Sendto(fd, req.Append(nil), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatalf("RTM_NEWLINK: %v", err)
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		t.Fatalf("RTM_NEWLINK ack: %v", err)
	}
	msgs, err := nlmsg.Parse(buf[:n])
	if err != nil || len(msgs) == 0 || msgs[0].Type != unix.NLMSG_ERROR {
		t.Fatalf("RTM_NEWLINK answer %x: %v", buf[:n], err)
	}
	if err := msgs[0].Err(); err != nil {
		t.Fatalf("RTM_NEWLINK lo up: %v", err)
	}
}

// udpPair returns a socket listening on 127.0.0.1 (port chosen by the
// kernel) and a socket connected to it.
func udpPair(t *testing.T) (recv, send *net.UDPConn) {
	t.Helper()
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen UDP on 127.0.0.1: %v", err)
	}
	t.Cleanup(func() { recv.Close() })
	if err := recv.SetReadBuffer(4 << 20); err != nil {
		t.Fatalf("SO_RCVBUF: %v", err)
	}
	send = dialUDP(t, recv)
	return recv, send
}

func dialUDP(t *testing.T, to *net.UDPConn) *net.UDPConn {
	t.Helper()
	send, err := net.DialUDP("udp4", nil, to.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatalf("dial UDP: %v", err)
	}
	t.Cleanup(func() { send.Close() })
	return send
}

func port(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

// ruleSet installs, in a table of its own in family inet, a chain on the
// output hook whose rules match UDP leaving through lo to dport and then
// run the given statements, one rule each. The table is deleted when the
// test ends.
func ruleSet(t *testing.T, dport int, statements ...[]expr.Any) {
	t.Helper()
	name := "nfqtest_" + strings.NewReplacer("/", "_", " ", "_", ",", "_").Replace(t.Name())
	if len(name) > 200 {
		name = name[:200]
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatalf("nftables: %v", err)
	}
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: name})
	chain := c.AddChain(&nftables.Chain{
		Name:     "out",
		Table:    table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookOutput,
		Priority: nftables.ChainPriorityFilter,
	})
	for _, st := range statements {
		exprs := []expr.Any{
			// meta oif 1 (lo)
			&expr.Meta{Key: expr.MetaKeyOIF, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(1)},
			// meta l4proto udp
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			// udp dport
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(dport))},
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: append(exprs, st...)})
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables: add table %s: %v", name, err)
	}
	t.Cleanup(func() {
		c, err := nftables.New()
		if err != nil {
			t.Errorf("nftables: %v", err)
			return
		}
		c.DelTable(table)
		if err := c.Flush(); err != nil {
			t.Errorf("nftables: delete table %s: %v", name, err)
		}
	})
}

func queueStmt(num uint16) []expr.Any { return []expr.Any{&expr.Queue{Num: num}} }

func logStmt(group uint16, prefix string) []expr.Any {
	return []expr.Any{&expr.Log{
		Key:   1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX,
		Group: group,
		Data:  []byte(prefix),
	}}
}

// dial opens an nfq.Conn closed at the end of the test.
func dial(t *testing.T, opts nfq.Options) *nfq.Conn {
	t.Helper()
	c, err := nfq.Dial(opts)
	if err != nil {
		t.Fatalf("nfq.Dial(%+v): %v", opts, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if !c.Mapped() && !opts.NoRings {
		t.Logf("no memory-mapped netlink (ENOPROTOOPT): listening with recvmsg/sendmsg")
	}
	return c
}

// payload returns the distinct data of datagram i of a test: a readable
// tag and a pattern, of a length that varies with i.
func payload(tag string, i, size int) []byte {
	b := []byte(fmt.Sprintf("%s #%04d|", tag, i))
	for j := 0; len(b) < size; j++ {
		b = append(b, byte('a'+(i+j)%26))
	}
	return b
}

// payloadSize varies the size of datagram i between 40 and 160 bytes.
func payloadSize(i int) int { return 40 + (i*37)%121 }

// parseIndex recovers i from a payload made by payload(tag, i, _).
func parseIndex(tag string, b []byte) (int, bool) {
	var i int
	if !bytes.HasPrefix(b, []byte(tag+" #")) {
		return 0, false
	}
	if _, err := fmt.Sscanf(string(b[len(tag)+2:]), "%04d|", &i); err != nil {
		return 0, false
	}
	return i, true
}

var loopbackIP = [4]byte{127, 0, 0, 1}

// checkIPv4UDP checks that pkt is an IPv4/UDP packet from 127.0.0.1:sport
// to 127.0.0.1:dport, with a valid IP header checksum and, with csum, a
// valid UDP checksum, and returns its UDP data.
func checkIPv4UDP(pkt []byte, sport, dport int, csum bool) ([]byte, error) {
	if len(pkt) < 28 {
		return nil, fmt.Errorf("packet of %d bytes", len(pkt))
	}
	if pkt[0]>>4 != 4 {
		return nil, fmt.Errorf("IP version %d", pkt[0]>>4)
	}
	ihl := int(pkt[0]&0xf) * 4
	if ihl < 20 || len(pkt) < ihl+8 {
		return nil, fmt.Errorf("IHL %d in a packet of %d bytes", ihl, len(pkt))
	}
	if tot := int(binary.BigEndian.Uint16(pkt[2:])); tot != len(pkt) {
		return nil, fmt.Errorf("IP total length %d, packet of %d bytes", tot, len(pkt))
	}
	if pkt[9] != unix.IPPROTO_UDP {
		return nil, fmt.Errorf("IP protocol %d, want UDP", pkt[9])
	}
	if [4]byte(pkt[12:16]) != loopbackIP || [4]byte(pkt[16:20]) != loopbackIP {
		return nil, fmt.Errorf("addresses %v -> %v", net.IP(pkt[12:16]), net.IP(pkt[16:20]))
	}
	if s := inetSum(0, pkt[:ihl]); s != 0xffff {
		return nil, fmt.Errorf("IP header checksum wrong (sum %#x)", s)
	}
	udp := pkt[ihl:]
	if sp, dp := int(binary.BigEndian.Uint16(udp)), int(binary.BigEndian.Uint16(udp[2:])); sp != sport || dp != dport {
		return nil, fmt.Errorf("UDP ports %d -> %d, want %d -> %d", sp, dp, sport, dport)
	}
	if ul := int(binary.BigEndian.Uint16(udp[4:])); ul != len(udp) {
		return nil, fmt.Errorf("UDP length %d, %d bytes after the IP header", ul, len(udp))
	}
	if csum && binary.BigEndian.Uint16(udp[6:]) != 0 {
		// Pseudo-header: addresses, protocol, UDP length.
		ph := append(append([]byte(nil), pkt[12:20]...), 0, unix.IPPROTO_UDP)
		ph = binary.BigEndian.AppendUint16(ph, uint16(len(udp)))
		if s := inetSum(inetSum(0, ph), udp); s != 0xffff {
			return nil, fmt.Errorf("UDP checksum %#04x wrong (sum %#x)", binary.BigEndian.Uint16(udp[6:]), s)
		}
	}
	return udp[8:], nil
}

// inetSum adds b to the one's complement sum s (RFC 1071).
func inetSum(s uint32, b []byte) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		s += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return s
}

// receiveUDP reads datagrams from recv until one equals last, and returns
// all of them but last, in order of arrival. Then it checks that nothing
// else is queued on the socket.
func receiveUDP(t *testing.T, recv *net.UDPConn, last []byte) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 65536)
	if err := recv.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := recv.Read(buf)
		if err != nil {
			t.Fatalf("UDP receive after %d datagrams, waiting for %q: %v", len(got), last, err)
		}
		if bytes.Equal(buf[:n], last) {
			break
		}
		got = append(got, append([]byte(nil), buf[:n]...))
	}
	// Whatever was accepted before the last datagram was delivered before
	// it (the verdicts were sent before it was), so anything still queued
	// is extra.
	if err := recv.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := recv.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		} else if err != nil {
			t.Fatalf("UDP receive: %v", err)
		}
		t.Errorf("datagram after the last one: %q", buf[:n])
	}
	return got
}
