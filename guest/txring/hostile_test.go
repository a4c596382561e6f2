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
	"unsafe"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nldiag"
	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// The two kinds of sender the TX tests use: the Go process, which has
// threads, and a single-threaded child with its rings mapped once (see
// solo_test.go). The kernel treats frames from both the same way.
const (
	modeGoProcess      = "GoProcess"
	modeSingleThreaded = "SingleThreaded"
)

var modes = []string{modeGoProcess, modeSingleThreaded}

// A txBatch is what a test writes into the TX ring: frames[i] into frame
// i, with nm_len nmLen[i] if given, then sends sendto calls, to the kernel
// or to dstPorts[s] for call s.
type txBatch struct {
	frames   [][]byte
	nmLen    []uint32
	sends    int
	dstPorts []uint32
	sndbuf   int // SO_SNDBUF to set first, if not 0
}

// txOutcome is what came of a batch.
type txOutcome struct {
	errs      []error         // per sendto
	sent      []int           // per sendto: the bytes it reported sent
	txStatus  [][]ring.Status // per sendto: the batch's frames after it
	revents   []int16         // per sendto: poll(POLLIN|POLLOUT) right after it
	datagrams []datagram      // everything the socket received
	stats     nldiag.RingStats
}

var kernelAddr = &unix.SockaddrNetlink{Family: unix.AF_NETLINK}

// nobodysPort is a port ID no socket has: sending to it fails with
// ECONNREFUSED.
const nobodysPort = 0x7ffffffe

// runBatch sends b on a fresh NETLINK_ROUTE socket with rings rx and tx.
func runBatch(t *testing.T, mode string, rx, tx ring.Params, b txBatch) txOutcome {
	t.Helper()
	if b.sends == 0 {
		b.sends = 1
	}
	var o txOutcome
	if mode == modeSingleThreaded {
		r := runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, rx: rx, tx: tx, frames: b.frames, nmLen: b.nmLen,
			sends: b.sends, dstPorts: b.dstPorts, sndbuf: b.sndbuf})
		for _, ret := range r.sendRet {
			var err error
			n := int(ret)
			if ret < 0 {
				err, n = unix.Errno(-ret), 0
			}
			o.errs = append(o.errs, err)
			o.sent = append(o.sent, n)
		}
		o.txStatus, o.revents, o.datagrams, o.stats = r.txStatus, r.revents, r.datagrams, statsOrZero(r.diag.Stats)
		return o
	}

	c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: rx, TX: tx})
	fd := connFD(t, c)
	if b.sndbuf != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, b.sndbuf); err != nil {
			t.Fatal(err)
		}
	}
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
		var port uint32
		if s < len(b.dstPorts) {
			port = b.dstPorts[s]
		}
		n, err := kick(fd, port)
		o.errs = append(o.errs, err)
		o.sent = append(o.sent, n)
		o.txStatus = append(o.txStatus, txStatuses(t, c)[:len(b.frames)])
		o.revents = append(o.revents, pollEvents(t, fd))
	}
	o.datagrams = drainNow(t, c)
	o.stats = ringStatsOf(t, unix.NETLINK_ROUTE, connIno(t, c))
	return o
}

