package nfq

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// Options selects how a Conn talks to the kernel.
type Options struct {
	// RX and TX are the ring geometries; a zero value means DefaultRX or
	// DefaultTX.
	RX, TX ring.Params
	// NoTX sets up no TX ring: messages go out with sendmsg.
	NoTX bool
	// NoRings uses no rings at all, as on a kernel without them: every
	// message goes through recvmsg and sendmsg.
	NoRings bool
	// ReceiveBuffer is the socket's receive buffer size (SO_RCVBUFFORCE,
	// falling back to SO_RCVBUF). It matters without an RX ring, and for
	// the messages of COPY frames. 0 means the size of the RX ring, so that
	// a Conn without rings holds about as much as one with them; a
	// negative value leaves the system's default.
	ReceiveBuffer int
}

var (
	// DefaultRX is 256 frames of 4 KiB: a queued packet of a 1500-byte
	// MTU, or a log batch of the default buffer size, fits a frame.
	DefaultRX = mustParams(4096, 256)
	// DefaultTX is 256 frames of 256 bytes: a frame holds a verdict.
	DefaultTX = mustParams(256, 256)
)

func mustParams(frameSize, frames int) ring.Params {
	p, err := ring.ParamsFor(frameSize, frames)
	if err != nil {
		panic(err)
	}
	return p
}

// MaxDatagram is the largest datagram a Conn without an RX ring
// receives: a queued packet of the largest copy range (65535 bytes) or a
// log batch of the largest buffer size (131072 bytes) with its headers.
const MaxDatagram = 192 << 10

// A Conn is a NETLINK_NETFILTER socket, with an RX and TX ring where the
// kernel has them and plain recvmsg/sendmsg where it has not. Queue and Log
// are built on it.
//
// Read may be called by one goroutine at a time; Send and SendMsg may be
// called from any goroutine.
type Conn struct {
	t transport

	seq atomic.Uint32

	readMu   sync.Mutex
	backlog  []Datagram // datagrams read while waiting for an ack, copied
	deadline time.Time
}

// Datagram is what one Read returns: one or more netlink messages.
// Datagrams that arrived while a configuration request waited for its
// acknowledgement are kept, copied, and returned by the next Reads.
type Datagram struct {
	// Data aliases the RX frame (or the Conn's receive buffer) until the
	// function given to Read returns.
	Data []byte
	// Copied reports that the datagram came through the socket's receive
	// queue (a COPY frame, or a Conn without an RX ring), not in a frame.
	Copied bool
}

// transport is the part of a Conn that differs with and without rings.
type transport interface {
	// read waits for one datagram and calls fn with it.
	read(fn func(Datagram) error) error
	// send sends one datagram to the kernel: through the TX ring if there
	// is one.
	send(b []byte) error
	// sendBatch sends several datagrams with as few system calls as the
	// transport allows.
	sendBatch(bs [][]byte) error
	// sendmsg sends one datagram with sendmsg, ring or no ring.
	sendmsg(b []byte) error
	setReadDeadline(t time.Time) error
	mapped() (rx, tx bool)
	rx() ring.Params
	portID() (uint32, error)
	close() error
}

// Dial opens a NETLINK_NETFILTER socket. It sets up the rings of opts; on
// a kernel without memory-mapped netlink (ring.Dial fails with
// ring.ErrNotSupported) it falls back to a plain socket without error, and
// Mapped reports false.
func Dial(opts Options) (*Conn, error) {
	rx := opts.RX
	if !rx.Enabled() {
		rx = DefaultRX
	}
	rcvbuf := opts.ReceiveBuffer
	if rcvbuf == 0 {
		rcvbuf = rx.Size()
	}
	if !opts.NoRings {
		cfg := ring.Config{RX: rx, TX: opts.TX}
		if opts.NoTX {
			cfg.TX = ring.Params{}
		} else if !cfg.TX.Enabled() {
			cfg.TX = DefaultTX
		}
		rc, err := ring.Dial(unix.NETLINK_NETFILTER, cfg)
		switch {
		case err == nil:
			rt := &ringTransport{c: rc}
			if err := setRcvbuf(rt.control, rcvbuf); err != nil {
				rc.Close()
				return nil, err
			}
			return &Conn{t: rt}, nil
		case !errors.Is(err, ring.ErrNotSupported):
			return nil, err
		}
	}
	pt, err := dialPlain()
	if err != nil {
		return nil, err
	}
	if err := setRcvbuf(pt.control, rcvbuf); err != nil {
		pt.close()
		return nil, err
	}
	return &Conn{t: pt}, nil
}

