package ring

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

var errEINVAL error = unix.EINVAL

// simKernel plays the kernel's side of the RX and TX ring contract over a
// plain []byte ring, one memory access at a time, so tests can interleave
// it with the reader at any point. It accesses frames through the raw
// header view (never the hooked frames methods), like the real kernel.
//
// Messages are 4-byte sequence numbers. It is not safe for concurrent
// use; fakeSys wraps it with a lock for the tests that need a goroutine.
type simKernel struct {
	rx frames

	head int // the kernel's RX head

	// The delivery in progress, if busy.
	busy    bool
	cur     simMsg
	pos     int
	skipped int
	claimed bool

	delivered []simMsg // published, in publish order
	dropped   []simMsg // dropped because the ring was full
	queue     []simMsg // receive queue: messages of COPY frames
	overrun   bool     // pending ENOBUFS

	onPublish func() // called after each publish or drop (wakeups)
	onDrop    func() // called after each drop (ENOBUFS reported)

	// advanceOnWalk moves the head over each SKIP frame as the walk
	// steps on it, and leaves it at the frame that stopped a dropped
	// walk, as an earlier version of the series' netlink_ring_claim did.
	// Without it the head moves only past a claimed frame, as the
	// contract words it and the current kernel does.
	advanceOnWalk bool
	// skipAbandoned gives a claim up as SKIP, as that earlier version
	// did; without it the frame comes back VALID with nm_len 0, as
	// netlink_frame_abandon does now.
	skipAbandoned bool
	abandoned     []simMsg // claimed, then given up

	log []string // what happened, for failure messages
}

func (k *simKernel) logf(format string, args ...any) {
	k.log = append(k.log, fmt.Sprintf(format, args...))
}

// history returns the last entries of the log.
func (k *simKernel) history() string {
	l := k.log
	if len(l) > 400 {
		l = l[len(l)-400:]
	}
	s := ""
	for _, e := range l {
		s += "\n\t" + e
	}
	return s
}

type simMsg struct {
	seq     uint32
	abandon bool   // claim a frame, then give it up (empty VALID) instead of publishing
	copy    bool   // deliver as COPY (the message goes to the receive queue)
	data    []byte // payload; nil means the 4-byte sequence number
	pid     uint32
	grp     uint32
}

func (m simMsg) bytes() []byte {
	if m.data != nil {
		return m.data
	}
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, m.seq)
	return b
}

func newSimKernel(rx frames) *simKernel { return &simKernel{rx: rx} }

// begin starts delivering m; the kernel must be idle.
func (k *simKernel) begin(m simMsg) {
	if k.busy {
		panic("simKernel: begin while busy")
	}
	k.busy, k.cur, k.pos, k.skipped, k.claimed = true, m, k.head, 0, false
}

// step makes one memory access of the delivery in progress. It returns
// false when idle.
func (k *simKernel) step() bool {
	if !k.busy {
		return false
	}
	h := k.rx.hdr(k.pos)
	if k.claimed && k.cur.abandon {
		if k.skipAbandoned {
			h.store(StatusSkip) // release
		} else {
			h.len = 0
			h.store(StatusValid) // release
		}
		k.logf("kernel: %d abandons frame %d", k.cur.seq, k.pos)
		k.head = k.rx.next(k.pos)
		k.abandoned = append(k.abandoned, k.cur)
		k.busy = false
		k.notify()
		return true
	}
	if k.claimed {
		// Fill and publish.
		b := k.cur.bytes()
		st := StatusValid
		if k.cur.copy || len(b) > k.rx.maxPayload() {
			st = StatusCopy
			k.queue = append(k.queue, k.cur) // queued before COPY is published
		} else {
			copy(k.rx.payload(k.pos, len(b)), b)
		}
		h.len, h.group, h.pid, h.uid, h.gid = uint32(len(b)), k.cur.grp, k.cur.pid, 1000, 1000
		h.store(st) // release
		k.head = k.rx.next(k.pos)
		k.delivered = append(k.delivered, k.cur)
		k.logf("kernel: %d published in frame %d as %v", k.cur.seq, k.pos, st)
		k.busy = false
		k.notify()
		return true
	}
	switch h.load() { // acquire
	case StatusSkip:
		k.logf("kernel: %d skips frame %d", k.cur.seq, k.pos)
		k.skipped++
		k.pos = k.rx.next(k.pos)
		if k.advanceOnWalk {
			k.head = k.pos
		}
		if k.skipped == k.rx.n {
			k.drop()
		}
	case StatusUnused:
		h.store(StatusReserved)
		k.logf("kernel: %d claims frame %d", k.cur.seq, k.pos)
		k.claimed = true
	default:
		k.drop()
	}
	return true
}

