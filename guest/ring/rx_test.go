package ring

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// rxHarness drives a reader against simKernel and checks that what the
// reader reads is exactly what the kernel published, in order.
type rxHarness struct {
	k *simKernel
	r reader

	handles map[uint32]handle // frames handed out or held, by sequence number
	got     []uint32
}

type handle struct {
	slot int
	gen  uint32
}

// reader is the consumer under test: the real rxRing, or naiveReader.
type reader interface {
	// next hands out the next message: its frame (slot -1 for a COPY
	// frame, which is given back at once) and its generation.
	next() (slot int, gen uint32, st Status, ok bool, err error)
	release(slot int, gen uint32) error
	hold(slot int, gen uint32) error
}

type realReader struct{ r *rxRing }

func (a realReader) next() (int, uint32, Status, bool, error) {
	m, ok, err := a.r.peek()
	if !ok || err != nil {
		return 0, 0, 0, ok, err
	}
	if m.status == StatusCopy {
		a.r.consume(m.slot, false)
		return -1, 0, StatusCopy, true, nil
	}
	return m.slot, a.r.consume(m.slot, true), StatusValid, true, nil
}
func (a realReader) release(slot int, gen uint32) error { return a.r.release(slot, gen) }
func (a realReader) hold(slot int, gen uint32) error    { return a.r.hold(slot, gen) }

// kernelVariant selects how simKernel behaves where the series changed.
type kernelVariant struct {
	// advanceOnWalk, skipAbandoned: see simKernel. The earlier version
	// of the series did both; the reader must still be correct with it.
	old bool
}

func newHarness(n int, naive bool, kv kernelVariant) *rxHarness {
	f := testFrames(n, 64)
	h := &rxHarness{k: newSimKernel(f), handles: map[uint32]handle{}}
	h.k.advanceOnWalk, h.k.skipAbandoned = kv.old, kv.old
	if naive {
		h.r = &naiveReader{f: f, held: make([]bool, n), out: map[int]bool{}}
	} else {
		r := newRXRing(f)
		h.k.onDrop = r.noteDrop
		h.r = realReader{r}
	}
	return h
}

// read hands out one message and checks it is the next one published.
// It returns the sequence number, or 0 if there was nothing to read.
func (h *rxHarness) read() (uint32, error) {
	slot, gen, st, ok, err := h.r.next()
	if err != nil || !ok {
		return 0, err
	}
	var seq uint32
	if st == StatusCopy {
		m, ok := h.k.pop()
		if !ok {
			return 0, fmt.Errorf("COPY frame but empty receive queue")
		}
		seq = m.seq
	} else {
		seq = binary.NativeEndian.Uint32(h.k.rx.payload(slot, 4))
		h.handles[seq] = handle{slot, gen}
	}
	h.k.logf("reader: read %d (frame %d)", seq, slot)
	h.got = append(h.got, seq)
	if i := len(h.got) - 1; i >= len(h.k.delivered) || h.k.delivered[i].seq != seq {
		return seq, fmt.Errorf("read %d as message #%d; published in order: %v; read: %v",
			seq, i, seqs(h.k.delivered), h.got)
	}
	return seq, nil
}

func (h *rxHarness) release(seq uint32) error {
	hd, ok := h.handles[seq]
	if !ok {
		return nil // COPY frames have nothing to release
	}
	delete(h.handles, seq)
	h.k.logf("reader: release %d (frame %d)", seq, hd.slot)
	return h.r.release(hd.slot, hd.gen)
}

func (h *rxHarness) hold(seq uint32) error {
	hd, ok := h.handles[seq]
	if !ok {
		return nil
	}
	h.k.logf("reader: hold %d (frame %d)", seq, hd.slot)
	return h.r.hold(hd.slot, hd.gen)
}

// drain reads and releases until there is nothing to read.
func (h *rxHarness) drain() error {
	for {
		seq, err := h.read()
		if err != nil {
			return err
		}
		if seq == 0 {
			return nil
		}
		if err := h.release(seq); err != nil {
			return err
		}
	}
}

// complete checks that everything published was read.
func (h *rxHarness) complete() error {
	if want := seqs(h.k.delivered); !slices.Equal(h.got, want) {
		return fmt.Errorf("published %v, read %v (ring %s)", want, h.got, h.k.statuses())
	}
	return nil
}

func seqs(ms []simMsg) []uint32 {
	s := make([]uint32, len(ms))
	for i, m := range ms {
		s[i] = m.seq
	}
	return s
}

