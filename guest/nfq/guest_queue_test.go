package nfq_test

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nfq"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// queued is a packet the listener read, with its payload copied out.
type queued struct {
	id      uint32
	copied  bool
	capLen  uint32
	payload []byte // the IP packet
	data    []byte // its UDP data
	index   int    // i of payload(tag, i, _), -1 for other data
}

// queueRig is a listener of queue 0 with rules that queue UDP from send
// to recv.
type queueRig struct {
	t          *testing.T
	c          *nfq.Conn
	q          *nfq.Queue
	recv, send *net.UDPConn
	tag        string
	// allowCopy accepts packets that came through the receive queue
	// although the Conn has an RX ring (messages larger than a frame).
	allowCopy bool
	lastID    uint32
}

func newQueueRig(t *testing.T, opts nfq.Options, cfg nfq.QueueConfig) *queueRig {
	t.Helper()
	loopbackUp(t)
	recv, send := udpPair(t)
	ruleSet(t, port(recv), queueStmt(cfg.Num))
	c := dial(t, opts)
	q, err := nfq.OpenQueue(c, cfg)
	if err != nil {
		t.Fatalf("OpenQueue(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := q.Close(); err != nil {
			t.Errorf("close queue: %v", err)
		}
	})
	return &queueRig{t: t, c: c, q: q, recv: recv, send: send, tag: "nfq"}
}

// sendN sends datagrams first..first+n-1, each with payload(tag, i, size(i)).
func (r *queueRig) sendN(first, n int, size func(int) int) {
	r.t.Helper()
	for i := first; i < first+n; i++ {
		if _, err := r.send.Write(payload(r.tag, i, size(i))); err != nil {
			r.t.Fatalf("send datagram %d: %v", i, err)
		}
	}
}

// read reads n queued packets and checks each: a VALID frame (unless the
// Conn has no RX ring or allowCopy), an id above the one before, an IPv4
// UDP packet from send to recv with one of the test's payloads.
func (r *queueRig) read(n int) []queued {
	r.t.Helper()
	t := r.t
	var got []queued
	if err := r.c.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
		t.Fatal(err)
	}
	for len(got) < n {
		err := r.q.ReadPackets(func(p nfq.Packet) error {
			qp := queued{id: p.ID, copied: p.Copied, capLen: p.CapLen,
				payload: append([]byte(nil), p.Payload...), index: -1}
			got = append(got, qp)
			return nil
		})
		if err != nil {
			t.Fatalf("ReadPackets after %d of %d packets: %v", len(got), n, err)
		}
	}
	if len(got) != n {
		t.Fatalf("read %d packets, want %d (one datagram held more than expected)", len(got), n)
	}
	for i := range got {
		p := &got[i]
		if r.c.Mapped() && p.copied && !r.allowCopy {
			t.Errorf("packet id %d came in a COPY frame, want VALID", p.id)
		}
		if !r.c.Mapped() && !p.copied {
			t.Errorf("packet id %d: Copied false on a Conn without an RX ring", p.id)
		}
		if p.id <= r.lastID {
			t.Errorf("packet id %d read after id %d: ids must increase in ring order", p.id, r.lastID)
		}
		r.lastID = p.id
		csum := p.capLen == 0
		data, err := checkIPv4UDP(p.payload, port(r.send), port(r.recv), csum)
		if err != nil && p.capLen == 0 {
			t.Errorf("packet id %d: %v\n%x", p.id, err, p.payload)
			continue
		}
		p.data = data
		if idx, ok := parseIndex(r.tag, data); ok {
			p.index = idx
		}
	}
	return got
}

