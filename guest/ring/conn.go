package ring

import (
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A Conn is a netlink socket with a memory-mapped RX ring, TX ring, or
// both, mapped once.
//
// Receive and Next read the RX ring and may be called from any goroutine,
// one at a time or concurrently (they serialize); Frame.Release and
// Frame.Hold may be called from any goroutine. The TX methods serialize
// among themselves. Close may be called at any time, from any goroutine,
// and more than once.
type Conn struct {
	s        sysConn
	rxp, txp Params
	cleanup  runtime.Cleanup

	rxMu sync.Mutex
	rx   *rxRing // nil without an RX ring
	// parked is set while a reader sleeps in the network poller because
	// the ring had nothing to read (see wait).
	parked bool
	// rxErr is an error kick found, for the reader to return.
	rxErr error

	txMu sync.Mutex
	tx   *txRing // nil without a TX ring

	// closed and mem are written with both rxMu and txMu held and read
	// with either.
	closed bool
	mem    []byte
}

// Dial opens a netlink socket of the given family (unix.NETLINK_ROUTE,
// unix.NETLINK_GENERIC, ...), binds it to a kernel-assigned port ID and
// sets up the rings of cfg. Configuring rings needs CAP_NET_ADMIN.
//
// On a kernel without memory-mapped netlink the error wraps
// ErrNotSupported.
func Dial(family int, cfg Config) (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, family)
	if err != nil {
		return nil, opError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, opError("bind", err)
	}
	return New(fd, cfg)
}

// New sets up the rings of cfg on the netlink socket fd and maps them.
// New takes ownership of fd: Close closes it, and so does New when it
// fails. fd is switched to non-blocking mode.
//
// Keep fd to this Conn alone: the datagrams of COPY frames must be read
// by the Conn, in ring order.
func New(fd int, cfg Config) (*Conn, error) {
	s, err := newSysSocket(fd)
	if err != nil {
		unix.Close(fd)
		return nil, opError("socket", err)
	}
	return newConn(s, cfg)
}

func newConn(s sysConn, cfg Config) (*Conn, error) {
	fail := func(err error) (*Conn, error) {
		s.close()
		return nil, err
	}
	if !cfg.RX.Enabled() && !cfg.TX.Enabled() {
		return fail(opError("setup", cfg.Validate()))
	}
	for _, r := range []struct {
		op  string
		opt int
		p   Params
	}{
		{"setsockopt NETLINK_RX_RING", OptRXRing, cfg.RX},
		{"setsockopt NETLINK_TX_RING", OptTXRing, cfg.TX},
	} {
		if !r.p.Enabled() {
			continue
		}
		if err := r.p.Validate(); err != nil {
			return fail(opError(r.op, err))
		}
		if err := s.setRing(r.opt, r.p); err != nil {
			if errors.Is(err, unix.ENOPROTOOPT) {
				err = fmt.Errorf("%w: %w", ErrNotSupported, err)
			}
			return fail(opError(r.op, err))
		}
	}
	rxSize, txSize := cfg.RX.Size(), cfg.TX.Size()
	mem, err := s.mmap(rxSize + txSize)
	if err != nil {
		return fail(opError("mmap", err))
	}
	c := &Conn{s: s, rxp: cfg.RX, txp: cfg.TX, mem: mem}
	if cfg.RX.Enabled() {
		c.rx = newRXRing(newFrames(mem[:rxSize], cfg.RX))
	}
	if cfg.TX.Enabled() {
		c.tx = newTXRing(newFrames(mem[rxSize:], cfg.TX))
	}
	// If the Conn is dropped without Close, unmap and close anyway. The
	// cleanup must not refer to c, or c would never be collected.
	c.cleanup = runtime.AddCleanup(c, func(r leftover) {
		r.s.munmap(r.mem)
		r.s.close()
	}, leftover{s, mem})
	return c, nil
}

type leftover struct {
	s   sysConn
	mem []byte
}