// naiveReader is the reader the rxRing comment warns about: it tracks
// which frames it handed out and holds, but frees a held frame the moment
// it is released and takes UNUSED at its head to mean "empty". The tests
// run it to show that they catch the stall and the reordering this causes.
type naiveReader struct {
	f    frames
	head int
	held []bool
	out  map[int]bool
}

func (r *naiveReader) next() (int, uint32, Status, bool, error) {
	for range r.f.n {
		i := r.head
		if r.held[i] {
			r.head = r.f.next(i)
			continue
		}
		if r.out[i] {
			return 0, 0, 0, false, nil
		}
		switch st := r.f.load(i); st {
		case StatusValid:
			r.head = r.f.next(i)
			if r.f.hdr(i).len == 0 { // given up by the kernel
				r.f.store(i, StatusUnused)
				continue
			}
			r.out[i] = true
			return i, 0, st, true, nil
		case StatusCopy:
			r.head = r.f.next(i)
			r.f.store(i, StatusUnused)
			return -1, 0, st, true, nil
		default:
			return 0, 0, 0, false, nil
		}
	}
	return 0, 0, 0, false, nil
}

func (r *naiveReader) release(slot int, _ uint32) error {
	r.held[slot], r.out[slot] = false, false
	r.f.store(slot, StatusUnused)
	return nil
}

func (r *naiveReader) hold(slot int, _ uint32) error {
	r.held[slot], r.out[slot] = true, false
	r.f.store(slot, StatusSkip)
	return nil
}

// An rxStep is one step of a scripted interleaving.
type rxStep struct {
	op   string // deliver, copy, claim, finish, read (and release), next (keep), hold, release, none, dropped
	seq  uint32 // message to deliver, expected to read, or to hold/release
	want int    // dropped: expected number of drops so far
}