// finish sends a last datagram through the queue, accepts it, and checks
// that recv got exactly the datagrams with the indices in want, each
// once, and none other.
func (r *queueRig) finish(want []int, size func(int) int) {
	r.t.Helper()
	t := r.t
	last := []byte(fmt.Sprintf("%s last", r.tag))
	if _, err := r.send.Write(last); err != nil {
		t.Fatalf("send the last datagram: %v", err)
	}
	ps := r.read(1)
	if !bytes.Equal(ps[0].data, last) {
		t.Fatalf("queued %q, want the last datagram %q", ps[0].data, last)
	}
	if err := r.q.Verdict(ps[0].id, nfq.Accept); err != nil {
		t.Fatalf("accept the last datagram: %v", err)
	}
	got := receiveUDP(t, r.recv, last)
	seen := map[int]bool{}
	for _, d := range got {
		i, ok := parseIndex(r.tag, d)
		switch {
		case !ok:
			t.Errorf("received unexpected datagram %q", d)
		case seen[i]:
			t.Errorf("received datagram %d twice", i)
		case !bytes.Equal(d, payload(r.tag, i, size(i))):
			t.Errorf("datagram %d received as %q, sent %q", i, d, payload(r.tag, i, size(i)))
		}
		seen[i] = true
	}
	wantSet := map[int]bool{}
	for _, i := range want {
		wantSet[i] = true
		if !seen[i] {
			t.Errorf("accepted datagram %d never arrived", i)
		}
	}
	for i := range seen {
		if !wantSet[i] {
			t.Errorf("datagram %d arrived but was not accepted", i)
		}
	}
	t.Logf("%d datagrams accepted and received", len(got))
}

// checkOrder checks that the packets are datagrams first.. in send order.
func checkOrder(t *testing.T, ps []queued, first int) {
	t.Helper()
	for k, p := range ps {
		if p.index != first+k {
			t.Errorf("packet %d of the ring (id %d) holds datagram %d, want %d", k, p.id, p.index, first+k)
		}
	}
}

// TestGuestQueueVerdicts queues N datagrams, accepts the odd ones and
// drops the even ones, per packet, and checks what the receiver got.
func TestGuestQueueVerdicts(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	guesttest.NeedsPatch(t, 10) // nfqueue packets in the RX ring
	const n = 48
	for _, tc := range []struct {
		name string
		opts nfq.Options
		cfg  nfq.QueueConfig
		// grouped sends all verdicts with one Verdicts call.
		grouped bool
		// tx: the verdicts go through the TX ring (if the kernel has
		// rings).
		tx bool
	}{
		{name: "tx ring", tx: true},
		{name: "tx ring, one flush", grouped: true, tx: true},
		{name: "sendmsg, rx ring only", opts: nfq.Options{NoTX: true}},
		{name: "sendmsg, rx ring only, one datagram", opts: nfq.Options{NoTX: true}, grouped: true},
		{name: "sendmsg beside a tx ring", cfg: nfq.QueueConfig{VerdictsBySendmsg: true}},
		{name: "no rings", opts: nfq.Options{NoRings: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newQueueRig(t, tc.opts, tc.cfg)
			if tc.tx && r.c.Mapped() && !r.c.MappedTX() {
				t.Fatal("Conn has an RX ring but no TX ring")
			}
			r.sendN(0, n, payloadSize)
			ps := r.read(n)
			checkOrder(t, ps, 0)
			var vs []nfq.PacketVerdict
			var accepted []int
			for _, p := range ps {
				v := nfq.Drop
				if p.index%2 == 1 {
					v = nfq.Accept
					accepted = append(accepted, p.index)
				}
				vs = append(vs, nfq.PacketVerdict{ID: p.id, Verdict: v})
			}
			if tc.grouped {
				if err := r.q.Verdicts(vs); err != nil {
					t.Fatalf("Verdicts: %v", err)
				}
			} else {
				for _, v := range vs {
					if err := r.q.Verdict(v.ID, v.Verdict); err != nil {
						t.Fatalf("Verdict(%d, %v): %v", v.ID, v.Verdict, err)
					}
				}
			}
			r.finish(accepted, payloadSize)
		})
	}
}