func setRcvbuf(control func(func(fd int) error) error, n int) error {
	if n <= 0 {
		return nil
	}
	return opError("set receive buffer", control(func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n); err == nil {
			return nil
		}
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
	}))
}

// Mapped reports whether the Conn has an RX ring (the kernel supports
// memory-mapped netlink and Options.NoRings was not set).
func (c *Conn) Mapped() bool { rx, _ := c.t.mapped(); return rx }

// RX returns the geometry of the RX ring (zero without one).
func (c *Conn) RX() ring.Params { return c.t.rx() }

// MappedTX reports whether the Conn sends through a TX ring.
func (c *Conn) MappedTX() bool { _, tx := c.t.mapped(); return tx }

// PortID returns the port ID the socket is bound to.
func (c *Conn) PortID() (uint32, error) { return c.t.portID() }

// Close closes the socket. It is safe to call more than once.
func (c *Conn) Close() error { return c.t.close() }

// SetReadDeadline sets the time after which Read gives up waiting and
// returns an error wrapping os.ErrDeadlineExceeded. The zero time means
// no deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	c.deadline = t
	return c.t.setReadDeadline(t)
}

// Read waits for the next datagram and calls fn with it. Data must not be
// used after fn returns: in the RX ring the frame goes back to the kernel
// then. Read returns fn's error, or the error of the receive; an error
// wrapping unix.ENOBUFS means the kernel dropped messages for lack of room
// (in the ring or the receive buffer), and reading may go on.
func (c *Conn) Read(fn func(Datagram) error) error {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if len(c.backlog) > 0 {
		d := c.backlog[0]
		c.backlog = c.backlog[1:]
		return fn(d)
	}
	return c.t.read(fn)
}

// Send sends one datagram (one or more messages) to the kernel, through
// the TX ring if there is one.
func (c *Conn) Send(b []byte) error { return c.t.send(b) }

// SendBatch sends several datagrams: with a TX ring, one frame each and
// one system call for all; without, one sendmsg each.
func (c *Conn) SendBatch(bs [][]byte) error { return c.t.sendBatch(bs) }

// SendMsg sends one datagram with sendmsg, even if there is a TX ring.
func (c *Conn) SendMsg(b []byte) error { return c.t.sendmsg(b) }

// nextSeq returns a sequence number for a request.
func (c *Conn) nextSeq() uint32 { return c.seq.Add(1) }

// ackTimeout bounds the wait for the acknowledgement of a configuration
// request: the kernel answers at once, so waiting longer means the answer
// was lost.
const ackTimeout = 10 * time.Second

