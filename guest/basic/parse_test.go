package basic

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// Host-side tests of the hand-rolled parser, so a parsing bug is not
// mistaken for a kernel bug.

func nlmsg(typ uint16, seq uint32, body []byte) []byte {
	n := unix.NLMSG_HDRLEN + len(body)
	b := make([]byte, nlmsgAlign(n))
	binary.NativeEndian.PutUint32(b[0:], uint32(n))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint32(b[8:], seq)
	copy(b[unix.NLMSG_HDRLEN:], body)
	return b
}

func ifinfo(index int32, flags uint32, name string) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], flags)
	// An attribute we do not care about, then IFLA_IFNAME.
	mtu := make([]byte, 8)
	binary.NativeEndian.PutUint16(mtu[0:], 8)
	binary.NativeEndian.PutUint16(mtu[2:], unix.IFLA_MTU)
	binary.NativeEndian.PutUint32(mtu[4:], 65536)
	b = append(b, mtu...)
	alen := unix.SizeofRtAttr + len(name) + 1
	attr := make([]byte, rtaAlign(alen))
	binary.NativeEndian.PutUint16(attr[0:], uint16(alen))
	binary.NativeEndian.PutUint16(attr[2:], unix.IFLA_IFNAME)
	copy(attr[unix.SizeofRtAttr:], name)
	return append(b, attr...)
}

func TestParseMessages(t *testing.T) {
	var links []link
	dgram := append(nlmsg(unix.RTM_NEWLINK, 1, ifinfo(1, unix.IFF_LOOPBACK|unix.IFF_UP, "lo")),
		nlmsg(unix.RTM_NEWLINK, 1, ifinfo(2, 0, "dummy0"))...)
	done, err := parseMessages(dgram, 1, &links)
	if err != nil || done {
		t.Fatalf("first part: done %v, err %v", done, err)
	}
	errBody := make([]byte, 4)
	binary.NativeEndian.PutUint32(errBody, 0)
	done, err = parseMessages(append(nlmsg(unix.NLMSG_ERROR, 1, errBody), nlmsg(unix.NLMSG_DONE, 1, make([]byte, 4))...), 1, &links)
	if err != nil || !done {
		t.Fatalf("last part: done %v, err %v", done, err)
	}
	if len(links) != 2 || links[0].name != "lo" || links[0].index != 1 || links[0].flags&unix.IFF_LOOPBACK == 0 || links[1].name != "dummy0" {
		t.Errorf("links = %+v", links)
	}
}

func TestParseMessagesErrors(t *testing.T) {
	eperm := make([]byte, 4)
	e := -int32(unix.EPERM)
	binary.NativeEndian.PutUint32(eperm, uint32(e))
	var links []link
	if _, err := parseMessages(nlmsg(unix.NLMSG_ERROR, 1, eperm), 1, &links); !errors.Is(err, unix.EPERM) {
		t.Errorf("NLMSG_ERROR EPERM: err = %v, want EPERM", err)
	}
	if _, err := parseMessages(nlmsg(unix.NLMSG_DONE, 7, nil), 1, &links); err == nil {
		t.Error("wrong sequence number accepted")
	}
	bad := nlmsg(unix.RTM_NEWLINK, 1, ifinfo(1, 0, "lo"))
	binary.NativeEndian.PutUint32(bad[0:], 1000)
	if _, err := parseMessages(bad, 1, &links); err == nil {
		t.Error("nlmsg_len past the end accepted")
	}
}
