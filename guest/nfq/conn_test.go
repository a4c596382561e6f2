package nfq

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// fakeKernel is a transport that answers requests the way a test says.
type fakeKernel struct {
	rxRing, txRing bool
	in             []Datagram // what reads return, in order
	sent           [][]byte   // datagrams sent by send (ring or not)
	sentMsg        [][]byte   // datagrams sent by sendmsg
	batches        int        // sendBatch calls
	// answer is called for each request with NLM_F_ACK and returns
	// datagrams to queue, ack included.
	answer func(req nlmsg.Message) []Datagram
}

var errNothing = errors.New("fake: nothing to read")

func (k *fakeKernel) read(fn func(Datagram) error) error {
	if len(k.in) == 0 {
		return errNothing
	}
	d := k.in[0]
	k.in = k.in[1:]
	return fn(d)
}

func (k *fakeKernel) deliver(b []byte) {
	msgs, _ := nlmsg.Parse(b)
	for _, m := range msgs {
		if m.Flags&unix.NLM_F_ACK != 0 && k.answer != nil {
			k.in = append(k.in, k.answer(m)...)
		}
	}
}

func (k *fakeKernel) send(b []byte) error {
	k.sent = append(k.sent, append([]byte(nil), b...))
	k.deliver(b)
	return nil
}

func (k *fakeKernel) sendBatch(bs [][]byte) error {
	k.batches++
	for _, b := range bs {
		k.send(b)
	}
	return nil
}

func (k *fakeKernel) sendmsg(b []byte) error {
	k.sentMsg = append(k.sentMsg, append([]byte(nil), b...))
	k.deliver(b)
	return nil
}

func (k *fakeKernel) setReadDeadline(time.Time) error { return nil }
func (k *fakeKernel) mapped() (bool, bool)            { return k.rxRing, k.txRing }
func (k *fakeKernel) rx() ring.Params                 { return ring.Params{} }
func (k *fakeKernel) portID() (uint32, error)         { return 1234, nil }
func (k *fakeKernel) close() error                    { return nil }

// ack returns NLMSG_ERROR with code errno (0: an ack) for req.
func ack(req nlmsg.Message, errno unix.Errno) []byte {
	// struct nlmsgerr: error, then the request's header (capped).
	data := binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))
	data = cat(data, nlhdr(int(req.Len), req.Type, req.Flags, req.Seq))
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.NLMSG_ERROR, Seq: req.Seq}, Data: data}.Append(nil)
}

func TestOpenQueueKeepsPacketsBeforeAck(t *testing.T) {
	early := packetMsg(0, 1, []byte("early"))
	k := &fakeKernel{rxRing: true, txRing: true}
	k.answer = func(req nlmsg.Message) []Datagram {
		// A packet in a VALID frame, then an unrelated ack, then ours.
		other := req
		other.Seq += 100
		return []Datagram{{Data: early}, {Data: ack(other, 0)}, {Data: ack(req, 0)}}
	}
	c := &Conn{t: k}
	q, err := OpenQueue(c, QueueConfig{Num: 0})
	if err != nil {
		t.Fatalf("OpenQueue: %v", err)
	}
	if len(k.sent) != 1 || len(k.sentMsg) != 0 {
		t.Fatalf("bind went out as %d sends, %d sendmsgs; want 1 send", len(k.sent), len(k.sentMsg))
	}
	var got []Packet
	for range 2 { // the packet, then the unrelated ack (no packets)
		if err := q.ReadPackets(func(p Packet) error {
			p.Payload = append([]byte(nil), p.Payload...)
			got = append(got, p)
			return nil
		}); err != nil {
			t.Fatalf("ReadPackets: %v", err)
		}
	}
	if len(got) != 1 || got[0].ID != 1 || string(got[0].Payload) != "early" || got[0].Copied {
		t.Errorf("read %+v, want the early packet as it came (not Copied)", got)
	}
	if err := q.ReadPackets(func(Packet) error { return nil }); !errors.Is(err, errNothing) {
		t.Errorf("third read: %v, want nothing left", err)
	}
}

func TestOpenQueueError(t *testing.T) {
	k := &fakeKernel{}
	k.answer = func(req nlmsg.Message) []Datagram { return []Datagram{{Data: ack(req, unix.EPERM)}} }
	_, err := OpenQueue(&Conn{t: k}, QueueConfig{Num: 3})
	var oe *OpError
	if !errors.Is(err, unix.EPERM) || !errors.As(err, &oe) || oe.Op != "bind queue" {
		t.Errorf("OpenQueue = %v, want an *OpError bind queue wrapping EPERM", err)
	}
	k.answer = func(nlmsg.Message) []Datagram { return nil }
	if _, err := OpenQueue(&Conn{t: k}, QueueConfig{Num: 3}); !errors.Is(err, errNothing) {
		t.Errorf("OpenQueue without an answer = %v, want the read error", err)
	}
}