func TestRXScripts(t *testing.T) {
	d := func(seq uint32) rxStep { return rxStep{op: "deliver", seq: seq} }
	rd := func(seq uint32) rxStep { return rxStep{op: "read", seq: seq} }
	nx := func(seq uint32) rxStep { return rxStep{op: "next", seq: seq} }
	hd := func(seq uint32) rxStep { return rxStep{op: "hold", seq: seq} }
	rl := func(seq uint32) rxStep { return rxStep{op: "release", seq: seq} }
	none := rxStep{op: "none"}
	drops := func(n int) rxStep { return rxStep{op: "dropped", want: n} }

	tests := []struct {
		name   string
		frames int
		steps  []rxStep
	}{
		{"in order with wraparound", 3, []rxStep{
			d(1), d(2), rd(1), d(3), d(4), rd(2), rd(3), rd(4), none, d(5), rd(5), drops(0)}},
		{"full ring drops and reports", 2, []rxStep{
			d(1), d(2), d(3), drops(1), rd(1), rd(2), none, d(4), rd(4)}},
		{"RESERVED at the head is not readable yet", 3, []rxStep{
			d(1), rd(1), {op: "claim", seq: 2}, none, {op: "finish"}, rd(2), none}},
		{"COPY frames keep ring order", 4, []rxStep{
			d(1), {op: "copy", seq: 2}, d(3), {op: "copy", seq: 4}, rd(1), rd(2), rd(3), rd(4), none}},
		{"kernel skips a held frame", 3, []rxStep{
			d(1), nx(1), hd(1), d(2), d(3), rd(2), rd(3), d(4), d(5), d(6), drops(1), rd(4), rd(5),
			rl(1), none, d(7), rd(7), d(8), d(9), rd(8), rd(9), none, drops(1)}},
		// The subtle case: the kernel skips held frame 0 and fills frame 1
		// while the reader is still behind; then the user releases frame
		// 0. A naive reader stops at frame 0 and later reads 8 before 5.
		{"release after the kernel skipped, before the reader got there", 4, []rxStep{
			d(1), nx(1), hd(1), d(2), d(3), d(4), rd(2), d(5), rl(1),
			rd(3), rd(4), rd(5), d(6), d(7), d(8), rd(6), rd(7), rd(8), none, drops(0)}},
		{"release before the kernel got there", 4, []rxStep{
			d(1), nx(1), hd(1), rl(1), d(2), rd(2), d(3), d(4), d(5), rd(3), rd(4), rd(5),
			d(6), d(7), d(8), rd(6), rd(7), rd(8), none, drops(0)}},
		{"released frame waits while the kernel has not passed it", 3, []rxStep{
			d(1), nx(1), hd(1), d(2), d(3), rd(2), rd(3), rl(1), none, none,
			d(4), rd(4), d(5), d(6), rd(5), rd(6), d(7), rd(7), none, drops(0)}},
		{"all frames held, then released: freed in place", 3, []rxStep{
			d(1), d(2), d(3), nx(1), nx(2), nx(3), hd(1), hd(2), hd(3), d(4), drops(1),
			rl(2), rl(3), rl(1), none, d(5), rd(5), d(6), rd(6), d(7), rd(7), d(8), d(9), rd(8), rd(9), drops(1)}},
		{"handed-out frame blocks the kernel", 2, []rxStep{
			d(1), d(2), nx(1), rd(2), d(3), drops(1), none, rl(1), d(4), rd(4), none}},
		{"released frame behind a handed-out frame", 3, []rxStep{
			d(1), d(2), d(3), nx(1), hd(1), nx(2), rd(3), rl(1), none, d(4), drops(1),
			rl(2), none, d(5), rd(5), d(6), d(7), rd(6), rd(7), none, drops(1)}},
		// The abandoned frame (empty VALID; SKIP for the old kernel) is
		// stepped over and handed back.
		{"kernel abandons a claimed frame", 3, []rxStep{
			d(1), {op: "abandon", seq: 2}, d(3), rd(1), rd(3), none, d(4), d(5), rd(4), rd(5),
			d(6), d(7), rd(6), rd(7), d(8), d(9), rd(8), rd(9), none, drops(0)}},
		// For the old kernel (SKIP), freeing the abandoned frame raises a
		// fence (there is no witness in two frames): its barrier comes
		// back one delivery late.
		{"kernel abandons the frame at the reader's head", 2, []rxStep{
			{op: "claim", seq: 1}, none, {op: "giveup"}, none, d(2), rd(2), d(3), rd(3), d(4), rd(4), drops(0)}},
		{"abandoned frames fill the ring", 2, []rxStep{
			{op: "abandon", seq: 1}, {op: "abandon", seq: 2}, d(3), drops(1), none, d(4), rd(4), d(5), rd(5), none, drops(1)}},
		{"one frame ring", 1, []rxStep{
			d(1), nx(1), hd(1), d(2), drops(1), rl(1), none, d(3), rd(3), none}},
	}
	for _, tt := range tests {
		for _, v := range []struct {
			naive  bool
			kv     kernelVariant
			prefix string
		}{{false, kernelVariant{}, ""}, {false, kernelVariant{old: true}, "old kernel/"}, {true, kernelVariant{}, "naive/"}} {
			naive := v.naive
			t.Run(v.prefix+tt.name, func(t *testing.T) {
				err := runScript(newHarness(tt.frames, naive, v.kv), tt.steps)
				switch {
				case !naive && err != nil:
					t.Fatal(err)
				case naive && err == nil && tt.name == "release after the kernel skipped, before the reader got there":
					t.Fatal("the naive reader passed the script written to catch it")
				}
			})
		}
	}
}

func runScript(h *rxHarness, steps []rxStep) error {
	for i, s := range steps {
		err := func() error {
			switch s.op {
			case "deliver", "copy":
				h.k.deliver(simMsg{seq: s.seq, copy: s.op == "copy"})
			case "abandon":
				h.k.deliver(simMsg{seq: s.seq, abandon: true})
			case "claim":
				h.k.begin(simMsg{seq: s.seq})
				for !h.k.claimed {
					h.k.step()
				}
			case "finish":
				h.k.run()
			case "giveup":
				h.k.cur.abandon = true
				h.k.run()
			case "read", "next":
				seq, err := h.read()
				if err != nil {
					return err
				}
				if seq != s.seq {
					return fmt.Errorf("read %d, want %d", seq, s.seq)
				}
				if s.op == "read" {
					return h.release(seq)
				}
			case "none":
				if seq, err := h.read(); err != nil || seq != 0 {
					return fmt.Errorf("read %d (%v), want nothing", seq, err)
				}
			case "hold":
				return h.hold(s.seq)
			case "release":
				return h.release(s.seq)
			case "dropped":
				if len(h.k.dropped) != s.want {
					return fmt.Errorf("%d drops, want %d", len(h.k.dropped), s.want)
				}
			default:
				panic(s.op)
			}
			return nil
		}()
		if err != nil {
			return fmt.Errorf("step %d %s(%d): %v (ring %s)", i, s.op, s.seq, err, h.k.statuses())
		}
	}
	return nil
}

