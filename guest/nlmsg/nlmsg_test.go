package nlmsg

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRoundTrip(t *testing.T) {
	in := []Message{
		{Header: Header{Type: unix.RTM_GETLINK, Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: 7, PortID: 9}, Data: []byte{1, 2, 3}},
		{Header: Header{Type: unix.NLMSG_DONE, Seq: 8}, Data: []byte{0, 0, 0, 0}},
		{Header: Header{Type: 99}},
	}
	var b []byte
	for _, m := range in {
		b = m.Append(b)
	}
	if len(b) != 20+20+16 {
		t.Fatalf("datagram is %d bytes, want 56 (padded)", len(b))
	}
	out, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("parsed %d messages, want %d", len(out), len(in))
	}
	for i := range in {
		want := in[i]
		want.Len = uint32(HeaderLen + len(want.Data))
		if out[i].Header != want.Header || string(out[i].Data) != string(want.Data) {
			t.Errorf("message %d = %+v, want %+v", i, out[i], want)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	good := Message{Header: Header{Type: 1}, Data: []byte("abcd")}.Append(nil)
	for name, b := range map[string][]byte{
		"short header":        good[:10],
		"length below header": func() []byte { c := append([]byte(nil), good...); binary.NativeEndian.PutUint32(c, 8); return c }(),
		"length past end":     func() []byte { c := append([]byte(nil), good...); binary.NativeEndian.PutUint32(c, 64); return c }(),
		"trailing bytes":      append(append([]byte(nil), good...), 1, 2),
	} {
		if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// errMsg builds an NLMSG_ERROR answering req, as netlink_ack() does.
func errMsg(code int32, req Message, extack string) Message {
	data := binary.NativeEndian.AppendUint32(nil, uint32(code))
	data = req.Append(data)
	flags := uint16(0)
	if extack != "" {
		flags = unix.NLM_F_ACK_TLVS
		data = AppendString(data, unix.NLMSGERR_ATTR_MSG, extack)
	}
	return Message{Header: Header{Type: unix.NLMSG_ERROR, Flags: flags}, Data: data}
}

func TestErrors(t *testing.T) {
	req := Message{Header: Header{Type: unix.RTM_NEWLINK, Seq: 3}, Data: []byte("12345678")}
	ack := errMsg(0, req, "")
	if !ack.IsAck() || ack.Err() != nil {
		t.Errorf("ack: IsAck %v, Err %v", ack.IsAck(), ack.Err())
	}
	err := errMsg(-int32(unix.EEXIST), req, "").Err()
	var ne *Error
	if !errors.Is(err, unix.EEXIST) || !errors.As(err, &ne) || ne.Request.Seq != 3 || ne.Request.Type != unix.RTM_NEWLINK {
		t.Errorf("error: %v (%+v)", err, ne)
	}
	err = errMsg(-int32(unix.EINVAL), req, "bad attribute").Err()
	if !errors.As(err, &ne) || ne.Message != "bad attribute" || err.Error() != "netlink: invalid argument: bad attribute" {
		t.Errorf("extack error: %v (%+v)", err, ne)
	}
	if err := (Message{Header: Header{Type: unix.NLMSG_ERROR}, Data: []byte{1}}).Err(); !errors.Is(err, ErrMalformed) {
		t.Errorf("short NLMSG_ERROR: %v", err)
	}
	done := Message{Header: Header{Type: unix.NLMSG_DONE}, Data: binary.NativeEndian.AppendUint32(nil, uint32(0xffffffff-uint32(unix.EMSGSIZE)+1))}
	if err := done.DoneErr(); !errors.Is(err, unix.EMSGSIZE) {
		t.Errorf("NLMSG_DONE error: %v", err)
	}
	if err := (Message{Header: Header{Type: unix.NLMSG_DONE}, Data: make([]byte, 4)}).DoneErr(); err != nil {
		t.Errorf("NLMSG_DONE ok: %v", err)
	}
}

func TestAttrs(t *testing.T) {
	inner := AppendString(nil, unix.IFLA_INFO_KIND, "dummy")
	b := AppendString(nil, unix.IFLA_IFNAME, "nl0")
	b = AppendAttr(b, unix.IFLA_LINKINFO|unix.NLA_F_NESTED, inner)
	b = AppendUint32(b, unix.IFLA_MTU, 1500)
	attrs, err := Attrs(b)
	if err != nil || len(attrs) != 3 {
		t.Fatalf("Attrs = %v, %v", attrs, err)
	}
	if attrs[0].Type != unix.IFLA_IFNAME || string(attrs[0].Data) != "nl0\x00" {
		t.Errorf("name attribute %+v", attrs[0])
	}
	if attrs[1].Type != unix.IFLA_LINKINFO {
		t.Errorf("nested flag not cleared: %#x", attrs[1].Type)
	}
	nested, err := Attrs(attrs[1].Data)
	if err != nil || len(nested) != 1 || string(nested[0].Data) != "dummy\x00" {
		t.Errorf("nested = %v, %v", nested, err)
	}
	if binary.NativeEndian.Uint32(attrs[2].Data) != 1500 {
		t.Errorf("mtu %v", attrs[2].Data)
	}
	if _, err := Attrs(b[:len(b)-2]); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated attributes: %v", err)
	}
}

// TestIntegrationHostKernelDump parses a real RTM_GETLINK dump from the
// host kernel over a plain netlink socket (no rings).
func TestIntegrationHostKernelDump(t *testing.T) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		t.Skipf("no netlink socket here: %v", err)
	}
	defer unix.Close(fd)
	req := Message{Header: Header{Type: unix.RTM_GETLINK, Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: 42},
		Data: make([]byte, unix.SizeofIfInfomsg)}
	if err := unix.Sendto(fd, req.Append(nil), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<16)
	links := 0
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := Parse(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if err := m.Err(); err != nil {
				t.Fatal(err)
			}
			if m.Seq != 42 {
				t.Fatalf("answer with seq %d", m.Seq)
			}
			switch m.Type {
			case unix.NLMSG_DONE:
				if err := m.DoneErr(); err != nil {
					t.Fatal(err)
				}
				if links == 0 {
					t.Fatal("dump without a single link (not even lo)")
				}
				return
			case unix.RTM_NEWLINK:
				if _, err := Attrs(m.Data[unix.SizeofIfInfomsg:]); err != nil {
					t.Fatal(err)
				}
				links++
			}
		}
	}
}