// kick is sendto(fd, NULL, 0, 0, {AF_NETLINK, port}): it makes the kernel
// send the TX ring's frames and returns the bytes it reports sent. (The
// ring library's RawKick drops the count.)
func kick(fd int, port uint32) (int, error) {
	sa := unix.RawSockaddrNetlink{Family: unix.AF_NETLINK, Pid: port}
	n, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, 0,
		uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
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

// minSndbuf returns the smallest SO_SNDBUF a socket can have (what the
// kernel makes of SO_SNDBUF 1). A message over it minus 32 bytes is too
// large to send.
func minSndbuf(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1); err != nil {
		t.Fatal(err)
	}
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		t.Fatal(err)
	}
	return v
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
// program could write, from the Go process and from a single-threaded
// child. Each hostile frame is the last frame of the TX ring, so reading
// past it would leave the ring's vmalloc area (KASAN_VMALLOC on the debug
// kernel). A valid request in the frame before it shows the socket keeps
// working.
//
// What the kernel does: a frame whose nm_len is zero or larger than the
// frame's payload is handed back unsent and the call fails with EINVAL; a
// frame whose nm_len exceeds the socket's send buffer minus 32 bytes is
// handed back unsent with EMSGSIZE. Every other frame is copied and sent,
// and the family's parser answers or ignores the message as it would a
// sendmsg() of nm_len bytes. Either way the frame is UNUSED afterwards;
// NETLINK_DIAG_RING_STATS counts the frames sent and the frames rejected.
func TestTXHostileFrames(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // the TX ring
	rx := mustParams(t, 4096, 8)
	tx := ring.Params{BlockSize: 4096, BlockNr: 1, FrameSize: 2048, FrameNr: 2} // the hostile frame ends the ring
	room := uint32(tx.MaxPayload())
	// Frames larger than the smallest send buffer, for EMSGSIZE.
	sndbuf := minSndbuf(t)
	sndLimit := uint32(sndbuf - 32)
	bigTX := ring.Params{BlockSize: 16384, BlockNr: 1, FrameSize: 8192, FrameNr: 2}
	if int(sndLimit) >= bigTX.MaxPayload() {
		t.Fatalf("the smallest send buffer is %d bytes: frames of %d do not exceed it", sndbuf, bigTX.FrameSize)
	}
	t.Logf("smallest SO_SNDBUF %d: messages up to %d bytes", sndbuf, sndLimit)
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
		tx      *ring.Params // instead of tx
		sndbuf  int          // SO_SNDBUF to set first
	}{
		{name: "NmLenZero", frame: req, nmLen: 0, wantErr: unix.EINVAL},
		{name: "NmLenRoomPlusOne", frame: req, nmLen: room + 1, wantErr: unix.EINVAL},
		{name: "NmLenFrameSize", frame: req, nmLen: tx.FrameSize, wantErr: unix.EINVAL},
		{name: "NmLenNegative", frame: req, nmLen: 1 << 31, wantErr: unix.EINVAL},
		{name: "NmLenMax", frame: req, nmLen: ^uint32(0), wantErr: unix.EINVAL},
		{
			// Fits the frame, not the send buffer.
			name: "NmLenSndbufPlusOne", frame: fill(req, int(sndLimit)+1, 0), nmLen: sndLimit + 1,
			tx: &bigTX, sndbuf: 1, wantErr: unix.EMSGSIZE,
		},
		{
			// Exactly the send buffer's limit: sent. The zeros after
			// the request read as a message of length 0, which ends
			// the parse.
			name: "NmLenSndbufExact", frame: fill(req, int(sndLimit), 0), nmLen: sndLimit,
			tx: &bigTX, sndbuf: 1,
			want: []string{"seq 2: link 1 lo", "seq 2: ack"},
		},
		{
			// The whole payload: the request, then 0xfc up to the end
			// of the frame, which reads as a message longer than what
			// is left and ends the parse.
			name: "NmLenRoomExact", frame: fill(req, int(room), 0xfc), nmLen: room,
			want: []string{"seq 2: link 1 lo", "seq 2: ack"},
		},
		{
			// The same with 0xff: the garbage after the request has
			// NLM_F_DUMP bits in its flags, though the parser never
			// gets to that "message".
			name: "GarbageWithDumpBits", frame: fill(req, int(room), 0xff), nmLen: room,
			want: []string{"seq 2: link 1 lo", "seq 2: ack"},
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
					ringTX := tx
					if tt.tx != nil {
						ringTX = *tt.tx
					}
					o := runBatch(t, mode, rx, ringTX, txBatch{
						frames: [][]byte{probe, tt.frame},
						nmLen:  []uint32{uint32(len(probe)), n},
						sndbuf: tt.sndbuf,
					})
					got := answers(t, o.datagrams)
					t.Logf("sendto: %s (%d bytes); TX %v; answers %q; stats %+v", errName(o.errs[0]), o.sent[0], o.txStatus[0], got, o.stats)
					if !errors.Is(o.errs[0], tt.wantErr) || (tt.wantErr == nil && o.errs[0] != nil) {
						t.Errorf("sendto: %s, want %s", errName(o.errs[0]), errName(tt.wantErr))
					}
					if tt.wantErr == nil && o.sent[0] != len(probe)+int(n) {
						t.Errorf("sendto reported %d bytes sent, want %d", o.sent[0], len(probe)+int(n))
					}
					if want := []ring.Status{ring.StatusUnused, ring.StatusUnused}; !slices.Equal(o.txStatus[0], want) {
						t.Errorf("TX frames after sendto: %v, want %v (the kernel hands every frame back)", o.txStatus[0], want)
					}
					want := append([]string{"seq 1: link 1 lo", "seq 1: ack"}, tt.want...)
					if !slices.Equal(got, want) {
						t.Errorf("answers:\n got %q\nwant %q", got, want)
					}
					wantStats := nldiag.RingStats{TXFrames: 2, Mapped: 1}
					if tt.wantErr != nil {
						wantStats = nldiag.RingStats{TXFrames: 1, TXInvalid: 1, Mapped: 1}
					}
					if haveRingStats() && o.stats != wantStats {
						t.Errorf("ring stats %+v, want %+v", o.stats, wantStats)
					}
				})
			}
		})
	}
}

