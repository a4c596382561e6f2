package rxring

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// ackIn returns the sequence number of the acknowledgement in VALID frame
// i, failing the test if frame i holds anything else.
func (r *rawRing) ackIn(t *testing.T, i int) uint32 {
	t.Helper()
	if st := r.rx.status(i); st != ring.StatusValid {
		t.Fatalf("frame %d is %v, want VALID; ring: %s", i, st, r.rx.statuses())
	}
	h := r.rx.hdr(i)
	if int(h.Len) > len(r.rx.payload(i)) {
		t.Fatalf("frame %d: nm_len %d exceeds the frame", i, h.Len)
	}
	seq, code, _, err := ackOf(r.rx.payload(i)[:h.Len])
	if err != nil || code != 0 {
		t.Fatalf("frame %d: want an ack, got code %d: %v", i, code, err)
	}
	return seq
}

// wantAcks checks that frames[k] holds the ack of seqs[k].
func (r *rawRing) wantAcks(t *testing.T, frames []int, seqs []uint32) {
	t.Helper()
	for k, i := range frames {
		if got := r.ackIn(t, i); got != seqs[k] {
			t.Errorf("frame %d holds the ack of seq %d, want %d; ring: %s", i, got, seqs[k], r.rx.statuses())
		}
	}
}

// sendAcks sends NLMSG_NOOP requests with NLM_F_ACK for seqs from..to.
func (r *rawRing) sendAcks(t *testing.T, from, to uint32) {
	t.Helper()
	for s := from; s <= to; s++ {
		r.send(t, noopAck(s))
	}
}

// pendingError is what a non-blocking recvmsg on an empty receive queue
// says: the socket's pending error (reading it clears it), else EAGAIN.
func (r *rawRing) pendingError() error {
	_, _, err := unix.Recvfrom(r.fd, make([]byte, 64), unix.MSG_DONTWAIT)
	return err
}

// soError fetches and clears the pending error with SO_ERROR.
func (r *rawRing) soError(t *testing.T) unix.Errno {
	t.Helper()
	v, err := unix.GetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		t.Fatalf("SO_ERROR: %v", err)
	}
	return unix.Errno(v)
}

// frameCopy is a frame's header and payload as they were.
func (r *rawRing) frameCopy(i int) []byte {
	return bytes.Clone(r.rx.mem[i*r.rx.size+4 : (i+1)*r.rx.size])
}

// TestSkipSteppedOver checks that the kernel steps over frames user space
// marked SKIP to the next UNUSED frame, leaving the held frames' header
// and contents untouched, that a ring whose free frames are all used up
// drops the message (ENOBUFS) without moving on, and that a ring of
// nothing but SKIP frames drops too. Frames are 4, messages are acks.
func TestSkipSteppedOver(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 6) // acks built in the ring (VALID frames)
	r := newRawRing(t, unix.NETLINK_ROUTE, mustParams(t, pageSize/4, 4), ring.Params{})
	r.sendAcks(t, 1, 4)
	r.wantAcks(t, []int{0, 1, 2, 3}, []uint32{1, 2, 3, 4})

	// Hold frames 1 and 2, give back 0 and 3. The kernel is at 0.
	held := [][]byte{r.frameCopy(1), r.frameCopy(2)}
	r.rx.setStatus(1, ring.StatusSkip)
	r.rx.setStatus(2, ring.StatusSkip)
	r.rx.setStatus(0, ring.StatusUnused)
	r.rx.setStatus(3, ring.StatusUnused)
	r.sendAcks(t, 5, 6)
	r.wantAcks(t, []int{0, 3}, []uint32{5, 6})
	checkHeld := func(when string) {
		t.Helper()
		for k, i := range []int{1, 2} {
			if st := r.rx.status(i); st != ring.StatusSkip {
				t.Errorf("%s: held frame %d is %v, want SKIP", when, i, st)
			}
			if !bytes.Equal(r.frameCopy(i), held[k]) {
				t.Errorf("%s: the kernel wrote to held frame %d", when, i)
			}
		}
	}
	checkHeld("after stepping over them")

	// Frame 0 (seq 5) is not given back: the ring is full.
	r.send(t, noopAck(7))
	if err := r.pendingError(); !errors.Is(err, unix.ENOBUFS) {
		t.Errorf("after a message for a full ring, recvmsg = %v, want ENOBUFS", err)
	}
	r.wantAcks(t, []int{0, 3}, []uint32{5, 6})
	checkHeld("after a drop")
	pollIn(t, r.fd) // what a reader does next; it also ends the overrun state

	// The kernel did not move on: giving back frame 0 makes it the next.
	r.rx.setStatus(0, ring.StatusUnused)
	r.rx.setStatus(3, ring.StatusUnused)
	r.sendAcks(t, 8, 9)
	r.wantAcks(t, []int{0, 3}, []uint32{8, 9})
	checkHeld("second lap")

	// Released frames are used again.
	for i := range 4 {
		r.rx.setStatus(i, ring.StatusUnused)
	}
	r.sendAcks(t, 10, 11)
	r.wantAcks(t, []int{0, 1}, []uint32{10, 11})

	// Nothing but SKIP frames: a drop, nothing overwritten.
	r.rx.setStatus(2, ring.StatusSkip)
	r.rx.setStatus(3, ring.StatusSkip)
	r.rx.setStatus(0, ring.StatusSkip)
	r.rx.setStatus(1, ring.StatusSkip)
	before := [][]byte{r.frameCopy(0), r.frameCopy(1), r.frameCopy(2), r.frameCopy(3)}
	r.send(t, noopAck(12))
	if e := r.soError(t); e != unix.ENOBUFS {
		t.Errorf("after a message for a ring of SKIP frames, SO_ERROR = %v, want ENOBUFS", e)
	}
	for i := range 4 {
		if st := r.rx.status(i); st != ring.StatusSkip || !bytes.Equal(r.frameCopy(i), before[i]) {
			t.Errorf("ring of SKIP frames: frame %d is %v, changed %v", i, st, !bytes.Equal(r.frameCopy(i), before[i]))
		}
	}
	pollIn(t, r.fd)
	for i := range 4 {
		r.rx.setStatus(i, ring.StatusUnused)
	}
	r.send(t, noopAck(13))
	r.wantAcks(t, []int{2}, []uint32{13})
}