// Close unmaps the rings and closes the socket, which frees the rings in
// the kernel. It wakes a Receive or Next blocked in another goroutine,
// which then returns an error wrapping ErrClosed. Calling Close again
// does nothing and returns nil.
//
// Frame data and TX reservations alias the mapping: touching them after
// Close faults.
func (c *Conn) Close() error {
	c.rxMu.Lock()
	c.txMu.Lock()
	if c.closed {
		c.txMu.Unlock()
		c.rxMu.Unlock()
		return nil
	}
	c.closed = true
	c.cleanup.Stop()
	err := c.s.munmap(c.mem)
	c.mem = nil
	c.txMu.Unlock()
	c.rxMu.Unlock()
	// The readers hold no lock while they wait, and every operation
	// checks closed under a lock before it touches the mapping.
	return opError("close", errors.Join(err, c.s.close()))
}

// RX returns the geometry of the RX ring (zero without one).
func (c *Conn) RX() Params { return c.rxp }

// TX returns the geometry of the TX ring (zero without one).
func (c *Conn) TX() Params { return c.txp }

// SetReadDeadline sets the time after which Receive and Next give up
// waiting and return an error whose Timeout method reports true (it wraps
// os.ErrDeadlineExceeded). The zero time means no deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	return opError("set read deadline", c.s.setReadDeadline(t))
}

// SyscallConn gives access to the socket for options this package does
// not cover. Do not use it to read from the socket: messages of COPY
// frames must be read by the Conn, in ring order.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.s.syscallConn() }

// JoinGroup subscribes the socket to a multicast group.
func (c *Conn) JoinGroup(group uint32) error {
	return opError("join group", c.s.control(func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(group))
	}))
}

// LeaveGroup unsubscribes the socket from a multicast group.
func (c *Conn) LeaveGroup(group uint32) error {
	return opError("leave group", c.s.control(func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_DROP_MEMBERSHIP, int(group))
	}))
}

// PortID returns the port ID the socket is bound to.
func (c *Conn) PortID() (uint32, error) {
	var pid uint32
	err := c.s.control(func(fd int) error {
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		nl, ok := sa.(*unix.SockaddrNetlink)
		if !ok {
			return fmt.Errorf("not a netlink socket: %T", sa)
		}
		pid = nl.Pid
		return nil
	})
	return pid, opError("getsockname", err)
}

// Info is what the kernel tells about a received datagram.
type Info struct {
	Group uint32 // multicast group it was sent to (nm_group), 0 for unicast
	// PortID is nm_pid, the sender's port ID (0 for the kernel) as the
	// ABI is specified; for a COPY frame it is the source address that
	// recvmsg reports. (The series, like the 2013 code, currently puts
	// the sending process's PID in nm_pid.)
	PortID uint32
	UID    uint32 // sender's credentials (nm_uid, nm_gid); 0 when the
	GID    uint32 // datagram came from the receive queue of a Conn without an RX ring
	// Copied reports that the datagram did not come in a frame but
	// through the socket's receive queue: a COPY frame (too big for a
	// frame, or built by a subsystem that does not allocate in the
	// ring), or a Conn without an RX ring.
	Copied bool
}

// A Record is one datagram, copied out of the ring: one or more netlink
// messages as the kernel built them (a dump packs several in one).
type Record struct {
	Data []byte
	Info
}

// Receive waits for the next datagram and returns a copy of it. Copying
// costs a memmove of the datagram and nothing else; it frees the frame at
// once, so a slow consumer does not make the kernel drop.
//
// COPY frames are read from the receive queue with recvmsg, transparently
// and in ring order. A Conn without an RX ring reads the receive queue.
//
// When the kernel had to drop datagrams because the ring was full, the
// read that finds nothing left to read returns an error wrapping
// unix.ENOBUFS (once per overrun); reading may go on after it.
func (c *Conn) Receive() (Record, error) {
	var r Record
	err := c.ReceiveInto(&r)
	return r, err
}

