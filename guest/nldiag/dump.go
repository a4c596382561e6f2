package nldiag

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"golang.org/x/sys/unix"
)

// ErrNotFound is wrapped by the error of a Lookup whose socket the dump
// did not list.
var ErrNotFound = errors.New("no such socket")

// An OpError names the operation that failed and wraps the cause: a
// unix.Errno, an *nlmsg.Error from the kernel, an error wrapping
// nlmsg.ErrMalformed, or ErrNotFound. errors.Is sees through it:
//
//	&OpError{Op: "receive", Err: unix.EAGAIN}
type OpError struct {
	// Op is "socket", "send", "receive", "dump" (the kernel answered
	// with an error), "parse" (the answer is malformed), "lookup",
	// "fstat" or "getsockopt SO_PROTOCOL".
	Op  string
	Err error
}

func (e *OpError) Error() string {
	if e == nil {
		return "<nil>"
	}
	return "nldiag: " + e.Op + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// opError wraps err in an *OpError; it returns nil for a nil err.
func opError(op string, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Op: op, Err: err}
}

// sysConn is the thin layer of system calls under a dump: a
// NETLINK_SOCK_DIAG socket. The real one is sysSocket; the host tests
// use a fake that answers with captured datagrams.
type sysConn interface {
	// send sends one datagram to the kernel.
	send(b []byte) error
	// recv receives one datagram into b; trunc reports that it did not
	// fit.
	recv(b []byte) (n int, trunc bool, err error)
	close() error
}

const (
	dumpSeq     = 1
	recvBufSize = 64 << 10 // netlink_dump() fills at most 32 KiB and a page
)

// request returns the SOCK_DIAG_BY_FAMILY dump request.
func request(protocol int, show Show) []byte {
	req := make([]byte, sizeofReq)
	req[0] = unix.AF_NETLINK
	req[1] = uint8(protocol)
	binary.NativeEndian.PutUint32(req[8:], uint32(show))
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.SOCK_DIAG_BY_FAMILY,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: dumpSeq}, Data: req}.Append(nil)
}

// dump sends the request on c and collects the answer; it closes c.
func dump(c sysConn, protocol int, show Show) ([]Socket, error) {
	defer c.close()
	if protocol < 0 || protocol > AllProtocols {
		return nil, opError("dump", fmt.Errorf("protocol %d: %w", protocol, unix.EINVAL))
	}
	if err := c.send(request(protocol, show)); err != nil {
		return nil, opError("send", err)
	}
	var (
		socks []Socket
		buf   = make([]byte, recvBufSize)
	)
	for {
		n, trunc, err := c.recv(buf)
		if err != nil {
			return nil, opError("receive", err)
		}
		if trunc {
			return nil, opError("receive", fmt.Errorf("datagram larger than %d bytes: %w", len(buf), unix.EMSGSIZE))
		}
		var done bool
		socks, done, err = collect(socks, buf[:n])
		if err != nil || done {
			return socks, err
		}
	}
}

// collect appends the records of one datagram of the answer to socks;
// done reports the end of the dump (NLMSG_DONE).
func collect(socks []Socket, datagram []byte) (_ []Socket, done bool, _ error) {
	msgs, err := nlmsg.Parse(datagram)
	if err != nil {
		return nil, false, opError("parse", err)
	}
	for _, m := range msgs {
		switch {
		case m.Type == unix.NLMSG_DONE:
			if err := m.DoneErr(); err != nil {
				return nil, true, opError("dump", err)
			}
			return socks, true, nil
		case m.Err() != nil:
			return nil, false, opError("dump", m.Err())
		case m.Type != unix.SOCK_DIAG_BY_FAMILY:
			return nil, false, opError("parse", fmt.Errorf("message type %d in the dump: %w", m.Type, nlmsg.ErrMalformed))
		case m.Seq != dumpSeq:
			return nil, false, opError("parse", fmt.Errorf("sequence number %d, want %d: %w", m.Seq, dumpSeq, nlmsg.ErrMalformed))
		}
		s, err := Parse(m.Data)
		if err != nil {
			return nil, false, opError("parse", err)
		}
		socks = append(socks, s)
	}
	return socks, false, nil
}

// lookup dumps protocol on c and returns the records of inode ino.
func lookup(c sysConn, protocol int, show Show, ino uint32) ([]Socket, error) {
	socks, err := dump(c, protocol, show)
	if err != nil {
		return nil, err
	}
	var recs []Socket
	for _, s := range socks {
		if s.Inode == ino {
			recs = append(recs, s)
		}
	}
	if len(recs) == 0 {
		return nil, opError("lookup", fmt.Errorf("inode %d among the %d sockets of protocol %d: %w", ino, len(socks), protocol, ErrNotFound))
	}
	return recs, nil
}
