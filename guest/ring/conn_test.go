package ring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func mustParams(t *testing.T, size, count int) Params {
	t.Helper()
	p, err := ParamsFor(size, count)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestConn(t *testing.T, cfg Config) (*Conn, *fakeSys) {
	t.Helper()
	s := newFakeSys()
	c, err := newConn(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, s
}

func seqOf(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

// producer delivers seqs 1..n from its own goroutine like a kernel
// subsystem would: mixed sizes, some COPY, some bigger than a frame. When
// the ring is full it backs off and delivers the same message again, so
// nothing is lost and the reader must see all n in order.
func producer(s *fakeSys, n int, maxPayload int, seed uint64) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(seed, 2))
		for seq := uint32(1); seq <= uint32(n); {
			size := 4 + rng.IntN(maxPayload-4)
			if rng.IntN(20) == 0 {
				size = maxPayload + 1 + rng.IntN(100) // becomes COPY
			}
			data := make([]byte, size)
			binary.NativeEndian.PutUint32(data, seq)
			if s.deliver(simMsg{seq: seq, data: data, copy: rng.IntN(10) == 0, pid: seq % 7}) {
				seq++
			} else if s.isClosed() {
				return
			} else {
				time.Sleep(time.Duration(rng.IntN(50)) * time.Microsecond)
			}
			if rng.IntN(4) == 0 {
				runtime.Gosched()
			}
		}
	}()
	return func() { <-done }
}