// ReceiveInto is Receive reusing r.Data's memory.
func (c *Conn) ReceiveInto(r *Record) error {
	return c.wait("receive", func() (bool, error) { return c.receiveLocked(r) })
}

// wait runs try with rxMu held until it returns true or an error, waiting
// for the socket to become readable in between.
//
// The network poller waits with edge-triggered epoll, which never calls
// into the socket. But with an RX ring the kernel continues a dump that
// ran out of free frames only when user space polls the socket (or
// recvmsg finds the receive queue empty, which a reader of VALID frames
// never calls): a reader that just slept would stall the dump for good.
// So before sleeping the reader polls once itself, which continues the
// dump into the frames it gave back; the part that arrives wakes the
// poller like any message. And while a reader sleeps, Frame.Release polls
// too (see kick), since the frame it gives back may be what the dump
// waits for.
func (c *Conn) wait(op string, try func() (bool, error)) error {
	var err error
	rerr := c.s.read(func() bool {
		c.rxMu.Lock()
		defer c.rxMu.Unlock()
		c.parked = false
		if c.closed {
			err = ErrClosed
			return true
		}
		if c.rxErr != nil {
			err, c.rxErr = c.rxErr, nil
			return true
		}
		for polled := false; ; polled = true {
			var done bool
			if done, err = try(); done || err != nil {
				return true
			}
			// Nothing to read. Report an overrun before sleeping; this
			// is where it belongs in the stream, after what was in the
			// ring.
			err = c.s.sockError()
			c.noteErr(err)
			if err != nil {
				return true
			}
			if c.rx == nil || polled {
				break
			}
			// Readable (or an error) now: the poll continued a dump,
			// or something arrived meanwhile. Look once more; the
			// wakeup is not lost either way.
			if in, perr := c.s.pollIn(); perr != nil || !in {
				break
			}
		}
		c.parked = c.rx != nil
		return false
	})
	if rerr != nil {
		c.rxMu.Lock()
		c.parked = false
		if err == nil {
			err = rerr
			if c.closed {
				err = ErrClosed
			}
		}
		c.rxMu.Unlock()
	}
	return opError(op, err)
}

// kick lets the kernel go on with a dump that waits for free frames
// while a reader sleeps, after the user gave frames back. rxMu is held.
func (c *Conn) kick() {
	if !c.parked {
		return
	}
	// Free what the reader would free when it looks next (held frames
	// released since), then poll: a dump part that arrives wakes the
	// reader. An error is passed on to the reader.
	if _, _, err := c.rx.peek(); err != nil && c.rxErr == nil {
		c.rxErr = err
	}
	c.s.pollIn()
}

func (c *Conn) receiveLocked(r *Record) (bool, error) {
	if c.rx == nil {
		return c.recvQueue(r)
	}
	m, ok, err := c.rx.peek()
	if !ok || err != nil {
		return false, err
	}
	r.Info = Info{Group: m.group, PortID: m.pid, UID: m.uid, GID: m.gid}
	if m.status == StatusCopy {
		buf := grow(r.Data, m.len)
		n, from, ok, err := c.recvCopy(m, buf)
		if !ok {
			return false, err
		}
		r.Data = buf[:n]
		r.Copied = true
		if from != nil {
			r.PortID = from.Pid
		}
		return true, err
	}
	r.Data = append(r.Data[:0], c.rx.f.payload(m.slot, m.len)...)
	c.rx.consume(m.slot, false)
	return true, nil
}

