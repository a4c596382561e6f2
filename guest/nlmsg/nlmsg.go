// Package nlmsg builds and parses netlink messages and attributes: the
// nlmsghdr framing, acknowledgements and errors (NLMSG_ERROR), the end of
// a dump (NLMSG_DONE), and rtattr/nlattr lists. It is the small amount of
// message handling the ring package's users and tests need, with no
// knowledge of any netlink family.
//
//	req := nlmsg.Message{Header: nlmsg.Header{Type: unix.RTM_GETLINK,
//		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: 1},
//		Data: make([]byte, unix.SizeofIfInfomsg)}
//	b := req.Append(nil)
//	...
//	msgs, err := nlmsg.Parse(datagram)
//	for _, m := range msgs {
//		if err := m.Err(); err != nil { ... } // NLMSG_ERROR with an errno
//		if m.Type == unix.NLMSG_DONE { ... }
//	}
package nlmsg

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// HeaderLen is NLMSG_HDRLEN.
const HeaderLen = unix.NLMSG_HDRLEN

// Align rounds n up to NLMSG_ALIGNTO (also the attribute alignment).
func Align(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// Header is struct nlmsghdr.
type Header struct {
	Len    uint32 // whole message, header included; set by Append
	Type   uint16
	Flags  uint16
	Seq    uint32
	PortID uint32
}

// A Message is a header and its payload.
type Message struct {
	Header
	Data []byte
}

// Append appends m to b, setting Len and padding to alignment, and
// returns the result. Several messages appended to one buffer make one
// datagram.
func (m Message) Append(b []byte) []byte {
	n := HeaderLen + len(m.Data)
	b = binary.NativeEndian.AppendUint32(b, uint32(n))
	b = binary.NativeEndian.AppendUint16(b, m.Type)
	b = binary.NativeEndian.AppendUint16(b, m.Flags)
	b = binary.NativeEndian.AppendUint32(b, m.Seq)
	b = binary.NativeEndian.AppendUint32(b, m.PortID)
	b = append(b, m.Data...)
	return append(b, make([]byte, Align(n)-n)...)
}

// ErrMalformed is wrapped by the errors of Parse and Attrs.
var ErrMalformed = errors.New("malformed netlink message")

// Parse splits a datagram into its messages. Data aliases b.
func Parse(b []byte) ([]Message, error) {
	var msgs []Message
	for off := 0; off < len(b); {
		if len(b)-off < HeaderLen {
			return msgs, fmt.Errorf("%d trailing bytes at offset %d: %w", len(b)-off, off, ErrMalformed)
		}
		h := header(b[off:])
		if h.Len < HeaderLen || int(h.Len) > len(b)-off {
			return msgs, fmt.Errorf("nlmsg_len %d at offset %d of %d bytes: %w", h.Len, off, len(b), ErrMalformed)
		}
		msgs = append(msgs, Message{Header: h, Data: b[off+HeaderLen : off+int(h.Len) : off+int(h.Len)]})
		off += Align(int(h.Len))
	}
	return msgs, nil
}

// header decodes a struct nlmsghdr from the first HeaderLen bytes of b.
func header(b []byte) Header {
	return Header{
		Len:    binary.NativeEndian.Uint32(b),
		Type:   binary.NativeEndian.Uint16(b[4:]),
		Flags:  binary.NativeEndian.Uint16(b[6:]),
		Seq:    binary.NativeEndian.Uint32(b[8:]),
		PortID: binary.NativeEndian.Uint32(b[12:]),
	}
}

// An Error is an NLMSG_ERROR message with a non-zero error code.
type Error struct {
	Errno   unix.Errno // the error, positive
	Message string     // extended ack message (NLMSGERR_ATTR_MSG), if any
	Request Header     // header of the request it answers
}

func (e *Error) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("netlink: %v: %s", e.Errno, e.Message)
	}
	return "netlink: " + e.Errno.Error()
}

// Unwrap returns the errno, so errors.Is(err, unix.EEXIST) works.
func (e *Error) Unwrap() error { return e.Errno }

// Err returns nil unless m is an NLMSG_ERROR message with a non-zero
// code (an ack carries code 0): then an *Error.
func (m Message) Err() error {
	if m.Type != unix.NLMSG_ERROR {
		return nil
	}
	if len(m.Data) < 4 {
		return fmt.Errorf("NLMSG_ERROR of %d bytes: %w", len(m.Data), ErrMalformed)
	}
	code := int32(binary.NativeEndian.Uint32(m.Data))
	if code == 0 {
		return nil
	}
	e := &Error{Errno: unix.Errno(-code)}
	if len(m.Data) < 4+HeaderLen {
		return e
	}
	e.Request = header(m.Data[4:])
	if m.Flags&unix.NLM_F_ACK_TLVS == 0 {
		return e
	}
	// The request follows, whole unless NLM_F_CAPPED, then attributes.
	skip := 4 + HeaderLen
	if m.Flags&unix.NLM_F_CAPPED == 0 {
		skip = 4 + Align(int(e.Request.Len))
	}
	if skip <= len(m.Data) {
		if attrs, err := Attrs(m.Data[skip:]); err == nil {
			for _, a := range attrs {
				if a.Type == unix.NLMSGERR_ATTR_MSG {
					e.Message = string(trimNUL(a.Data))
				}
			}
		}
	}
	return e
}

// IsAck reports whether m is an NLMSG_ERROR with code 0.
func (m Message) IsAck() bool {
	return m.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 && binary.NativeEndian.Uint32(m.Data) == 0
}

// DoneErr returns the error code of an NLMSG_DONE message as an errno
// (dumps report errors there), nil for success or another type.
func (m Message) DoneErr() error {
	if m.Type != unix.NLMSG_DONE || len(m.Data) < 4 {
		return nil
	}
	if code := int32(binary.NativeEndian.Uint32(m.Data)); code < 0 {
		return unix.Errno(-code)
	}
	return nil
}

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// An Attr is one attribute (struct nlattr / struct rtattr).
type Attr struct {
	Type uint16 // with NLA_F_NESTED and NLA_F_NET_BYTEORDER cleared
	Data []byte
}

const attrFlags = unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER

// AppendAttr appends an attribute to b, padded to alignment.
func AppendAttr(b []byte, typ uint16, data []byte) []byte {
	n := 4 + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(n))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	return append(b, make([]byte, Align(n)-n)...)
}

// AppendString appends a NUL-terminated string attribute.
func AppendString(b []byte, typ uint16, s string) []byte {
	return AppendAttr(b, typ, append([]byte(s), 0))
}

// AppendUint32 appends a host-order 32-bit attribute.
func AppendUint32(b []byte, typ uint16, v uint32) []byte {
	return AppendAttr(b, typ, binary.NativeEndian.AppendUint32(nil, v))
}

// Attrs splits an attribute list. Data aliases b.
func Attrs(b []byte) ([]Attr, error) {
	var attrs []Attr
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			return attrs, fmt.Errorf("%d trailing bytes in attributes: %w", len(b)-off, ErrMalformed)
		}
		n := int(binary.NativeEndian.Uint16(b[off:]))
		typ := binary.NativeEndian.Uint16(b[off+2:]) &^ attrFlags
		if n < 4 || n > len(b)-off {
			return attrs, fmt.Errorf("attribute length %d at offset %d of %d: %w", n, off, len(b), ErrMalformed)
		}
		attrs = append(attrs, Attr{Type: typ, Data: b[off+4 : off+n : off+n]})
		off += Align(n)
	}
	return attrs, nil
}
