package basic

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"golang.org/x/sys/unix"
)

// TestKernelRelease checks that the guest runs the kernel the host built.
func TestKernelRelease(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatalf("uname: %v", err)
	}
	got := unix.ByteSliceToString(u.Release[:])
	want := guesttest.KernelRelease()
	if want == "" {
		t.Fatal("NLMMAP_KERNEL_RELEASE is empty: the host did not say which kernel it built")
	}
	if got != want {
		t.Errorf("uname -r = %q, want %q (the kernel the host built)", got, want)
	}
	if !strings.Contains(got, "-nlmmap") {
		t.Errorf("uname -r = %q, want it to contain CONFIG_LOCALVERSION \"-nlmmap\"", got)
	}
}

// TestGetLinkDumpHasLo dumps the links over NETLINK_ROUTE and looks for lo.
func TestGetLinkDumpHasLo(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	links, err := dumpLinks()
	if err != nil {
		t.Fatalf("RTM_GETLINK dump: %v", err)
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.name)
	}
	t.Logf("links: %v", names)
	for _, l := range links {
		if l.name == "lo" {
			if l.flags&unix.IFF_LOOPBACK == 0 {
				t.Errorf("lo (index %d) lacks IFF_LOOPBACK: flags %#x", l.index, l.flags)
			}
			return
		}
	}
	t.Errorf("RTM_GETLINK dump returned %v, want it to contain lo", names)
}

type link struct {
	index int32
	flags uint32
	name  string
}

// dumpLinks sends RTM_GETLINK with NLM_F_DUMP and reads the multi-part
// answer until NLMSG_DONE.
func dumpLinks() ([]link, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	tv := unix.NsecToTimeval((10 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("SO_RCVTIMEO: %w", err)
	}

	const seq = 1
	req := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofIfInfomsg)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))                   // nlmsg_len
	ne.PutUint16(req[4:], unix.RTM_GETLINK)                   // nlmsg_type
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP) // nlmsg_flags
	ne.PutUint32(req[8:], seq)                                // nlmsg_seq
	req[unix.NLMSG_HDRLEN] = unix.AF_UNSPEC                   // ifi_family
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}

	var links []link
	buf := make([]byte, 64*1024)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		done, err := parseMessages(buf[:n], seq, &links)
		if err != nil {
			return nil, err
		}
		if done {
			return links, nil
		}
	}
}

// parseMessages parses one datagram of netlink messages, appending links;
// done is true at NLMSG_DONE.
func parseMessages(b []byte, seq uint32, links *[]link) (done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= unix.NLMSG_HDRLEN {
		l := ne.Uint32(b[0:])
		typ := ne.Uint16(b[4:])
		s := ne.Uint32(b[8:])
		if l < unix.NLMSG_HDRLEN || int(l) > len(b) {
			return false, fmt.Errorf("malformed netlink message: nlmsg_len %d with %d bytes left", l, len(b))
		}
		body := b[unix.NLMSG_HDRLEN:l]
		if s != seq {
			return false, fmt.Errorf("netlink message with sequence %d, want %d", s, seq)
		}
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return false, errors.New("short NLMSG_ERROR")
			}
			if errno := -int32(ne.Uint32(body)); errno != 0 {
				return false, fmt.Errorf("NLMSG_ERROR: %w", unix.Errno(errno))
			}
		case unix.RTM_NEWLINK:
			lk, err := parseLink(body)
			if err != nil {
				return false, err
			}
			*links = append(*links, lk)
		}
		adv := nlmsgAlign(int(l))
		if adv > len(b) {
			adv = len(b)
		}
		b = b[adv:]
	}
	return false, nil
}

// parseLink parses an ifinfomsg and its attributes, keeping IFLA_IFNAME.
func parseLink(body []byte) (link, error) {
	ne := binary.NativeEndian
	if len(body) < unix.SizeofIfInfomsg {
		return link{}, fmt.Errorf("short ifinfomsg: %d bytes", len(body))
	}
	lk := link{
		index: int32(ne.Uint32(body[4:])),
		flags: ne.Uint32(body[8:]),
	}
	attrs := body[unix.SizeofIfInfomsg:]
	for len(attrs) >= unix.SizeofRtAttr {
		alen := int(ne.Uint16(attrs[0:]))
		atyp := ne.Uint16(attrs[2:])
		if alen < unix.SizeofRtAttr || alen > len(attrs) {
			return link{}, fmt.Errorf("malformed rtattr: rta_len %d with %d bytes left", alen, len(attrs))
		}
		if atyp == unix.IFLA_IFNAME {
			lk.name = string(bytes.TrimRight(attrs[unix.SizeofRtAttr:alen], "\x00"))
		}
		next := rtaAlign(alen)
		if next > len(attrs) {
			break
		}
		attrs = attrs[next:]
	}
	return lk, nil
}

func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
func rtaAlign(n int) int   { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }
