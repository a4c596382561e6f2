package rxring

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// genlPolicyDump is CTRL_CMD_GETPOLICY for a generic netlink family, as
// a dump: the policy of "ethtool" is about 12.6 KB, five or so parts.
func genlPolicyDump(seq uint32, family string) []byte {
	const ctrlCmdGetPolicy = 10 // CTRL_CMD_GETPOLICY
	genl := []byte{ctrlCmdGetPolicy, 1, 0, 0}
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.GENL_ID_CTRL,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: seq},
		Data: nlmsg.AppendString(genl, unix.CTRL_ATTR_FAMILY_NAME, family)}.Append(nil)
}

// dumpMessages collects the messages of a dump answering seq, datagram by
// datagram, until NLMSG_DONE: their payloads, and the number of
// datagrams. It fails on anything else.
type dumpMessages struct {
	seq       uint32
	payloads  [][]byte
	datagrams int
	done      bool
}

func (d *dumpMessages) add(b []byte) error {
	if d.done {
		return fmt.Errorf("datagram after NLMSG_DONE: %s", describe(b))
	}
	msgs, err := nlmsg.Parse(b)
	if err != nil || len(msgs) == 0 {
		return fmt.Errorf("datagram %d: %v (%s)", d.datagrams, err, describe(b))
	}
	d.datagrams++
	for _, m := range msgs {
		switch {
		case m.Seq != d.seq:
			return fmt.Errorf("datagram %d: message of seq %d, want %d", d.datagrams, m.Seq, d.seq)
		case m.Type == unix.NLMSG_DONE:
			if err := m.DoneErr(); err != nil {
				return fmt.Errorf("dump failed: %w", err)
			}
			d.done = true
		case m.Type == unix.NLMSG_ERROR:
			return fmt.Errorf("dump failed: %v", m.Err())
		case m.Type != unix.GENL_ID_CTRL:
			return fmt.Errorf("datagram %d: message type %d", d.datagrams, m.Type)
		default:
			d.payloads = append(d.payloads, bytes.Clone(m.Data))
		}
	}
	return nil
}

// plainDump runs the dump on a socket without rings.
func plainDump(t *testing.T, req []byte, seq uint32) dumpMessages {
	t.Helper()
	fd := netlinkSocket(t, unix.NETLINK_GENERIC)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatalf("sendto: %v", err)
	}
	d := dumpMessages{seq: seq}
	buf := make([]byte, 64<<10)
	for !d.done {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("plain dump: recvmsg: %v", err)
		}
		if err := d.add(buf[:n]); err != nil {
			t.Fatalf("plain dump: %v", err)
		}
	}
	return d
}

// TestDumpThroughSmallRing runs a dump larger than the RX ring through
// the library's reader, as a Go program does: the reader sleeps in the
// runtime's network poller (edge-triggered epoll), which never calls
// into the socket, and the kernel continues a dump that ran out of
// frames only from poll() or a recvmsg() on an empty queue. Every part
// must arrive, in order, with the same messages as on a socket without
// rings. With frames of 2 KiB the parts do not fit and come as COPY
// frames. Next variants hand frames back with Release, or Hold them and
// Release them later; a stall shows as a read deadline error.
func TestDumpThroughSmallRing(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 4) // COPY frames and dumps in the ring
	const seq = 7
	req := genlPolicyDump(seq, "ethtool")
	want := plainDump(t, req, seq)
	size := 0
	for _, p := range want.payloads {
		size += nlmsg.HeaderLen + len(p)
	}
	if size < 3*4096 {
		t.Fatalf("the dump is %d bytes; it must be larger than every ring below", size)
	}
	tests := []struct {
		frameSize, frames int
		read              string // receive, next, hold
	}{
		{4096, 2, "receive"},
		{4096, 1, "receive"},
		{2048, 2, "receive"},
		{4096, 2, "next"},
		{4096, 3, "hold"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%dx%d", tt.read, tt.frames, tt.frameSize), func(t *testing.T) {
			c := dialRing(t, unix.NETLINK_GENERIC, mustParams(t, tt.frameSize, tt.frames))
			if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			connFD(t, c, func(fd int) {
				if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
					t.Fatalf("sendto: %v", err)
				}
			})
			got := dumpMessages{seq: seq}
			var held []ring.Frame
			for !got.done {
				var err error
				switch tt.read {
				case "receive":
					var rec ring.Record
					if rec, err = c.Receive(); err == nil {
						err = got.add(rec.Data)
					}
				default:
					var f ring.Frame
					if f, err = c.Next(); err != nil {
						break
					}
					if err = got.add(f.Data()); err != nil {
						break
					}
					if tt.read == "next" {
						err = f.Release()
						break
					}
					// Hold every frame; give the oldest back once two
					// are held, so the reader goes round held frames.
					if err = f.Hold(); err != nil {
						break
					}
					if held = append(held, f); len(held) == 2 {
						err = held[0].Release()
						held = held[1:]
					}
				}
				if err != nil {
					t.Fatalf("after %d datagrams (%d messages; the plain dump has %d datagrams): %v",
						got.datagrams, len(got.payloads), want.datagrams, err)
				}
			}
			for _, f := range held {
				if err := f.Release(); err != nil {
					t.Error(err)
				}
			}
			if len(got.payloads) != len(want.payloads) {
				t.Fatalf("%d messages in %d datagrams, the plain dump has %d in %d",
					len(got.payloads), got.datagrams, len(want.payloads), want.datagrams)
			}
			for i := range want.payloads {
				if !bytes.Equal(got.payloads[i], want.payloads[i]) {
					t.Fatalf("message %d differs from the plain dump's", i)
				}
			}
		})
	}
}