// TestTXStopsAtFailedFrame documents what happens to the frames after one
// that fails: the call returns the error, the failed frame is handed back
// (UNUSED), the frames after it stay VALID, and the kernel's position in
// the TX ring stays on the first of them, so poll() reports no POLLOUT
// although the next frame user space would write is free. The next
// sendto sends them, in order, and reports their bytes.
func TestTXStopsAtFailedFrame(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // the TX ring
	rx := mustParams(t, 4096, 8)
	tx := mustParams(t, 8192, 4)
	sndLimit := minSndbuf(t) - 32
	a, b := getLink(10, 1, unix.NLM_F_ACK), getLink(11, 1, unix.NLM_F_ACK)
	first := getLink(9, 1, unix.NLM_F_ACK)
	tests := []struct {
		name    string
		nmLen   uint32 // of the first frame; 0: its length
		sndbuf  int
		port    uint32 // the first sendto's destination
		wantErr error
		stats   nldiag.RingStats
	}{
		{name: "NmLenZero", nmLen: 0, wantErr: unix.EINVAL,
			stats: nldiag.RingStats{TXFrames: 2, TXInvalid: 1, Mapped: 1}},
		{name: "NmLenOverSndbuf", nmLen: uint32(sndLimit + 1), sndbuf: 1, wantErr: unix.EMSGSIZE,
			stats: nldiag.RingStats{TXFrames: 2, TXInvalid: 1, Mapped: 1}},
		{
			// The frame is valid and copied, the delivery fails. The
			// kernel counts it as sent: it is not invalid, and it was
			// taken from the ring like the frames it sent.
			name: "NobodyAtPort", nmLen: uint32(len(first)), port: nobodysPort, wantErr: unix.ECONNREFUSED,
			stats: nldiag.RingStats{TXFrames: 3, Mapped: 1},
		},
	}
	for _, mode := range modes {
		for _, tt := range tests {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				o := runBatch(t, mode, rx, tx, txBatch{
					frames:   [][]byte{first, a, b},
					nmLen:    []uint32{tt.nmLen, uint32(len(a)), uint32(len(b))},
					sends:    2,
					dstPorts: []uint32{tt.port, 0},
					sndbuf:   tt.sndbuf,
				})
				t.Logf("sendto: %s then %s (%d bytes); TX %v then %v; poll %#x then %#x; stats %+v",
					errName(o.errs[0]), errName(o.errs[1]), o.sent[1], o.txStatus[0], o.txStatus[1], o.revents[0], o.revents[1], o.stats)
				if !errors.Is(o.errs[0], tt.wantErr) || o.errs[1] != nil {
					t.Errorf("sendto: %s then %s, want %s then ok", errName(o.errs[0]), errName(o.errs[1]), errName(tt.wantErr))
				}
				if want := len(a) + len(b); o.sent[1] != want {
					t.Errorf("the second sendto reported %d bytes sent, want %d", o.sent[1], want)
				}
				U, V := ring.StatusUnused, ring.StatusValid
				if want := []ring.Status{U, V, V}; !slices.Equal(o.txStatus[0], want) {
					t.Errorf("TX frames after the first sendto: %v, want %v", o.txStatus[0], want)
				}
				if want := []ring.Status{U, U, U}; !slices.Equal(o.txStatus[1], want) {
					t.Errorf("TX frames after the second sendto: %v, want %v", o.txStatus[1], want)
				}
				if o.revents[0]&unix.POLLOUT != 0 {
					t.Errorf("poll after the first sendto: %#x, want no POLLOUT: the frame at the kernel's position is VALID", o.revents[0])
				}
				if o.revents[1]&unix.POLLOUT == 0 {
					t.Errorf("poll after the second sendto: %#x, want POLLOUT", o.revents[1])
				}
				got := answers(t, o.datagrams)
				want := []string{"seq 10: link 1 lo", "seq 10: ack", "seq 11: link 1 lo", "seq 11: ack"}
				if !slices.Equal(got, want) {
					t.Errorf("answers:\n got %q\nwant %q", got, want)
				}
				if haveRingStats() && o.stats != tt.stats {
					t.Errorf("ring stats %+v, want %+v", o.stats, tt.stats)
				}
			})
		}
	}
}

