package ring

import "fmt"

// The RX reader.
//
// The kernel (the producer) and this reader (the consumer) each keep a
// head. The kernel delivers a message by walking from its head K over SKIP
// frames (at most one lap) to the first frame that is not SKIP; if that
// frame is UNUSED it claims (RESERVED), fills and publishes it (VALID or
// COPY) and moves K past it, otherwise the ring is full and the message is
// dropped. A frame the kernel claimed and then did not use (the message
// was dropped before delivery) comes back VALID with nm_len 0: the reader
// steps over it and hands it back like a message it read. Only user space
// writes SKIP. The reader reads frames at its head R in ring order.
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
// Only a store of UNUSED into a frame that a kernel walk passed over as
// SKIP can break (H). If the user releases a held frame after the kernel
// skipped it in the current lap but before the reader got there, a naive
// reader parks at that free frame while later frames are VALID, and once
// the kernel wraps it fills the frame and the reader reads the newest
// message first. Worse, a walk is not atomic with respect to user space: a
// walk may read SKIP, then user space stores UNUSED, then the walk goes on
// and fills a later frame. So this reader never stores UNUSED over SKIP on
// the spot. Releasing a held frame only marks it released locally (it
// stays SKIP, so both sides keep walking over it), and the reader decides
// when the frame p is at its head, at position P (resolve):
//
//   - Scan the other frames from p on, over frames that are SKIP in memory
//     (held or released), to the first one that is not, A.
//   - A is UNUSED: by (H) the kernel has not passed P (if it had, the
//     frame at K-1 would be filled and unread, and A would be that frame
//     or come before it). A walk may be reading SKIP at P right now and
//     go on to fill A, so storing UNUSED could leave a hole. Wait, leaving
//     p SKIP; the next delivery skips p and fills A, which is the evidence
//     the next case needs.
//   - A was handed out by Next and not released: the kernel cannot pass
//     A. Wait as above.
//   - There is no A, every other frame is SKIP: no walk can fill anything
//     but p, so one that read SKIP at P ends in a drop. Store UNUSED and
//     stay on p; the kernel fills it next. While the reader waits on p it
//     stores nothing else, so that walk is over before anything changes.
//   - A holds a message (RESERVED, VALID, COPY): the kernel passed P. Move
//     the reader past p; p's next visit V is a lap on, after every frame
//     the reader reads before getting back to it. The danger is a walk W
//     that reads SKIP at V before our store and then fills a frame after
//     V. W can only get to V over SKIP frames, so any frame that stays
//     UNUSED from before our store until after it proves no W: a walk
//     meeting it claims it and stops. So the reader picks such a witness
//     u among the other frames before storing UNUSED at p and checks u
//     after. If there is no witness (every other frame is SKIP or holds
//     a message) or it was claimed in between, W may exist; but W stops
//     at A's next visit as long as A still holds a message. So A becomes
//     the barrier of a fence: its return to UNUSED (or SKIP) is deferred
//     until p itself is seen claimed, by a walk that must have started
//     after W ended, since walks into one ring are serialized. While a
//     fence is up, further released frames that the kernel passed are
//     skipped without a store and resolved again a lap later. The cost:
//     the barrier frame comes back to the kernel one delivery late.
//
// Releasing a frame that is VALID (handed out by Next, never held) stores
// UNUSED at once: no walk passes a VALID frame, so it is not behind K and
// none is in flight beyond it. Holding stores SKIP at once: that never
// breaks (H).
//
// A RESERVED frame at R is being written: nothing to read yet. The kernel
// wakes poll() when it publishes it, or when it gives it back empty.
//
// An earlier version of the series gave unused claims back as SKIP and
// moved K over SKIP frames on a walk that ended in a drop. The reader
// still copes with both (a SKIP frame it did not hold is treated like a
// released one, and undo handles the moved head), so neither can break
// (H), but the current kernel does neither.
//
// The reader assumes the kernel serializes deliveries into one ring (one
// walk at a time), as it must anyway to claim frames.

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
	// slotDeferred: the fence barrier, given back by the reader or the
	// user while the fence is up. Status still VALID or COPY.
	slotDeferred
)

type rxRing struct {
	f     frames
	head  int
	state []slotState
	gen   []uint32 // bumped each time a frame is handed out or given back
	fence fence
}