// recvCopy reads the datagram of the COPY frame at the reader's head from
// the receive queue and gives the frame back. ok is false when the frame
// stays where it is (nothing consumed) and the read has to be retried.
func (c *Conn) recvCopy(m rxMsg, buf []byte) (n int, from *unix.SockaddrNetlink, ok bool, err error) {
	n, from, trunc, err := c.s.recvmsg(buf, 0)
	switch {
	case errors.Is(err, unix.EAGAIN):
		// The queue is still empty: wait for the kernel's wakeup.
		return 0, nil, false, nil
	case err != nil:
		// A pending ENOBUFS comes first; the datagram is still queued.
		c.noteErr(err)
		return 0, nil, false, err
	}
	c.rx.consume(m.slot, false)
	if trunc {
		return n, from, true, fmt.Errorf("COPY frame %d: nm_len %d, but the datagram is longer: %w", m.slot, m.len, ErrCorrupt)
	}
	return n, from, true, nil
}

// recvQueue reads the receive queue of a Conn without an RX ring.
func (c *Conn) recvQueue(r *Record) (bool, error) {
	n, _, _, err := c.s.recvmsg(nil, unix.MSG_PEEK|unix.MSG_TRUNC)
	if errors.Is(err, unix.EAGAIN) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	buf := grow(r.Data, n)
	n, from, _, err := c.s.recvmsg(buf, 0)
	if err != nil {
		return false, err
	}
	r.Data = buf[:n]
	r.Info = Info{Copied: true}
	if from != nil {
		r.PortID = from.Pid
		if from.Groups != 0 {
			r.Group = uint32(bits.TrailingZeros32(from.Groups)) + 1
		}
	}
	return true, nil
}