// TestRXModel runs random interleavings of kernel deliveries (split into
// single memory accesses, which also run inside the reader's own status
// loads and stores) and reader reads, holds and releases, and checks that
// messages come out in publish order, none lost or repeated; then that
// after everything is released the ring drains and recycles every frame.
func TestRXModel(t *testing.T) {
	seeds := *modelSeeds
	if testing.Short() {
		seeds /= 10
	}
	fences := 0
	for seed := range seeds {
		st, err := runModel(uint64(seed), false)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		fences += st.fences
	}
	// The fence is the rarest path; make sure the interleavings reach it.
	if fences == 0 {
		t.Errorf("%d seeds never raised a fence", seeds)
	}
	t.Logf("%d seeds, %d fences", seeds, fences)
}

var modelSeeds = flag.Int("ring.seeds", 3000, "random interleavings TestRXModel runs")

// TestRXModelCatchesNaiveReader shows that TestRXModel can fail: the same
// random interleavings catch the naive reader.
func TestRXModelCatchesNaiveReader(t *testing.T) {
	for seed := range 3000 {
		if _, err := runModel(uint64(seed), true); err != nil {
			t.Logf("seed %d: %v", seed, err)
			return
		}
	}
	t.Fatal("no seed caught the naive reader")
}

type modelStats struct{ fences int }

func runModel(seed uint64, naive bool) (st modelStats, err error) {
	rng := rand.New(rand.NewPCG(seed, 1))
	n := 1 + rng.IntN(6)
	h := newHarness(n, naive, kernelVariant{old: seed%2 == 1})
	next := uint32(1)
	startMsg := func() {
		if !h.k.busy {
			h.k.begin(simMsg{seq: next, copy: rng.IntN(8) == 0, abandon: rng.IntN(10) == 0})
			next++
		}
	}
	var out, held []uint32
	pick := func(s *[]uint32) uint32 {
		i := rng.IntN(len(*s))
		seq := (*s)[i]
		*s = slices.Delete(*s, i, i+1)
		return seq
	}
	// Let the kernel act between any two of the reader's status accesses.
	f := readerFrames(h)
	rr, _ := h.r.(realReader)
	wasUp := false
	countFence := func() {
		if up := rr.r != nil && rr.r.fence.up; up != wasUp {
			if up {
				st.fences++
			}
			wasUp = up
		}
	}
	f.hook = func() {
		for rng.IntN(3) == 0 {
			if rng.IntN(4) == 0 {
				startMsg()
			}
			h.k.step()
		}
	}

	for range 200 {
		var err error
		switch a := rng.IntN(10); {
		case a < 3:
			startMsg()
			for range rng.IntN(8) {
				h.k.step()
			}
		case a < 6:
			var seq uint32
			seq, err = h.read()
			if err == nil && seq != 0 {
				switch rng.IntN(4) {
				case 0:
					out = append(out, seq)
				case 1:
					if err = h.hold(seq); err == nil {
						held = append(held, seq)
					}
				default:
					err = h.release(seq)
				}
			}
		case a < 7 && len(out) > 0:
			seq := pick(&out)
			if rng.IntN(2) == 0 {
				err = h.release(seq)
			} else if err = h.hold(seq); err == nil {
				held = append(held, seq)
			}
		case a < 9 && len(held) > 0:
			err = h.release(pick(&held))
		}
		if err != nil {
			return st, fmt.Errorf("%v\nhistory:%s", err, h.k.history())
		}
		countFence()
	}

	// Quiesce: finish the delivery in progress, give everything back and
	// read what is left. Every published message must have been read.
	f.hook = nil
	h.k.run()
	for _, s := range [][]uint32{out, held} {
		for len(s) > 0 {
			if err := h.release(pick(&s)); err != nil {
				return st, err
			}
		}
	}
	if err := h.drain(); err != nil {
		return st, err
	}
	if err := h.complete(); err != nil {
		return st, fmt.Errorf("after draining: %v", err)
	}

	// Recycle: with nothing held, one message at a time must never be
	// dropped, and afterwards no frame may still be SKIP.
	// A kernel that moves its head on a dropped walk may have to drop
	// once more before the reader learns that it must undo a fence.
	spare := h.k.advanceOnWalk
	for range 3 * n {
		if !h.k.deliver(simMsg{seq: next}) && spare {
			spare = false
			next++
			if err := h.drain(); err != nil {
				return st, err
			}
			if !h.k.deliver(simMsg{seq: next}) {
				return st, fmt.Errorf("message %d dropped after the fence was undone (ring %s)%s", next, h.k.statuses(), h.k.history())
			}
		} else if len(h.k.delivered) == 0 || h.k.delivered[len(h.k.delivered)-1].seq != next {
			return st, fmt.Errorf("message %d dropped with nothing held (ring %s)%s", next, h.k.statuses(), h.k.history())
		}
		next++
		if err := h.drain(); err != nil {
			return st, err
		}
	}
	if err := h.complete(); err != nil {
		return st, fmt.Errorf("after recycling: %v", err)
	}
	for i := range n {
		if h.k.rx.hdr(i).load() == StatusSkip {
			return st, fmt.Errorf("frame %d still SKIP after recycling (ring %s)", i, h.k.statuses())
		}
	}
	return st, nil
}