func (k *simKernel) drop() {
	k.logf("kernel: %d dropped at frame %d", k.cur.seq, k.pos)
	k.dropped = append(k.dropped, k.cur)
	k.overrun = true
	k.busy = false
	if k.advanceOnWalk {
		k.head = k.pos
	}
	if k.onDrop != nil {
		k.onDrop()
	}
	k.notify()
}

func (k *simKernel) notify() {
	if k.onPublish != nil {
		k.onPublish()
	}
}

// run finishes the delivery in progress.
func (k *simKernel) run() {
	for k.step() {
	}
}

// deliver delivers m completely and reports whether it was published
// (or abandoned, as asked).
func (k *simKernel) deliver(m simMsg) bool {
	k.run()
	n := len(k.delivered) + len(k.abandoned)
	k.begin(m)
	k.run()
	return len(k.delivered)+len(k.abandoned) > n
}

// pending is netlink_rx_pending, what poll() reports as POLLIN: walk
// back from the head to the last UNUSED frame; the frame after it is the
// oldest one user space has not handed back. Step over SKIP frames from
// there (not beyond the head); the first other frame must be VALID or
// COPY.
func (k *simKernel) pending() bool {
	n := k.rx.n
	out, pos := 0, k.head
	for ; out < n; out++ {
		pos = (pos + n - 1) % n
		if k.rx.hdr(pos).load() == StatusUnused {
			break
		}
	}
	if out == n {
		pos = k.head
	} else {
		pos = k.rx.next(pos)
	}
	for range out {
		switch k.rx.hdr(pos).load() {
		case StatusSkip:
			pos = k.rx.next(pos)
			continue
		case StatusValid, StatusCopy:
			return true
		}
		return false
	}
	return false
}

// hasRoom is netlink_rx_has_room: the walk from the head over SKIP frames
// ends at an UNUSED one.
func (k *simKernel) hasRoom() bool {
	pos := k.head
	for range k.rx.n {
		switch k.rx.hdr(pos).load() {
		case StatusUnused:
			return true
		case StatusSkip:
			pos = k.rx.next(pos)
			continue
		}
		return false
	}
	return false
}

// pop takes the oldest message off the receive queue.
func (k *simKernel) pop() (simMsg, bool) {
	if len(k.queue) == 0 {
		return simMsg{}, false
	}
	m := k.queue[0]
	k.queue = k.queue[1:]
	return m, true
}

// statuses returns every frame's status, for failure messages.
func (k *simKernel) statuses() string {
	s := ""
	for i := range k.rx.n {
		s += fmt.Sprintf("%d:%v ", i, k.rx.hdr(i).load())
	}
	return s + fmt.Sprintf("khead=%d", k.head)
}

// simTX processes a TX ring like sendto(fd, NULL, 0): every VALID frame
// from head, in order, each set back to UNUSED. A frame with a bad nm_len
// is released and the call fails with EINVAL.
type simTX struct {
	tx   frames
	head int
	sent [][]byte
}

func (k *simTX) kick() error {
	for range k.tx.n {
		h := k.tx.hdr(k.head)
		if h.load() != StatusValid { // acquire
			return nil
		}
		n := int(h.len)
		i := k.head
		k.head = k.tx.next(k.head)
		if n == 0 || n > k.tx.maxPayload() {
			h.store(StatusUnused)
			return errEINVAL
		}
		k.sent = append(k.sent, append([]byte(nil), k.tx.payload(i, n)...))
		h.store(StatusUnused) // release
	}
	return nil
}

// testFrames returns frames over ordinary memory: n frames of size bytes.
func testFrames(n, size int) frames {
	p := Params{BlockSize: uint32(n * size), BlockNr: 1, FrameSize: uint32(size), FrameNr: uint32(n)}
	return newFrames(alignedBytes(p.Size()), p)
}
