package txring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// The two ways a TX frame reaches the kernel: copied (from the Go
// process, which has threads) or processed in place (from a
// single-threaded child). Hostile frames go both ways.
const (
	modeCopied  = "Copied"
	modeInPlace = "InPlace"
)

var modes = []string{modeCopied, modeInPlace}

// A txBatch is what a test writes into the TX ring: frames[i] into frame
// i, with nm_len nmLen[i] if given, then sends sendto calls.
type txBatch struct {
	frames [][]byte
	nmLen  []uint32
	sends  int
}

// txOutcome is what came of a batch.
type txOutcome struct {
	errs      []error         // per sendto
	txStatus  [][]ring.Status // per sendto: the batch's frames after it
	datagrams []datagram      // everything the socket received
	stats     ringStats
}

var kernelAddr = &unix.SockaddrNetlink{Family: unix.AF_NETLINK}

// runBatch sends b on a fresh NETLINK_ROUTE socket with rings rx and tx.
func runBatch(t *testing.T, mode string, rx, tx ring.Params, b txBatch) txOutcome {
	t.Helper()
	if b.sends == 0 {
		b.sends = 1
	}
	var o txOutcome
	if mode == modeInPlace {
		r := runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, rx: rx, tx: tx, frames: b.frames, nmLen: b.nmLen, sends: b.sends})
		for _, ret := range r.sendRet {
			var err error
			if ret < 0 {
				err = unix.Errno(-ret)
			}
			o.errs = append(o.errs, err)
		}
		o.txStatus, o.datagrams, o.stats = r.txStatus, r.datagrams, *r.diag.Stats
		return o
	}

	c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: rx, TX: tx})
	for i, f := range b.frames {
		fr, err := c.RawTX(i)
		if err != nil {
			t.Fatal(err)
		}
		copy(fr.Payload(), f)
		n := uint32(len(f))
		if i < len(b.nmLen) {
			n = b.nmLen[i]
		}
		fr.SetLen(n)
		fr.SetStatus(ring.StatusValid) // release: pairs with the kernel's acquire in netlink_tx_next()
	}
	for s := 0; s < b.sends; s++ {
		var errno unix.Errno
		err := c.RawKick(kernelAddr)
		if err != nil && !errors.As(err, &errno) {
			t.Fatalf("sendto: %v", err)
		}
		if err != nil {
			o.errs = append(o.errs, errno)
		} else {
			o.errs = append(o.errs, nil)
		}
		o.txStatus = append(o.txStatus, txStatuses(t, c)[:len(b.frames)])
	}
	o.datagrams = drainNow(t, c)
	o.stats = ringStatsOf(t, unix.NETLINK_ROUTE, connIno(t, c))
	return o
}

// drainNow reads every datagram waiting on c. The kernel answers
// requests inside sendto, so after it returns everything is there.
func drainNow(t testing.TB, c *ring.Conn) []datagram {
	t.Helper()
	var ds []datagram
	fd := connFD(t, c)
	if err := c.SetReadDeadline(time.Now().Add(hangGuard)); err != nil {
		t.Fatal(err)
	}
	defer c.SetReadDeadline(time.Time{})
	for pollEvents(t, fd)&unix.POLLIN != 0 {
		rec, err := c.Receive()
		if err != nil {
			t.Fatalf("receive after POLLIN: %v", err)
		}
		ds = append(ds, datagram{data: rec.Data, copied: rec.Copied})
	}
	return ds
}

// answers summarizes the messages of ds, one string per message.
func answers(t testing.TB, ds []datagram) []string {
	t.Helper()
	var s []string
	for _, m := range messages(t, ds) {
		var what string
		switch {
		case m.Type == unix.RTM_NEWLINK:
			l, err := parseLink(m)
			if err != nil {
				what = err.Error()
			} else {
				what = fmt.Sprintf("link %d %s", l.index, l.name)
			}
		case m.IsAck():
			what = "ack"
		case m.Err() != nil:
			var e *nlmsg.Error
			errors.As(m.Err(), &e)
			what = "error " + unix.ErrnoName(e.Errno)
		case m.Type == unix.NLMSG_DONE:
			what = "done"
		default:
			what = fmt.Sprintf("type %d", m.Type)
		}
		s = append(s, fmt.Sprintf("seq %d: %s", m.Seq, what))
	}
	return s
}