// TestOverrun fills a ring of 4 frames with 10 acks without reading: the
// first 4 are delivered, the other 6 dropped, which the socket reports as
// ENOBUFS (recvmsg, then SO_ERROR for a second overrun) and counts in
// its drop counter (SK_MEMINFO_DROPS). After draining, later messages
// take the freed frames and no message is ever delivered twice: the
// sequence numbers read are exactly the delivered ones, increasing.
func TestOverrun(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 6) // acks built in the ring (VALID frames)
	r := newRawRing(t, unix.NETLINK_ROUTE, mustParams(t, pageSize/4, 4), ring.Params{})
	drops0 := diag(t, r.fd).Drops()
	var got []uint32
	drain := func() {
		t.Helper()
		for i := range 4 {
			got = append(got, r.ackIn(t, i))
			r.rx.setStatus(i, ring.StatusUnused)
		}
	}

	r.sendAcks(t, 1, 10)
	if err := r.pendingError(); !errors.Is(err, unix.ENOBUFS) {
		t.Errorf("after an overrun recvmsg = %v, want ENOBUFS", err)
	}
	if err := r.pendingError(); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("second recvmsg = %v, want EAGAIN (ENOBUFS reported once)", err)
	}
	if d := diag(t, r.fd).Drops() - drops0; d != 6 {
		t.Errorf("drop counter rose by %d, want 6", d)
	}
	if !pollIn(t, r.fd) {
		t.Error("poll does not report POLLIN with a full ring")
	}
	drain()
	if pollIn(t, r.fd) {
		t.Error("poll reports POLLIN after draining")
	}

	r.sendAcks(t, 11, 15)
	if e := r.soError(t); e != unix.ENOBUFS {
		t.Errorf("after the second overrun SO_ERROR = %v, want ENOBUFS", e)
	}
	if e := r.soError(t); e != 0 {
		t.Errorf("second SO_ERROR = %v, want 0", e)
	}
	if d := diag(t, r.fd).Drops() - drops0; d != 7 {
		t.Errorf("drop counter rose by %d in all, want 7", d)
	}
	drain()
	r.send(t, noopAck(16))
	got = append(got, r.ackIn(t, 0))

	want := []uint32{1, 2, 3, 4, 11, 12, 13, 14, 16}
	if len(got) != len(want) {
		t.Fatalf("read acks %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("read acks %v, want %v", got, want)
		}
	}
	if !queueEmpty(t, r.fd) {
		t.Error("receive queue not empty")
	}
}

