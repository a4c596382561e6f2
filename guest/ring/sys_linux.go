package ring

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sysConn is the thin layer of system calls under a Conn. The real one
// is sysSocket; the tests use a fake kernel over ordinary memory.
type sysConn interface {
	// setRing is setsockopt(SOL_NETLINK, opt, &req, 16), unvalidated.
	setRing(opt int, p Params) error
	// mmap maps size bytes of the socket's rings, offset 0, read/write,
	// shared.
	mmap(size int) ([]byte, error)
	munmap(b []byte) error
	// read calls f until it returns true, waiting for the socket to be
	// readable in between. It fails when the read deadline passes or
	// the socket is closed.
	read(f func() bool) error
	// recvmsg receives one datagram without blocking; trunc reports
	// that it did not fit p.
	recvmsg(p []byte, flags int) (n int, from *unix.SockaddrNetlink, trunc bool, err error)
	// kick is sendto(fd, NULL, 0, 0, dst, sizeof(*dst)), or send(fd,
	// NULL, 0, 0) when dst is nil: process the TX ring.
	kick(dst *unix.SockaddrNetlink) error
	// pollIn is poll(fd, POLLIN, 0): it reports whether the socket is
	// readable or has an error pending. On a socket with an RX ring the
	// call also lets the kernel continue a dump that waits for free
	// frames (netlink_poll).
	pollIn() (bool, error)
	// sockError fetches and clears the socket's pending error
	// (getsockopt SO_ERROR).
	sockError() error
	setReadDeadline(t time.Time) error
	// control runs fn with the descriptor.
	control(fn func(fd int) error) error
	syscallConn() (syscall.RawConn, error)
	close() error
}

// sysSocket makes the system calls on a non-blocking socket registered
// with the Go runtime's network poller, which gives deadlines, and
// wakes a blocked read when the socket is closed.
type sysSocket struct {
	f  *os.File
	rc syscall.RawConn
}

func newSysSocket(fd int) (*sysSocket, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "netlink")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &sysSocket{f: f, rc: rc}, nil
}

func (s *sysSocket) control(fn func(fd int) error) error {
	var err error
	if cerr := s.rc.Control(func(fd uintptr) { err = fn(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

func (s *sysSocket) setRing(opt int, p Params) error {
	return s.control(func(fd int) error {
		// SetsockoptString passes the bytes and their length as they are.
		return unix.SetsockoptString(fd, SolNetlink, opt, string(p.marshal()))
	})
}

func (s *sysSocket) mmap(size int) ([]byte, error) {
	var b []byte
	err := s.control(func(fd int) error {
		var err error
		b, err = unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		return err
	})
	return b, err
}

func (s *sysSocket) munmap(b []byte) error { return unix.Munmap(b) }

func (s *sysSocket) read(f func() bool) error {
	return s.rc.Read(func(uintptr) bool { return f() })
}

func (s *sysSocket) recvmsg(p []byte, flags int) (n int, from *unix.SockaddrNetlink, trunc bool, err error) {
	err = s.control(func(fd int) error {
		var (
			rflags int
			sa     unix.Sockaddr
			err    error
		)
		n, _, rflags, sa, err = unix.Recvmsg(fd, p, nil, flags|unix.MSG_DONTWAIT)
		if err != nil {
			return err
		}
		from, _ = sa.(*unix.SockaddrNetlink)
		trunc = rflags&unix.MSG_TRUNC != 0
		return nil
	})
	return n, from, trunc, err
}

func (s *sysSocket) kick(dst *unix.SockaddrNetlink) error {
	var err error
	werr := s.rc.Write(func(fd uintptr) bool {
		err = sendtoEmpty(int(fd), dst)
		return true // never wait for POLLOUT: the kernel did its work in the call
	})
	if werr != nil {
		return werr
	}
	return err
}

func (s *sysSocket) pollIn() (bool, error) {
	var in bool
	err := s.control(func(fd int) error {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(pfd, 0)
			if err == unix.EINTR {
				continue
			}
			in = pfd[0].Revents&(unix.POLLIN|unix.POLLERR|unix.POLLHUP) != 0
			return err
		}
	})
	return in, err
}

func (s *sysSocket) sockError() error {
	return s.control(func(fd int) error {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if v != 0 {
			return unix.Errno(v)
		}
		return nil
	})
}

func (s *sysSocket) setReadDeadline(t time.Time) error { return s.f.SetReadDeadline(t) }

func (s *sysSocket) syscallConn() (syscall.RawConn, error) { return s.rc, nil }

func (s *sysSocket) close() error {
	err := s.f.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}
