package ring

import (
	"errors"
	"os"
)

var (
	// ErrNotSupported means the kernel has no memory-mapped netlink: the
	// ring socket options answered ENOPROTOOPT (a kernel without the
	// series, or built with CONFIG_NETLINK_MMAP=n). The error it is found
	// in also wraps unix.ENOPROTOOPT.
	ErrNotSupported = errors.New("memory-mapped netlink not supported by this kernel")

	// ErrClosed is returned by operations on a closed Conn. It is
	// os.ErrClosed, so either name works with errors.Is.
	ErrClosed = os.ErrClosed

	// ErrNoRing is returned by RX operations on a Conn without an RX
	// ring that need one (Next), and by TX operations on a Conn without a
	// TX ring.
	ErrNoRing = errors.New("ring not configured")

	// ErrTXFull is returned when the next TX frame is still owned by the
	// kernel after a flush; the kernel did not process the frames.
	ErrTXFull = errors.New("TX ring full")

	// ErrTooBig is returned for a message larger than a TX frame's payload.
	ErrTooBig = errors.New("message larger than a frame")

	// ErrBadFrame is returned when the zero-copy Frame or TX reservation
	// an operation names is not (or no longer) the caller's to use.
	ErrBadFrame = errors.New("frame not owned by caller")

	// ErrCorrupt is returned when the RX ring holds something only a
	// broken kernel or a second writer could have put there: an unknown
	// status, or nm_len larger than a VALID frame.
	ErrCorrupt = errors.New("corrupt ring")
)

// An OpError names the operation that failed and wraps the cause, usually
// a unix.Errno, so errors.Is(err, unix.EBUSY) works:
//
//	&OpError{Op: "setsockopt NETLINK_RX_RING", Err: unix.EBUSY}
type OpError struct {
	Op  string
	Err error
}

func (e *OpError) Error() string {
	if e == nil {
		return "<nil>"
	}
	return "ring: " + e.Op + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the error is a deadline set with
// SetReadDeadline expiring.
func (e *OpError) Timeout() bool { return errors.Is(e.Err, os.ErrDeadlineExceeded) }

// opError wraps err in an *OpError; it returns nil for a nil err.
func opError(op string, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Op: op, Err: err}
}