func TestConnReceiveInOrder(t *testing.T) {
	c, s := newTestConn(t, Config{RX: mustParams(t, 256, 8)})
	const n = 3000
	wait := producer(s, n, 256-HeaderLen, 1)
	var r Record
	overruns := 0
	for want := uint32(1); want <= n; {
		if err := c.ReceiveInto(&r); errors.Is(err, unix.ENOBUFS) {
			overruns++
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		if got := seqOf(r.Data); got != want {
			t.Fatalf("got message %d, want %d", got, want)
		}
		if r.PortID != want%7 {
			t.Fatalf("message %d: port ID %d, want %d", want, r.PortID, want%7)
		}
		want++
	}
	wait()
	_, dropped := s.state()
	if overruns > len(dropped) || (len(dropped) > 0 && overruns == 0) {
		t.Errorf("%d overruns reported for %d drops", overruns, len(dropped))
	}
	t.Logf("%d drops (retried by the producer), %d overrun errors", len(dropped), overruns)
}

// TestConnNextHoldRelease hands frames to workers that hold them and
// release them later from other goroutines, while the reader goes on.
func TestConnNextHoldRelease(t *testing.T) {
	c, s := newTestConn(t, Config{RX: mustParams(t, 128, 16)})
	const n = 3000
	wait := producer(s, n, 128-HeaderLen, 2)

	held := make(chan Frame, 64)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for f := range held {
				if rng.IntN(3) == 0 {
					time.Sleep(time.Duration(rng.IntN(100)) * time.Microsecond)
				}
				if err := f.Release(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(4, 4))
	for want := uint32(1); want <= n; {
		f, err := c.Next()
		if errors.Is(err, unix.ENOBUFS) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		if got := seqOf(f.Data()); got != want {
			t.Fatalf("got message %d, want %d", got, want)
		}
		want++
		if rng.IntN(3) == 0 {
			if err := f.Hold(); err != nil {
				t.Fatal(err)
			}
			held <- f
		} else if err := f.Release(); err != nil {
			t.Fatal(err)
		}
	}
	close(held)
	wg.Wait()
	wait()
}

func TestConnOverrunReportedAfterRing(t *testing.T) {
	c, s := newTestConn(t, Config{RX: mustParams(t, 2048, 4)})
	for seq := uint32(1); seq <= 6; seq++ {
		s.deliver(simMsg{seq: seq})
	}
	for want := uint32(1); want <= 4; want++ {
		r, err := c.Receive()
		if err != nil || seqOf(r.Data) != want {
			t.Fatalf("Receive = %v, %v; want message %d", r.Data, err, want)
		}
	}
	if _, err := c.Receive(); !errors.Is(err, unix.ENOBUFS) {
		t.Fatalf("Receive after the ring = %v, want ENOBUFS", err)
	}
	s.deliver(simMsg{seq: 7})
	if r, err := c.Receive(); err != nil || seqOf(r.Data) != 7 {
		t.Fatalf("Receive after the overrun = %v, %v; want message 7", r.Data, err)
	}
}

func TestConnCopyFrames(t *testing.T) {
	c, s := newTestConn(t, Config{RX: mustParams(t, 64, 4)})
	big := bytes.Repeat([]byte("x"), 1000)
	binary.NativeEndian.PutUint32(big, 2)
	s.deliver(simMsg{seq: 1})
	s.deliver(simMsg{seq: 2, data: big, pid: 42})
	s.deliver(simMsg{seq: 3, copy: true})
	for _, want := range []struct {
		seq    uint32
		len    int
		copied bool
	}{{1, 4, false}, {2, 1000, true}, {3, 4, true}} {
		f, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		if seqOf(f.Data()) != want.seq || len(f.Data()) != want.len || f.Info().Copied != want.copied {
			t.Errorf("got message %d (%d bytes, copied %v), want %+v", seqOf(f.Data()), len(f.Data()), f.Info().Copied, want)
		}
		if want.seq == 2 && f.Info().PortID != 42 {
			t.Errorf("COPY frame port ID %d, want 42", f.Info().PortID)
		}
		if err := f.Release(); err != nil {
			t.Error(err)
		}
	}
}

// TestConnCopyENOBUFSFirst: the kernel's recvmsg reports a pending
// overrun before the datagram of a COPY frame; the Conn must report it
// and then still deliver the datagram, in order.
func TestConnCopyENOBUFSFirst(t *testing.T) {
	c, s := newTestConn(t, Config{RX: mustParams(t, 2048, 2)})
	s.deliver(simMsg{seq: 1, copy: true})
	s.deliver(simMsg{seq: 2})
	s.deliver(simMsg{seq: 3}) // dropped: overrun pending
	if _, err := c.Receive(); !errors.Is(err, unix.ENOBUFS) {
		t.Fatalf("first Receive = %v, want ENOBUFS from recvmsg", err)
	}
	for want := uint32(1); want <= 2; want++ {
		if r, err := c.Receive(); err != nil || seqOf(r.Data) != want {
			t.Fatalf("Receive = %v, %v; want message %d", r.Data, err, want)
		}
	}
}

func TestConnDeadline(t *testing.T) {
	c, _ := newTestConn(t, Config{RX: mustParams(t, 2048, 2)})
	// start comes first: the deadline is then at least 20 ms after it.
	start := time.Now()
	c.SetReadDeadline(start.Add(20 * time.Millisecond))
	_, err := c.Receive()
	var oe *OpError
	if !errors.As(err, &oe) || !oe.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Receive = %v, want a timeout", err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("returned after %v, before the deadline", d)
	}
}

func TestConnCloseWhileBlocked(t *testing.T) {
	c, _ := newTestConn(t, Config{RX: mustParams(t, 2048, 2), TX: mustParams(t, 2048, 2)})
	errc := make(chan error)
	go func() {
		_, err := c.Next()
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("blocked Next returned %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Next")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"Receive": func() error { _, err := c.Receive(); return err }(),
		"Send":    c.Send([]byte("x")),
		"Flush":   c.Flush(),
		"RawRX":   func() error { _, err := c.RawRX(0); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestConnCloseConcurrent(t *testing.T) {
	for range 50 {
		s := newFakeSys()
		c, err := newConn(s, Config{RX: mustParams(t, 64, 8)})
		if err != nil {
			t.Fatal(err)
		}
		stop := producer(s, 200, 40, 5)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				f, err := c.Next()
				if errors.Is(err, ErrClosed) {
					return
				}
				if err == nil {
					f.Hold()
					f.Release()
				}
			}
		}()
		go func() {
			defer wg.Done()
			time.Sleep(time.Millisecond)
			c.Close()
		}()
		wg.Wait()
		stop()
		if !s.unmapped || !s.closed {
			t.Fatalf("after Close: unmapped %v, closed %v", s.unmapped, s.closed)
		}
	}
}

func TestConnFrameAfterRelease(t *testing.T) {
	c, s := newTestConn(t, Config{RX: mustParams(t, 2048, 2)})
	s.deliver(simMsg{seq: 1})
	f, err := c.Next()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Release(); err != nil {
		t.Fatal(err)
	}
	if err := f.Release(); !errors.Is(err, ErrBadFrame) {
		t.Errorf("second Release: %v, want ErrBadFrame", err)
	}
	if err := f.Hold(); !errors.Is(err, ErrBadFrame) {
		t.Errorf("Hold after Release: %v, want ErrBadFrame", err)
	}
	if err := (Frame{}).Release(); !errors.Is(err, ErrBadFrame) {
		t.Errorf("zero Frame Release: %v", err)
	}
}

func TestConnCleanupUnmaps(t *testing.T) {
	s := newFakeSys()
	func() {
		if _, err := newConn(s, Config{RX: mustParams(t, 2048, 2)}); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		s.mu.Lock()
		done := s.unmapped && s.closed
		s.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a dropped Conn was not unmapped and closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConnSetupErrors(t *testing.T) {
	good := mustParams(t, 2048, 4)
	tests := []struct {
		name      string
		cfg       Config
		ringErr   error
		mmapErr   error
		op        string
		is        []error
		syscalled bool
	}{
		{"not supported", Config{RX: good}, unix.ENOPROTOOPT, nil,
			"setsockopt NETLINK_RX_RING", []error{ErrNotSupported, unix.ENOPROTOOPT}, true},
		{"no permission", Config{TX: good}, unix.EPERM, nil,
			"setsockopt NETLINK_TX_RING", []error{unix.EPERM}, true},
		{"invalid caught in user space", Config{RX: Params{4096, 1, 100, 40}}, nil, nil,
			"setsockopt NETLINK_RX_RING", []error{unix.EINVAL}, false},
		{"no rings", Config{}, nil, nil, "setup", []error{unix.EINVAL}, false},
		{"mmap fails", Config{RX: good}, nil, unix.ENOMEM, "mmap", []error{unix.ENOMEM}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeSys()
			s.ringErr, s.mmapErr = tt.ringErr, tt.mmapErr
			_, err := newConn(s, tt.cfg)
			var oe *OpError
			if !errors.As(err, &oe) || oe.Op != tt.op {
				t.Fatalf("err = %v, want an OpError for %q", err, tt.op)
			}
			for _, e := range tt.is {
				if !errors.Is(err, e) {
					t.Errorf("errors.Is(%v, %v) = false", err, e)
				}
			}
			if (s.setRings > 0) != tt.syscalled {
				t.Errorf("%d setsockopt calls", s.setRings)
			}
			if !s.closed {
				t.Error("socket not closed after a failed setup")
			}
		})
	}
}

func TestConnSend(t *testing.T) {
	c, s := newTestConn(t, Config{TX: mustParams(t, 128, 4)})
	var want []string
	for i := range 10 {
		msg := fmt.Sprintf("message %d", i)
		want = append(want, msg)
		if err := c.Enqueue([]byte(msg)); err != nil { // flushes itself every 4
			t.Fatal(err)
		}
	}
	buf, err := c.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	n := copy(buf, "in place")
	want = append(want, "in place")
	if err := c.Commit(n); err != nil {
		t.Fatal(err)
	}
	if err := c.Send([]byte("last")); err != nil {
		t.Fatal(err)
	}
	want = append(want, "last")
	var got []string
	for _, m := range s.tx.sent {
		got = append(got, string(m))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("kernel got %q, want %q", got, want)
	}
	if err := c.Send(make([]byte, 200)); !errors.Is(err, ErrTooBig) {
		t.Errorf("Send of 200 bytes: %v, want ErrTooBig", err)
	}
	if _, err := c.Next(); !errors.Is(err, ErrNoRing) {
		t.Errorf("Next without an RX ring: %v, want ErrNoRing", err)
	}
}

// TestConnEcho sends requests through the TX ring to a fake kernel that
// answers each in the RX ring, like an RTM_GETLINK round trip.
func TestConnEcho(t *testing.T) {
	c, s := newTestConn(t, Config{RX: mustParams(t, 256, 8), TX: mustParams(t, 256, 8)})
	s.onKick = func(sent [][]byte) {
		for _, m := range sent {
			for !s.deliver(simMsg{seq: seqOf(m), data: append([]byte(nil), m...)}) && !s.isClosed() {
				time.Sleep(time.Microsecond)
			}
		}
	}
	// Answers are delivered from inside Flush, so read them from
	// another goroutine, as a real program would.
	const n = 500
	errc := make(chan error, 1)
	go func() {
		for want := uint32(1); want <= n; want++ {
			r, err := c.Receive()
			for errors.Is(err, unix.ENOBUFS) { // the answering side retries
				r, err = c.Receive()
			}
			if err != nil {
				errc <- err
				return
			}
			if seqOf(r.Data) != want {
				errc <- fmt.Errorf("answer %d, want %d", seqOf(r.Data), want)
				return
			}
		}
		errc <- nil
	}()
	for seq := uint32(1); seq <= n; seq++ {
		b := binary.NativeEndian.AppendUint32(nil, seq)
		if err := c.Enqueue(b); err != nil {
			t.Fatal(err)
		}
		if seq%3 == 0 {
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestConnRawFrames(t *testing.T) {
	c, s := newTestConn(t, Config{RX: mustParams(t, 2048, 2), TX: mustParams(t, 2048, 2)})
	f, err := c.RawTX(1)
	if err != nil {
		t.Fatal(err)
	}
	f.SetLen(uint32(len(f.Payload()) + 1)) // larger than the frame
	f.SetStatus(StatusValid)
	s.tx.head = 1
	if err := c.RawKick(nil); !errors.Is(err, unix.EINVAL) {
		t.Errorf("kick with a hostile frame: %v, want EINVAL", err)
	}
	if st := f.Status(); st != StatusUnused {
		t.Errorf("hostile frame left %v, want UNUSED", st)
	}
	if _, err := c.RawRX(2); !errors.Is(err, unix.ERANGE) {
		t.Errorf("RawRX(2) of 2 frames: %v", err)
	}
	s.deliver(simMsg{seq: 9, pid: 5, grp: 3})
	rf, _ := c.RawRX(0)
	if rf.Status() != StatusValid || rf.Len() != 4 || rf.PortID() != 5 || rf.Group() != 3 || seqOf(rf.Payload()) != 9 {
		t.Errorf("raw RX frame: %v len %d pid %d group %d", rf.Status(), rf.Len(), rf.PortID(), rf.Group())
	}
}

// TestConnSkipsEmptyFrames: frames the kernel claimed and gave up come
// back VALID with nm_len 0; Receive and Next step over them and give them
// back, so the kernel can use them again.
func TestConnSkipsEmptyFrames(t *testing.T) {
	for _, next := range []bool{false, true} {
		t.Run(map[bool]string{false: "Receive", true: "Next"}[next], func(t *testing.T) {
			c, s := newTestConn(t, Config{RX: mustParams(t, 2048, 4)})
			s.deliver(simMsg{seq: 1})
			s.deliver(simMsg{seq: 2, abandon: true})
			s.deliver(simMsg{seq: 3, abandon: true})
			s.deliver(simMsg{seq: 4, copy: true})
			for _, want := range []uint32{1, 4} {
				var got uint32
				if next {
					f, err := c.Next()
					if err != nil {
						t.Fatal(err)
					}
					got = seqOf(f.Data())
					if err := f.Release(); err != nil {
						t.Fatal(err)
					}
				} else {
					r, err := c.Receive()
					if err != nil {
						t.Fatal(err)
					}
					got = seqOf(r.Data)
				}
				if got != want {
					t.Fatalf("read message %d, want %d", got, want)
				}
			}
			for i := range 4 {
				if f, _ := c.RawRX(i); f.Status() != StatusUnused {
					t.Errorf("frame %d is %v after reading, want UNUSED", i, f.Status())
				}
			}
			// All four frames are the kernel's again.
			for seq := uint32(5); seq <= 8; seq++ {
				if !s.deliver(simMsg{seq: seq}) {
					t.Fatalf("message %d dropped", seq)
				}
			}
		})
	}
}

// TestConnDumpContinuesOnPoll: the kernel continues a dump that ran out
// of frames only when the socket is polled, and the network poller never
// polls. A 2-frame ring and a dump of 7 parts (some COPY) stall after
// the first parts unless the reader polls before it sleeps.
func TestConnDumpContinuesOnPoll(t *testing.T) {
	for _, tt := range []struct {
		name   string
		frames int
		next   bool
	}{
		{"Receive/1 frame", 1, false},
		{"Receive/2 frames", 2, false},
		{"Next/2 frames", 2, true},
		{"Next/3 frames", 3, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, s := newTestConn(t, Config{RX: mustParams(t, os.Getpagesize(), tt.frames)})
			var parts []simMsg
			for seq := uint32(1); seq <= 7; seq++ {
				parts = append(parts, simMsg{seq: seq, copy: seq%3 == 0})
			}
			s.startDump(parts)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for want := uint32(1); want <= 7; want++ {
				var (
					got uint32
					err error
				)
				if tt.next {
					var f Frame
					if f, err = c.Next(); err == nil {
						got = seqOf(f.Data())
						err = f.Release()
					}
				} else {
					var r Record
					r, err = c.Receive()
					got = seqOf(r.Data)
				}
				if err != nil {
					t.Fatalf("waiting for part %d: %v", want, err)
				}
				if got != want {
					t.Fatalf("read part %d, want %d", got, want)
				}
			}
		})
	}
}

// TestConnReleaseContinuesDump: a reader sleeps because every frame is
// handed out, and a dump waits for a frame. Releasing one from another
// goroutine must let the dump go on and wake the reader.
func TestConnReleaseContinuesDump(t *testing.T) {
	c, s := newTestConn(t, Config{RX: mustParams(t, os.Getpagesize(), 2)})
	s.startDump([]simMsg{{seq: 1}})
	s.startDump([]simMsg{{seq: 2}, {seq: 3}})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var out []Frame
	for want := uint32(1); want <= 2; want++ {
		f, err := c.Next()
		if err != nil || seqOf(f.Data()) != want {
			t.Fatalf("Next = %v, %v; want part %d", f.Data(), err, want)
		}
		out = append(out, f)
	}
	type result struct {
		seq uint32
		err error
	}
	res := make(chan result, 1)
	go func() {
		f, err := c.Next()
		if err != nil {
			res <- result{0, err}
			return
		}
		res <- result{seqOf(f.Data()), f.Release()}
	}()
	// Wait until the reader sleeps; then it polled and the dump could
	// not go on.
	for parked := false; !parked; {
		select {
		case r := <-res:
			t.Fatalf("Next returned part %d, %v before a frame was released%s", r.seq, r.err, s.k.history())
		case <-time.After(time.Millisecond):
		}
		c.rxMu.Lock()
		parked = c.parked
		c.rxMu.Unlock()
	}
	polls := s.pollCount()
	if err := out[0].Release(); err != nil {
		t.Fatal(err)
	}
	if s.pollCount() == polls {
		t.Error("Release did not poll while the reader slept")
	}
	r := <-res
	if r.err != nil || r.seq != 3 {
		t.Fatalf("blocked Next = part %d, %v; want part 3", r.seq, r.err)
	}
	out[1].Release()
}