// TestOverrunThroughConn is TestOverrun through the library's reader:
// the 4 delivered acks, then one error wrapping ENOBUFS, then the acks
// sent after it; never one twice.
func TestOverrunThroughConn(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 6) // acks built in the ring (VALID frames)
	c := dialRing(t, unix.NETLINK_ROUTE, mustParams(t, pageSize/4, 4))
	send := func(from, to uint32) {
		connFD(t, c, func(fd int) {
			for s := from; s <= to; s++ {
				if err := unix.Sendto(fd, noopAck(s), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
					t.Fatalf("sendto: %v", err)
				}
			}
		})
	}
	receive := func(seq uint32) {
		t.Helper()
		rec, err := c.Receive()
		if err != nil {
			t.Fatalf("Receive (want the ack of seq %d): %v", seq, err)
		}
		if s, code, _, err := ackOf(rec.Data); err != nil || s != seq || code != 0 || rec.Copied {
			t.Fatalf("Receive: seq %d code %d copied %v (%v), want the ack of seq %d in a frame", s, code, rec.Copied, err, seq)
		}
	}
	send(1, 10)
	for s := uint32(1); s <= 4; s++ {
		receive(s)
	}
	if _, err := c.Receive(); !errors.Is(err, unix.ENOBUFS) {
		t.Fatalf("Receive after the delivered acks = %v, want ENOBUFS", err)
	}
	send(11, 12)
	receive(11)
	receive(12)
}

// TestAbandonedFrameIsEmptyValid provokes the kernel into claiming RX
// frames and then not delivering into them, and checks that it hands
// them back VALID with nm_len 0 (not RESERVED, not UNUSED, not SKIP) and
// moves on, and that Receive steps over them and gives them back. A
// socket filter that drops everything does it: each dump part claims its
// frame before it is built, and the filter then drops the part
// (netlink_rx_cancel). poll() continues the dump until it is done or the
// ring is full. After the filter is removed, the next message takes the
// next frame, and Receive returns it first.
func TestAbandonedFrameIsEmptyValid(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 6) // acks built in the ring (VALID frames)
	rx := mustParams(t, pageSize, 8)
	c := dialRing(t, unix.NETLINK_ROUTE, rx)
	var fd int
	connFD(t, c, func(f int) { fd = f })
	dropAll := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	prog := unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		t.Fatalf("SO_ATTACH_FILTER: %v", err)
	}
	if err := unix.Sendto(fd, getLink(1, unix.NLM_F_DUMP, 0, nil), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatalf("dump request: %v", err)
	}
	used := func() int {
		n := 0
		for i := range int(rx.FrameNr) {
			if f, _ := c.RawRX(i); f.Status() != ring.StatusUnused {
				n++
			}
		}
		return n
	}
	// Continue the dump with poll() until it stops taking frames.
	n := used()
	for range rx.FrameNr {
		if !pollIn(t, fd) {
			t.Errorf("no POLLIN with %d empty VALID frames", n)
		}
		m := used()
		if m == n {
			break
		}
		n = m
	}
	if n == 0 || n >= int(rx.FrameNr) {
		t.Fatalf("the filtered dump left %d frames not UNUSED, want between 1 and %d", n, rx.FrameNr-1)
	}
	for i := range n {
		if f, _ := c.RawRX(i); f.Status() != ring.StatusValid || f.Len() != 0 {
			t.Errorf("frame %d of a filtered dump part is %v with nm_len %d, want VALID with nm_len 0", i, f.Status(), f.Len())
		}
	}
	if !queueEmpty(t, fd) {
		t.Error("receive queue not empty: the filter should have dropped every part")
	}

	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); err != nil {
		t.Fatalf("SO_DETACH_FILTER: %v", err)
	}
	if err := unix.Sendto(fd, noopAck(2), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	if f, _ := c.RawRX(n); f.Status() != ring.StatusValid || f.Len() == 0 {
		t.Fatalf("frame %d after the abandoned ones is %v with nm_len %d, want VALID with the ack", n, f.Status(), f.Len())
	}
	rec, err := c.Receive()
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if seq, code, _, err := ackOf(rec.Data); err != nil || seq != 2 || code != 0 {
		t.Errorf("Receive returned seq %d code %d (%v), want the ack of seq 2", seq, code, err)
	}
	if u := used(); u != 0 {
		t.Errorf("%d frames not UNUSED after Receive stepped over the empty ones", u)
	}
	if pollIn(t, fd) {
		t.Error("POLLIN after everything was read")
	}
}