// noteErr passes a reported drop on to the reader.
func (c *Conn) noteErr(err error) {
	if c.rx != nil && errors.Is(err, unix.ENOBUFS) {
		c.rx.noteDrop()
	}
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// A Frame is a datagram read by Next without copying: Data aliases the
// frame in the RX ring.
//
// Lifetime: Data is valid until Release, and after Hold until Release.
// While a Frame is neither released nor held, the kernel cannot fill it
// or any frame after it: release frames promptly, or Hold the ones to
// keep (the kernel then walks around them). Held frames count against the
// ring; when every frame is held, the kernel drops. Data must not be used
// after Release or Close, and the Frame (not only Data) must stay
// reachable while Data is in use. A Frame whose datagram came through the
// receive queue (Info().Copied) owns its Data; Release and Hold only do
// the bookkeeping.
//
// Release and Hold may be called from any goroutine, once each (Release
// may follow Hold).
type Frame struct {
	c    *Conn
	slot int // -1: Data came through recvmsg
	gen  uint32
	data []byte
	info Info
}

// Data returns the datagram.
func (f Frame) Data() []byte { return f.data }

// Info returns what the kernel told about the datagram.
func (f Frame) Info() Info { return f.info }

// Release gives the frame back to the kernel. It returns an error
// wrapping ErrBadFrame if the frame was already released.
func (f Frame) Release() error {
	return f.do("release", func(r *rxRing) error { return r.release(f.slot, f.gen) })
}

// Hold keeps the frame: the kernel skips it (SKIP) and the reader moves
// on; Data stays valid until Release.
func (f Frame) Hold() error {
	return f.do("hold", func(r *rxRing) error { return r.hold(f.slot, f.gen) })
}

func (f Frame) do(op string, fn func(*rxRing) error) error {
	if f.c == nil {
		return opError(op, ErrBadFrame)
	}
	if f.slot < 0 {
		return nil
	}
	f.c.rxMu.Lock()
	defer f.c.rxMu.Unlock()
	if f.c.closed {
		return opError(op, ErrClosed)
	}
	err := fn(f.c.rx)
	if err == nil {
		f.c.kick()
	}
	return opError(op, err)
}

// Next waits for the next datagram and returns it without copying. See
// Frame for the rules. It needs an RX ring.
func (c *Conn) Next() (Frame, error) {
	if c.rx == nil {
		return Frame{}, opError("next", ErrNoRing)
	}
	var f Frame
	err := c.wait("next", func() (bool, error) {
		m, ok, err := c.rx.peek()
		if !ok || err != nil {
			return false, err
		}
		info := Info{Group: m.group, PortID: m.pid, UID: m.uid, GID: m.gid}
		if m.status == StatusCopy {
			buf := make([]byte, m.len)
			n, from, ok, err := c.recvCopy(m, buf)
			if !ok {
				return false, err
			}
			info.Copied = true
			if from != nil {
				info.PortID = from.Pid
			}
			f = Frame{c: c, slot: -1, data: buf[:n], info: info}
			return true, err
		}
		data := c.rx.f.payload(m.slot, m.len)
		f = Frame{c: c, slot: m.slot, gen: c.rx.consume(m.slot, true), data: data, info: info}
		return true, nil
	})
	return f, err
}

// Send queues b in the TX ring and flushes. It is Enqueue and Flush.
func (c *Conn) Send(b []byte) error {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if err := c.enqueueLocked(b); err != nil {
		return opError("send", err)
	}
	return opError("send", c.flushLocked(nil))
}

// Enqueue copies b, one datagram (one or more netlink messages), into the
// next TX frame and marks it VALID without telling the kernel; Flush
// does. If the ring is full, Enqueue flushes first.
func (c *Conn) Enqueue(b []byte) error {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	return opError("enqueue", c.enqueueLocked(b))
}

func (c *Conn) enqueueLocked(b []byte) error {
	if err := c.txUsable(); err != nil {
		return err
	}
	err := c.tx.write(b)
	if errors.Is(err, ErrTXFull) {
		if err := c.flushLocked(nil); err != nil {
			return err
		}
		err = c.tx.write(b)
	}
	return err
}

// Reserve returns the payload area of the next TX frame for the caller
// to build a datagram in place; Commit publishes it, Cancel drops it. One
// reservation may be open at a time. If the ring is full, Reserve
// flushes first. The buffer aliases the mapping: do not use it after
// Commit, Cancel or Close.
func (c *Conn) Reserve() ([]byte, error) {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if err := c.txUsable(); err != nil {
		return nil, opError("reserve", err)
	}
	buf, err := c.tx.reserve()
	if errors.Is(err, ErrTXFull) {
		if err := c.flushLocked(nil); err != nil {
			return nil, opError("reserve", err)
		}
		buf, err = c.tx.reserve()
	}
	return buf, opError("reserve", err)
}

// Commit publishes the reserved frame holding an n-byte datagram. Flush
// sends it.
func (c *Conn) Commit(n int) error {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if err := c.txUsable(); err != nil {
		return opError("commit", err)
	}
	return opError("commit", c.tx.commit(n))
}

// Cancel drops the open reservation, if any.
func (c *Conn) Cancel() {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if c.txUsable() == nil {
		c.tx.cancel()
	}
}

// Flush makes the kernel process every queued TX frame, sending each
// datagram to the socket's peer (the kernel, unless the socket was
// connected elsewhere): sendto(fd, NULL, 0, 0, NULL, 0). It returns once
// the kernel has processed them. Nothing queued, no system call.
//
// Errors are the kernel's for the whole batch; frames it did not process
// stay queued for the next Flush.
func (c *Conn) Flush() error {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	return opError("flush", c.flushLocked(nil))
}

// FlushTo is Flush sending to the given port ID and multicast groups
// (a bit mask, as in sockaddr_nl).
func (c *Conn) FlushTo(portID, groups uint32) error {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	return opError("flush", c.flushLocked(&unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: portID, Groups: groups}))
}

func (c *Conn) flushLocked(dst *unix.SockaddrNetlink) error {
	if err := c.txUsable(); err != nil {
		return err
	}
	c.tx.reap()
	if c.tx.pending == 0 {
		return nil
	}
	err := c.s.kick(dst)
	c.tx.reap()
	if err == nil && c.tx.pending != 0 {
		err = fmt.Errorf("kernel left %d frames VALID after sendto: %w", c.tx.pending, ErrTXFull)
	}
	return err
}

func (c *Conn) txUsable() error {
	switch {
	case c.closed:
		return ErrClosed
	case c.tx == nil:
		return ErrNoRing
	}
	return nil
}