func TestQueueVerdictPaths(t *testing.T) {
	vs := []PacketVerdict{{1, Accept}, {2, Drop}, {3, Accept}}
	var all []byte
	for _, v := range vs {
		all = appendVerdict(all, 0, v.ID, v.Verdict, false)
	}
	for _, tc := range []struct {
		name      string
		rx, tx    bool
		bySendmsg bool
		// want: sends, sendmsgs and sendBatch calls for Verdicts.
		sends, msgs, batches int
	}{
		{"tx ring: a frame each, one flush", true, true, false, 3, 0, 1},
		{"tx ring but sendmsg: one datagram", true, true, true, 0, 1, 0},
		{"no tx ring: one datagram", true, false, false, 1, 0, 0},
		{"no rings: one datagram", false, false, false, 1, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &fakeKernel{rxRing: tc.rx, txRing: tc.tx}
			k.answer = func(req nlmsg.Message) []Datagram { return []Datagram{{Data: ack(req, 0)}} }
			q, err := OpenQueue(&Conn{t: k}, QueueConfig{VerdictsBySendmsg: tc.bySendmsg})
			if err != nil {
				t.Fatal(err)
			}
			k.sent, k.sentMsg = nil, nil
			if err := q.Verdicts(vs); err != nil {
				t.Fatal(err)
			}
			if len(k.sent) != tc.sends || len(k.sentMsg) != tc.msgs || k.batches != tc.batches {
				t.Fatalf("%d sends, %d sendmsgs, %d batches; want %d, %d, %d",
					len(k.sent), len(k.sentMsg), k.batches, tc.sends, tc.msgs, tc.batches)
			}
			if got := bytes.Join(append(k.sent, k.sentMsg...), nil); !bytes.Equal(got, all) {
				t.Errorf("sent %x\nwant %x", got, all)
			}
			k.sent, k.sentMsg = nil, nil
			if err := q.VerdictBatch(9, Drop); err != nil {
				t.Fatal(err)
			}
			want := appendVerdict(nil, 0, 9, Drop, true)
			if got := bytes.Join(append(k.sent, k.sentMsg...), nil); !bytes.Equal(got, want) {
				t.Errorf("VerdictBatch sent %x\nwant %x", got, want)
			}
			if tc.bySendmsg != (len(k.sentMsg) == 1) {
				t.Errorf("VerdictBatch: %d sendmsgs with VerdictsBySendmsg %v", len(k.sentMsg), tc.bySendmsg)
			}
		})
	}
}

func TestReadPacketsVerdictError(t *testing.T) {
	bad := nlmsg.Message{Header: nlmsg.Header{Len: 32, Type: 0x0303, Seq: 0}}
	d := append(packetMsg(0, 5, []byte("pkt")), make([]byte, 1)...) // pad to 4
	d = append(d, ack(bad, unix.ENOENT)...)
	k := &fakeKernel{rxRing: true, in: []Datagram{{Data: d}}}
	q := &Queue{c: &Conn{t: k}}
	var ids []uint32
	err := q.ReadPackets(func(p Packet) error { ids = append(ids, p.ID); return nil })
	if !errors.Is(err, unix.ENOENT) || len(ids) != 1 || ids[0] != 5 {
		t.Errorf("ReadPackets = %v after ids %v; want ENOENT after id 5", err, ids)
	}
	k.in = []Datagram{{Data: packetMsg(1, 6, []byte("other queue"))}}
	if err := q.ReadPackets(func(Packet) error { return nil }); !errors.Is(err, nlmsg.ErrMalformed) {
		t.Errorf("packet of another queue: %v, want ErrMalformed", err)
	}
}

func TestLogReadBatch(t *testing.T) {
	done := nlmsg.Message{Header: nlmsg.Header{Type: unix.NLMSG_DONE, Flags: unix.NLM_F_MULTI},
		Data: []byte{2, 0, 0, 7}}.Append(nil)
	batch := cat(logMsg(7, "p: ", []byte("one")), logMsg(7, "p: ", []byte("two")), done)
	k := &fakeKernel{rxRing: true, in: []Datagram{
		{Data: batch},
		{Data: logMsg(7, "p: ", []byte("single")), Copied: true},
		{Data: cat(logMsg(7, "p: ", []byte("x")), done, logMsg(7, "p: ", []byte("y")))},
	}}
	l := &Log{c: &Conn{t: k}, group: 7}
	var got []Batch
	for range 2 {
		if err := l.ReadBatch(func(b Batch) error { got = append(got, b); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || len(got[0].Packets) != 2 || !got[0].Done || got[0].Copied ||
		string(got[0].Packets[1].Payload) != "two" || got[0].Len != len(batch) ||
		len(got[1].Packets) != 1 || got[1].Done || !got[1].Copied {
		t.Errorf("batches %+v", got)
	}
	if err := l.ReadBatch(func(Batch) error { return nil }); !errors.Is(err, nlmsg.ErrMalformed) {
		t.Errorf("NLMSG_DONE in the middle: %v, want ErrMalformed", err)
	}
}

func TestOpenLogConfig(t *testing.T) {
	k := &fakeKernel{rxRing: true, txRing: true}
	k.answer = func(req nlmsg.Message) []Datagram { return []Datagram{{Data: ack(req, 0)}} }
	_, err := OpenLog(&Conn{t: k}, LogConfig{Group: 7, QThreshold: 4, FlushTimeout: 15 * time.Millisecond, Seq: true})
	if err != nil {
		t.Fatal(err)
	}
	want := appendLogConfig(nil, 7, 1, logConfig{cmd: nfulnlCfgCmdBind, mode: true, qthresh: 4,
		setTimeout: true, timeout: 2, setFlags: true, flags: nfulnlCfgFSeq})
	if len(k.sent) != 1 || !bytes.Equal(k.sent[0], want) {
		t.Errorf("sent %x\nwant %x", k.sent, want)
	}
}
