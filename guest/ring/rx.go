package ring

import "fmt"

// The RX reader.
//
// The kernel (the producer) and this reader (the consumer) each keep a
// head. The kernel delivers a message by walking from its head K over SKIP
// frames (at most one lap) to the first frame that is not SKIP; if that
// frame is UNUSED it claims (RESERVED), fills and publishes it (VALID or
// COPY) and moves K past it, otherwise the ring is full and the message is
// dropped. The reader reads frames at its head R in ring order.
//
// Count positions without wrapping, so frame i is met at i, i+n, i+2n...
// Everything rests on one invariant:
//
//	(H) no frame at a position in [R, K) is UNUSED.
//
// That is, the kernel never left a free frame behind that the reader has
// not reached yet. With (H), an UNUSED frame at R means "nothing to read"
// and a VALID frame at R is the oldest unread message, so reading in ring
// order delivers messages in the order the kernel published them, none
// lost, none twice.
//
// Only a store of UNUSED into a frame the kernel walked over as SKIP can
// break (H): if the user releases a held frame that the kernel has already
// skipped in the current lap while the reader has not reached it yet, a
// naive reader parks at that free frame while later frames are VALID, and
// once the kernel wraps it fills the frame and the reader reads the newest
// message first. So this reader never stores UNUSED over SKIP on the spot.
// Releasing a held frame only marks it released locally (it stays SKIP,
// so both sides keep walking over it), and the reader decides when it
// reaches the frame at its head, before storing anything (resolve):
//
//   - Scan forward from the frame, over frames that are SKIP in memory
//     (held or released), to the first frame F that is not.
//   - F is the kernel's and not UNUSED (RESERVED, VALID, COPY): the kernel
//     claimed F after walking past our frame, so K is beyond it. Move R
//     past the frame first, then store UNUSED. The kernel meets the frame
//     again only a lap later, after every frame the reader reads before
//     getting back to it, so (H) holds.
//   - F is UNUSED: K is not beyond our frame (if it were, the frame at K-1
//     would be filled and unread, and F would be that frame or come
//     before it). Storing UNUSED now could race with a kernel walk that
//     already read SKIP here and is about to fill F, so wait, leaving the
//     frame SKIP. The next delivery walks past it and fills F, which is
//     the evidence the first case needs.
//   - F was handed out by Next and not released: the kernel cannot pass F
//     either way; wait until the user releases it (as above).
//   - There is no F, every other frame is SKIP: the kernel cannot fill
//     any frame but this one, so a walk that read SKIP here just before
//     our store ends in a drop and cannot leave a hole. Store UNUSED and
//     stay; the kernel fills this frame next. This relies on the kernel
//     serializing deliveries into one ring, which it must do anyway.
//
// Releasing a frame that is VALID (handed out by Next, never held) stores
// UNUSED at once: the kernel cannot have walked past a VALID frame, so it
// is not behind K. Holding stores SKIP at once: that never breaks (H).
//
// A RESERVED frame at R is being written: nothing to read yet. The kernel
// wakes poll() when it publishes it.

// slotState is what this reader knows about a frame beyond its status
// word.
type slotState uint8

const (
	// slotKernel: the kernel's. Status UNUSED, RESERVED, VALID or COPY,
	// written by the kernel only.
	slotKernel slotState = iota
	// slotOut: handed out by Next, not yet released or held. Status still
	// VALID; the kernel cannot pass it.
	slotOut
	// slotHeld: Hold stored SKIP. The user owns the data.
	slotHeld
	// slotReleased: the user released a held frame. Status still SKIP
	// until resolve finds it safe to store UNUSED.
	slotReleased
)

type rxRing struct {
	f     frames
	head  int
	state []slotState
	gen   []uint32 // bumped each time a frame is handed out or given back
}

func newRXRing(f frames) *rxRing {
	return &rxRing{f: f, state: make([]slotState, f.n), gen: make([]uint32, f.n)}
}

// rxMsg describes a frame at the reader's head that holds a message.
type rxMsg struct {
	slot   int
	status Status // StatusValid or StatusCopy
	len    int
	group  uint32
	pid    uint32
	uid    uint32
	gid    uint32
}

