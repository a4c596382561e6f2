package nldiag

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// recvTimeout bounds the wait for each datagram of the answer: a hang
// guard only, the kernel answers a dump at once.
const recvTimeout = 30 * time.Second

// Dump lists the bound netlink sockets of a protocol (NETLINK_ROUTE, ...,
// or AllProtocols) in the caller's network namespace, with what show
// asks for, from a NETLINK_SOCK_DIAG socket of its own.
func Dump(protocol int, show Show) ([]Socket, error) {
	c, err := openSocket()
	if err != nil {
		return nil, err
	}
	return dump(c, protocol, show)
}

// Lookup dumps protocol and returns the records of the socket with inode
// ino: one, or two for a bound member of a multicast group. The error of
// a dump without it wraps ErrNotFound.
func Lookup(protocol int, show Show, ino uint32) ([]Socket, error) {
	c, err := openSocket()
	if err != nil {
		return nil, err
	}
	return lookup(c, protocol, show, ino)
}

// LookupFD is Lookup for the netlink socket fd, by its protocol
// (SO_PROTOCOL) and inode.
func LookupFD(fd int, show Show) ([]Socket, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, opError("fstat", err)
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return nil, opError("getsockopt SO_PROTOCOL", err)
	}
	// ndiag_ino is the inode number cut to 32 bits, as sock_i_ino() is.
	return Lookup(proto, show, uint32(st.Ino))
}

// sysSocket is a blocking NETLINK_SOCK_DIAG socket with a receive
// timeout.
type sysSocket struct{ fd int }

func openSocket() (*sysSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, opError("socket", err)
	}
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, opError("socket", err)
	}
	return &sysSocket{fd: fd}, nil
}

func (s *sysSocket) send(b []byte) error {
	return unix.Sendto(s.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

func (s *sysSocket) recv(b []byte) (int, bool, error) {
	for {
		n, _, flags, _, err := unix.Recvmsg(s.fd, b, nil, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n, flags&unix.MSG_TRUNC != 0, err
	}
}

func (s *sysSocket) close() error { return unix.Close(s.fd) }
