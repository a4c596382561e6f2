package txring

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nldiag"
	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// dummyGroup is the interface group of the dummy links the dump test
// creates; RTM_DELLINK of the group deletes them in one batch.
const dummyGroup = 0x6e6c

var linksFlag = flag.Int("txring.links", 0,
	"dummy links TestDumpManyLinks creates (0: 2000, or 500 on a debug kernel)")

// TestDumpManyLinks dumps 2000 dummy links (plus whatever else exists)
// through an RX ring of 8 frames, far smaller than the dump, driving the
// continuation with poll(). Every link arrives exactly once and
// NLMSG_DONE comes last. Each part is built in an ordinary skb and copied
// into its frame (VALID) if it fits the frame, else announced by a COPY
// frame: with 16 KiB frames every part arrives VALID, with 2 KiB frames
// the parts of a few links come as COPY and small ones (such as a final
// NLMSG_DONE on its own) VALID. The StopReading cases let the ring fill
// and poll() a few times more: the dump waits (no drop, no ENOBUFS) and
// resumes. ResumeByRecvmsg never polls: after reading the ring empty, a
// recvmsg() that finds the receive queue empty continues the dump.
//
// On a debug kernel (lockdep) creating and deleting a link costs some
// 30-80 ms under TCG, so the test makes 500 links there unless
// -txring.links says otherwise; the dump is still dozens of times the
// ring.
func TestDumpManyLinks(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // requests sent from the TX ring
	n := *linksFlag
	if n == 0 {
		n = 2000
		if _, err := os.Stat("/proc/lockdep"); err == nil {
			n = 500
		}
	}
	start := time.Now()
	names := createDummies(t, n)
	t.Logf("created %d dummy links in %v", n, time.Since(start))

	ref := map[int32]string{}
	byName := map[string]bool{}
	for _, l := range plainLinks(t) {
		ref[l.index] = l.name
		byName[l.name] = true
	}
	for _, name := range names {
		if !byName[name] {
			t.Fatalf("a plain dump lacks %s", name)
		}
	}

	tests := []struct {
		name        string
		frameSize   int
		copies      bool // some parts do not fit a frame
		stopReading bool
		byRecvmsg   bool
	}{
		{name: "Frames16K", frameSize: 16384},
		{name: "Frames2K", frameSize: 2048, copies: true},
		{name: "StopReading16K", frameSize: 16384, stopReading: true},
		{name: "StopReading2K", frameSize: 2048, copies: true, stopReading: true},
		{name: "ResumeByRecvmsg16K", frameSize: 16384, stopReading: true, byRecvmsg: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq := uint32(100 + i)
			c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: mustParams(t, tt.frameSize, 8), TX: mustParams(t, 4096, 1)})
			start := time.Now()
			if err := c.Send(dumpLinks(seq)); err != nil {
				t.Fatalf("send the dump request: %v", err)
			}
			var stall func()
			if tt.stopReading {
				stall = func() { stopReading(t, c, unix.NETLINK_ROUTE) }
			}
			var ds []datagram
			if tt.byRecvmsg {
				ds = readDumpByRecvmsg(t, c, seq, stall)
			} else {
				ds = readDump(t, c, seq, stall)
			}
			elapsed := time.Since(start)

			links := checkLinkDump(t, ds, seq)
			got := map[int32]string{}
			for _, l := range links {
				got[l.index] = l.name
			}
			if !maps.Equal(got, ref) {
				t.Errorf("dump through the ring has %d links, a plain dump %d; they differ", len(got), len(ref))
				for idx, name := range ref {
					if got[idx] != name {
						t.Errorf("link %d %s: got %q", idx, name, got[idx])
						break
					}
				}
			}
			if len(ds) <= int(c.RX().FrameNr) {
				t.Errorf("%d datagrams: the dump was meant to be larger than the ring (%d frames)", len(ds), c.RX().FrameNr)
			}
			valid, copied, empty := checkParts(t, ds, c.RX())
			if tt.copies != (copied > 0) {
				t.Errorf("%d of %d parts larger than a frame of %d bytes; want some: %v", copied, len(ds), tt.frameSize, tt.copies)
			}
			t.Logf("%d links in %d datagrams (%d VALID, %d COPY, %d empty) in %v", len(links), len(ds), valid, copied, empty, elapsed)
		})
	}
}