func errName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// TestTXHostileFrames hands the kernel frames a careless or hostile
// program could write, both copied and processed in place. Each hostile
// frame is the last frame of the TX ring, so reading past it would leave
// the ring's vmalloc area (KASAN_VMALLOC on the debug kernel). A valid
// request in the frame before it shows the socket keeps working.
//
// What the kernel does: a frame whose nm_len is zero or larger than the
// frame's payload is handed back unsent and the call fails with EINVAL;
// every other frame is sent, and the family's parser answers or ignores
// the message as it would a sendmsg() of nm_len bytes. Either way the
// frame is UNUSED afterwards, and only frames that were sent are counted.
func TestTXHostileFrames(t *testing.T) {
	setup(t)
	rx := mustParams(t, 4096, 8)
	tx := ring.Params{BlockSize: 4096, BlockNr: 1, FrameSize: 2048, FrameNr: 2} // the hostile frame ends the ring
	room := uint32(tx.MaxPayload())
	probe := getLink(1, 1, unix.NLM_F_ACK)
	req := getLink(2, 1, unix.NLM_F_ACK) // 32 bytes
	withLen := func(b []byte, n uint32) []byte {
		b = slices.Clone(b)
		binary.NativeEndian.PutUint32(b, n)
		return b
	}
	fill := func(b []byte, n int, v byte) []byte {
		out := slices.Repeat([]byte{v}, n)
		copy(out, b)
		return out
	}
	withAttr := func(b []byte, attrLen uint16, extra int) []byte {
		// An IFLA_IFNAME attribute claiming attrLen bytes, extra bytes
		// of it present; nlmsg_len covers what is present.
		b = slices.Clone(b)
		b = binary.NativeEndian.AppendUint16(b, attrLen)
		b = binary.NativeEndian.AppendUint16(b, unix.IFLA_IFNAME)
		b = append(b, make([]byte, extra)...)
		binary.NativeEndian.PutUint32(b, uint32(len(b)))
		return b
	}
	second := getLink(3, 1, unix.NLM_F_ACK)

	tests := []struct {
		name    string
		frame   []byte
		nmLen   uint32 // 0 is nm_len 0; the frame's length is noted as len
		useLen  bool   // nm_len = len(frame)
		wantErr error  // of sendto
		want    []string
		// copiedAnyway: a single-threaded sender's frame is copied
		// too (it holds something that looks like a dump request).
		copiedAnyway bool
	}{
		{name: "NmLenZero", frame: req, nmLen: 0, wantErr: unix.EINVAL},
		{name: "NmLenRoomPlusOne", frame: req, nmLen: room + 1, wantErr: unix.EINVAL},
		{name: "NmLenFrameSize", frame: req, nmLen: tx.FrameSize, wantErr: unix.EINVAL},
		{name: "NmLenNegative", frame: req, nmLen: 1 << 31, wantErr: unix.EINVAL},
		{name: "NmLenMax", frame: req, nmLen: ^uint32(0), wantErr: unix.EINVAL},
		{
			// The whole payload: the request, then 0xfc up to the end
			// of the frame, which reads as a message longer than what
			// is left (and without NLM_F_DUMP bits) and ends the parse.
			name: "NmLenRoomExact", frame: fill(req, int(room), 0xfc), nmLen: room,
			want: []string{"seq 2: link 1 lo", "seq 2: ack"},
		},
		{
			// The same with 0xff: the garbage after the request has
			// NLM_F_DUMP bits in its flags, so the kernel copies the
			// frame, though the parser never gets to that "message".
			name: "GarbageWithDumpBits", frame: fill(req, int(room), 0xff), nmLen: room,
			want:         []string{"seq 2: link 1 lo", "seq 2: ack"},
			copiedAnyway: true,
		},
		{name: "NlmsgLenBeyondNmLen", frame: req, nmLen: 20},
		{name: "NlmsgLenBeyondFrame", frame: withLen(req, 4096), useLen: true},
		{name: "NlmsgLenBelowHeader", frame: withLen(req, 8), useLen: true},
		{name: "NlmsgLenZeroFillsFrame", frame: fill(withLen(req, 0), int(room), 0), nmLen: room},
		{
			// rtnetlink ignores a message too short for its family
			// header (rtnetlink_rcv_msg() returns 0): only the ack.
			name: "HeaderOnly", frame: withLen(req[:16], 16), useLen: true,
			want: []string{"seq 2: ack"},
		},
		{
			name: "NmLenMisaligned", frame: fill(req, 34, 0), nmLen: 34,
			want: []string{"seq 2: link 1 lo", "seq 2: ack"},
		},
		{
			// nlmsg_len 33: the next message starts at 36.
			name:  "MisalignedFirstMessage",
			frame: append(fill(withLen(req, 33), 36, 0), second...), useLen: true,
			want: []string{"seq 2: link 1 lo", "seq 2: ack", "seq 3: link 1 lo", "seq 3: ack"},
		},
		{
			// RTM_GETLINK parses attributes leniently: a broken one
			// ends the list ("bytes leftover" in the log) and the
			// request is answered.
			name: "AttrLenBeyondMessage", frame: withAttr(req, 200, 8), useLen: true,
			want: []string{"seq 2: link 1 lo", "seq 2: ack"},
		},
		{
			name: "AttrLenBelowHeader", frame: withAttr(req, 2, 4), useLen: true,
			want: []string{"seq 2: link 1 lo", "seq 2: ack"},
		},
		{
			name: "UnknownType", frame: func() []byte {
				b := slices.Clone(req)
				binary.NativeEndian.PutUint16(b[4:], 0x7fff)
				return b
			}(), useLen: true,
			want: []string{"seq 2: error ENOTSUP"}, // EOPNOTSUPP, same number
		},
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					n := tt.nmLen
					if tt.useLen {
						n = uint32(len(tt.frame))
					}
					o := runBatch(t, mode, rx, tx, txBatch{
						frames: [][]byte{probe, tt.frame},
						nmLen:  []uint32{uint32(len(probe)), n},
					})
					got := answers(t, o.datagrams)
					t.Logf("sendto: %s; TX %v; answers %q; stats %+v", errName(o.errs[0]), o.txStatus[0], got, o.stats)
					if !errors.Is(o.errs[0], tt.wantErr) || (tt.wantErr == nil && o.errs[0] != nil) {
						t.Errorf("sendto: %s, want %s", errName(o.errs[0]), errName(tt.wantErr))
					}
					if want := []ring.Status{ring.StatusUnused, ring.StatusUnused}; !slices.Equal(o.txStatus[0], want) {
						t.Errorf("TX frames after sendto: %v, want %v (the kernel hands every frame back)", o.txStatus[0], want)
					}
					want := append([]string{"seq 1: link 1 lo", "seq 1: ack"}, tt.want...)
					if !slices.Equal(got, want) {
						t.Errorf("answers:\n got %q\nwant %q", got, want)
					}
					sent := uint64(2)
					if tt.wantErr != nil {
						sent = 1
					}
					wantStats := ringStats{TXCopied: sent, Mapped: 1}
					if mode == modeInPlace {
						wantStats = ringStats{TXInPlace: sent, Mapped: 1}
						if tt.copiedAnyway {
							wantStats = ringStats{TXInPlace: 1, TXCopied: 1, Mapped: 1}
						}
					}
					if o.stats != wantStats {
						t.Errorf("ring stats %+v, want %+v", o.stats, wantStats)
					}
				})
			}
		})
	}
}