// TestGuestQueueBatchVerdict decides N queued packets with
// NFQNL_MSG_VERDICT_BATCH: all at once, or a dropped prefix and then the
// rest.
func TestGuestQueueBatchVerdict(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	guesttest.NeedsPatch(t, 10) // nfqueue packets in the RX ring
	const n = 40
	for _, path := range []struct {
		name string
		opts nfq.Options
	}{
		{"tx ring", nfq.Options{}},
		{"sendmsg", nfq.Options{NoTX: true}},
	} {
		for _, tc := range []struct {
			name string
			drop int // datagrams 0..drop-1 are dropped with one batch first
		}{
			{"accept all", 0},
			{"drop 1, accept the rest", 1},
			{"drop 15, accept the rest", 15},
			{"drop all but the last", n - 1},
		} {
			t.Run(path.name+"/"+tc.name, func(t *testing.T) {
				r := newQueueRig(t, path.opts, nfq.QueueConfig{})
				r.sendN(0, n, payloadSize)
				ps := r.read(n)
				checkOrder(t, ps, 0)
				if tc.drop > 0 {
					if err := r.q.VerdictBatch(ps[tc.drop-1].id, nfq.Drop); err != nil {
						t.Fatalf("VerdictBatch(%d, drop): %v", ps[tc.drop-1].id, err)
					}
				}
				if err := r.q.VerdictBatch(ps[n-1].id, nfq.Accept); err != nil {
					t.Fatalf("VerdictBatch(%d, accept): %v", ps[n-1].id, err)
				}
				var accepted []int
				for i := tc.drop; i < n; i++ {
					accepted = append(accepted, i)
				}
				r.finish(accepted, payloadSize)
			})
		}
	}
}

// TestGuestQueueBatchVerdictConcurrentSenders has two senders, one per
// CPU, queue packets while the listener decides them in batches: every few
// packets it sends NFQNL_MSG_VERDICT_BATCH for all ids up to the last one
// it read, alternately accept and drop. Packet ids must increase in ring
// order for a batch to cover exactly the packets read, so the receiver
// must get exactly the datagrams of the accepting batches.
func TestGuestQueueBatchVerdictConcurrentSenders(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	guesttest.NeedsPatch(t, 10) // nfqueue packets in the RX ring
	const (
		perSender = 128
		every     = 2 // a batch verdict after this many packets
	)
	// Room for all packets at once, so that the senders may run ahead of
	// the listener: in the ring, and in the receive buffer for a Conn
	// without one.
	rx, err := ring.ParamsFor(4096, 2*perSender+64)
	if err != nil {
		t.Fatal(err)
	}
	const rcvbuf = 16 << 20
	for _, path := range []struct {
		name string
		opts nfq.Options
	}{
		{"tx ring", nfq.Options{RX: rx, ReceiveBuffer: rcvbuf}},
		{"sendmsg", nfq.Options{RX: rx, ReceiveBuffer: rcvbuf, NoTX: true}},
		{"no rings", nfq.Options{RX: rx, ReceiveBuffer: rcvbuf, NoRings: true}},
	} {
		t.Run(path.name, func(t *testing.T) {
			r := newQueueRig(t, path.opts, nfq.QueueConfig{})
			// Sender s sends datagrams s*perSender.. from its own socket
			// and its own CPU.
			senders := []*net.UDPConn{r.send, dialUDP(t, r.recv)}
			ports := map[int]bool{port(senders[0]): true, port(senders[1]): true}
			var wg sync.WaitGroup
			errs := make(chan error, len(senders))
			for s, conn := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					var set unix.CPUSet
					set.Set(s % runtime.NumCPU())
					if err := unix.SchedSetaffinity(0, &set); err != nil {
						errs <- fmt.Errorf("sender %d: sched_setaffinity: %w", s, err)
						return
					}
					for i := s * perSender; i < (s+1)*perSender; i++ {
						if _, err := conn.Write(payload(r.tag, i, payloadSize(i))); err != nil {
							errs <- fmt.Errorf("sender %d: datagram %d: %w", s, i, err)
							return
						}
					}
				}()
			}

			total := perSender * len(senders)
			var (
				accepted []int
				pending  []int // read, not yet decided
				lastID   uint32
				batches  int
				v        = nfq.Accept
				seen     = map[int]bool{}
			)
			if err := r.c.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
				t.Fatal(err)
			}
			for read := 0; read < total; {
				err := r.q.ReadPackets(func(p nfq.Packet) error {
					read++
					if r.c.Mapped() && p.Copied {
						t.Errorf("packet id %d came in a COPY frame, want VALID", p.ID)
					}
					if p.ID <= lastID {
						t.Errorf("packet id %d read after id %d", p.ID, lastID)
					}
					lastID = p.ID
					// Which sender: the ports decide, not the order.
					if len(p.Payload) < 28 {
						t.Errorf("packet id %d: %d bytes", p.ID, len(p.Payload))
						return nil
					}
					sp := int(p.Payload[20])<<8 | int(p.Payload[21])
					data, err := checkIPv4UDP(p.Payload, sp, port(r.recv), true)
					if err != nil || !ports[sp] {
						t.Errorf("packet id %d: source port %d, %v", p.ID, sp, err)
						return nil
					}
					i, ok := parseIndex(r.tag, data)
					if !ok || seen[i] || !bytes.Equal(data, payload(r.tag, i, payloadSize(i))) {
						t.Errorf("packet id %d: unexpected or repeated data %q", p.ID, data)
						return nil
					}
					seen[i] = true
					pending = append(pending, i)
					return nil
				})
				if err != nil {
					t.Fatalf("ReadPackets after %d of %d: %v", read, total, err)
				}
				if len(pending) >= every || (read == total && len(pending) > 0) {
					if err := r.q.VerdictBatch(lastID, v); err != nil {
						t.Fatalf("VerdictBatch(%d, %v): %v", lastID, v, err)
					}
					if v == nfq.Accept {
						accepted = append(accepted, pending...)
						v = nfq.Drop
					} else {
						v = nfq.Accept
					}
					pending = pending[:0]
					batches++
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			r.lastID = lastID
			slices.Sort(accepted)
			t.Logf("%d packets, %d batch verdicts, %d accepted", total, batches, len(accepted))
			r.finish(accepted, payloadSize)
		})
	}
}