// TestPollIn checks POLLIN on a socket with an RX ring: set while a VALID
// or COPY frame waits (also a COPY frame whose message was read but whose
// frame is not given back yet), not set when the ring is drained or only
// holds frames user space keeps (SKIP), and set for the newest frame
// even when older ones were given back out of order.
func TestPollIn(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 6) // acks built in the ring (VALID frames)
	r := newRawRing(t, unix.NETLINK_ROUTE, mustParams(t, pageSize/4, 4), ring.Params{})
	want := func(when string, in bool) {
		t.Helper()
		if got := pollIn(t, r.fd); got != in {
			t.Errorf("%s: POLLIN %v, want %v; ring: %s", when, got, in, r.rx.statuses())
		}
	}
	want("empty ring", false)
	r.send(t, noopAck(1))
	want("VALID frame 0", true)
	r.rx.setStatus(0, ring.StatusUnused)
	want("frame 0 given back", false)

	r.send(t, getLink(2, 0, 1, nil)) // the reply is COPY
	if st := r.rx.status(1); st != ring.StatusCopy {
		t.Fatalf("frame 1 is %v, want COPY", st)
	}
	want("COPY frame 1", true)
	buf := make([]byte, 64<<10)
	n, _, err := unix.Recvfrom(r.fd, buf, unix.MSG_DONTWAIT)
	if err != nil || uint32(n) != r.rx.hdr(1).Len {
		t.Fatalf("recvmsg of COPY frame 1: %d bytes, %v; nm_len %d", n, err, r.rx.hdr(1).Len)
	}
	want("COPY frame 1 read, not given back", true)
	r.rx.setStatus(1, ring.StatusUnused)
	want("frame 1 given back", false)

	r.send(t, noopAck(3))
	r.rx.setStatus(2, ring.StatusSkip)
	want("frame 2 held (SKIP)", false)
	r.rx.setStatus(2, ring.StatusUnused)

	r.sendAcks(t, 4, 5) // frames 3 and 0
	r.rx.setStatus(3, ring.StatusUnused)
	want("frame 0 VALID, frame 3 given back", true)
	r.rx.setStatus(0, ring.StatusUnused)
	want("all given back", false)
}

// TestCopyAfterOverrunWithFreeFrames checks that after an overrun, once
// user space has drained the ring (reading VALID frames needs no system
// call, so nothing clears the socket's congestion state), messages
// delivered through COPY frames, a unicast reply and a multicast event,
// are delivered again: the ring has free frames, so by netlink_mmap.rst
// the kernel must not drop them. (An earlier version of the series did:
// the ordinary-skb paths dropped everything for a congested socket until
// recvmsg() or poll().)
func TestCopyAfterOverrunWithFreeFrames(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 4) // COPY frames and dumps in the ring
	const name = "nlmr1"
	actor := netlinkSocket(t, unix.NETLINK_ROUTE)
	t.Cleanup(func() { rtnlDo(actor, linkMsg(unix.RTM_DELLINK, 0, 99, name, "")) })
	r := newRawRing(t, unix.NETLINK_ROUTE, mustParams(t, pageSize/4, 4), ring.Params{})
	r.sendAcks(t, 1, 5) // the fifth is dropped
	if e := r.soError(t); e != unix.ENOBUFS {
		t.Fatalf("SO_ERROR = %v, want ENOBUFS", e)
	}
	drops := diag(t, r.fd).Drops()
	for i := range 4 {
		r.rx.setStatus(i, ring.StatusUnused)
	}

	r.send(t, getLink(6, 0, 1, nil)) // the reply is built in an ordinary skb
	if st := r.rx.status(0); st != ring.StatusCopy {
		what := ""
		if st == ring.StatusValid {
			what = ", holding " + describeAck(r.rx.payload(0)[:r.rx.hdr(0).Len])
		}
		t.Errorf("RTM_GETLINK reply after the ring was drained: frame 0 is %v%s, want COPY; drops rose by %d",
			st, what, diag(t, r.fd).Drops()-drops)
	}
	r.rx.setStatus(0, ring.StatusUnused)

	// Joined only now: sock_diag of a group member is a separate issue
	// (TestDiagRingOfGroupMember).
	if err := unix.SetsockoptInt(r.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.RTNLGRP_LINK); err != nil {
		t.Fatal(err)
	}
	if err := rtnlDo(actor, linkMsg(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL, 1, name, "dummy")); err != nil {
		t.Fatalf("creating dummy link %s: %v", name, err)
	}
	if st := r.rx.status(1); st != ring.StatusCopy {
		t.Errorf("RTM_NEWLINK event after the ring was drained: frame 1 is %v, want COPY", st)
	}
}

// describeAck describes an NLMSG_ERROR datagram.
func describeAck(b []byte) string {
	seq, code, _, err := ackOf(b)
	if err != nil {
		return describe(b)
	}
	return fmt.Sprintf("the answer to seq %d: %v", seq, unix.Errno(-code))
}
