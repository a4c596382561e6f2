package nfq_test

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nfq"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

const (
	logGroup  = 7
	logPrefix = "nfqtest: "
	hookOut   = unix.NF_INET_LOCAL_OUT
	ethPIP    = unix.ETH_P_IP
)

// logRig is a listener of log group logGroup with a rule that logs UDP
// from send to recv with logPrefix.
type logRig struct {
	t          *testing.T
	c          *nfq.Conn
	l          *nfq.Log
	recv, send *net.UDPConn
	tag        string
}

func newLogRig(t *testing.T, opts nfq.Options, cfg nfq.LogConfig) *logRig {
	t.Helper()
	loopbackUp(t)
	recv, send := udpPair(t)
	ruleSet(t, port(recv), logStmt(logGroup, logPrefix))
	c := dial(t, opts)
	cfg.Group = logGroup
	l, err := nfq.OpenLog(c, cfg)
	if err != nil {
		t.Fatalf("OpenLog(%+v): %v", cfg, err)
	}
	return &logRig{t: t, c: c, l: l, recv: recv, send: send, tag: "nflog"}
}

// logBatch is what the test keeps of a batch.
type logBatch struct {
	n      int // packets
	done   bool
	copied bool
	len    int
}

// read reads batches until it has n logged packets and checks each packet:
// the prefix, hook and protocol, an IPv4/UDP packet from send to recv with
// datagram first+k as its data.
func (r *logRig) read(n, first int, size func(int) int) []logBatch {
	r.t.Helper()
	t := r.t
	var batches []logBatch
	if err := r.c.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
		t.Fatal(err)
	}
	for k := 0; k < n; {
		err := r.l.ReadBatch(func(b nfq.Batch) error {
			batches = append(batches, logBatch{n: len(b.Packets), done: b.Done, copied: b.Copied, len: b.Len})
			if (len(b.Packets) > 1) != b.Done {
				t.Errorf("batch %d of %d packets: NLMSG_DONE at the end = %v", len(batches), len(b.Packets), b.Done)
			}
			for _, p := range b.Packets {
				i := first + k
				k++
				if p.Prefix != logPrefix {
					t.Errorf("packet %d: prefix %q, want %q", i, p.Prefix, logPrefix)
				}
				if p.Hook != hookOut || p.HWProto != ethPIP || p.OutDev != 1 {
					t.Errorf("packet %d: hook %d, protocol %#x, output device %d; want %d, %#x, 1 (lo)",
						i, p.Hook, p.HWProto, p.OutDev, hookOut, ethPIP)
				}
				// The UDP checksum of a local packet is only partial at
				// the output hook; nflog copies it as it is.
				data, err := checkIPv4UDP(p.Payload, port(r.send), port(r.recv), false)
				if err != nil {
					t.Errorf("packet %d: %v\n%x", i, err, p.Payload)
					continue
				}
				if want := payload(r.tag, i, size(i)); !bytes.Equal(data, want) {
					t.Errorf("packet %d: data %q, want %q", i, data, want)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d packets: %v", k, n, err)
		}
	}
	var sizes []int
	for _, b := range batches {
		sizes = append(sizes, b.n)
	}
	t.Logf("%d packets in %d batches of %v packets", n, len(batches), sizes)
	return batches
}

func (r *logRig) sendN(first, n int, size func(int) int) {
	r.t.Helper()
	for i := first; i < first+n; i++ {
		if _, err := r.send.Write(payload(r.tag, i, size(i))); err != nil {
			r.t.Fatalf("send datagram %d: %v", i, err)
		}
	}
}

// checkDelivered checks that logging did not keep the datagrams from recv.
func (r *logRig) checkDelivered(n int, size func(int) int) {
	r.t.Helper()
	last := []byte(r.tag + " last")
	if _, err := r.send.Write(last); err != nil {
		r.t.Fatal(err)
	}
	got := receiveUDP(r.t, r.recv, last)
	if len(got) != n {
		r.t.Errorf("receiver got %d datagrams, want %d", len(got), n)
	}
	for i, d := range got {
		if want := payload(r.tag, i, size(i)); !bytes.Equal(d, want) {
			r.t.Errorf("received %q, want %q", d, want)
		}
	}
}

// TestGuestLog logs loopback UDP and checks the batches: VALID frames
// (with an RX ring) holding one or more NFULNL_MSG_PACKET messages, ended
// by NLMSG_DONE if more than one, with the rule's prefix and the packets'
// contents.
func TestGuestLog(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	guesttest.NeedsPatch(t, 11) // nflog batches in the RX ring
	small1K, err := ring.ParamsFor(1024, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts nfq.Options
		cfg  nfq.LogConfig
		n    int
		size func(int) int
		// perBatch: every batch holds exactly this many packets (0: not
		// checked).
		perBatch int
		// unbind: the last batch is flushed by unbinding the group.
		unbind bool
		// copied: with an RX ring, every batch comes in a COPY frame
		// (a packet larger than a frame); otherwise in a VALID one.
		copied bool
		// frameCut: with an RX ring, the batches are limited by the
		// frame, so there are more than one and none is larger.
		frameCut bool
	}{
		{
			name: "one packet per batch",
			cfg:  nfq.LogConfig{QThreshold: 1, FlushTimeout: 10 * time.Millisecond},
			n:    20, size: payloadSize, perBatch: 1,
		},
		{
			// The timeout is long: only the threshold flushes.
			name: "batches of 4",
			cfg:  nfq.LogConfig{QThreshold: 4, FlushTimeout: time.Minute},
			n:    16, size: payloadSize, perBatch: 4,
		},
		{
			name: "batches of 4, no rings",
			opts: nfq.Options{NoRings: true},
			cfg:  nfq.LogConfig{QThreshold: 4, FlushTimeout: time.Minute},
			n:    16, size: payloadSize, perBatch: 4,
		},
		{
			name: "short timeout",
			cfg:  nfq.LogConfig{QThreshold: 1000, FlushTimeout: 10 * time.Millisecond},
			n:    16, size: payloadSize,
		},
		{
			// 1 KiB frames hold two of these packets; the threshold is
			// never reached and the timeout long, so the frame cuts the
			// batches and unbinding flushes the last one.
			name: "batches cut by the frame",
			opts: nfq.Options{RX: small1K},
			cfg:  nfq.LogConfig{QThreshold: 1000, FlushTimeout: time.Minute},
			n:    12, size: func(int) int { return 300 }, unbind: true, frameCut: true,
		},
		{
			// The buffer size applies to batches outside the ring.
			name: "buffer size larger than a frame",
			opts: nfq.Options{RX: small1K},
			cfg:  nfq.LogConfig{QThreshold: 1000, FlushTimeout: time.Minute, BufSize: 16384},
			n:    12, size: func(int) int { return 300 }, unbind: true, frameCut: true,
		},
		{
			name: "packets larger than a frame",
			opts: nfq.Options{RX: small1K},
			cfg:  nfq.LogConfig{QThreshold: 1, FlushTimeout: 10 * time.Millisecond},
			n:    8, size: func(i int) int { return 1200 + 10*i }, perBatch: 1, copied: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLogRig(t, tc.opts, tc.cfg)
			r.sendN(0, tc.n, tc.size)
			if tc.unbind {
				if err := r.l.Close(); err != nil {
					t.Fatalf("unbind: %v", err)
				}
			} else {
				t.Cleanup(func() {
					if err := r.l.Close(); err != nil {
						t.Errorf("unbind: %v", err)
					}
				})
			}
			batches := r.read(tc.n, 0, tc.size)
			room := r.c.RX().MaxPayload()
			for k, b := range batches {
				if tc.perBatch != 0 && b.n != tc.perBatch {
					t.Errorf("batch %d holds %d packets, want %d", k, b.n, tc.perBatch)
				}
				switch {
				case !r.c.Mapped():
					if !b.copied {
						t.Errorf("batch %d: Copied false without an RX ring", k)
					}
				case b.copied != tc.copied:
					t.Errorf("batch %d (%d bytes): Copied = %v, want %v (frame room %d)", k, b.len, b.copied, tc.copied, room)
				case tc.frameCut && b.len > room:
					t.Errorf("batch %d: %d bytes in a frame of %d", k, b.len, room)
				}
			}
			if tc.frameCut && r.c.Mapped() && len(batches) < 2 {
				t.Errorf("%d batches, want the frame to cut them", len(batches))
			}
			r.checkDelivered(tc.n, tc.size)
		})
	}
}

// TestGuestLogCloseWithPendingBatch closes the listener's socket while the
// kernel holds a batch for it (in a frame of its RX ring), then binds the
// group again from a new socket and logs through it.
func TestGuestLogCloseWithPendingBatch(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	guesttest.NeedsPatch(t, 11) // nflog batches in the RX ring
	loopbackUp(t)
	recv, send := udpPair(t)
	ruleSet(t, port(recv), logStmt(logGroup, logPrefix))
	c, err := nfq.Dial(nfq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nfq.OpenLog(c, nfq.LogConfig{Group: logGroup, QThreshold: 1000, FlushTimeout: time.Minute}); err != nil {
		c.Close()
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := send.Write(payload("nflog", i, payloadSize(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close with a pending batch: %v", err)
	}

	// The instance went with the socket: the group can be bound again.
	c2 := dial(t, nfq.Options{})
	l, err := nfq.OpenLog(c2, nfq.LogConfig{Group: logGroup, QThreshold: 1, FlushTimeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("bind the group again: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	r := &logRig{t: t, c: c2, l: l, recv: recv, send: send, tag: "nflog"}
	r.sendN(3, 4, payloadSize)
	r.read(4, 3, payloadSize)
	// The receiver got all 7.
	last := []byte("nflog last")
	if _, err := send.Write(last); err != nil {
		t.Fatal(err)
	}
	if got := receiveUDP(t, recv, last); len(got) != 7 {
		t.Errorf("receiver got %d datagrams, want 7", len(got))
	}
}