// TestDumpGenlCtrl runs generic netlink controller dumps through an RX
// ring of two frames, VALID and COPY: CTRL_CMD_GETFAMILY (small: one part
// here) and CTRL_CMD_GETPOLICY of the family with the most policy data
// (several parts, more than the ring holds). The messages must be exactly
// those of a plain dump, in the same order.
func TestDumpGenlCtrl(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // requests sent from the TX ring
	fams := genlFamilies(t, messages(t, plainDump(t, unix.NETLINK_GENERIC, dumpGenlFamilies(1))), 1)
	if !slices.Contains(slices.Collect(maps.Values(fams)), "nlctrl") {
		t.Fatalf("plain dump of the families lacks nlctrl: %v", fams)
	}
	big, bigLen := "", 0
	for _, name := range fams {
		n := 0
		ds := plainRequest(t, unix.NETLINK_GENERIC, dumpGenlPolicy(name, 1))
		for _, d := range ds {
			n += len(d.data)
		}
		if slices.ContainsFunc(messages(t, ds), func(m nlmsg.Message) bool { return m.Err() != nil || m.DoneErr() != nil }) {
			continue // no policies (ENODATA)
		}
		if n > bigLen {
			big, bigLen = name, n
		}
	}
	t.Logf("families %v; the largest policy dump is %s's, %d bytes", slices.Sorted(maps.Values(fams)), big, bigLen)

	dumps := []struct {
		name      string
		req       func(seq uint32) []byte
		manyParts bool // more parts than the ring has frames
	}{
		{name: "Families", req: dumpGenlFamilies},
		{name: "Policy", req: func(seq uint32) []byte { return dumpGenlPolicy(big, seq) }, manyParts: true},
	}
	rings := []struct {
		name        string
		frameSize   int
		stopReading bool
	}{
		{name: "Frames4K", frameSize: 4096},
		{name: "Frames2K", frameSize: 2048},
		{name: "StopReading4K", frameSize: 4096, stopReading: true},
		{name: "StopReading2K", frameSize: 2048, stopReading: true},
	}
	for _, d := range dumps {
		want := dumpBodies(messages(t, plainDump(t, unix.NETLINK_GENERIC, d.req(1))), 1)
		for i, r := range rings {
			if r.stopReading && !d.manyParts {
				continue // the ring would not fill
			}
			t.Run(d.name+"/"+r.name, func(t *testing.T) {
				seq := uint32(10 + i)
				rx := mustParams(t, r.frameSize, 2)
				c := dial(t, unix.NETLINK_GENERIC, ring.Config{RX: rx, TX: mustParams(t, 4096, 1)})
				if err := c.Send(d.req(seq)); err != nil {
					t.Fatalf("send the dump request: %v", err)
				}
				var stall func()
				if r.stopReading {
					stall = func() { stopReading(t, c, unix.NETLINK_GENERIC) }
				}
				ds := readDump(t, c, seq, stall)
				got := dumpBodies(messages(t, ds), seq)
				if !slices.EqualFunc(got, want, bytes.Equal) {
					t.Errorf("%d messages through the ring, %d in a plain dump; they differ", len(got), len(want))
				}
				if d.manyParts && len(ds) <= int(rx.FrameNr) {
					t.Errorf("%d datagrams: the dump was meant to be larger than the ring (%d frames)", len(ds), rx.FrameNr)
				}
				valid, copied, empty := checkParts(t, ds, rx)
				t.Logf("%d messages in %d datagrams (%d VALID, %d COPY, %d empty)", len(got), len(ds), valid, copied, empty)
			})
		}
	}
}

// dumpGenlPolicy is a CTRL_CMD_GETPOLICY dump request for a family.
func dumpGenlPolicy(family string, seq uint32) []byte {
	b := nlmsg.AppendString([]byte{unix.CTRL_CMD_GETPOLICY, 1, 0, 0}, unix.CTRL_ATTR_FAMILY_NAME, family)
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.GENL_ID_CTRL, Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: seq},
		Data: b}.Append(nil)
}

// dumpBodies returns the messages of the dump with sequence number seq,
// NLMSG_DONE included, as type, flags and payload: what must not differ
// between two dumps of the same state.
func dumpBodies(msgs []nlmsg.Message, seq uint32) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		if m.Seq == seq {
			b := fmt.Appendf(nil, "%d %#x ", m.Type, m.Flags)
			out = append(out, append(b, m.Data...))
		}
	}
	return out
}