// readerFrames returns the reader's view of the ring, whose hook runs
// before each of its status accesses.
func readerFrames(h *rxHarness) *frames {
	switch r := h.r.(type) {
	case realReader:
		return &r.r.f
	case *naiveReader:
		return &r.f
	}
	panic("unknown reader")
}

func TestRXBadFrameHandles(t *testing.T) {
	r := newRXRing(testFrames(2, 64))
	k := newSimKernel(r.f)
	k.deliver(simMsg{seq: 1})
	m, ok, err := r.peek()
	if !ok || err != nil {
		t.Fatalf("peek: %v %v", ok, err)
	}
	gen := r.consume(m.slot, true)
	for _, c := range []struct {
		name string
		err  error
	}{
		{"hold with stale generation", r.hold(m.slot, gen+1)},
		{"release out of range", r.release(5, gen)},
		{"hold", r.hold(m.slot, gen)},
		{"hold twice", r.hold(m.slot, gen)},
		{"release", r.release(m.slot, gen)},
	} {
		wantErr := c.name == "hold with stale generation" || c.name == "release out of range"
		if (c.err != nil) != wantErr {
			t.Errorf("%s: err %v, want error %v", c.name, c.err, wantErr)
		}
	}
	if err := r.release(m.slot, gen); err == nil {
		t.Error("second release of the same frame succeeded")
	}
	if err := r.hold(m.slot, gen); err == nil {
		t.Error("hold after release succeeded")
	}
}

func TestRXCorrupt(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f frames)
	}{
		{"unknown status", func(f frames) { f.hdr(0).store(9) }},
		{"nm_len larger than the frame", func(f frames) {
			f.hdr(0).len = uint32(f.size)
			f.hdr(0).store(StatusValid)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRXRing(testFrames(2, 64))
			tt.setup(r.f)
			_, ok, err := r.peek()
			if ok || err == nil {
				t.Fatalf("peek = %v, %v; want ErrCorrupt", ok, err)
			}
		})
	}
}

// TestSimKernelPending checks the fake kernel's POLLIN rule, the one of
// netlink_rx_pending: the oldest frame user space has not handed back,
// past the frames it holds, must be VALID or COPY.
func TestSimKernelPending(t *testing.T) {
	const (
		U = StatusUnused
		R = StatusReserved
		V = StatusValid
		C = StatusCopy
		S = StatusSkip
	)
	tests := []struct {
		name string
		ring []Status
		head int
		want bool
	}{
		{"empty", []Status{U, U, U}, 0, false},
		{"one VALID", []Status{V, U, U}, 1, true},
		{"COPY", []Status{U, C, U}, 2, true},
		{"RESERVED in front of VALID", []Status{R, V, U}, 2, false},
		{"VALID after a given-back frame", []Status{U, V, U}, 2, true},
		{"held frames in front of VALID", []Status{S, S, V, U}, 3, true},
		{"held frames only", []Status{S, S, U}, 2, false},
		{"held in front of RESERVED", []Status{S, R, U}, 2, false},
		{"full ring, oldest at the head", []Status{V, V, V}, 1, true},
		{"full ring, RESERVED at the head", []Status{V, R, V}, 1, false},
		{"all held", []Status{S, S, S}, 0, false},
		{"wrapped", []Status{V, U, V}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newSimKernel(testFrames(len(tt.ring), 64))
			for i, st := range tt.ring {
				k.rx.hdr(i).store(st)
			}
			k.head = tt.head
			if got := k.pending(); got != tt.want {
				t.Errorf("pending() = %v, want %v (ring %s)", got, tt.want, k.statuses())
			}
		})
	}
}
