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
// deliver; mu plays the kernel's ring lock. Readability is edge
// triggered, like the Go runtime's network poller: read sleeps until the
// next publish or drop after f returned false.
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
	dump     []simMsg // parts of a dump not delivered yet
	polls    int      // pollIn calls

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
	// Forget wakeups from before the call, as the poller's prepareRead
	// does: only what happens from now on wakes the reader.
	select {
	case <-s.wake:
	default:
	}
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
		// netlink_recvmsg: an empty queue is a chance to go on.
		s.continueDump()
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

// pollIn is netlink_poll: continue a dump waiting for a free frame, then
// report POLLIN by the ring (netlink_rx_pending) or the receive queue,
// and a pending error.
func (s *fakeSys) pollIn() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, unix.EBADF
	}
	s.polls++
	if s.k == nil {
		return false, nil
	}
	s.continueDump()
	return s.k.pending() || len(s.k.queue) > 0 || s.k.overrun, nil
}

// startDump makes the kernel answer a dump request with parts: the first
// now, the others one at a time whenever the socket is polled or read
// empty while the ring has room, as netlink_rx_continue_dump does. A
// dump never drops a part.
func (s *fakeSys) startDump(parts []simMsg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dump = append(s.dump, parts...)
	s.continueDump()
}

func (s *fakeSys) continueDump() {
	if len(s.dump) == 0 || !s.k.hasRoom() {
		return
	}
	if !s.k.deliver(s.dump[0]) {
		panic("fakeSys: dump part dropped although the ring had room")
	}
	s.dump = s.dump[1:]
}

func (s *fakeSys) pollCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polls
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