// peek returns the frame at the reader's head if it holds a message,
// moving the head over held frames and resolving released ones on the
// way. ok is false when there is nothing to read yet. The head stays on
// the returned frame until consume.
func (r *rxRing) peek() (m rxMsg, ok bool, err error) {
	for range r.f.n {
		i := r.head
		switch r.state[i] {
		case slotHeld:
			r.head = r.f.next(i)
			continue
		case slotOut:
			// A full lap of frames handed out: the kernel is stuck
			// behind this one too.
			return rxMsg{}, false, nil
		case slotReleased:
			switch r.resolve(i) {
			case resolveWait:
				return rxMsg{}, false, nil
			case resolvePassed:
				r.head = r.f.next(i)
				r.state[i] = slotKernel
				// Release: pairs with the acquire load of the kernel's
				// walk when it comes back to frame i, a lap later.
				r.f.store(i, StatusUnused)
				continue
			case resolveHere:
				r.state[i] = slotKernel
				// Release: pairs with the acquire load of the kernel's
				// next walk, which fills frame i.
				r.f.store(i, StatusUnused)
			}
		}

		// Acquire: pairs with the kernel's release store of VALID or
		// COPY after it filled the frame, so the header and data read
		// below are complete.
		st := r.f.load(i)
		switch st {
		case StatusUnused, StatusReserved:
			return rxMsg{}, false, nil
		case StatusValid, StatusCopy:
			h := r.f.hdr(i)
			m = rxMsg{slot: i, status: st, len: int(h.len),
				group: h.group, pid: h.pid, uid: h.uid, gid: h.gid}
			if st == StatusValid && (m.len > r.f.maxPayload()) {
				// Give the frame back so the reader is not stuck on it.
				r.consume(i, false)
				return rxMsg{}, false, fmt.Errorf("frame %d: nm_len %d larger than the frame's %d bytes: %w",
					i, m.len, r.f.maxPayload(), ErrCorrupt)
			}
			return m, true, nil
		default:
			return rxMsg{}, false, fmt.Errorf("frame %d: status %v on a frame this reader does not hold: %w",
				i, st, ErrCorrupt)
		}
	}
	// Every frame is held.
	return rxMsg{}, false, nil
}

type resolution int

const (
	resolveWait   resolution = iota // not safe yet: leave the frame SKIP and wait
	resolvePassed                   // the kernel walked past it: skip it, then free it
	resolveHere                     // no other frame the kernel could fill: free it and wait on it
)

// resolve decides what to do with the released-but-still-SKIP frame p at
// the reader's head. See the comment at the top of this file.
func (r *rxRing) resolve(p int) resolution {
	for i := r.f.next(p); i != p; i = r.f.next(i) {
		switch r.state[i] {
		case slotHeld, slotReleased:
			continue // SKIP in memory: the kernel walks over it too
		case slotOut:
			return resolveWait
		}
		// Acquire: pairs with the kernel's release stores of RESERVED,
		// VALID and COPY.
		switch r.f.load(i) {
		case StatusReserved, StatusValid, StatusCopy:
			return resolvePassed
		default:
			// UNUSED: the kernel's next walk fills it after skipping p.
			// Anything else is corrupt and reported when read.
			return resolveWait
		}
	}
	return resolveHere
}

// consume moves the head past the frame peek returned. Without keep the
// frame goes straight back to the kernel; with keep it is handed out and
// the returned generation names this hand-out for release and hold.
func (r *rxRing) consume(slot int, keep bool) uint32 {
	r.head = r.f.next(slot)
	if !keep {
		// Release: pairs with the kernel's acquire load before it
		// reuses the frame, so our reads of it are done first.
		r.f.store(slot, StatusUnused)
		return 0
	}
	r.state[slot] = slotOut
	r.gen[slot]++
	return r.gen[slot]
}

// release gives a handed-out or held frame back.
func (r *rxRing) release(slot int, gen uint32) error {
	if slot < 0 || slot >= r.f.n || r.gen[slot] != gen {
		return ErrBadFrame
	}
	switch r.state[slot] {
	case slotOut:
		r.state[slot] = slotKernel
		// Release: pairs with the kernel's acquire load before it
		// reuses the frame. Safe at once: the kernel cannot have walked
		// past a VALID frame, so this cannot leave a hole behind it.
		r.f.store(slot, StatusUnused)
	case slotHeld:
		// Stays SKIP in memory; resolve frees it when the reader gets
		// there and it is safe.
		r.state[slot] = slotReleased
	default:
		return ErrBadFrame
	}
	r.gen[slot]++
	return nil
}

// hold keeps a handed-out frame: the kernel walks over it until release.
func (r *rxRing) hold(slot int, gen uint32) error {
	if slot < 0 || slot >= r.f.n || r.gen[slot] != gen {
		return ErrBadFrame
	}
	switch r.state[slot] {
	case slotOut:
		r.state[slot] = slotHeld
		// Release: our reads of the frame happened before; the kernel
		// only reads the status of a SKIP frame.
		r.f.store(slot, StatusSkip)
	case slotHeld:
	default:
		return ErrBadFrame
	}
	return nil
}

// counts returns how many frames are handed out and how many are held or
// released but not yet given back to the kernel.
func (r *rxRing) counts() (out, held int) {
	for _, s := range r.state {
		switch s {
		case slotOut:
			out++
		case slotHeld, slotReleased:
			held++
		}
	}
	return out, held
}
