package ring

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// A RawFrame is a typed view of one frame in the mapping, for tests and
// diagnostics: writing hostile TX frames, checking what status the kernel
// left. It bypasses the Conn's reader and writer, which assume they are
// the only ones changing frames; mixing the two on one ring breaks them.
// A RawFrame must not be used after Close.
type RawFrame struct {
	h       *mmapHdr
	payload []byte
}

// Status loads nm_status with acquire ordering.
func (f RawFrame) Status() Status { return f.h.load() }

// SetStatus stores nm_status with release ordering: writes to the frame
// made before are visible to whoever loads the new status.
func (f RawFrame) SetStatus(s Status) { f.h.store(s) }

// Len returns nm_len. Like the other fields, read it after Status.
func (f RawFrame) Len() uint32 { return f.h.len }

// SetLen sets nm_len. Like the other fields, write it before SetStatus.
func (f RawFrame) SetLen(n uint32) { f.h.len = n }

// Group returns nm_group.
func (f RawFrame) Group() uint32 { return f.h.group }

// PortID returns nm_pid.
func (f RawFrame) PortID() uint32 { return f.h.pid }

// UID returns nm_uid.
func (f RawFrame) UID() uint32 { return f.h.uid }

// GID returns nm_gid.
func (f RawFrame) GID() uint32 { return f.h.gid }

// Payload returns the whole area after the header, frame size minus
// HeaderLen bytes.
func (f RawFrame) Payload() []byte { return f.payload }

// RawRX returns a view of frame i of the RX ring.
func (c *Conn) RawRX(i int) (RawFrame, error) {
	c.rxMu.Lock()
	defer c.rxMu.Unlock()
	if c.rx == nil {
		return RawFrame{}, opError("raw RX frame", ErrNoRing)
	}
	return c.raw(&c.rx.f, i)
}

// RawTX returns a view of frame i of the TX ring.
func (c *Conn) RawTX(i int) (RawFrame, error) {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if c.tx == nil {
		return RawFrame{}, opError("raw TX frame", ErrNoRing)
	}
	return c.raw(&c.tx.f, i)
}

func (c *Conn) raw(f *frames, i int) (RawFrame, error) {
	if c.closed {
		return RawFrame{}, opError("raw frame", ErrClosed)
	}
	if i < 0 || i >= f.n {
		return RawFrame{}, opError("raw frame", fmt.Errorf("frame %d of %d: %w", i, f.n, unix.ERANGE))
	}
	return RawFrame{h: f.hdr(i), payload: f.payload(i, f.maxPayload())}, nil
}

// RawKick makes the TX system call as it is, whatever the writer has
// queued: sendto(fd, NULL, 0, 0, dst, sizeof(*dst)), or send(fd, NULL, 0,
// 0) for a nil dst. With RawTX it lets tests hand the kernel frames the
// writer would refuse to build.
func (c *Conn) RawKick(dst *unix.SockaddrNetlink) error {
	return opError("raw kick", c.s.kick(dst))
}
