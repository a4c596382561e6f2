package ring

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// The TX writer.
//
// User space writes a message into the frame at its head (which must be
// UNUSED), sets nm_len, stores VALID and moves on; sendto(fd, NULL, 0)
// makes the kernel process every VALID frame from its own head, in order,
// setting each back to UNUSED. Both heads move one frame per message, so
// they agree as long as only this writer touches the ring. The kernel does
// all its work inside the sendto call, so the ring never fills behind a
// successful flush; a full ring only means frames were committed and not
// flushed.
type txRing struct {
	f        frames
	head     int  // next frame to write
	pending  int  // frames stored VALID and not yet seen back as UNUSED
	reserved bool // the head frame is reserved by Reserve
}

func newTXRing(f frames) *txRing { return &txRing{f: f} }

// reserve returns the payload area of the frame at the head.
func (t *txRing) reserve() ([]byte, error) {
	if t.reserved {
		return nil, fmt.Errorf("a reservation is open: %w", ErrBadFrame)
	}
	// Acquire: pairs with the kernel's release store of UNUSED once it
	// processed the frame, so its reads of the old message are complete
	// before we overwrite it.
	if st := t.f.load(t.head); st != StatusUnused {
		return nil, ErrTXFull
	}
	t.reserved = true
	return t.f.payload(t.head, t.f.maxPayload()), nil
}

// commit publishes the reserved frame with an n-byte message.
func (t *txRing) commit(n int) error {
	if !t.reserved {
		return fmt.Errorf("no open reservation: %w", ErrBadFrame)
	}
	if n <= 0 || n > t.f.maxPayload() {
		// The kernel would reject the frame with EINVAL; refuse it here
		// so a bad length never reaches the ring.
		return fmt.Errorf("message length %d not in 1..%d: %w", n, t.f.maxPayload(), unix.EINVAL)
	}
	h := t.f.hdr(t.head)
	h.len = uint32(n)
	h.group, h.pid, h.uid, h.gid = 0, 0, 0, 0
	// Release: pairs with the kernel's acquire load of the status in its
	// TX walk, so it sees the message and nm_len written above.
	t.f.store(t.head, StatusValid)
	t.head = t.f.next(t.head)
	t.pending++
	t.reserved = false
	return nil
}

func (t *txRing) cancel() { t.reserved = false }

// write copies b into the next frame and commits it.
func (t *txRing) write(b []byte) error {
	if len(b) > t.f.maxPayload() {
		return fmt.Errorf("%d bytes, frame holds %d: %w", len(b), t.f.maxPayload(), ErrTooBig)
	}
	if len(b) == 0 {
		return fmt.Errorf("empty message: %w", unix.EINVAL)
	}
	buf, err := t.reserve()
	if err != nil {
		return err
	}
	copy(buf, b)
	return t.commit(len(b))
}

// reap forgets pending frames the kernel has processed. It processes them
// in order, so they are a prefix of the pending ones.
func (t *txRing) reap() {
	i := (t.head - t.pending + t.f.n) % t.f.n
	// Acquire: pairs with the kernel's release store of UNUSED.
	for t.pending > 0 && t.f.load(i) == StatusUnused {
		i = t.f.next(i)
		t.pending--
	}
}