// request sends a request built with seq = c.nextSeq() and NLM_F_ACK, and
// waits for its acknowledgement. Datagrams read meanwhile are kept, copied,
// for the next Reads.
func (c *Conn) request(op string, build func(seq uint32) []byte) error {
	seq := c.nextSeq()
	if err := c.t.send(build(seq)); err != nil {
		return opError(op, err)
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if err := c.t.setReadDeadline(time.Now().Add(ackTimeout)); err != nil {
		return opError(op, err)
	}
	defer c.t.setReadDeadline(c.deadline)
	for {
		var (
			done   bool
			reqErr error
		)
		err := c.t.read(func(d Datagram) error {
			msgs, err := nlmsg.Parse(d.Data)
			if err != nil {
				return err
			}
			for _, m := range msgs {
				if m.Type == unix.NLMSG_ERROR && len(m.Data) >= 4+nlmsg.HeaderLen &&
					m.Seq == seq {
					done, reqErr = true, m.Err()
					return nil
				}
			}
			c.backlog = append(c.backlog, Datagram{Data: append([]byte(nil), d.Data...), Copied: d.Copied})
			return nil
		})
		if err != nil {
			return opError(op, fmt.Errorf("waiting for the acknowledgement: %w", err))
		}
		if done {
			return opError(op, reqErr)
		}
	}
}

// ringTransport reads the RX ring without copying and writes the TX ring.
type ringTransport struct {
	c *ring.Conn
}

func (r *ringTransport) read(fn func(Datagram) error) error {
	f, err := r.c.Next()
	if err != nil {
		return opError("receive", err)
	}
	// Release as soon as fn is done with the frame, even if it panics.
	defer f.Release()
	return fn(Datagram{Data: f.Data(), Copied: f.Info().Copied})
}

func (r *ringTransport) send(b []byte) error {
	if r.c.TX().Enabled() {
		return opError("send", r.c.Send(b))
	}
	return r.sendmsg(b)
}

func (r *ringTransport) sendBatch(bs [][]byte) error {
	if !r.c.TX().Enabled() {
		for _, b := range bs {
			if err := r.sendmsg(b); err != nil {
				return err
			}
		}
		return nil
	}
	for _, b := range bs {
		if err := r.c.Enqueue(b); err != nil {
			return opError("send", err)
		}
	}
	return opError("send", r.c.Flush())
}

func (r *ringTransport) sendmsg(b []byte) error              { return sendmsgOn(r.c, b) }
func (r *ringTransport) control(fn func(fd int) error) error { return controlOn(r.c, fn) }

func (r *ringTransport) setReadDeadline(t time.Time) error { return r.c.SetReadDeadline(t) }
func (r *ringTransport) mapped() (bool, bool)              { return true, r.c.TX().Enabled() }
func (r *ringTransport) rx() ring.Params                   { return r.c.RX() }
func (r *ringTransport) portID() (uint32, error)           { return r.c.PortID() }
func (r *ringTransport) close() error                      { return r.c.Close() }

// sendmsgOn sends b to the kernel (port 0) on the socket of sc, waiting
// for room if the socket is full.
func sendmsgOn(sc syscall.Conn, b []byte) error {
	rc, err := sc.SyscallConn()
	if err != nil {
		return opError("sendmsg", err)
	}
	werr := rc.Write(func(fd uintptr) bool {
		err = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return !errors.Is(err, unix.EAGAIN)
	})
	if werr != nil {
		return opError("sendmsg", werr)
	}
	return opError("sendmsg", err)
}

// controlOn runs fn with the descriptor of sc's socket.
func controlOn(sc syscall.Conn, fn func(fd int) error) error {
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// plainTransport is a socket without rings: recvmsg and sendmsg.
type plainTransport struct {
	f   *os.File
	buf []byte
}

func dialPlain() (*plainTransport, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, opError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, opError("bind", err)
	}
	// os.NewFile registers the non-blocking socket with the runtime's
	// poller, which gives deadlines and wakes readers on Close.
	return &plainTransport{f: os.NewFile(uintptr(fd), "netlink"), buf: make([]byte, MaxDatagram)}, nil
}

func (p *plainTransport) read(fn func(Datagram) error) error {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return opError("receive", err)
	}
	var (
		n     int
		flags int
		rerr  error
	)
	err = rc.Read(func(fd uintptr) bool {
		n, _, flags, _, rerr = unix.Recvmsg(int(fd), p.buf, nil, unix.MSG_DONTWAIT)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return opError("receive", err)
	}
	if flags&unix.MSG_TRUNC != 0 {
		return opError("receive", fmt.Errorf("datagram larger than %d bytes: %w", len(p.buf), unix.EMSGSIZE))
	}
	return fn(Datagram{Data: p.buf[:n], Copied: true})
}

func (p *plainTransport) send(b []byte) error { return p.sendmsg(b) }

func (p *plainTransport) sendBatch(bs [][]byte) error {
	for _, b := range bs {
		if err := p.sendmsg(b); err != nil {
			return err
		}
	}
	return nil
}

func (p *plainTransport) sendmsg(b []byte) error              { return sendmsgOn(p.f, b) }
func (p *plainTransport) control(fn func(fd int) error) error { return controlOn(p.f, fn) }

func (p *plainTransport) setReadDeadline(t time.Time) error { return p.f.SetReadDeadline(t) }
func (p *plainTransport) mapped() (bool, bool)              { return false, false }
func (p *plainTransport) rx() ring.Params                   { return ring.Params{} }

func (p *plainTransport) portID() (uint32, error) {
	var pid uint32
	err := p.control(func(fd int) error {
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

func (p *plainTransport) close() error {
	err := p.f.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// An OpError names the operation that failed and wraps the cause, so
// errors.Is(err, unix.ENOBUFS) works.
type OpError struct {
	Op  string
	Err error
}

func (e *OpError) Error() string { return "nfq: " + e.Op + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the error is a read deadline expiring.
func (e *OpError) Timeout() bool { return errors.Is(e.Err, os.ErrDeadlineExceeded) }

// opError wraps err, unless it is nil or already an *OpError of this
// package.
func opError(op string, err error) error {
	if err == nil {
		return nil
	}
	var oe *OpError
	if errors.As(err, &oe) {
		return err
	}
	return &OpError{Op: op, Err: err}
}