// TestTXStopsAtInvalidFrame documents what happens to the frames after an
// invalid one: the kernel hands the invalid frame back, returns EINVAL and
// leaves the frames after it VALID; the next sendto sends them, in order.
func TestTXStopsAtInvalidFrame(t *testing.T) {
	setup(t)
	rx := mustParams(t, 4096, 8)
	tx := mustParams(t, 2048, 4)
	a, b := getLink(10, 1, unix.NLM_F_ACK), getLink(11, 1, unix.NLM_F_ACK)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			o := runBatch(t, mode, rx, tx, txBatch{
				frames: [][]byte{getLink(9, 1, unix.NLM_F_ACK), a, b},
				nmLen:  []uint32{0, uint32(len(a)), uint32(len(b))},
				sends:  2,
			})
			t.Logf("sendto: %s then %s; TX %v then %v", errName(o.errs[0]), errName(o.errs[1]), o.txStatus[0], o.txStatus[1])
			if !errors.Is(o.errs[0], unix.EINVAL) || o.errs[1] != nil {
				t.Errorf("sendto: %s then %s, want EINVAL then ok", errName(o.errs[0]), errName(o.errs[1]))
			}
			U, V := ring.StatusUnused, ring.StatusValid
			if want := []ring.Status{U, V, V}; !slices.Equal(o.txStatus[0], want) {
				t.Errorf("TX frames after the first sendto: %v, want %v", o.txStatus[0], want)
			}
			if want := []ring.Status{U, U, U}; !slices.Equal(o.txStatus[1], want) {
				t.Errorf("TX frames after the second sendto: %v, want %v", o.txStatus[1], want)
			}
			got := answers(t, o.datagrams)
			want := []string{"seq 10: link 1 lo", "seq 10: ack", "seq 11: link 1 lo", "seq 11: ack"}
			if !slices.Equal(got, want) {
				t.Errorf("answers:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestTXStopsAtGap documents that the kernel walks the TX ring from its own
// position and stops at the first frame that is not VALID: a VALID frame
// behind an UNUSED one is not sent, and POLLOUT still reports the free
// frame at the kernel's position.
func TestTXStopsAtGap(t *testing.T) {
	setup(t)
	c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: mustParams(t, 4096, 8), TX: mustParams(t, 2048, 4)})
	fr, err := c.RawTX(1)
	if err != nil {
		t.Fatal(err)
	}
	req := getLink(1, 1, unix.NLM_F_ACK)
	copy(fr.Payload(), req)
	fr.SetLen(uint32(len(req)))
	fr.SetStatus(ring.StatusValid)
	if ev := pollEvents(t, connFD(t, c)); ev&unix.POLLOUT == 0 {
		t.Errorf("poll: %#x, want POLLOUT: the frame at the kernel's position is free", ev)
	}
	if err := c.RawKick(kernelAddr); err != nil {
		t.Errorf("sendto: %v, want success with nothing sent", err)
	}
	if got, want := txStatuses(t, c), []ring.Status{ring.StatusUnused, ring.StatusValid, ring.StatusUnused, ring.StatusUnused}; !slices.Equal(got, want) {
		t.Errorf("TX frames: %v, want %v", got, want)
	}
	if ds := drainNow(t, c); len(ds) != 0 {
		t.Errorf("answers %q, want none: nothing was sent", answers(t, ds))
	}
	if st := ringStatsOf(t, unix.NETLINK_ROUTE, connIno(t, c)); st.TXCopied+st.TXInPlace != 0 {
		t.Errorf("ring stats %+v: frames counted, none sent", st)
	}
	fr.SetStatus(ring.StatusUnused)
}

// TestTXScribbler rewrites VALID frames (nlmsghdr, nm_len, attributes,
// status) from one goroutine while others make the kernel send from the
// ring in a loop, for a few seconds. The frames are copied (the process
// has threads), so the kernel may see torn messages but must never
// misbehave: no crash, no splat (the debug kernel's KASAN watches the
// ring's bounds), and the kernel still answers afterwards. Only GET
// requests are ever written, so whatever the kernel sees changes nothing.
func TestTXScribbler(t *testing.T) {
	setup(t)
	const duration = 3 * time.Second
	c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: mustParams(t, 4096, 16),
		TX: ring.Params{BlockSize: 4096, BlockNr: 4, FrameSize: 2048, FrameNr: 8}})
	var frames []ring.RawFrame
	for i := 0; i < int(c.TX().FrameNr); i++ {
		fr, err := c.RawTX(i)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, fr)
	}

	var (
		stop                 atomic.Bool
		wg, reader           sync.WaitGroup
		kicks, writes, recvs atomic.Int64
		errCounts            sync.Map // errno name -> *atomic.Int64
	)
	count := func(err error) {
		v, _ := errCounts.LoadOrStore(errName(err), new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	wg.Add(2)
	go func() { // the scribbler
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for !stop.Load() {
			for _, fr := range frames {
				scribble(rng, fr)
				writes.Add(1)
			}
		}
	}()
	go func() { // the sender
		defer wg.Done()
		for !stop.Load() {
			count(c.RawKick(kernelAddr))
			kicks.Add(1)
		}
	}()
	reader.Add(1)
	go func() { // the reader keeps the RX ring moving
		defer reader.Done()
		for {
			_, err := c.Receive()
			if errors.Is(err, ring.ErrClosed) {
				return
			}
			recvs.Add(1)
		}
	}()
	time.Sleep(duration)
	stop.Store(true)
	wg.Wait() // no more writes to the mapping
	c.Close() // wakes the reader
	reader.Wait()

	var errs []string
	errCounts.Range(func(k, v any) bool {
		errs = append(errs, fmt.Sprintf("%s: %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	slices.Sort(errs)
	t.Logf("%d sendto calls (%s), %d frames written, %d datagrams read", kicks.Load(), strings.Join(errs, ", "), writes.Load(), recvs.Load())
	if kicks.Load() == 0 || writes.Load() == 0 {
		t.Fatal("the scribbler or the sender never ran")
	}

	// The kernel still answers, in place and copied.
	c2 := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: mustParams(t, 4096, 8), TX: mustParams(t, 2048, 4)})
	if err := c2.Send(getLink(1, 1, unix.NLM_F_ACK)); err != nil {
		t.Fatalf("send after the scribbler: %v", err)
	}
	checkLinkAnswer(t, receiveUntil(t, c2, 1), 1, 1, "lo")
	o := runBatch(t, modeInPlace, mustParams(t, 4096, 8), mustParams(t, 2048, 4),
		txBatch{frames: [][]byte{getLink(1, 1, unix.NLM_F_ACK)}})
	checkLinkAnswer(t, o.datagrams, 1, 1, "lo")
}

// scribble writes one hostile datagram into fr and marks it VALID,
// whatever state the frame is in. Message types are GET requests only;
// a torn read of the 16-bit type by the kernel can only combine their
// bytes into another GET type or an unknown one.
func scribble(rng *rand.Rand, fr ring.RawFrame) {
	p := fr.Payload()
	types := []uint16{unix.RTM_GETLINK, unix.RTM_GETADDR, unix.RTM_GETROUTE, unix.RTM_GETNEIGH, unix.NLMSG_NOOP, 0x7fff}
	flags := []uint16{unix.NLM_F_REQUEST, unix.NLM_F_REQUEST | unix.NLM_F_ACK, unix.NLM_F_REQUEST | unix.NLM_F_DUMP,
		unix.NLM_F_ACK, 0xffff &^ (unix.NLM_F_CREATE | unix.NLM_F_REPLACE | unix.NLM_F_EXCL | unix.NLM_F_APPEND)}
	off := 0
	for off+nlmsg.HeaderLen+unix.SizeofIfInfomsg <= len(p) && rng.IntN(3) != 0 {
		msgLen := nlmsg.HeaderLen + unix.SizeofIfInfomsg + rng.IntN(64)
		if rng.IntN(4) == 0 {
			msgLen = rng.IntN(len(p) * 2)
		}
		binary.NativeEndian.PutUint32(p[off:], uint32(msgLen))
		binary.NativeEndian.PutUint16(p[off+4:], types[rng.IntN(len(types))])
		binary.NativeEndian.PutUint16(p[off+6:], flags[rng.IntN(len(flags))])
		binary.NativeEndian.PutUint32(p[off+8:], rng.Uint32())
		// ifinfomsg: family, index 1 or random
		p[off+16] = byte(rng.IntN(3))
		binary.NativeEndian.PutUint32(p[off+20:], uint32(rng.IntN(3)))
		// attributes with random lengths
		a := off + nlmsg.HeaderLen + unix.SizeofIfInfomsg
		for a+4 <= len(p) && rng.IntN(2) == 0 {
			binary.NativeEndian.PutUint16(p[a:], uint16(rng.IntN(80)))
			binary.NativeEndian.PutUint16(p[a+2:], uint16(rng.IntN(64))|uint16(rng.IntN(2))<<15)
			a += 4 + rng.IntN(16)
		}
		off = a
	}
	lens := []uint32{0, 1, 16, uint32(off), uint32(len(p)), uint32(len(p)) + 1, ^uint32(0), rng.Uint32()}
	fr.SetLen(lens[rng.IntN(len(lens))])
	fr.SetStatus(ring.StatusValid) // also over a frame the kernel holds
}