// fence is up while a released frame was freed without proof that no
// walk is still going past it (see resolve). The barrier frame must stay
// VALID or COPY in memory until the witness frame is seen claimed.
type fence struct {
	up         bool
	witness    int  // the freed frame
	barrier    int  // the first frame after it that holds a message
	skipOnLift bool // the barrier was held while the fence was up
	dropped    bool // the kernel dropped a message while the fence was up
}

// noteDrop tells the reader that the kernel reported a drop (ENOBUFS).
func (r *rxRing) noteDrop() {
	if r.fence.up {
		r.fence.dropped = true
	}
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
	r.liftFence()
	if r.fence.up && r.fence.dropped {
		r.undo(r.fence.witness)
	}
	// A lap, with room for frames looked at twice: once when they turn
	// out to be SKIP without being held and once more as released.
	// Empty frames given back on the way do not count: each one is
	// progress.
	for looked := 0; looked < 2*r.f.n; looked++ {
		i := r.head
		switch r.state[i] {
		case slotHeld:
			r.head = r.f.next(i)
			continue
		case slotOut, slotDeferred:
			// A full lap of frames handed out: the kernel is stuck
			// behind this one too.
			return rxMsg{}, false, nil
		case slotReleased:
			// Acquire: pairs with the kernel's release store of RESERVED
			// should it have claimed the frame after an undone free
			// (see undo).
			if st := r.f.load(i); st != StatusSkip {
				r.state[i] = slotKernel
				break
			}
			res := r.resolve(i)
			switch res.kind {
			case resolveWait:
				return rxMsg{}, false, nil
			case resolvePassed:
				r.head = r.f.next(i)
				if r.fence.up {
					// One fence at a time: keep it SKIP, both sides
					// walk over it; it is resolved again in a lap.
					continue
				}
				r.state[i] = slotKernel
				// Release: pairs with the acquire load of the kernel's
				// walk when it comes back to frame i, a lap later.
				r.f.store(i, StatusUnused)
				// Acquire: pairs with the kernel's release store of
				// RESERVED when it claims the witness.
				if res.witness < 0 || r.f.load(res.witness) != StatusUnused {
					r.fence = fence{up: true, witness: i, barrier: res.barrier}
				}
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
		case StatusSkip:
			// SKIP that this reader did not store. The kernel never
			// writes it (an earlier version of the series did, for
			// claims it gave up): step over the frame and give it back
			// like a released one, which is safe whoever wrote it.
			r.state[i] = slotReleased
			continue
		case StatusUnused, StatusReserved:
			return rxMsg{}, false, nil
		case StatusValid, StatusCopy:
			h := r.f.hdr(i)
			if st == StatusValid && h.len == 0 {
				// A claim the kernel gave up (netlink_frame_abandon):
				// no message. Hand it back and go on.
				r.consume(i, false)
				looked--
				continue
			}
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
			return rxMsg{}, false, fmt.Errorf("frame %d: unknown status %v: %w", i, st, ErrCorrupt)
		}
	}
	// Every frame is held.
	return rxMsg{}, false, nil
}

type resolveKind int

const (
	resolveWait   resolveKind = iota // not safe yet: leave the frame SKIP and wait
	resolvePassed                    // the kernel walked past it: move on, free it if provably safe
	resolveHere                      // no other frame the kernel could fill: free it and wait on it
)

type resolution struct {
	kind    resolveKind
	barrier int // resolvePassed: the first frame after p that holds a message
	witness int // resolvePassed: a frame of the kernel's that is UNUSED, or -1
}

// resolve decides what to do with the released-but-still-SKIP frame p at
// the reader's head. See the comment at the top of this file.
func (r *rxRing) resolve(p int) resolution {
	res := resolution{kind: resolveHere, barrier: -1, witness: -1}
	for i := r.f.next(p); i != p; i = r.f.next(i) {
		switch r.state[i] {
		case slotHeld:
			if !r.fenced(i) {
				continue // SKIP in memory: the kernel walks over it too
			}
			// A fence barrier held meanwhile is still VALID in memory.
			if res.barrier < 0 {
				return resolution{kind: resolveWait}
			}
			continue
		case slotOut, slotDeferred:
			if res.barrier < 0 {
				return resolution{kind: resolveWait}
			}
			continue
		}
		// Acquire: pairs with the kernel's release stores of RESERVED,
		// VALID, COPY and SKIP.
		switch r.f.load(i) {
		case StatusSkip:
			// Released (or SKIP for another reason): walked over too.
			continue
		case StatusReserved:
			if res.barrier < 0 {
				// Proof that the kernel passed p. The kernel publishes
				// every frame it claims (an unused claim comes back
				// VALID and empty), but a kernel that gave claims back
				// as SKIP would leave no barrier: wait for it to be
				// published, which wakes the reader.
				return resolution{kind: resolveWait}
			}
		case StatusValid, StatusCopy:
			if res.barrier < 0 {
				res.kind, res.barrier = resolvePassed, i
			}
		case StatusUnused:
			if res.barrier < 0 {
				// The kernel's next walk fills it after skipping p.
				return resolution{kind: resolveWait}
			}
			res.witness = i
			return res
		default:
			// Corrupt; reported when the reader gets there.
			return resolution{kind: resolveWait}
		}
	}
	return res
}

// liftFence takes the fence down once its witness was claimed, and gives
// the barrier frame the status its owner asked for meanwhile.
func (r *rxRing) liftFence() {
	if !r.fence.up {
		return
	}
	// Acquire: pairs with the kernel's release store of RESERVED when a
	// walk claims the witness; that walk began after any walk that read
	// SKIP there had ended.
	if r.f.load(r.fence.witness) == StatusUnused {
		return
	}
	r.lift()
}

func (r *rxRing) lift() {
	b := r.fence.barrier
	switch {
	case r.state[b] == slotDeferred:
		r.state[b] = slotKernel
		// Release: pairs with the kernel's acquire load before reuse.
		r.f.store(b, StatusUnused)
	case r.state[b] == slotHeld && r.fence.skipOnLift:
		r.f.store(b, StatusSkip)
	}
	r.fence = fence{}
}

// undo is called when the kernel dropped a message while the fence was
// up and its witness w is not claimed yet: the walk the fence guards
// against may have read SKIP at w and stopped at the barrier, leaving the
// kernel's head past w (a kernel whose walk moves its head over SKIP
// frames even when it ends in a drop does that), so that every later walk
// stops at the barrier and drops too. Put w back to SKIP, as that walk saw
// it, and lift the fence; w is then resolved again like any released
// frame. That is safe wherever the kernel's head is: both sides walk over
// a SKIP frame. If the kernel claims w before the compare-and-swap, it
// claimed it in order (its head was not past w); if its plain store of
// RESERVED lands just after a successful swap, peek and resolve find a
// released frame that is not SKIP and treat it as the kernel's. It
// reports whether w is released again.
func (r *rxRing) undo(w int) bool {
	// Release/acquire: a sequentially consistent read-modify-write.
	ok := r.f.cas(w, StatusUnused, StatusSkip)
	if ok {
		r.state[w] = slotReleased
	}
	r.lift()
	return ok
}

// fenced reports whether frame i is the barrier of a fence that is up.
func (r *rxRing) fenced(i int) bool { return r.fence.up && r.fence.barrier == i }

// consume moves the head past the frame peek returned. Without keep the
// frame goes straight back to the kernel; with keep it is handed out and
// the returned generation names this hand-out for release and hold.
func (r *rxRing) consume(slot int, keep bool) uint32 {
	if r.fence.up && slot == r.fence.witness {
		// A message in the witness frame: it was claimed.
		r.lift()
	}
	r.head = r.f.next(slot)
	if !keep {
		if r.fenced(slot) {
			r.state[slot] = slotDeferred
			return 0
		}
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
		if r.fenced(slot) {
			r.state[slot] = slotDeferred
			break
		}
		r.state[slot] = slotKernel
		// Release: pairs with the kernel's acquire load before it
		// reuses the frame. Safe at once: the kernel cannot have walked
		// past a VALID frame, so this cannot leave a hole behind it.
		r.f.store(slot, StatusUnused)
	case slotHeld:
		if r.fenced(slot) && r.fence.skipOnLift {
			// Never went SKIP in memory: give it back like a VALID one.
			r.fence.skipOnLift = false
			r.state[slot] = slotDeferred
			break
		}
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
		if r.fenced(slot) {
			r.fence.skipOnLift = true // stays VALID until the fence lifts
			break
		}
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
		case slotOut, slotDeferred:
			out++
		case slotHeld, slotReleased:
			held++
		}
	}
	return out, held
}