// TestTXStopsAtGap documents that the kernel walks the TX ring from its own
// position and stops at the first frame that is not VALID: a VALID frame
// behind an UNUSED one is not sent, and POLLOUT still reports the free
// frame at the kernel's position.
func TestTXStopsAtGap(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // the TX ring
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
	if st := ringStatsOf(t, unix.NETLINK_ROUTE, connIno(t, c)); haveRingStats() && st != (nldiag.RingStats{Mapped: 1}) {
		t.Errorf("ring stats %+v: frames counted, none sent or rejected", st)
	}
	fr.SetStatus(ring.StatusUnused)
}

// TestTXScribbler rewrites VALID frames (nlmsghdr, nm_len, attributes,
// status) from one goroutine while another makes the kernel send from the
// ring in a loop, for a few seconds. The kernel copies each frame once,
// so it may copy a torn message but must never misbehave: no crash, no
// splat (the debug kernel's KASAN watches the ring's bounds), and the
// kernel still answers afterwards. Only GET requests are ever written, so
// whatever the kernel sees changes nothing. Every rejected frame ends its
// sendto with EINVAL (or EMSGSIZE), so NETLINK_DIAG_RING_STATS must count
// exactly as many rejected frames as those calls.
func TestTXScribbler(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // the TX ring
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
	wg.Wait() // no more writes to the mapping, no more sends
	stats := ringStatsOf(t, unix.NETLINK_ROUTE, connIno(t, c))
	c.Close() // wakes the reader
	reader.Wait()

	var errs []string
	errCounts.Range(func(k, v any) bool {
		errs = append(errs, fmt.Sprintf("%s: %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	slices.Sort(errs)
	t.Logf("%d sendto calls (%s), %d frames written, %d datagrams read; ring stats %+v",
		kicks.Load(), strings.Join(errs, ", "), writes.Load(), recvs.Load(), stats)
	if kicks.Load() == 0 || writes.Load() == 0 {
		t.Fatal("the scribbler or the sender never ran")
	}
	rejecting := int64(0)
	for _, name := range []string{"EINVAL", "EMSGSIZE"} {
		if v, ok := errCounts.Load(name); ok {
			rejecting += v.(*atomic.Int64).Load()
		}
	}
	if haveRingStats() && (stats.TXInvalid != uint64(rejecting) || stats.Mapped != 1) {
		t.Errorf("ring stats %+v, want %d frames rejected (the sendto calls that failed with EINVAL or EMSGSIZE) and one mapping",
			stats, rejecting)
	}
	if haveRingStats() && stats.TXFrames == 0 {
		t.Errorf("ring stats %+v: no frame sent", stats)
	}

	// The kernel still answers, to the Go process and to a
	// single-threaded child.
	c2 := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: mustParams(t, 4096, 8), TX: mustParams(t, 2048, 4)})
	if err := c2.Send(getLink(1, 1, unix.NLM_F_ACK)); err != nil {
		t.Fatalf("send after the scribbler: %v", err)
	}
	checkLinkAnswer(t, receiveUntil(t, c2, 1), 1, 1, "lo")
	o := runBatch(t, modeSingleThreaded, mustParams(t, 4096, 8), mustParams(t, 2048, 4),
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
