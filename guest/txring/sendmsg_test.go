package txring

import (
	"testing"

	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// TestTXSingleMappingRule sends the same RTM_GETLINK request for lo from
// the TX ring under each condition of the single-mapping rule and checks,
// through the socket's NETLINK_DIAG_RING_STATS, which path the kernel
// took, and that the answer is the same either way.
func TestTXSingleMappingRule(t *testing.T) {
	setup(t)
	rx := mustParams(t, 16384, 8) // frames hold a dump part: dumps arrive VALID
	tx := mustParams(t, 4096, 4)
	lo := getLink(1, 1, unix.NLM_F_ACK)
	// A frame holding two messages, the second a dump request: the
	// kernel must look past the first.
	hiddenDump := append(getLink(3, 1, unix.NLM_F_ACK), dumpLinks(4)...)

	type outcome struct {
		diag      sockDiag
		datagrams []datagram
		sent      []int64 // sendto results, when known
	}
	fromSolo := func(r soloResult) outcome { return outcome{r.diag, r.datagrams, r.sendRet} }

	tests := []struct {
		name        string
		run         func(t *testing.T) outcome
		inPlace     uint64
		copied      uint64
		mapped      uint32
		checkAnswer func(t *testing.T, ds []datagram)
	}{{
		name: "SingleThreadedMappedOnce",
		run: func(t *testing.T) outcome {
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, rx: rx, tx: tx, frames: [][]byte{lo}}))
		},
		inPlace: 1, mapped: 1,
	}, {
		name: "GoProcessThreads",
		run: func(t *testing.T) outcome {
			c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: rx, TX: tx})
			if err := c.Send(lo); err != nil {
				t.Fatalf("send: %v", err)
			}
			ds := receiveUntil(t, c, 1)
			return outcome{diag: diagSocket(t, unix.NETLINK_ROUTE, connIno(t, c)), datagrams: ds}
		},
		copied: 1, mapped: 1,
	}, {
		name: "SingleThreadedMappedTwice",
		run: func(t *testing.T) outcome {
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, rx: rx, tx: tx, flags: soloMapTwice,
				frames: [][]byte{lo}}))
		},
		copied: 1, mapped: 2,
	}, {
		name: "SingleThreadedDupFD",
		run: func(t *testing.T) outcome {
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, rx: rx, tx: tx, flags: soloDup,
				frames: [][]byte{lo}}))
		},
		copied: 1, mapped: 1,
	}, {
		// The child inherits the socket and the mapping; the parent
		// keeps both.
		name: "InheritedSharedWithParent",
		run: func(t *testing.T) outcome {
			c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: rx, TX: tx})
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, inherit: c, frames: [][]byte{lo}}))
		},
		copied: 1, mapped: 2,
	}, {
		// The parent unmaps and closes its copy before the child sends:
		// one mapping and one descriptor are left, as in the first case,
		// but the mapping was inherited through fork(), so it stays
		// shared as far as the kernel knows.
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
		copied: 1, mapped: 1,
	}, {
		// A dump keeps its request: always copied, and it completes.
		name: "SingleThreadedDumpRequest",
		run: func(t *testing.T) outcome {
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, rx: rx, tx: tx,
				frames: [][]byte{dumpLinks(2)}, polls: 4}))
		},
		copied: 1, mapped: 1,
		checkAnswer: func(t *testing.T, ds []datagram) { checkLinkDump(t, ds, 2) },
	}, {
		// The decision is per frame: frame 0 in place, frame 1 (a dump
		// behind an ordinary request) copied.
		name: "SingleThreadedMixedBatch",
		run: func(t *testing.T) outcome {
			return fromSolo(runSolo(t, soloConfig{proto: unix.NETLINK_ROUTE, rx: rx, tx: tx,
				frames: [][]byte{lo, hiddenDump}, polls: 4}))
		},
		inPlace: 1, copied: 1, mapped: 1,
		checkAnswer: func(t *testing.T, ds []datagram) {
			checkLinkAnswer(t, ds, 1, 1, "lo")
			checkLinkAnswer(t, ds, 3, 1, "lo")
			checkLinkDump(t, ds, 4)
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.run(t)
			st := o.diag.Stats
			if st == nil {
				t.Fatal("sock_diag reported no NETLINK_DIAG_RING_STATS")
			}
			t.Logf("ring stats %+v; RX: %s", *st, describe(o.datagrams))
			if st.TXInPlace != tt.inPlace || st.TXCopied != tt.copied || st.Mapped != tt.mapped {
				t.Errorf("ring stats: in place %d, copied %d, mapped %d; want %d, %d, %d",
					st.TXInPlace, st.TXCopied, st.Mapped, tt.inPlace, tt.copied, tt.mapped)
			}
			if len(o.sent) > 0 && o.sent[0] < 0 {
				t.Errorf("sendto: %v", unix.Errno(-o.sent[0]))
			}
			if tt.checkAnswer != nil {
				tt.checkAnswer(t, o.datagrams)
			} else {
				checkLinkAnswer(t, o.datagrams, 1, 1, "lo")
			}
		})
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