// checkParts checks how each datagram of a dump came out of an RX ring
// with parameters rx: a part that fits a frame is copied into it and
// arrives VALID, a larger one is announced by a COPY frame. A VALID frame
// may also be empty (a frame the kernel claimed and did not use).
func checkParts(t *testing.T, ds []datagram, rx ring.Params) (valid, copied, empty int) {
	t.Helper()
	for j, d := range ds {
		fits := len(d.data) <= rx.MaxPayload()
		switch {
		case d.copied && fits:
			t.Errorf("datagram %d of %d: %d bytes came as COPY; it fits a frame (%d bytes): want VALID",
				j, len(ds), len(d.data), rx.MaxPayload())
		case !d.copied && !fits:
			t.Errorf("datagram %d of %d: VALID with %d bytes, more than a frame holds (%d)", j, len(ds), len(d.data), rx.MaxPayload())
		}
		switch {
		case d.copied:
			copied++
		case len(d.data) == 0:
			empty++
		default:
			valid++
		}
	}
	return valid, copied, empty
}

// readDump reads the dump with sequence number seq from c until its
// NLMSG_DONE, one datagram per poll(): the kernel continues the dump in
// poll() once user space has released frames. stall, if set, runs once
// after the first POLLIN, before anything is read.
func readDump(t *testing.T, c *ring.Conn, seq uint32, stall func()) []datagram {
	t.Helper()
	fd := connFD(t, c)
	if err := c.SetReadDeadline(time.Now().Add(hangGuard)); err != nil {
		t.Fatal(err)
	}
	defer c.SetReadDeadline(time.Time{})
	var ds []datagram
	for {
		if ev := pollWait(t, fd, unix.POLLIN, int(hangGuard.Milliseconds())); ev&unix.POLLIN == 0 {
			t.Fatalf("dump seq %d stalled after %d datagrams: poll returned %#x, no POLLIN within %v; RX %v",
				seq, len(ds), ev, hangGuard, rxStatuses(t, c))
		}
		if stall != nil {
			stall()
			stall = nil
		}
		if receiveDumpPart(t, c, seq, "receive after POLLIN", &ds) {
			return ds
		}
	}
}

// receiveDumpPart receives the next datagram of the dump with sequence
// number seq from c, appends it to *ds, and reports whether it ended the
// dump (NLMSG_DONE or an error). what names the receive in a failure.
func receiveDumpPart(t *testing.T, c *ring.Conn, seq uint32, what string, ds *[]datagram) bool {
	t.Helper()
	rec, err := c.Receive()
	if err != nil {
		t.Fatalf("dump seq %d: %s, %d datagrams in: %v", seq, what, len(*ds), err)
	}
	*ds = append(*ds, datagram{data: rec.Data, copied: rec.Copied})
	msgs, err := nlmsg.Parse(rec.Data)
	if err != nil {
		t.Fatalf("dump seq %d, datagram %d: %v", seq, len(*ds), err)
	}
	for _, m := range msgs {
		if m.Seq == seq && (m.Type == unix.NLMSG_DONE || m.Err() != nil) {
			return true
		}
	}
	return false
}

// readDumpByRecvmsg reads the dump with sequence number seq from c until
// its NLMSG_DONE without ever calling poll(): it reads what the ring
// holds, and when the ring is empty it calls recvmsg(MSG_DONTWAIT), which
// must find the receive queue empty and continue the dump before it
// returns EAGAIN. stall, if set, runs once after the first part arrived.
// Use it with frames that hold every part (VALID only).
//
// The Go runtime's netpoller may continue the dump too (see settledRX)
// while it handles the wakeup of an earlier part; the check after each
// recvmsg() holds either way, and the log says how often recvmsg() had
// to continue the dump (most of the time: emptying the ring wakes
// nobody).
func readDumpByRecvmsg(t *testing.T, c *ring.Conn, seq uint32, stall func()) []datagram {
	t.Helper()
	fd := connFD(t, c)
	var ds []datagram
	continued := 0
	for {
		if countStatus(settledRX(t, c), ring.StatusValid) == 0 {
			// Nothing to read: the dump waits for room in the ring.
			buf := make([]byte, 1)
			_, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
			if err != unix.EAGAIN {
				t.Fatalf("dump seq %d: recvmsg with nothing queued: %v, want EAGAIN", seq, err)
			}
			if st := rxStatuses(t, c); countStatus(st, ring.StatusValid)+countStatus(st, ring.StatusCopy) == 0 {
				t.Fatalf("dump seq %d stalled after %d datagrams: recvmsg on an empty queue did not continue it; RX %v",
					seq, len(ds), st)
			}
			continued++
		}
		if stall != nil {
			stall()
			stall = nil
		}
		// A VALID frame is at the reader's head: Receive does not wait.
		if receiveDumpPart(t, c, seq, "receive", &ds) {
			t.Logf("recvmsg continued the dump %d times", continued)
			return ds
		}
	}
}

