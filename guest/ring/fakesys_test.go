package ring

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fakeSys is a sysConn over a simulated kernel: setsockopt and mmap follow
// the kernel contract, the RX side delivers through simKernel, the TX side
// processes frames through simTX. Tests deliver from any goroutine with
// deliver; mu plays the kernel's ring lock.
type fakeSys struct {
	mu       sync.Mutex
	rxp, txp Params
	mem      []byte
	k        *simKernel
	tx       *simTX
	mapped   bool
	unmapped bool
	closed   bool
	deadline time.Time
	ringErr  error // setRing fails with it
	mmapErr  error // mmap fails with it
	setRings int   // setRing calls
	onKick   func(sent [][]byte)

	wake chan struct{} // readability, buffered
	done chan struct{} // closed by close
}

func newFakeSys() *fakeSys {
	return &fakeSys{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (s *fakeSys) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *fakeSys) setRing(opt int, p Params) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setRings++
	if s.ringErr != nil {
		return s.ringErr
	}
	cur := &s.rxp
	if opt == OptTXRing {
		cur = &s.txp
	}
	switch {
	case s.mapped:
		return unix.EBUSY
	case p.Enabled() && cur.Enabled():
		return unix.EBUSY
	}
	if err := p.validate(os.Getpagesize()); err != nil {
		return unix.EINVAL
	}
	*cur = p
	return nil
}

func (s *fakeSys) mmap(size int) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mmapErr != nil {
		return nil, s.mmapErr
	}
	if size != s.rxp.Size()+s.txp.Size() || size == 0 {
		return nil, unix.EINVAL
	}
	s.mem = alignedBytes(size)
	s.mapped = true
	if s.rxp.Enabled() {
		s.k = newSimKernel(newFrames(s.mem[:s.rxp.Size()], s.rxp))
		s.k.onPublish = s.notify
	}
	if s.txp.Enabled() {
		s.tx = &simTX{tx: newFrames(s.mem[s.rxp.Size():], s.txp)}
	}
	return s.mem, nil
}

func (s *fakeSys) munmap([]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unmapped {
		return unix.EINVAL
	}
	s.unmapped = true
	return nil
}

func (s *fakeSys) read(f func() bool) error {
	for {
		if f() {
			return nil
		}
		s.mu.Lock()
		d := s.deadline
		s.mu.Unlock()
		var timeout <-chan time.Time
		if !d.IsZero() {
			t := time.NewTimer(time.Until(d))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-s.wake:
		case <-s.done:
			return errors.New("use of closed file")
		case <-timeout:
			return os.ErrDeadlineExceeded
		}
	}
}

func (s *fakeSys) recvmsg(p []byte, flags int) (int, *unix.SockaddrNetlink, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, nil, false, unix.EBADF
	}
	if s.k == nil {
		return 0, nil, false, unix.EAGAIN
	}
	if s.k.overrun && flags&unix.MSG_PEEK == 0 {
		s.k.overrun = false
		return 0, nil, false, unix.ENOBUFS
	}
	if len(s.k.queue) == 0 {
		return 0, nil, false, unix.EAGAIN
	}
	m := s.k.queue[0]
	if flags&unix.MSG_PEEK == 0 {
		s.k.queue = s.k.queue[1:]
	}
	b := m.bytes()
	n := copy(p, b)
	if flags&unix.MSG_TRUNC != 0 {
		n = len(b)
	}
	return n, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: m.pid}, n < len(b), nil
}

func (s *fakeSys) kick(dst *unix.SockaddrNetlink) error {
	s.mu.Lock()
	n := len(s.tx.sent)
	err := s.tx.kick()
	sent := s.tx.sent[n:]
	hook := s.onKick
	s.mu.Unlock()
	if hook != nil {
		hook(sent)
	}
	return err
}

func (s *fakeSys) sockError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.k != nil && s.k.overrun {
		s.k.overrun = false
		return unix.ENOBUFS
	}
	return nil
}

func (s *fakeSys) setReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	s.notify() // re-arm a waiting reader's timer
	return nil
}

func (s *fakeSys) control(func(fd int) error) error      { return errors.ErrUnsupported }
func (s *fakeSys) syscallConn() (syscall.RawConn, error) { return nil, errors.ErrUnsupported }

func (s *fakeSys) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	return nil
}

func (s *fakeSys) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// deliver makes the kernel deliver m to the RX ring; false if dropped.
func (s *fakeSys) deliver(m simMsg) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.k.deliver(m)
}

func (s *fakeSys) state() (delivered, dropped []simMsg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]simMsg(nil), s.k.delivered...), append([]simMsg(nil), s.k.dropped...)
}
