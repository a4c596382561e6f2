package txring

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nldiag"
	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// TestTXNeverInPlace sends the same RTM_GETLINK request for lo from the
// TX ring under every condition an in-place path could be tied to, from
// the strictest (a single-threaded process, the rings mapped once, one
// descriptor) to the loosest, and checks that the answer is the same and
// that NETLINK_DIAG_RING_STATS counts exactly the frames sent. The kernel
// copies every frame, so there is no other path to count: the strict
// cases show that meeting the conditions of the earlier in-place rule
// does not bring one back (TestTXSnapshotAtSend shows the copy itself).
func TestTXNeverInPlace(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // the TX ring

	rx := mustParams(t, 16384, 8) // frames hold a dump part: dumps arrive VALID
	tx := mustParams(t, 4096, 4)
	lo := getLink(1, 1, unix.NLM_F_ACK)
	// A frame holding two messages, the second a dump request: the
	// kernel must look past the first.
	hiddenDump := append(getLink(3, 1, unix.NLM_F_ACK), dumpLinks(4)...)

	type outcome struct {
		diag      nldiag.Socket
		datagrams []datagram
		sent      []int64 // sendto results, when known
	}
	fromSolo := func(r soloResult) outcome { return outcome{r.diag, r.datagrams, r.sendRet} }

	tests := []struct {
		name        string
		run         func(t *testing.T) outcome
		sent        int64 // bytes sendto reports, when known
		frames      uint64
		mapped      uint32
		checkAnswer func(t *testing.T, ds []datagram)
	}{{
		name: "SingleThreadedMappedOnce",
		run: func(t *testing.T) outcome {
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, rx: rx, tx: tx, frames: [][]byte{lo}}))
		},
		sent: int64(len(lo)), frames: 1, mapped: 1,
	}, {
		name: "GoProcess",
		run: func(t *testing.T) outcome {
			c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: rx, TX: tx})
			if err := c.Send(lo); err != nil {
				t.Fatalf("send: %v", err)
			}
			ds := receiveUntil(t, c, 1)
			return outcome{diag: diagSocket(t, unix.NETLINK_ROUTE, connIno(t, c)), datagrams: ds}
		},
		frames: 1, mapped: 1,
	}, {
		name: "SingleThreadedMappedTwice",
		run: func(t *testing.T) outcome {
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, rx: rx, tx: tx, flags: soloMapTwice,
				frames: [][]byte{lo}}))
		},
		sent: int64(len(lo)), frames: 1, mapped: 2,
	}, {
		name: "SingleThreadedDupFD",
		run: func(t *testing.T) outcome {
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, rx: rx, tx: tx, flags: soloDup,
				frames: [][]byte{lo}}))
		},
		sent: int64(len(lo)), frames: 1, mapped: 1,
	}, {
		// The child inherits the socket and the mapping; the parent
		// keeps both.
		name: "InheritedSharedWithParent",
		run: func(t *testing.T) outcome {
			c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: rx, TX: tx})
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, inherit: c, frames: [][]byte{lo}}))
		},
		sent: int64(len(lo)), frames: 1, mapped: 2,
	}, {
		// The parent unmaps and closes its copy before the child sends:
		// one mapping and one descriptor are left, in a single-threaded
		// process, but the mapping was inherited through fork().
		name: "InheritedParentGone",
		run: func(t *testing.T) outcome {
			c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: rx, TX: tx})
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, inherit: c, frames: [][]byte{lo},
				beforeSend: func() {
					if err := c.Close(); err != nil {
						t.Errorf("close the parent's Conn: %v", err)
					}
				}}))
		},
		sent: int64(len(lo)), frames: 1, mapped: 1,
	}, {
		// A dump keeps its request; the dump completes.
		name: "SingleThreadedDumpRequest",
		run: func(t *testing.T) outcome {
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, rx: rx, tx: tx,
				frames: [][]byte{dumpLinks(2)}, polls: 4}))
		},
		sent: int64(len(dumpLinks(2))), frames: 1, mapped: 1,
		checkAnswer: func(t *testing.T, ds []datagram) { checkLinkDump(t, ds, 2) },
	}, {
		// Two frames, the second an ordinary request with a dump
		// request behind it.
		name: "SingleThreadedMixedBatch",
		run: func(t *testing.T) outcome {
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, rx: rx, tx: tx,
				frames: [][]byte{lo, hiddenDump}, polls: 4}))
		},
		sent: int64(len(lo) + len(hiddenDump)), frames: 2, mapped: 1,
		checkAnswer: func(t *testing.T, ds []datagram) {
			checkLinkAnswer(t, ds, 1, 1, "lo")
			checkLinkAnswer(t, ds, 3, 1, "lo")
			checkLinkDump(t, ds, 4)
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.run(t)
			t.Logf("sendto %v; ring stats %+v; RX: %s", o.sent, o.diag.Stats, describe(o.datagrams))
			// Before patch 09 there are no counters: the answers are
			// checked, not the path.
			if haveRingStats() {
				st := o.diag.Stats
				if st == nil {
					t.Fatalf("sock_diag reported no NETLINK_DIAG_RING_STATS (attributes %v)", o.diag.Attrs)
				}
				if want := (nldiag.RingStats{TXFrames: tt.frames, Mapped: tt.mapped}); *st != want {
					t.Errorf("ring stats %+v, want %+v", *st, want)
				}
			}
			if len(o.sent) > 0 && o.sent[0] != tt.sent {
				t.Errorf("sendto returned %s, want %d (the bytes sent)", sendRet(o.sent[0]), tt.sent)
			}
			if tt.checkAnswer != nil {
				tt.checkAnswer(t, o.datagrams)
			} else {
				checkLinkAnswer(t, o.datagrams, 1, 1, "lo")
			}
		})
	}
}