// settledRX returns the statuses of c's RX ring once no frame is
// RESERVED. A frame is RESERVED while a part of a dump is being built in
// it, which may happen in any thread that polls the socket: the Go
// runtime's netpoller too, since epoll_wait() calls the socket's poll()
// for the events it reports (edge-triggered or not), and netlink_poll()
// continues the dump.
func settledRX(t *testing.T, c *ring.Conn) []ring.Status {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		st := rxStatuses(t, c)
		if countStatus(st, ring.StatusReserved) == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("RX ring %v: a frame stayed RESERVED for %v", st, hangGuard)
		}
		time.Sleep(time.Millisecond)
	}
}

// stopReading lets the ring of c fill while nothing is read: poll()
// continues the dump until no frame is free, then the dump waits. No
// part may be dropped and no error reported meanwhile.
func stopReading(t *testing.T, c *ring.Conn, proto int) {
	t.Helper()
	fd := connFD(t, c)
	frames := int(c.RX().FrameNr)
	for i := 0; i < frames+4; i++ {
		pollEvents(t, fd)
	}
	st := settledRX(t, c)
	if full := countStatus(st, ring.StatusValid) + countStatus(st, ring.StatusCopy); full != frames {
		t.Errorf("after %d polls without reading, RX ring %v: want all %d frames VALID or COPY", frames+4, st, frames)
	}
	if ev := pollEvents(t, fd); ev&(unix.POLLIN|unix.POLLERR) != unix.POLLIN {
		t.Errorf("poll on a full ring: %#x, want POLLIN and no POLLERR", ev)
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || v != 0 {
		t.Errorf("SO_ERROR on a full ring: %v %v, want 0 (the dump waits, it does not overrun)", unix.Errno(v), err)
	}
	d := diagSocket(t, proto, connIno(t, c))
	if d.Drops() != 0 {
		t.Errorf("sock_diag: %d drops, want 0", d.Drops())
	}
	if d.Flags&nldiag.FlagCBRunning == 0 {
		t.Errorf("sock_diag flags %#x: dump not running, want it waiting for room", d.Flags)
	}
	t.Logf("stopped reading: RX %v, drops %d, flags %#x", st, d.Drops(), d.Flags)
}

// plainLinks dumps the links through a socket without rings.
func plainLinks(t *testing.T) []link {
	t.Helper()
	var links []link
	for _, m := range messages(t, plainDump(t, unix.NETLINK_ROUTE, dumpLinks(1))) {
		if m.Type == unix.RTM_NEWLINK {
			l, err := parseLink(m)
			if err != nil {
				t.Fatal(err)
			}
			links = append(links, l)
		}
	}
	return links
}

// plainDump sends req on a socket without rings and reads the answer up
// to NLMSG_DONE, failing t on an error.
func plainDump(t *testing.T, proto int, req []byte) []datagram {
	t.Helper()
	ds := plainRequest(t, proto, req)
	for _, m := range messages(t, ds) {
		if err := m.Err(); err != nil {
			t.Fatalf("plain dump: %v", err)
		}
	}
	return ds
}

// plainRequest sends req on a socket without rings and reads the answer
// up to NLMSG_DONE or NLMSG_ERROR (an ack or an error).
func plainRequest(t *testing.T, proto int, req []byte) []datagram {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(hangGuard.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendto(fd, req, 0, kernelAddr); err != nil {
		t.Fatalf("send: %v", err)
	}
	var ds []datagram
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("receive on a plain socket: %v", err)
		}
		d := datagram{data: slices.Clone(buf[:n]), copied: true}
		ds = append(ds, d)
		for _, m := range messages(t, []datagram{d}) {
			if m.Type == unix.NLMSG_DONE || m.Type == unix.NLMSG_ERROR {
				return ds
			}
		}
	}
}