// TestGuestQueueCopyFrames queues packets whose messages are larger than an
// RX frame among ones that fit: the large ones arrive as COPY frames, read
// with recvmsg in ring order, the others as VALID frames, all with their
// contents intact and ids increasing across both kinds. A copy range
// shorter than the packet cuts the payload and reports the length. Without
// rings only the contents are checked.
func TestGuestQueueCopyFrames(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	guesttest.NeedsPatch(t, 10) // nfqueue packets in the RX ring
	rx, err := ring.ParamsFor(2048, 64)
	if err != nil {
		t.Fatal(err)
	}
	const n = 24
	big := func(i int) bool { return i%3 == 1 }
	size := func(i int) int {
		if big(i) {
			return 2500 + i*50 // more than a 2 KiB frame holds
		}
		return payloadSize(i)
	}
	for _, tc := range []struct {
		name      string
		copyRange uint32
	}{
		{"whole packets", 0},
		{"copy range 2100", 2100},
		{"copy range 64", 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newQueueRig(t, nfq.Options{RX: rx}, nfq.QueueConfig{CopyRange: tc.copyRange})
			if !r.c.Mapped() {
				t.Log("kernel without memory-mapped netlink (ENOPROTOOPT): checking the packets only, every one comes through recvmsg")
			}
			r.allowCopy = true
			r.sendN(0, n, size)
			ps := r.read(n)
			var accepted []int
			for k, p := range ps {
				i := k // the datagrams are queued in send order
				accepted = append(accepted, i)
				want := payload(r.tag, i, size(i))
				ipLen := 28 + len(want)
				wantLen := ipLen
				if tc.copyRange != 0 && int(tc.copyRange) < ipLen {
					wantLen = int(tc.copyRange)
				}
				if len(p.payload) != wantLen {
					t.Errorf("packet %d (id %d): payload of %d bytes, want %d", i, p.id, len(p.payload), wantLen)
					continue
				}
				wantCap := uint32(0)
				if wantLen < ipLen {
					wantCap = uint32(ipLen)
				}
				if p.capLen != wantCap {
					t.Errorf("packet %d (id %d): NFQA_CAP_LEN %d, want %d", i, p.id, p.capLen, wantCap)
				}
				if !bytes.Equal(p.payload[28:], want[:wantLen-28]) {
					t.Errorf("packet %d (id %d): data %q, want %q", i, p.id, p.payload[28:], want[:wantLen-28])
				}
				// Messages of more than a frame's 2024 bytes are COPY.
				wantCopied := wantLen > 1900
				if r.c.Mapped() && p.copied != wantCopied {
					t.Errorf("packet %d (id %d, %d bytes): Copied = %v, want %v", i, p.id, wantLen, p.copied, wantCopied)
				}
			}
			if err := r.q.VerdictBatch(ps[n-1].id, nfq.Accept); err != nil {
				t.Fatalf("VerdictBatch: %v", err)
			}
			r.finish(accepted, size)
		})
	}
}