// sendRet describes a sendto result as the solo child reports it.
func sendRet(r int64) string {
	if r < 0 && r != soloNotYet {
		return unix.ErrnoName(unix.Errno(-r))
	}
	return fmt.Sprint(r)
}

// TestTXSnapshotAtSend shows that the kernel works on a copy of the frame
// made when it took it: a single-threaded child, the rings mapped once,
// sends a message from its TX ring to a NETLINK_USERSOCK socket whose
// receive queue is full, so sendto waits inside the kernel for room after
// taking the frame. Meanwhile the parent rewrites the frame (message and
// nm_len) through /proc/<pid>/mem. The receiver then gets the message as
// it was when sendto started, and the frame was handed back (UNUSED)
// before the message was delivered.
func TestTXSnapshotAtSend(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // the TX ring
	r := newFullReceiver(t)
	orig := userMsg(1, "the message as it was when sendto started")
	rewritten := userMsg(2, "REWRITTEN while the kernel was delivering the message")
	res := runSolo(t, soloConfig{proto: unix.NETLINK_USERSOCK, tx: mustParams(t, 2048, 2), dstPort: r.port,
		frames: [][]byte{orig},
		duringSend: func(ch *soloChild) {
			ch.waitBlockedInSend(0, 0)
			ch.writeTX(0, rewritten, uint32(len(rewritten)))
			r.readFillers(t)
		}})
	if t.Failed() {
		return
	}
	got := r.readAll(t)
	t.Logf("sendto %s; TX %v; receiver got %q", sendRet(res.sendRet[0]), res.txStatus[0], got)
	if res.sendRet[0] != int64(len(orig)) {
		t.Errorf("sendto returned %s, want %d", sendRet(res.sendRet[0]), len(orig))
	}
	if len(got) != 1 || !bytes.Equal(got[0], orig) {
		t.Errorf("the receiver got %q, want only %q: the kernel must deliver its copy", got, orig)
	}
	if want := (nldiag.RingStats{TXFrames: 1, Mapped: 1}); haveRingStats() && statsOrZero(res.diag.Stats) != want {
		t.Errorf("ring stats %+v, want %+v", res.diag.Stats, want)
	}
}

// TestTXOneRingPerCall shows that one sendto sends at most one ring full
// of frames, even when user space refills frames while it runs: with a
// TX ring of two frames, the first sendto of a single-threaded child
// waits in the kernel to deliver frame 0 (the receiver's queue is full);
// meanwhile the parent writes a third message into frame 0 and marks it
// VALID. The call then sends frame 1 and returns, leaving frame 0 VALID;
// the second sendto sends it.
func TestTXOneRingPerCall(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // the TX ring
	r := newFullReceiver(t)
	m1, m2, m3 := userMsg(1, "first"), userMsg(2, "second"), userMsg(3, "third, written during the first sendto")
	res := runSolo(t, soloConfig{proto: unix.NETLINK_USERSOCK, tx: mustParams(t, 2048, 2), dstPort: r.port,
		frames: [][]byte{m1, m2}, sends: 2,
		duringSend: func(ch *soloChild) {
			ch.waitBlockedInSend(0, 0)
			ch.writeTX(0, m3, uint32(len(m3)))
			ch.setTXStatus(0, ring.StatusValid)
			r.readFillers(t)
		}})
	if t.Failed() {
		return
	}
	got := r.readAll(t)
	t.Logf("sendto %s then %s; TX %v then %v", sendRet(res.sendRet[0]), sendRet(res.sendRet[1]), res.txStatus[0], res.txStatus[1])
	if want := []int64{int64(len(m1) + len(m2)), int64(len(m3))}; !slices.Equal(res.sendRet, want) {
		t.Errorf("sendto returned %v, want %v", res.sendRet, want)
	}
	U, V := ring.StatusUnused, ring.StatusValid
	if want := [][]ring.Status{{V, U}, {U, U}}; !slices.EqualFunc(res.txStatus, want, slices.Equal) {
		t.Errorf("TX frames after each sendto: %v, want %v", res.txStatus, want)
	}
	if want := [][]byte{m1, m2, m3}; !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("the receiver got %q, want %q", got, want)
	}
	if want := (nldiag.RingStats{TXFrames: 3, Mapped: 1}); haveRingStats() && statsOrZero(res.diag.Stats) != want {
		t.Errorf("ring stats %+v, want %+v", res.diag.Stats, want)
	}
}