// genlFamilies collects the families of a CTRL_CMD_GETFAMILY dump, by id,
// checking that none comes twice and that the dump ends with NLMSG_DONE.
func genlFamilies(t *testing.T, msgs []nlmsg.Message, seq uint32) map[uint16]string {
	t.Helper()
	fams := map[uint16]string{}
	done := false
	for _, m := range msgs {
		if m.Seq != seq {
			continue
		}
		if done {
			t.Errorf("message type %d after NLMSG_DONE", m.Type)
		}
		if m.Type == unix.NLMSG_DONE {
			done = true
			continue
		}
		if m.Type != unix.GENL_ID_CTRL || len(m.Data) < 4 {
			t.Errorf("unexpected message type %d (%v)", m.Type, m.Err())
			continue
		}
		attrs, err := nlmsg.Attrs(m.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		var id uint16
		var name string
		for _, a := range attrs {
			switch a.Type {
			case unix.CTRL_ATTR_FAMILY_ID:
				id = uint16(a.Data[0]) | uint16(a.Data[1])<<8
			case unix.CTRL_ATTR_FAMILY_NAME:
				name = string(bytes.TrimRight(a.Data, "\x00"))
			}
		}
		if _, dup := fams[id]; dup {
			t.Errorf("family %d (%s) twice", id, name)
		}
		fams[id] = name
	}
	if !done {
		t.Errorf("no NLMSG_DONE after %d families", len(fams))
	}
	return fams
}

// createDummies creates n dummy links in dummyGroup, sending the requests
// in batches through the TX ring, and deletes them when t ends.
func createDummies(t *testing.T, n int) []string {
	t.Helper()
	deleteDummies(t, true) // leftovers of an earlier run
	t.Cleanup(func() {
		start := time.Now()
		deleteDummies(t, false)
		t.Logf("deleted the dummy links in %v", time.Since(start))
	})

	c := dial(t, unix.NETLINK_ROUTE, ring.Config{TX: mustParams(t, 16384, 16)})
	var names []string
	var batch []byte
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("nlmd%d", i)
		names = append(names, name)
		m := newDummy(name, uint32(1000+i))
		if len(batch)+len(m) > c.TX().MaxPayload() {
			if err := c.Enqueue(batch); err != nil {
				t.Fatalf("enqueue RTM_NEWLINK batch: %v", err)
			}
			batch = nil
		}
		batch = append(batch, m...)
	}
	// The kernel answers in order: the ack of this request comes after
	// the errors of all the others, if any.
	const last = 999
	batch = append(batch, getLink(last, 1, unix.NLM_F_ACK)...)
	if err := c.Enqueue(batch); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("flush RTM_NEWLINK batches: %v", err)
	}
	for _, m := range messages(t, receiveUntil(t, c, last)) {
		if err := m.Err(); err != nil {
			t.Fatalf("RTM_NEWLINK seq %d: %v", m.Seq, err)
		}
	}
	return names
}

func newDummy(name string, seq uint32) []byte {
	b := ifinfomsg(0)
	b = nlmsg.AppendString(b, unix.IFLA_IFNAME, name)
	b = nlmsg.AppendUint32(b, unix.IFLA_GROUP, dummyGroup)
	b = nlmsg.AppendAttr(b, unix.IFLA_LINKINFO|unix.NLA_F_NESTED, nlmsg.AppendString(nil, unix.IFLA_INFO_KIND, "dummy"))
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.RTM_NEWLINK,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_EXCL, Seq: seq}, Data: b}.Append(nil)
}

// deleteDummies deletes every link of dummyGroup with one request. With
// mayBeNone, finding none (ENODEV) is fine.
func deleteDummies(t *testing.T, mayBeNone bool) {
	t.Helper()
	b := nlmsg.AppendUint32(ifinfomsg(0), unix.IFLA_GROUP, dummyGroup)
	req := nlmsg.Message{Header: nlmsg.Header{Type: unix.RTM_DELLINK, Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK, Seq: 1},
		Data: b}.Append(nil)
	for _, m := range messages(t, plainRequest(t, unix.NETLINK_ROUTE, req)) {
		err := m.Err()
		if err != nil && !(mayBeNone && err.(*nlmsg.Error).Errno == unix.ENODEV) {
			t.Errorf("delete the dummy links of group %#x: %v", dummyGroup, err)
		}
	}
}