// userMsg is a NETLINK_USERSOCK message.
func userMsg(seq uint32, text string) []byte {
	return nlmsg.Message{Header: nlmsg.Header{Type: 0x100, Seq: seq}, Data: []byte(text)}.Append(nil)
}

// A fullReceiver is a NETLINK_USERSOCK socket without rings whose
// receive queue is full: a blocking send to it waits until it is read.
type fullReceiver struct {
	fd      int
	port    uint32
	fillers int
}

func newFullReceiver(t *testing.T) *fullReceiver {
	t.Helper()
	sock := func() int {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_USERSOCK)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	r := &fullReceiver{fd: sock()}
	sa, err := unix.Getsockname(r.fd)
	if err != nil {
		t.Fatal(err)
	}
	r.port = sa.(*unix.SockaddrNetlink).Pid
	if err := unix.SetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1); err != nil { // the minimum
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(hangGuard.Nanoseconds())
	if err := unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	filler := sock()
	for ; ; r.fillers++ {
		if r.fillers == 1000 {
			t.Fatalf("the receive queue takes more than %d messages", r.fillers)
		}
		err := unix.Sendto(filler, fillerMsg(r.fillers), unix.MSG_DONTWAIT, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: r.port})
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			t.Fatalf("fill the receiver: %v", err)
		}
	}
	return r
}

func fillerMsg(i int) []byte { return userMsg(uint32(1000+i), fmt.Sprintf("filler %d", i)) }

// readFillers makes room for everything that follows and reads the
// messages that filled the queue, which lets a waiting sender in.
func (r *fullReceiver) readFillers(t *testing.T) {
	t.Helper()
	// A larger receive buffer wakes nobody; the first read does.
	if err := unix.SetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for i := 0; i < r.fillers; i++ {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err != nil {
			t.Fatalf("read filler %d of %d: %v", i, r.fillers, err)
		}
		if !bytes.Equal(buf[:n], fillerMsg(i)) {
			t.Fatalf("filler %d: got %q", i, buf[:n])
		}
	}
}

// readAll reads what is queued now.
func (r *fullReceiver) readAll(t *testing.T) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(r.fd, buf, unix.MSG_DONTWAIT)
		if err == unix.EAGAIN {
			return got
		}
		if err != nil {
			t.Fatalf("read the receiver: %v", err)
		}
		got = append(got, slices.Clone(buf[:n]))
	}
}

// checkLinkDump checks that ds hold a complete RTM_GETLINK dump with
// sequence number seq: lo among the links, no link twice, NLMSG_DONE at
// the end and nothing of it after.
func checkLinkDump(t *testing.T, ds []datagram, seq uint32) []link {
	t.Helper()
	var links []link
	seen := map[int32]bool{}
	done := false
	for _, m := range messages(t, ds) {
		if m.Seq != seq {
			continue
		}
		if done {
			t.Errorf("dump seq %d: message type %d after NLMSG_DONE", seq, m.Type)
			continue
		}
		switch {
		case m.Type == unix.NLMSG_DONE:
			if err := m.DoneErr(); err != nil {
				t.Errorf("dump seq %d ended with %v", seq, err)
			}
			done = true
		case m.Type == unix.RTM_NEWLINK:
			l, err := parseLink(m)
			if err != nil {
				t.Errorf("dump seq %d: %v", seq, err)
				continue
			}
			if seen[l.index] {
				t.Errorf("dump seq %d: link %d (%s) twice", seq, l.index, l.name)
			}
			seen[l.index] = true
			links = append(links, l)
		default:
			t.Errorf("dump seq %d: unexpected message type %d (%v)", seq, m.Type, m.Err())
		}
	}
	if !done {
		t.Errorf("dump seq %d: no NLMSG_DONE after %d links", seq, len(links))
	}
	if !seen[1] {
		t.Errorf("dump seq %d: lo (index 1) missing among %d links", seq, len(links))
	}
	return links
}
